"""The route tree: which receivers an alert goes to, and how its notifications are grouped.

Where it sits: ``alerts.build_alert`` ─► :meth:`RouteTree.destinations` ─► grouping ─► silence
─► dedup ─► outbox. Pure: built once per configuration, then only read.

Alertmanager's semantics, which users of ``route:`` already know:

* The root route matches every alert.
* Child routes are tried in order. The first that matches takes the alert, unless it says
  ``continue: true``: then the next siblings are tried too. A route none of whose children
  match delivers the alert itself.
* ``match`` is label equality (``severity`` included), ``match_re`` an anchored regular
  expression; a label the alert does not have reads as the empty string.
* ``receiver``, ``group_by``, ``group_wait``, ``group_interval`` and ``repeat_interval``
  inherit from the parent route. ``group_by: ["..."]`` groups by every label.
* A rule's own ``receivers: [...]`` sends to exactly those receivers with the root route's
  grouping and timing; ``routes`` are bypassed.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from alertd.config.settings import RootRoute, Route, Settings
from alertd.errors import ConfigError
from alertd.notify import labelset

ALL_LABELS = "..."


@dataclass(frozen=True, slots=True)
class Timing:
    """How one route groups and paces its notifications (seconds)."""

    group_by: tuple[str, ...]
    group_wait: float
    group_interval: float
    repeat_interval: float


@dataclass(frozen=True, slots=True)
class Destination:
    """One receiver an alert goes to, through one route (``route_id``), with its timing.

    ``route_key`` is the route's key as Alertmanager writes it (:mod:`alertd.notify.labelset`).
    """

    receiver: str
    route_id: str
    timing: Timing
    route_key: str = labelset.ROOT_KEY

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels that identify the alert's group at this destination."""
        if ALL_LABELS in self.timing.group_by:
            return dict(sorted(labels.items()))
        # A group never spans two Stripe accounts (whose leaders flush their own groups).
        names = {*self.timing.group_by, *(("account",) if "account" in labels else ())}
        return {name: labels.get(name, "") for name in sorted(names)}

    def group_key(self, labels: Mapping[str, str]) -> str:
        """Alertmanager's group key, ``{}/{severity="critical"}:{customer="…", rule="…"}``:
        stable across restarts, one per route and group."""
        return labelset.group_key(self.route_key, self.group_labels(labels))


@dataclass(frozen=True, slots=True)
class _Node:
    route_id: str
    route_key: str
    receiver: str | None
    match: tuple[tuple[str, str], ...]
    match_re: tuple[tuple[str, re.Pattern[str]], ...]
    continue_: bool
    timing: Timing
    children: tuple[_Node, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k, "") == v for k, v in self.match) and all(
            pattern.fullmatch(labels.get(k, "")) for k, pattern in self.match_re
        )


class RouteTree:
    """The configured ``route:`` tree, compiled. Raises :class:`ConfigError` on a bad regex."""

    def __init__(self, root: RootRoute) -> None:
        timing = Timing(
            group_by=tuple(root.group_by or ()),
            group_wait=root.group_wait if root.group_wait is not None else 30.0,
            group_interval=root.group_interval if root.group_interval is not None else 300.0,
            repeat_interval=(
                root.repeat_interval if root.repeat_interval is not None else 4 * 3600.0
            ),
        )
        self.root = _compile(root, "root", None, timing)

    @classmethod
    def from_settings(cls, settings: Settings) -> RouteTree:
        return cls(settings.route)

    def destinations(
        self, labels: Mapping[str, str], receivers: Sequence[str] | None = None
    ) -> tuple[Destination, ...]:
        """Where an alert with ``labels`` goes. ``receivers`` is the rule's own list, if any."""
        if receivers is not None:
            # As if the rule had its own route under the root, matching its name.
            key = labelset.child_key(self.root.route_key, [("rule", labels.get("rule", ""))], [])
            return tuple(Destination(name, "rule", self.root.timing, key) for name in receivers)
        return tuple(
            Destination(node.receiver, node.route_id, node.timing, node.route_key)
            for node in _walk(self.root, labels)
            if node.receiver is not None
        )


def _compile(route: Route, route_id: str, parent: _Node | None, timing: Timing) -> _Node:
    # Alertmanager ignores the root route's matchers in its key; so does this.
    route_key = labelset.ROOT_KEY if parent is None else labelset.child_key(
        parent.route_key, route.match.items(), route.match_re.items())
    own = Timing(
        group_by=tuple(route.group_by) if route.group_by is not None else timing.group_by,
        group_wait=_pick(route.group_wait, timing.group_wait),
        group_interval=_pick(route.group_interval, timing.group_interval),
        repeat_interval=_pick(route.repeat_interval, timing.repeat_interval),
    )
    receiver = route.receiver if route.receiver is not None else (
        parent.receiver if parent is not None else None
    )
    node = _Node(
        route_id=route_id,
        route_key=route_key,
        receiver=receiver,
        match=tuple(sorted(route.match.items())),
        match_re=tuple((k, _regex(route_id, k, v)) for k, v in sorted(route.match_re.items())),
        continue_=route.continue_,
        timing=own,
        children=(),
    )
    children = tuple(
        _compile(child, f"{route_id}.{index}", node, own)
        for index, child in enumerate(route.routes)
    )
    return dataclasses.replace(node, children=children)


def _pick(value: float | None, inherited: float) -> float:
    return inherited if value is None else value


def _regex(route_id: str, label: str, pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ConfigError(
            f"route {route_id}: match_re.{label}: invalid regular expression {pattern!r}: {exc}"
        ) from None


def _walk(node: _Node, labels: Mapping[str, str]) -> list[_Node]:
    """The routes that deliver an alert, starting at ``node`` (which is known to match)."""
    found: list[_Node] = []
    for child in node.children:
        if not child.matches(labels):
            continue
        found.extend(_walk(child, labels))
        if not child.continue_:
            break
    return found or [node]
