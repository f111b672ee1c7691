"""Stripe's search query language for ``GET /v1/customers/search``, the part alertd uses.

Supported: ``metadata['KEY']:'VALUE'`` (exact), ``email`` and ``name`` with ``:`` (exact,
case-insensitive) or ``~`` (substring, case-insensitive, at least 3 characters), ``id:'cus_…'``,
a leading ``-`` to negate, and clauses joined by ``AND`` or by ``OR`` (not both, as in Stripe).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from alertd.model import Customer
from alertd.sim.stripe_form import StripeRequestError, invalid

_CLAUSE = re.compile(
    r"""\s*(?P<negate>-?)
    (?P<field>metadata\[(?:'[^']*'|"[^"]*")\]|[a-z_]+)
    \s*(?P<op>[:~])\s*
    (?P<value>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")\s*""",
    re.VERBOSE,
)
_JOIN = re.compile(r"(AND|OR)\s+")
_FIELDS = ("email", "name", "id")


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
    """Parse a customer search query, or refuse it with a 400 naming ``query``."""
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
        raise invalid("A search query cannot mix AND and OR.", "query")
    return SearchQuery(tuple(clauses), joins == {"OR"})


def _clause(match: re.Match[str]) -> Clause:
    field, op, raw = match.group("field"), match.group("op"), match.group("value")
    value = re.sub(r"\\(.)", r"\1", raw[1:-1])
    metadata_key = field[10:-2] if field.startswith("metadata[") else None
    if metadata_key is None and field not in _FIELDS:
        raise invalid(
            f"Field '{field}' is not supported in customer search (use email, name, id or "
            "metadata['key'])",
            "query",
        )
    if op == "~" and (metadata_key is not None or field == "id" or len(value) < 3):
        raise invalid("The ~ operator needs email or name and at least 3 characters.", "query")
    negate = bool(match.group("negate"))
    return Clause(field, metadata_key, ":" if op == ":" else "~", value, negate)


def _bad(query: str, position: int) -> StripeRequestError:
    return invalid(
        f"Invalid search query at character {position}: {query[position:position + 30]!r} "
        "(expected e.g. metadata['plan']:'pro' AND email~'example')",
        "query",
    )
