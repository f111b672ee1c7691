"""Typed reading of Stripe response bodies: every surprise is a MalformedResponseError.

The sources and the directory read JSON through :class:`BodyReader`, so a field of the wrong
type or a missing one becomes an error that carries the ``Request-Id`` — never a crash deep in
the pipeline, and never a value made up to fill the gap.

Numbers are bounded as well as typed, because JSON lets through what arithmetic cannot take:
a usage value must be finite and within ±:data:`MAX_USAGE` (``NaN``, ``Infinity``, ``1e400``,
``1e308`` or an integer of 400 digits is a malformed answer, not usage: ``NaN`` would make every
comparison false, and a value near the float limit overflows to infinity once summed), and a
time must be a whole second from 1970 to the end of year 9999 (:data:`MAX_INSTANT`). Negative
usage within the bound is accepted: Stripe accepts negative meter events (corrections), and
each condition type says what it does with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alertd.errors import MalformedResponseError

#: The largest usage magnitude one value may have: 10^18, a billion billion. Far above any
#: real meter (a year of a million events a second is 3·10^13), and far enough below the
#: float limit (~1.8·10^308) that summing any number of such values stays finite and exact
#: enough for thresholds.
MAX_USAGE = 1e18
#: The latest unix time accepted: 10000-01-01T00:00:00Z (later ones are no calendar date).
MAX_INSTANT = 253_402_300_800


@dataclass(frozen=True, slots=True)
class BodyReader:
    """Reads one response body; ``what`` names it in messages (``meter usage response``)."""

    what: str
    request_id: str | None

    def malformed(self, problem: str) -> MalformedResponseError:
        return MalformedResponseError(
            f"unexpected {self.what}: {problem}; it was not used", request_id=self.request_id
        )

    def mapping(self, value: Any, where: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.malformed(f"{where} is not an object")
        return value

    def items(self, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.malformed(f"{where} is not a list")
        return value

    def flag(self, value: Any, where: str) -> bool:
        if not isinstance(value, bool):
            raise self.malformed(f"{where} is not true or false")
        return value

    def instant(self, value: Any, where: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.malformed(f"{where} is not a unix time")
        if isinstance(value, float) and not value.is_integer():
            raise self.malformed(f"{where} is not a whole second")
        if not 0 <= value < MAX_INSTANT:
            raise self.malformed(f"{where} is {shown(value)}, not a time from 1970 to 9999")
        return int(value)

    def optional_instant(self, value: Any, where: str) -> int | None:
        return None if value is None else self.instant(value, where)

    def number(self, value: Any, where: str) -> float:
        """A usage value: finite and within ±:data:`MAX_USAGE`."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.malformed(f"{where} is not a number")
        if not usable(value):
            raise self.malformed(
                f"{where} is {shown(value)}, not a usage value (it must be finite and within "
                f"±{MAX_USAGE:.0e})"
            )
        return float(value)

    def text(self, value: Any, where: str) -> str:
        if not isinstance(value, str):
            raise self.malformed(f"{where} is not a string")
        return value

    def optional_text(self, value: Any, where: str) -> str | None:
        return None if value is None else self.text(value, where)

    def strings(self, value: Any, where: str) -> dict[str, str]:
        """A ``{key: string}`` object such as Stripe ``metadata``; ``null`` is empty."""
        if value is None:
            return {}
        mapping = self.mapping(value, where)
        for key, item in mapping.items():
            self.text(item, f"{where}[{key!r}]")
        return dict(mapping)

    def page(self, body: Any) -> tuple[list[Any], bool]:
        """``data`` and ``has_more`` of a Stripe list or search result."""
        document = self.mapping(body, "the body")
        return (
            self.items(document.get("data"), "'data'"),
            self.flag(document.get("has_more"), "'has_more'"),
        )


def usable(value: int | float) -> bool:
    """Whether a JSON number is a usage value alertd accepts (``NaN`` fails every comparison,
    and comparing a huge integer with a float is exact, so neither raises)."""
    return -MAX_USAGE <= value <= MAX_USAGE


def shown(value: int | float) -> str:
    """A number as messages show it: huge integers by their size (printing one in full is
    slow, and Python refuses beyond 4,300 digits)."""
    if isinstance(value, int) and abs(value) >= 10**30:
        return f"an integer of about {int(value.bit_length() * 0.30103) + 1} digits"
    return repr(value)
