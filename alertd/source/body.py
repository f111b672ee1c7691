"""Typed reading of Stripe response bodies: every surprise is a MalformedResponseError.

The sources and the directory read JSON through :class:`BodyReader`, so a field of the wrong
type or a missing one becomes an error that carries the ``Request-Id`` — never a crash deep in
the pipeline, and never a value made up to fill the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alertd.errors import MalformedResponseError


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
        return int(value)

    def optional_instant(self, value: Any, where: str) -> int | None:
        return None if value is None else self.instant(value, where)

    def number(self, value: Any, where: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.malformed(f"{where} is not a number")
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
