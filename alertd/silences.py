"""Silences: label matchers and a time range that mute matching alerts before sending.

Where it sits: the pipeline's silence stage asks :func:`silenced_by` for every alert of a group
about to be flushed (``check --dry-run`` shows what a silence muted as
``suppressed_by: "silence"``). The command line (``alertd silence add|list|expire``) uses
:func:`parse_matchers`, :func:`new_silence`, :func:`add`, :func:`listing` and :func:`expire`,
which keep silences in the state store through the small :class:`SilenceStore` interface.

Matchers follow Alertmanager: ``name=value``, ``name!=value``, ``name=~regex``,
``name!~regex``; regular expressions are anchored; a missing label reads as the empty string.
A silence needs at least one matcher that does not match the empty string, so that a typo can
never silence everything.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

MatchOp = Literal["=", "!=", "=~", "!~"]
_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.-]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$")


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label condition of a silence."""

    name: str
    op: MatchOp
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.value}"


def parse_matcher(text: str) -> Matcher:
    """``name=value``, ``name!=value``, ``name=~regex`` or ``name!~regex`` (value may be
    double-quoted). Raises :class:`ValueError` with a message that says what to write."""
    found = _MATCHER.match(text)
    if not found:
        raise ValueError(
            f"not a matcher: {text!r} (use name=value, name!=value, name=~regex or name!~regex)"
        )
    name, op, value = found.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    if op in ("=~", "!~"):
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"{text!r}: invalid regular expression: {exc}") from None
    return Matcher(name, op, value)  # type: ignore[arg-type]  # op is one of the four


def parse_matchers(texts: Sequence[str]) -> tuple[Matcher, ...]:
    """Every matcher of a silence; all problems are reported in one :class:`ValueError`."""
    matchers: list[Matcher] = []
    problems: list[str] = []
    for text in texts:
        try:
            matchers.append(parse_matcher(text))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError("; ".join(problems))
    if not any(not m.matches({}) for m in matchers):
        raise ValueError(
            "a silence needs at least one matcher that does not match an empty label "
            "(e.g. rule=gpt4-daily-usage or customer=cus_123)"
        )
    return tuple(matchers)


@dataclass(frozen=True, slots=True)
class Silence:
    """Mutes alerts whose labels match every matcher, from ``starts_at`` until ``ends_at``."""

    id: str
    matchers: tuple[Matcher, ...]
    starts_at: int
    ends_at: int
    comment: str
    created_by: str | None
    created_at: int
    expired: bool = False

    def active_at(self, now: int) -> bool:
        return not self.expired and self.starts_at <= now < self.ends_at

    def state(self, now: int) -> Literal["pending", "active", "expired"]:
        if self.expired or now >= self.ends_at:
            return "expired"
        return "active" if now >= self.starts_at else "pending"

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "comment": self.comment,
            "created_by": self.created_by,
            "created_at": self.created_at,
            "expired": self.expired,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Silence:
        return cls(
            id=raw["id"],
            matchers=tuple(parse_matcher(m) for m in raw["matchers"]),
            starts_at=int(raw["starts_at"]),
            ends_at=int(raw["ends_at"]),
            comment=raw["comment"],
            created_by=raw.get("created_by"),
            created_at=int(raw["created_at"]),
            expired=bool(raw.get("expired", False)),
        )


def silenced_by(labels: Mapping[str, str], silences: Iterable[Silence], now: int) -> Silence | None:
    """The first silence active at ``now`` that matches ``labels``, if any."""
    return next((s for s in silences if s.active_at(now) and s.matches(labels)), None)


def new_silence(
    matchers: Sequence[str],
    *,
    starts_at: int,
    ends_at: int,
    comment: str,
    created_by: str | None,
    now: int,
    silence_id: str | None = None,
) -> Silence:
    """A validated silence; :class:`ValueError` says what is wrong."""
    parsed = parse_matchers(matchers)
    if ends_at <= starts_at:
        raise ValueError("a silence must end after it starts (check --duration and --start)")
    if ends_at <= now:
        raise ValueError("this silence would already be over; choose a later end")
    if not comment.strip():
        raise ValueError("a silence needs a comment saying why (--comment)")
    return Silence(silence_id or uuid.uuid4().hex, parsed, starts_at, ends_at, comment.strip(),
                   created_by, now)


class SilenceStore(Protocol):
    """Where silences are kept (the state store implements it)."""

    async def add_silence(self, silence: Silence) -> None: ...

    async def silences(self, now: int, *, include_expired: bool = False) -> list[Silence]:
        """Silences not yet over at ``now`` (all of them with ``include_expired``)."""
        ...

    async def expire_silence(self, silence_id: str, now: int) -> Silence | None:
        """Ends the silence at ``now``; ``None`` when there is no silence with that id."""
        ...


async def add(store: SilenceStore, silence: Silence) -> Silence:
    await store.add_silence(silence)
    return silence


async def listing(store: SilenceStore, now: int, *, include_expired: bool = False) -> list[Silence]:
    """Silences for ``alertd silence list``, oldest first."""
    found = await store.silences(now, include_expired=include_expired)
    return sorted(found, key=lambda s: (s.created_at, s.id))


async def expire(store: SilenceStore, id_prefix: str, now: int) -> Silence:
    """Expires the silence whose id starts with ``id_prefix`` (a unique prefix is enough)."""
    candidates = [s for s in await store.silences(now, include_expired=True)
                  if s.id.startswith(id_prefix)]
    if not id_prefix or not candidates:
        raise ValueError(f"no silence with id {id_prefix!r} (see 'alertd silence list --all')")
    if len(candidates) > 1:
        raise ValueError(f"{id_prefix!r} matches {len(candidates)} silences; give more of the id")
    expired = await store.expire_silence(candidates[0].id, now)
    assert expired is not None  # it was listed a moment ago and silences are never deleted
    return expired
