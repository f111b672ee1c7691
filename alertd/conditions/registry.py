"""The one registry of condition kinds, imported statically.

:data:`KINDS` maps a condition ``type`` to its :class:`~alertd.conditions.base.ConditionKind`,
in the order the schema lists them (``validate``'s message for an unknown ``type`` names them in
this order). :func:`kind_of` is how every module outside the kinds asks about a rule's
condition. :func:`register` and :func:`unregister` exist for tests that define a throwaway
kind; the rule schema subscribes (:func:`on_change`) so the loader accepts what is registered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from alertd.conditions.absence import ABSENCE
from alertd.conditions.anomaly import ANOMALY
from alertd.conditions.base import ConditionKind, ConditionModel
from alertd.conditions.change import CHANGE
from alertd.conditions.credit import CREDIT
from alertd.conditions.forecast import FORECAST
from alertd.conditions.threshold import THRESHOLD
from alertd.errors import AlertdError

if TYPE_CHECKING:
    from alertd.rules.schema import Rule

KINDS: dict[str, ConditionKind] = {
    kind.type: kind for kind in (THRESHOLD, CHANGE, ANOMALY, FORECAST, ABSENCE, CREDIT)
}

_listeners: list[Callable[[], None]] = []


def kind_of(rule: Rule) -> ConditionKind:
    """The kind of ``rule``'s condition."""
    return kind_for(rule.condition)


def kind_for(condition: ConditionModel) -> ConditionKind:
    kind = KINDS.get(condition.type)
    if kind is None or not isinstance(condition, kind.model):
        raise AlertdError(f"no condition kind registered for type {condition.type!r}")
    return kind


def models() -> tuple[type[ConditionModel], ...]:
    """Every registered kind's condition model, in registry order."""
    return tuple(kind.model for kind in KINDS.values())


def on_change(listener: Callable[[], None]) -> None:
    """Call ``listener`` whenever a kind is registered or unregistered."""
    _listeners.append(listener)


def register(kind: ConditionKind) -> None:
    """Add ``kind`` (a test's throwaway kind); its ``type`` must be new."""
    if kind.type in KINDS:
        raise ValueError(f"condition type {kind.type!r} is already registered")
    KINDS[kind.type] = kind
    _changed()


def unregister(type_name: str) -> None:
    """Remove a kind added by :func:`register`."""
    del KINDS[type_name]
    _changed()


def _changed() -> None:
    for listener in _listeners:
        listener()
