"""Anomaly conditions on synthetic usage with a daily and weekly cycle and noise, judged hour
after hour: weekends, other time zones and small noisy customers stay quiet; spikes, drops and
stops alert at once; a holiday-like dip alerts that day only; a level shift (and a long stop)
alerts once and becomes the new normal; new and sparse customers get no storm of alerts;
direction, min_volume, the running bucket, daily and weekly windows, DST, and what the finding
says. Scans build each series directly (as ``build_series`` would, which is too slow to run
hundreds of times); single judgements go through the engine's needs → rows → series path."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from datetime import datetime
from functools import cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from usage_series_builders import DAY, HOUR, at, judge, make_rule, series_for

from alertd import calendar, conditions
from alertd.conditions.anomaly import METHOD_HOUR_OF_DAY, METHOD_HOUR_OF_WEEK, AnomalyEvaluator
from alertd.conditions.series import number
from alertd.model import Bucket, Customer, Period, Series, SeriesKey
from alertd.rules.schema import Rule

Usage = Callable[[int], float]


def jitter(start: int, amount: float) -> float:
    """A deterministic factor in ``1 ± amount``, chosen by the bucket's start."""
    return 1 + amount * (2 * random.Random(start).random() - 1)


def business(
    tz: str = "UTC", base: float = 1000.0, weekend: float = 0.3, noise: float = 0.08
) -> Usage:
    """Hourly usage peaking at 14:00 and lowest at 02:00 local time, quieter on weekends."""
    zone = ZoneInfo(tz)

    @cache
    def usage(start: int) -> float:
        local = datetime.fromtimestamp(start, zone)
        shape = 1 + 0.7 * math.cos(2 * math.pi * (local.hour - 14) / 24)
        week = weekend if local.weekday() >= 5 else 1.0
        return float(round(base * shape * week * jitter(start, noise)))

    return usage


def counted(base: float) -> Usage:
    """Whole events counted at random (Poisson) around ``business``'s shape."""
    shape = business(base=base, noise=0.0)

    @cache
    def usage(start: int) -> float:
        rng, mean = random.Random(start), shape(start)
        # Knuth's method: multiply uniforms until the product falls below e^-mean.
        limit, count, product = math.exp(-mean), 0, rng.random()
        while product > limit:
            count += 1
            product *= rng.random()
        return float(count)

    return usage


def changed(usage: Usage, since: str, until: str | None, factor: float) -> Usage:
    """``usage`` times ``factor`` from ``since`` (UTC) until ``until`` (``None``: for ever)."""
    first, end = at(since), math.inf if until is None else at(until)

    @cache
    def result(start: int) -> float:
        value = usage(start)
        return float(round(value * factor)) if first <= start < end else value

    return result


def starting(usage: Usage, since: str) -> Usage:
    """A customer who signed up at ``since``: nothing before."""
    return changed(usage, "2000-01-01 00:00", since, 0.0)


def anomaly(**fields: Any) -> dict[str, Any]:
    return {"type": "anomaly", **fields}


def quick_series(rule: Rule, now: int, usage: Usage) -> Series:
    """The series ``series_for`` would build (data refreshed a minute ago, a five-minute
    freshness lag), made directly: scanning hour after hour through rows and
    ``build_series`` would make these tests slow."""
    (need,) = AnomalyEvaluator().needs(rule, "cus_1", now)
    if need.granularity == "hour":
        edges = [*range(need.starts_at, need.ends_at, HOUR), need.ends_at]
    else:
        periods = calendar.periods(need.starts_at, need.ends_at, need.granularity, need.timezone)
        edges = [p.starts_at for p in periods] + [periods[-1].ends_at]
    complete_before = now - 60 - 300
    buckets = tuple(
        Bucket(start, min(end, need.ends_at), usage(start), end <= min(complete_before,
                                                                      need.ends_at))
        for start, end in pairwise(edges)
    )
    return Series(SeriesKey(rule.name, "cus_1"), rule.meter, (), need.granularity,
                  need.timezone, buckets, now - 60)


@pytest.mark.parametrize(("window", "tz"), [("hour", "UTC"), ("hour", "America/New_York"),
                                            ("day", "America/New_York")])
def test_quick_series_is_what_the_engine_builds(window: str, tz: str) -> None:
    rule = make_rule(anomaly(), window=window, timezone=tz)
    now = at("2025-03-12 15:10", tz)
    (built,) = series_for(rule, now, BUSINESS)
    assert quick_series(rule, now, BUSINESS).buckets == built.buckets


def fired(condition: dict[str, Any], usage: Usage, first: str, count: int,
          window: str = "hour", tz: str = "UTC") -> list[str]:
    """The judged buckets (``MM-DD HH`` local) that alerted, judging ``count`` buckets from
    ``first``, each ten minutes after it ended."""
    rule = make_rule(condition, window=window, timezone=tz)
    step = HOUR if window == "hour" else DAY
    found = []
    for n in range(count):
        judged = at(first, tz) + n * step
        now = judged + step + 600
        finding = AnomalyEvaluator().evaluate(rule, quick_series(rule, now, usage),
                                              Customer("cus_1"), now)
        assert finding.window.starts_at == judged, finding.message
        assert finding.state == "inactive", finding.message
        if finding.active:
            found.append(datetime.fromtimestamp(judged, ZoneInfo(tz)).strftime("%m-%d %H"))
    return found


def runs(labels: list[str], step: int = HOUR) -> int:
    """How many separate alerts (runs of consecutive buckets) ``fired`` returned."""
    starts = [at(f"2025-{label}:00") for label in labels]
    return sum(1 for i, s in enumerate(starts) if i == 0 or s - starts[i - 1] != step)


BUSINESS = business()


# --------------------------------------------------------------------------- hourly scenarios


@pytest.mark.parametrize(
    ("usage", "first", "count", "expected"),
    [
        # A whole weekend and the Monday morning after: quiet days are compared with quiet days.
        (BUSINESS, "2025-02-14 12:00", 72, []),
        # A customer in Tokyo: its night is our afternoon, its weekend starts Friday 15:00 UTC.
        (business("Asia/Tokyo"), "2025-02-14 00:00", 96, []),
        # A customer whose usage is much noisier (±30 %): still quiet.
        (business(noise=0.3), "2025-02-10 00:00", 72, []),
        # A tiny customer (a handful of calls an hour, drawn at random): counts that small
        # vary by about their square root by chance alone, which is no anomaly.
        (counted(8), "2025-02-10 00:00", 7 * 24, []),
        # A one-hour spike (x5) on Wednesday afternoon: exactly that hour.
        (changed(BUSINESS, "2025-02-12 14:00", "2025-02-12 15:00", 5.0),
         "2025-02-12 00:00", 24, ["02-12 14"]),
        # A spike at night (x4 on a quiet hour) is as unusual.
        (changed(BUSINESS, "2025-02-12 03:00", "2025-02-12 04:00", 4.0),
         "2025-02-12 00:00", 12, ["02-12 03"]),
        # A drop to 20 % for six hours: from its first hour, one episode, until the recent
        # level (adaptation: 6h) has made it the new normal.
        (changed(BUSINESS, "2025-02-12 14:00", "2025-02-12 20:00", 0.2),
         "2025-02-12 12:00", 12,
         ["02-12 14", "02-12 15", "02-12 16", "02-12 17"]),
    ],
    ids=["weekend", "other-time-zone", "noisy", "tiny", "spike", "night-spike", "drop"],
)
def test_hourly_scenarios(usage: Usage, first: str, count: int, expected: list[str]) -> None:
    assert fired(anomaly(), usage, first, count) == expected


def test_stop_alerts_at_once_then_becomes_the_new_normal() -> None:
    """A stop is caught in its first hour, as one alert; after about half of ``adaptation``
    it is the new normal (a stop that lasts is an absence rule's job), and its end is no alert
    either: usage is back to what the hour of the week expects."""
    stop = changed(BUSINESS, "2025-02-12 10:00", "2025-02-14 10:00", 0.0)
    alerts = fired(anomaly(), stop, "2025-02-12 08:00", 3 * 24)
    assert alerts[0] == "02-12 10" and runs(alerts) == 1
    assert 3 <= len(alerts) <= 18
    slower = fired(anomaly(adaptation="24h"), stop, "2025-02-12 08:00", 3 * 24)
    assert slower[0] == "02-12 10" and runs(slower) == 1 and len(slower) > len(alerts)


def test_holiday_like_dip_alerts_that_day_only() -> None:
    """A weekday at a third of its usage (a public holiday) is unusual: it alerts, as one
    alert over the working hours. A week later the same weekday is normal again: one holiday
    among four weeks does not move the median."""
    holiday = changed(BUSINESS, "2025-02-12 00:00", "2025-02-13 00:00", 0.3)
    on_the_day = fired(anomaly(), holiday, "2025-02-12 00:00", 24)
    assert on_the_day and runs(on_the_day) == 1
    assert all(label.startswith("02-12") for label in on_the_day)
    assert fired(anomaly(), holiday, "2025-02-13 00:00", 24) == []
    assert fired(anomaly(), holiday, "2025-02-19 00:00", 24) == []


def test_level_shift_alerts_once_then_becomes_the_new_normal() -> None:
    """Usage triples for good on Wednesday 00:00: one alert from that hour, over within a day,
    and nothing in the days after (the recent level now explains it)."""
    tripled = changed(BUSINESS, "2025-02-12 00:00", None, 3.0)
    alerts = fired(anomaly(), tripled, "2025-02-11 20:00", 4 * 24)
    assert alerts[0] == "02-12 00" and runs(alerts) == 1
    assert len(alerts) <= 24
    assert fired(anomaly(), tripled, "2025-02-17 00:00", 24) == []


@pytest.mark.parametrize(
    ("direction", "usage", "expected"),
    [
        ("up", changed(BUSINESS, "2025-02-12 14:00", "2025-02-12 15:00", 5.0), ["02-12 14"]),
        ("up", changed(BUSINESS, "2025-02-12 14:00", "2025-02-12 15:00", 0.0), []),
        ("down", changed(BUSINESS, "2025-02-12 14:00", "2025-02-12 15:00", 5.0), []),
        ("down", changed(BUSINESS, "2025-02-12 14:00", "2025-02-12 15:00", 0.0), ["02-12 14"]),
        ("both", changed(BUSINESS, "2025-02-12 14:00", "2025-02-12 15:00", 5.0), ["02-12 14"]),
        ("both", changed(BUSINESS, "2025-02-12 14:00", "2025-02-12 15:00", 0.0), ["02-12 14"]),
    ],
    ids=["up-spike", "up-stop", "down-spike", "down-stop", "both-spike", "both-stop"],
)
def test_direction(direction: str, usage: Usage, expected: list[str]) -> None:
    assert fired(anomaly(direction=direction), usage, "2025-02-12 12:00", 4) == expected


@pytest.mark.parametrize(
    ("min_volume", "expected"),
    [(0, ["02-12 14"]), (50, ["02-12 14"]), (100, [])],
)
def test_min_volume_on_both_sides(min_volume: float, expected: list[str]) -> None:
    """A small customer (about 10 calls an hour) jumps to about 80: unusual, unless both the
    value and its expectation are under ``min_volume``."""
    small = changed(business(base=10, noise=0.0), "2025-02-12 14:00", "2025-02-12 15:00", 5.0)
    assert fired(anomaly(min_volume=min_volume), small, "2025-02-12 12:00", 4) == expected


def test_sparse_customer_gets_no_storm_of_alerts() -> None:
    """Usage on about one day in six, at its own usual size: the idle hours compare a use
    with the customer's usual busy hours, so two weeks bring at most one alert."""
    busy = business(weekend=1.0)

    @cache
    def sparse(start: int) -> float:
        day = start // DAY
        return busy(start) if random.Random(day).random() < 1 / 6 else 0.0

    alerts = fired(anomaly(), sparse, "2025-02-10 00:00", 14 * 24)
    assert runs(alerts) <= 1


def test_new_customer_gets_no_verdict_until_min_history() -> None:
    """Signed up six days ago, with ``min_history: 7d``: no verdict, and it says why. At the
    default (one day) it is judged: on the hour of the day until it has two weeks, then on the
    hour of the week; its days bring no false alerts."""
    new = starting(BUSINESS, "2025-02-04 00:00")
    rule = make_rule(anomaly(min_history="7d"), window="hour")
    early = judge(rule, at("2025-02-10 10:10"), new)
    assert (early.active, early.state) == (False, "inactive")
    assert early.message == "not enough history: 6 of 7 days"
    default = make_rule(anomaly(), window="hour")
    assert judge(default, at("2025-02-04 12:10"), new).message.startswith("not enough history")
    assert judge(default, at("2025-02-11 10:10"), new).details["method"] == METHOD_HOUR_OF_DAY
    assert judge(default, at("2025-02-19 10:10"), new).details["method"] == METHOD_HOUR_OF_WEEK
    assert fired(anomaly(), new, "2025-02-08 00:00", 4 * 24) == []


def test_min_history_counts_from_the_first_usage() -> None:
    rule = make_rule(anomaly(min_history="14d"), window="hour")
    finding = judge(rule, at("2025-02-10 10:10"), starting(BUSINESS, "2025-02-01 00:00"))
    assert finding.message == "not enough history: 9 of 14 days"
    assert judge(rule, at("2025-02-10 10:10"), 0.0).message == "not enough history: 0 of 14 days"


# --------------------------------------------------------------------------- the finding


def test_finding_explains_itself() -> None:
    spike = changed(BUSINESS, "2025-02-12 14:00", "2025-02-12 15:00", 4.0)
    rule = make_rule(anomaly(), window="hour", severity="critical")
    finding = judge(rule, at("2025-02-12 15:10"), spike)
    assert finding.active and finding.level == "critical" and finding.state == "inactive"
    assert finding.window == Period(at("2025-02-12 14:00"), at("2025-02-12 15:00"), "UTC")
    assert finding.period_key == "2025-02-12T14+0000" and finding.complete
    assert finding.value == spike(at("2025-02-12 14:00"))
    assert finding.baseline is not None
    assert 0.85 < finding.baseline / BUSINESS(at("2025-02-12 14:00")) < 1.15
    low, high = finding.details["band"]
    assert low < finding.baseline < high < finding.value
    assert finding.details["method"] == METHOD_HOUR_OF_WEEK
    assert finding.details["score"] > finding.details["sensitivity"] == 4.0
    assert finding.message == (
        f"unusually high: {number(finding.value)} 2025-02-12 14:00–15:00 UTC, expected "
        f"{number(finding.baseline)} ({number(low)}–{number(high)}, same hour of week)"
    )


def test_an_ordinary_hour_is_inactive_and_says_so() -> None:
    finding = judge(make_rule(anomaly(), window="hour"), at("2025-02-12 15:10"), BUSINESS)
    assert not finding.active and finding.level is None
    assert finding.message.startswith("as usual: ")
    assert abs(finding.details["score"]) < 4


def test_the_running_hour_is_never_judged() -> None:
    """A spike in the hour that is still running (or not complete yet: data lags five
    minutes) is not judged until it is complete."""
    spike = changed(BUSINESS, "2025-02-12 14:00", "2025-02-12 15:00", 5.0)
    rule = make_rule(anomaly(), window="hour")
    for now in (at("2025-02-12 14:40"), at("2025-02-12 15:03")):
        finding = judge(rule, now, spike)
        assert finding.window.starts_at == at("2025-02-12 13:00") and not finding.active
    assert judge(rule, at("2025-02-12 15:10"), spike).active


def test_nodata_without_a_complete_bucket() -> None:
    rule = make_rule(anomaly(), window="hour")
    now = at("2025-02-12 15:10")
    (series,) = series_for(rule, now, BUSINESS, refreshed_at=at("2024-12-01 00:00"))
    finding = conditions.evaluate(rule, series, Customer("cus_1"), now)
    assert (finding.state, finding.active, finding.value) == ("nodata", False, None)


# --------------------------------------------------------------------------- other windows


def daily_business(start: int) -> float:
    weekday = datetime.fromtimestamp(start, ZoneInfo("UTC")).weekday()
    return float(round((3000 if weekday >= 5 else 10000) * jitter(start, 0.08)))


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (daily_business, []),
        (changed(daily_business, "2025-02-19 00:00", "2025-02-20 00:00", 0.3), ["02-19 00"]),
        (changed(daily_business, "2025-02-15 00:00", "2025-02-16 00:00", 3.0), ["02-15 00"]),
    ],
    ids=["weekends", "weekday-drop", "saturday-spike"],
)
def test_daily_window(usage: Usage, expected: list[str]) -> None:
    assert fired(anomaly(), usage, "2025-02-10 00:00", 14, window="day") == expected


def test_weekly_window_uses_trailing_weeks() -> None:
    rule = make_rule(anomaly(history="70d"), window="week")
    spiky = changed(daily_business, "2025-02-10 00:00", "2025-02-17 00:00", 3.0)
    finding = judge(rule, at("2025-02-17 00:10"), spiky)
    assert finding.active and finding.details["method"] == "recent level"
    assert finding.period_key == "2025-W07"
    assert not judge(rule, at("2025-02-17 00:10"), daily_business).active


@pytest.mark.parametrize(
    "first", ["2025-03-08 00:00", "2025-11-01 00:00"], ids=["spring-forward", "fall-back"]
)
def test_dst_changes_raise_no_alerts(first: str) -> None:
    """Usage that follows local time in New York, judged in New York hours across the day
    that has 23 (or 25) of them: hours of the week line up by local time."""
    local = business("America/New_York")
    assert fired(anomaly(), local, first, 72, tz="America/New_York") == []


# --------------------------------------------------------------------------- needs


@pytest.mark.parametrize(
    ("window", "tz", "now", "granularity", "starts_at", "ends_at"),
    [
        ("hour", "UTC", "2025-02-12 14:20", "hour", "2025-01-08 14:00", "2025-02-12 14:20"),
        ("day", "UTC", "2025-02-12 14:20", "day", "2025-01-08 00:00", "2025-02-12 14:20"),
        ("week", "UTC", "2025-02-12 14:20", "day", "2025-01-06 00:00", "2025-02-12 14:20"),
        # 35 local days before local midnight, across the spring-forward day.
        ("day", "America/New_York", "2025-03-12 10:00", "day", "2025-02-05 00:00",
         "2025-03-12 10:00"),
        ("hour", "America/New_York", "2025-03-12 10:00", "hour", "2025-02-05 10:00",
         "2025-03-12 10:00"),
    ],
)
def test_needs(window: str, tz: str, now: str, granularity: str, starts_at: str,
               ends_at: str) -> None:
    rule = make_rule(anomaly(), window=window, timezone=tz, filters={"model": "gpt-4"},
                     group_by=["tier"])
    (need,) = AnomalyEvaluator().needs(rule, "cus_1", at(now, tz))
    assert need.granularity == granularity and need.timezone == tz
    assert (need.starts_at, need.ends_at) == (at(starts_at, tz), at(ends_at, tz))
    assert need.spec.meter == "mtr_1" and need.spec.group_by == ("tier",)
    assert need.spec.dimension_filters == (("model", ("gpt-4",)),)
