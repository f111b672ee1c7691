"""Faults on demand: what the simulator does wrong, when a test asks it to.

A :class:`Fault` says what goes wrong (``kind``), for which requests (``path`` prefix, and
``customer`` when set: the request's ``customer`` parameter), and how often: the next ``count``
matching requests, each with ``probability``, or (neither given) every matching request until
cleared.

=============  ===============================================================================
kind           effect on a request it fires on
=============  ===============================================================================
``status``     an error response with ``status`` (default 500; 503, 409, 429… with Stripe's
               body for that status) and, if set, ``Stripe-Should-Retry: true|false``
``slow``       the normal response, ``delay`` seconds late
``malformed``  the normal response with a broken body (``body``): ``html`` (an HTML error page),
               ``truncated`` (the JSON cut in half), ``wrong_types`` (numbers and ``has_more``
               as strings), ``missing_fields`` (``value``, ``aggregated_value``, ``id``,
               ``has_more``, ``refreshed_at`` removed), ``nan`` / ``huge`` / ``huge_int``
               (every ``value`` and ``aggregated_value`` becomes ``NaN``, ``1e308`` or
               ``10**400`` as JSON text), ``negative`` (every value negated),
               ``duplicate_rows`` (every row sent twice), ``deep`` (JSON arrays nested
               100,000 deep); status ``status`` (default 200)
``flap``       alternates: the 1st, 3rd, 5th… matching request fails with ``status`` (default
               503), the others succeed
=============  ===============================================================================
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, get_args

FaultKind = Literal["status", "slow", "malformed", "flap"]
MalformedBody = Literal["html", "truncated", "wrong_types", "missing_fields", "nan", "huge",
                        "huge_int", "negative", "duplicate_rows", "deep"]
#: The JSON text every value becomes, for the bodies that replace values.
_VALUE_TEXT: Mapping[str, str] = {"nan": "NaN", "huge": "1e308", "huge_int": "1" + "0" * 400}
_VALUES = frozenset({"value", "aggregated_value"})
_DEFAULT_STATUS: Mapping[str, int] = {"status": 500, "slow": 200, "malformed": 200, "flap": 503}
_STRINGIFIED = frozenset({"value", "aggregated_value", "has_more"})
_REMOVED = frozenset(
    {"value", "aggregated_value", "id", "has_more", "refreshed_at", "data_refreshed_at"}
)


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault to inject (see the module docstring for each ``kind``)."""

    kind: FaultKind
    status: int | None = None
    should_retry: bool | None = None
    count: int | None = None
    probability: float = 1.0
    delay: float = 0.0
    body: MalformedBody = "html"
    path: str = "/v1/"
    seed: int = 0
    customer: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in get_args(FaultKind):
            raise ValueError(f"fault kind must be one of {get_args(FaultKind)}, not {self.kind!r}")
        if self.body not in get_args(MalformedBody):
            raise ValueError(f"malformed body must be one of {get_args(MalformedBody)}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be at least 1")
        if not 0.0 <= self.probability <= 1.0 or self.delay < 0:
            raise ValueError("probability must be within [0, 1] and delay not negative")

    @property
    def effective_status(self) -> int:
        return self.status if self.status is not None else _DEFAULT_STATUS[self.kind]

    @classmethod
    def from_json(cls, raw: Any) -> Fault:
        """A fault from its JSON form (the field names of this class); ``ValueError`` if bad."""
        if not isinstance(raw, dict) or "kind" not in raw:
            raise ValueError("a fault is a JSON object with at least a 'kind'")
        names = {f.name for f in fields(cls)}
        extra = set(raw) - names
        if extra:
            raise ValueError(f"unknown fault fields: {sorted(extra)}")
        try:
            return cls(**raw)
        except TypeError as error:
            raise ValueError(str(error)) from None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class FaultAction:
    """What to do to one request: fail it (``fail``), delay it, or break its body."""

    fault: Fault
    fail: bool
    delay: float
    body: MalformedBody | None


class _Active:
    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self.remaining = fault.count
        self.matched = 0
        self.random = random.Random(fault.seed)

    def fire(self) -> bool:
        """Whether the fault hits this matching request (and account for it)."""
        self.matched += 1
        if self.fault.kind == "flap":
            hit = self.matched % 2 == 1
            self._consume()
            return hit
        hit = self.random.random() < self.fault.probability
        if hit:
            self._consume()
        return hit

    def _consume(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1

    @property
    def spent(self) -> bool:
        return self.remaining is not None and self.remaining <= 0


class FaultPlan:
    """The active faults; the first that fires on a request decides what happens to it."""

    def __init__(self) -> None:
        self._active: list[_Active] = []

    def add(self, fault: Fault) -> None:
        self._active.append(_Active(fault))

    def clear(self) -> None:
        self._active.clear()

    def active(self) -> list[dict[str, Any]]:
        return [{**a.fault.to_json(), "remaining": a.remaining} for a in self._active]

    def decide(self, path: str, customer: str | None = None) -> FaultAction | None:
        for active in list(self._active):
            if not path.startswith(active.fault.path):
                continue
            if active.fault.customer is not None and active.fault.customer != customer:
                continue
            hit = active.fire()
            if active.spent:
                self._active.remove(active)
            if hit:
                return _action(active.fault)
        return None


def _action(fault: Fault) -> FaultAction:
    return FaultAction(
        fault=fault,
        fail=fault.kind in ("status", "flap"),
        delay=fault.delay,
        body=fault.body if fault.kind == "malformed" else None,
    )


def break_body(text: str, body: MalformedBody) -> tuple[str, str]:
    """A broken version of the JSON response ``text``: ``(new text, content type)``."""
    if body == "html":
        return (
            "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
            "<body><h1>Bad Gateway</h1><p>The upstream server is not responding.</p></body></html>",
            "text/html",
        )
    if body == "truncated":
        return text[: max(1, len(text) // 2)], "application/json"
    if body == "deep":
        return "[" * 100_000 + "]" * 100_000, "application/json"
    data = json.loads(text)
    if body in _VALUE_TEXT:
        marker = "@@value@@"
        changed = json.dumps(_replace_values(data, lambda _: marker))
        return changed.replace(f'"{marker}"', _VALUE_TEXT[body]), "application/json"
    if body == "negative":
        return json.dumps(_replace_values(data, lambda v: -v)), "application/json"
    if body == "duplicate_rows":
        return json.dumps(_duplicate_rows(data)), "application/json"
    changed = _stringify(data) if body == "wrong_types" else _strip(data)
    return json.dumps(changed), "application/json"


def _replace_values(data: Any, new: Any) -> Any:
    if isinstance(data, dict):
        return {key: new(value) if key in _VALUES and isinstance(value, int | float)
                else _replace_values(value, new) for key, value in data.items()}
    if isinstance(data, list):
        return [_replace_values(item, new) for item in data]
    return data


def _duplicate_rows(data: Any) -> Any:
    """Every item of the body's row list (``rows.data`` or ``data``) twice, in a row."""
    if not isinstance(data, dict):
        return data
    if isinstance(data.get("rows"), dict):
        return {**data, "rows": _duplicate_rows(data["rows"])}
    if isinstance(data.get("data"), list):
        return {**data, "data": [item for item in data["data"] for _ in range(2)]}
    return data


def _stringify(data: Any) -> Any:
    if isinstance(data, dict):
        return {
            key: str(value) if key in _STRINGIFIED and not isinstance(value, dict | list)
            else _stringify(value)
            for key, value in data.items()
        }
    if isinstance(data, list):
        return [_stringify(item) for item in data]
    return data


def _strip(data: Any) -> Any:
    if isinstance(data, dict):
        return {key: _strip(value) for key, value in data.items() if key not in _REMOVED}
    if isinstance(data, list):
        return [_strip(item) for item in data]
    return data
