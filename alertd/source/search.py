"""Stripe's search query language for ``GET /v1/customers/search``, the part alertd uses.

Supported: ``metadata['KEY']:'VALUE'`` (exact), ``email`` and ``name`` with ``:`` (exact,
case-insensitive) or ``~`` (substring, case-insensitive, at least 3 characters), ``id:'cus_…'``,
a leading ``-`` to negate, and clauses joined by ``AND`` or by ``OR`` (not both, as in Stripe).

Where it sits: shared by the two places that must read a search as Stripe does without asking
Stripe: ``alertd test`` (:mod:`alertd.ruletest`) matches fixture customers against a rule's
``customers: {search: …}``, and the simulator (:mod:`alertd.sim.endpoints`) answers
``/v1/customers/search`` with it. A query Stripe would refuse raises :class:`SearchQueryError`
(a ``ValueError``); the simulator turns it into a 400 naming ``query``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from alertd.model import Customer

_CLAUSE = re.compile(
    r"""\s*(?P<negate>-?)
    (?P<field>metadata\[(?:'[^']*'|"[^"]*")\]|[a-z_]+)
    \s*(?P<op>[:~])\s*
    (?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\s*""",
    re.VERBOSE,
)
_JOIN = re.compile(r"(AND|OR)\s+")
_FIELDS = ("email", "name", "id")


class SearchQueryError(ValueError):
    """A customer search query Stripe would refuse; the message says why."""


@dataclass(frozen=True, slots=True)
class Clause:
    field: str
    metadata_key: str | None
    op: Literal[":", "~"]
    value: str
    negate: bool

    def matches(self, customer: Customer) -> bool:
        return self._holds(customer) != self.negate

    def _holds(self, customer: Customer) -> bool:
        if self.metadata_key is not None:
            return customer.metadata.get(self.metadata_key) == self.value
        actual = {"email": customer.email, "name": customer.name, "id": customer.id}[self.field]
        if actual is None:
            return False
        if self.op == "~":
            return self.value.lower() in actual.lower()
        return actual.lower() == self.value.lower()


@dataclass(frozen=True, slots=True)
class SearchQuery:
    clauses: tuple[Clause, ...]
    any_of: bool

    def matches(self, customer: Customer) -> bool:
        results = (clause.matches(customer) for clause in self.clauses)
        return any(results) if self.any_of else all(results)


def parse_search(query: str) -> SearchQuery:
    """Parse a customer search query, or refuse it with :class:`SearchQueryError`."""
    clauses: list[Clause] = []
    joins: set[str] = set()
    position = 0
    while True:
        match = _CLAUSE.match(query, position)
        if match is None:
            raise _bad(query, position)
        clauses.append(_clause(match))
        position = match.end()
        if position == len(query):
            break
        join = _JOIN.match(query, position)
        if join is None:
            raise _bad(query, position)
        joins.add(join.group(1))
        position = join.end()
    if len(joins) > 1:
        raise SearchQueryError("A search query cannot mix AND and OR.")
    return SearchQuery(tuple(clauses), joins == {"OR"})


def _clause(match: re.Match[str]) -> Clause:
    field, op, raw = match.group("field"), match.group("op"), match.group("value")
    value = re.sub(r"\\(.)", r"\1", raw[1:-1])
    metadata_key = field[10:-2] if field.startswith("metadata[") else None
    if metadata_key is None and field not in _FIELDS:
        raise SearchQueryError(
            f"Field '{field}' is not supported in customer search (use email, name, id or "
            "metadata['key'])"
        )
    if op == "~" and (metadata_key is not None or field == "id" or len(value) < 3):
        raise SearchQueryError("The ~ operator needs email or name and at least 3 characters.")
    negate = bool(match.group("negate"))
    return Clause(field, metadata_key, ":" if op == ":" else "~", value, negate)


def _bad(query: str, position: int) -> SearchQueryError:
    return SearchQueryError(
        f"Invalid search query at character {position}: {query[position:position + 30]!r} "
        "(expected e.g. metadata['plan']:'pro' AND email~'example')"
    )
