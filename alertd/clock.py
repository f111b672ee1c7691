"""Time as a collaborator, and the parsing of durations and instants.

Every decision in alertd takes ``now`` as an argument; only the imperative shell asks a
:class:`Clock` for it. Tests hand in a :class:`FakeClock` whose ``sleep`` advances time at once,
so retry and backoff logic runs without waiting.
"""

from __future__ import annotations

import asyncio
import random
import re
import time
from datetime import UTC, datetime
from typing import Protocol

from alertd.errors import UsageError

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str | int | float) -> float:
    """``"30s"``, ``"5m"``, ``"4h"``, ``"7d"``, ``"2w"`` (or a number of seconds) → seconds."""
    if isinstance(text, bool):
        raise ValueError(f"not a duration: {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"a duration cannot be negative: {text!r}")
        return float(text)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 4h, 7d)")
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def format_duration(seconds: float) -> str:
    """The shortest exact spelling of a duration, as a config file would write it (the
    inverse of :func:`parse_duration`): 90 → ``"90s"``, 3600 → ``"1h"``, 1209600 → ``"2w"``.
    Prose for people uses :func:`readable_duration`."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


_READABLE_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def readable_duration(seconds: float | None, *, units: int | None = None) -> str:
    """How a duration reads in messages and templates: ``5400`` → ``1h 30m``, ``90061`` →
    ``1d 1h 1m 1s``, ``-120`` → ``-2m``, ``None`` → ``n/a`` (whole seconds, rounded).

    ``units`` keeps that many units from the largest one shown, dropping the rest (rounded
    down): with ``units=2``, ``123540`` → ``1d 10h``. The one formatter for people; config
    values are spelled back with :func:`format_duration`, which :func:`parse_duration` reads.
    """
    if seconds is None:
        return "n/a"
    remaining = round(abs(seconds))
    counts = []
    for unit, size in _READABLE_UNITS:
        count, remaining = divmod(remaining, size)
        counts.append((count, unit))
    first = next((i for i, (count, _) in enumerate(counts) if count), len(counts))
    shown = counts[first:] if units is None else counts[first:first + units]
    parts = [f"{count}{unit}" for count, unit in shown if count]
    sign = "-" if seconds < 0 and parts else ""
    return sign + (" ".join(parts) or "0s")


def backoff(retry: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait before retry number ``retry`` (0-based): ``base`` doubling per retry up
    to ``cap``, jittered into its upper half so that many retries spread out. The one backoff
    of alertd: fetching (:mod:`alertd.source.http`) and delivery (:mod:`alertd.notify.outbox`)
    each pass their own ``base`` and ``cap``."""
    return min(base * 2.0 ** max(retry, 0), cap) * rng.uniform(0.5, 1.0)


#: Bare integers read as unix seconds only in this range (2000-01-01 .. 2100-01-01): a number
#: outside it is more likely milliseconds or a typo than a real instant.
EPOCH_RANGE = (946_684_800, 4_102_444_800)
_AGO = re.compile(r"\s+ago$")
INSTANT_FORMS = "ISO 8601 (2025-01-03T04:30:00Z), 30d or '30d ago' (30 days ago), or unix seconds"
#: Every instant, however written, must fall in 1970-01-01 .. 9999-01-01 (exclusive): windows
#: and calendars reach some way either side of it, and outside this range Python's datetime
#: (years 1..9999) would fail there, deep inside a check, instead of here as a usage error.
INSTANT_RANGE = (0, 253_370_764_800)


def parse_instant(text: str, now: float, *, option: str = "time") -> int:
    """An instant written as the command line accepts it, as unix seconds.

    Accepted: ISO 8601 (``2025-01-03T04:30:00Z``; no zone means UTC), a duration before
    ``now`` (``30d``, ``4h``, also ``4d ago`` as the help once suggested), or unix seconds
    (``1735689600``). Anything else raises :class:`~alertd.errors.UsageError` (a
    ``ValueError``) whose one-line message names ``option`` and the accepted forms.
    """
    spoken = _AGO.sub("", text.strip())
    if spoken.isdigit():
        return _epoch(int(spoken), text, option)
    try:
        if _DURATION.match(spoken):
            instant = now - parse_duration(spoken)
        else:
            instant = _iso(spoken, text, option)
        return _in_range(int(instant), text, option)
    except OverflowError:  # a duration so long it is infinite, or an ISO time past datetime
        return _in_range(None, text, option)


def _iso(spoken: str, text: str, option: str) -> float:
    try:
        parsed = datetime.fromisoformat(spoken.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{option}: not a time: {text!r} (use {INSTANT_FORMS})") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def _in_range(instant: int | None, text: str, option: str) -> int:
    low, high = INSTANT_RANGE
    if instant is not None and low <= instant < high:
        return instant
    raise UsageError(
        f"{option}: {text!r} is not a time between 1970 and 9998; use {INSTANT_FORMS}"
    )


def _epoch(seconds: int, text: str, option: str) -> int:
    low, high = EPOCH_RANGE
    if low <= seconds < high:
        return seconds
    hint = " (milliseconds? give seconds)" if high * 1000 > seconds >= low * 1000 else ""
    raise UsageError(
        f"{option}: {text!r} is not a unix time between 2000 and 2100{hint}; use {INSTANT_FORMS}"
    )


def to_datetime(instant: float) -> datetime:
    return datetime.fromtimestamp(instant, tz=UTC)


def iso(instant: float | None) -> str | None:
    """Unix seconds → ``2025-01-03T04:30:00Z`` (``None`` stays ``None``)."""
    if instant is None:
        return None
    return to_datetime(instant).isoformat().replace("+00:00", "Z")


class Clock(Protocol):
    """Wall time for decisions, monotonic time for pacing, and a sleep that tests can skip."""

    def now(self) -> float: ...

    def monotonic(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class OffsetClock(SystemClock):
    """Real time shifted by ``offset`` seconds: a simulated "now" that runs at real speed
    (the demo, and daemon tests against the simulator's fixed history)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


class FakeClock:
    """A clock that only moves when told to; ``sleep`` advances it instantly.

    ``sleeps`` records every requested sleep so tests can assert on backoff schedules.
    """

    def __init__(self, start: float = 1_735_689_600.0) -> None:
        self._now = start
        self._mono = 0.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.advance(max(0.0, seconds))
        await asyncio.sleep(0)
