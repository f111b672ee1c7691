"""``anomaly`` conditions: is the latest complete bucket far outside what this series usually does?

This module is the condition's settings, its rule checks and the kind; the evaluation (local
time, ``exclude``, the verdict's wording) is :mod:`alertd.conditions.anomaly_eval`, the detector
itself :mod:`alertd.conditions.anomaly_model` (its docstring has the method and why: the best
of a recent-level and two seasonal predictors, a band from that predictor's own heavy-tailed
errors, episodes with hysteresis).

Settings, from the rule:

* ``sensitivity`` — ``low`` (6), ``medium`` (4, the default), ``high`` (3) or a number: the
  half-width of the band in spreads. The exit band is half as wide.
* ``adaptation`` (default 6h) — how long a lasting change takes to become the new normal: the
  recent-level window; a level shift alerts for about half of it, once.
* ``exclude`` — periods neither judged nor learned from: dates, date-times, or a recurring
  calendar (``dates: [12-25]``, ``weekdays: [sat, sun]``, ``hours: [0, 6]``), in the rule's
  time zone. An excluded judged bucket gets an inactive finding that says so.
* ``min_volume`` — a bucket whose value and expectation are both below it is never unusual.
* ``direction`` — ``up``, ``down`` or ``both``; ``history`` (default 35d) — how much is read;
  ``min_history`` (default 1d) — no verdict until this much time has passed since the
  customer's first usage (zero-filled buckets before it say nothing about them, and are not
  learned from).

The finding is active for the whole episode, so a five-hour burst is one firing; it says the
expected value, the band, the predictor and, in an episode, since when. Negative usage
(corrections) is not judged (see :mod:`alertd.conditions.anomaly_eval`).
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from alertd.clock import format_duration
from alertd.conditions.anomaly_eval import (
    METHOD_DAY_OF_WEEK,
    METHOD_HOUR_OF_DAY,
    METHOD_HOUR_OF_WEEK,
    AnomalyEvaluator,
)
from alertd.conditions.base import (
    ADJECTIVE,
    Baseline,
    ConditionKind,
    ConditionModel,
    Direction,
    RuleIssue,
    Sample,
    StrictModel,
)
from alertd.config.settings import PositiveDuration
from alertd.model import Granularity
from alertd.templating import format_number

if TYPE_CHECKING:
    from alertd.rules.schema import Rule

__all__ = [
    "ANOMALY", "METHOD_DAY_OF_WEEK", "METHOD_HOUR_OF_DAY", "METHOD_HOUR_OF_WEEK",
    "AnomalyCondition", "AnomalyEvaluator", "AnomalyKind", "ExcludePeriod",
]


# --------------------------------------------------------------------------- the kind


#: ``sensitivity`` by name: the band's half-width in spreads (smaller is more sensitive).
SENSITIVITIES = {"low": 6.0, "medium": 4.0, "high": 3.0}


def _sensitivity(value: object) -> object:
    if isinstance(value, str) and not _is_number(value):
        if value not in SENSITIVITIES:
            raise ValueError(
                f"use low, medium, high or a number of spreads (medium is 4), not {value!r}"
            )
        return SENSITIVITIES[value]
    return value


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _month_day(text: object) -> object:
    if isinstance(text, str) and not _MONTH_DAY.fullmatch(text):
        raise ValueError(f"dates are MM-DD, every year (12-25 for Christmas), not {text!r}")
    return text


_MONTH_DAY = re.compile(r"(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])")


class ExcludePeriod(StrictModel):
    """Buckets an anomaly rule neither judges nor learns from (launches, holidays, outages),
    in the rule's time zone: ``from``/``to`` dates or date-times (``to`` inclusive for a date),
    or a recurring calendar: ``dates`` (``MM-DD``, every year), ``weekdays`` (``mon``..``sun``)
    and ``hours`` (``[start, end)`` local hours), which all must match when combined."""

    from_: date | datetime | None = Field(None, alias="from")
    to: date | datetime | None = None
    dates: tuple[Annotated[str, BeforeValidator(_month_day)], ...] = ()
    weekdays: tuple[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], ...] = ()
    hours: Annotated[tuple[Annotated[int, Field(ge=0, le=24)], ...], Field(max_length=2)] = ()

    @model_validator(mode="after")
    def _something(self) -> ExcludePeriod:
        if self.from_ is None and not (self.dates or self.weekdays or self.hours):
            raise ValueError("give from (and to) or a recurring dates/weekdays/hours")
        if self.from_ is not None and (self.dates or self.weekdays or self.hours):
            raise ValueError("use either from/to or dates/weekdays/hours, not both")
        if len(self.hours) == 1:
            raise ValueError("hours: [start, end), e.g. [0, 6] for midnight to 06:00")
        return self


def _exclude_item(value: object) -> object:
    """``2025-12-25`` alone is that one day (a date-time alone: that one instant's bucket)."""
    if isinstance(value, str):
        value = _moment(value)
    if isinstance(value, date):
        return {"from": value, "to": value}
    return value


def _moment(text: str) -> date | datetime:
    for parse in (date.fromisoformat, datetime.fromisoformat):
        try:
            return parse(text)
        except ValueError:
            continue
    raise ValueError(f"give a date (2025-12-25), a date-time (2025-12-25T09:00), or from/to "
                     f"or dates/weekdays/hours, not {text!r}")




class AnomalyCondition(ConditionModel):
    type: Literal["anomaly"]
    sensitivity: Annotated[float, BeforeValidator(_sensitivity), Field(gt=0)] = 4.0
    direction: Direction = "both"
    #: Five weeks: the judged hour and each hour of the week before it have four earlier weeks.
    history: PositiveDuration = 35 * 86400.0
    min_history: PositiveDuration = 86400.0
    min_volume: Annotated[float, Field(ge=0)] = 0.0
    #: How long a lasting change takes to become the new normal (it alerts for about half).
    adaptation: PositiveDuration = 6 * 3600.0
    exclude: tuple[Annotated[ExcludePeriod, BeforeValidator(_exclude_item)], ...] = ()


def _issues(rule: Rule, condition: AnomalyCondition) -> list[RuleIssue]:
    issues = []
    if rule.window not in ("hour", "day"):
        issues.append(RuleIssue(
            ("window",),
            f"window: an anomaly condition needs window: hour or day, not {rule.window!r} (its "
            "baseline needs many periods of history); for weeks or months use a change "
            "condition",
        ))
    if condition.min_history > condition.history:
        issues.append(RuleIssue(
            ("condition", "min_history"),
            f"condition.min_history: {format_duration(condition.min_history)} is longer than "
            f"history ({format_duration(condition.history)}), so the rule could never fire",
        ))
    return issues


def _sample(rule: Rule, condition: AnomalyCondition) -> Sample:
    baseline = 80_000.0
    value = baseline * (0.15 if condition.direction == "down" else 3.2)
    spread = baseline * 0.12 * condition.sensitivity
    message = f"{ADJECTIVE[rule.window]} usage {format_number(value)} is outside the " \
              f"expected {format_number(baseline - spread)}–{format_number(baseline + spread)}"
    return Sample(value, message, Baseline(baseline),
                  details={"band": [baseline - spread, baseline + spread],
                           "method": METHOD_HOUR_OF_WEEK},
                  recent_level=baseline)


def _condition(rule: Rule) -> AnomalyCondition:
    if not isinstance(rule.condition, AnomalyCondition):
        raise TypeError(f"rule {rule.name} has no anomaly condition")
    return rule.condition


class AnomalyKind(AnomalyEvaluator, ConditionKind):
    """``anomaly``: the last complete bucket against its seasonal expectation."""

    type = "anomaly"
    model = AnomalyCondition
    per_period = False

    def judged_at(self, rule: Rule) -> Granularity | None:
        return rule.window

    def reads_running_period(self, rule: Rule) -> bool:
        return False

    def check(self, rule: Rule) -> list[RuleIssue]:
        return _issues(rule, _condition(rule))

    def sample(self, rule: Rule) -> Sample:
        return _sample(rule, _condition(rule))


ANOMALY = AnomalyKind()
