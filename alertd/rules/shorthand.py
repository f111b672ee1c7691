"""The ``when:`` shorthand: one line that says filters, window and a threshold at once.

Grammar (from the contract)::

    when := [filter ("," filter)*] adverb "usage" op NUMBER
    filter := KEY "=" VALUE
    adverb := "hourly" | "daily" | "weekly" | "monthly"
    op := ">" | ">=" | "<" | "<="

KEY and a bare VALUE are ``[A-Za-z0-9_.:/@-]+``; a VALUE may instead be a double-quoted string
with ``\\"`` and ``\\\\`` escapes. NUMBER is an integer or a decimal, ``_`` allowed between
digits (``50_000``, ``0.5``). Whitespace separates words and may surround ``,`` and ``=``.

:func:`parse_when` is pure. The rule loader (:mod:`alertd.rules.loader`) expands the result into
``filters``, ``window`` and ``condition: {type: threshold, ...}`` before schema validation, and
uses :attr:`ShorthandError.column` to point at the exact column in the rule file.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from alertd.conditions.base import Op
from alertd.model import Granularity

ADVERBS: dict[str, Granularity] = {
    "hourly": "hour",
    "daily": "day",
    "weekly": "week",
    "monthly": "month",
}

_WORD = re.compile(r"[A-Za-z0-9_.:/@-]+")
_OP = re.compile(r">=|<=|>|<")
_NUMBER = re.compile(r"\d+(?:_\d+)*(?:\.\d+(?:_\d+)*)?")
_SPACE = re.compile(r"\s+")
_OPS: dict[str, Op] = {">": ">", ">=": ">=", "<": "<", "<=": "<="}

TokenKind = Literal["word", "string", "op", "=", ",", "other", "end"]


class ShorthandError(ValueError):
    """A ``when:`` string that does not follow the grammar.

    ``column`` is the 0-based index into the string where the problem starts; ``reason`` is
    the message without position (``str()`` adds ``at column N``, 1-based, for readers that
    cannot point into the file).
    """

    def __init__(self, reason: str, column: int) -> None:
        self.reason = reason
        self.column = column
        super().__init__(f"{reason} (column {column + 1})")


@dataclass(frozen=True, slots=True)
class When:
    """A parsed shorthand: dimension filters, the window its adverb names, and the threshold."""

    filters: Mapping[str, str] = field(hash=False)
    window: Granularity
    op: Op
    value: float


@dataclass(frozen=True, slots=True)
class _Token:
    kind: TokenKind
    text: str
    column: int

    def describe(self) -> str:
        return "end of text" if self.kind == "end" else repr(self.text)


def parse_when(text: str) -> When:
    """Parse a ``when:`` string; raises :class:`ShorthandError` naming the first problem."""
    tokens = _tokenize(text)
    filters, index = _filters(tokens)
    window, index = _adverb(tokens, index)
    index = _expect_usage(tokens, index)
    op, index = _op(tokens, index)
    value, index = _number(tokens, index)
    if tokens[index].kind != "end":
        token = tokens[index]
        raise ShorthandError(f"unexpected {token.describe()} after the number", token.column)
    return When(filters, window, op, value)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        space = _SPACE.match(text, pos)
        if space:
            pos = space.end()
            continue
        token = _next_token(text, pos)
        tokens.append(token)
        pos += len(token.text)
    tokens.append(_Token("end", "", len(text)))
    return tokens


def _next_token(text: str, pos: int) -> _Token:
    char = text[pos]
    if char == "=":
        return _Token("=", char, pos)
    if char == ",":
        return _Token(",", char, pos)
    if char == '"':
        return _Token("string", _quoted_raw(text, pos), pos)
    op = _OP.match(text, pos)
    if op:
        return _Token("op", op.group(), pos)
    word = _WORD.match(text, pos)
    if word:
        return _Token("word", word.group(), pos)
    # Left to the parser, which knows what it expected here.
    return _Token("other", char, pos)


def _quoted_raw(text: str, start: int) -> str:
    """The raw text of the double-quoted string at ``start``, both quotes included."""
    pos = start + 1
    while pos < len(text):
        if text[pos] == "\\":
            pos += 2
            continue
        if text[pos] == '"':
            return text[start : pos + 1]
        pos += 1
    raise ShorthandError('unterminated quoted value: a closing " is missing', start)


def _unquote(token: _Token) -> str:
    if token.kind == "word":
        return token.text
    body = token.text[1:-1]
    result: list[str] = []
    index = 0
    while index < len(body):
        char = body[index]
        if char == "\\":
            escaped = body[index + 1]
            if escaped not in '"\\':
                raise ShorthandError(
                    f"unknown escape '\\{escaped}' in a quoted value (only \\\" and \\\\)",
                    token.column + 1 + index,
                )
            result.append(escaped)
            index += 2
            continue
        result.append(char)
        index += 1
    return "".join(result)


def _filters(tokens: list[_Token]) -> tuple[dict[str, str], int]:
    """Leading ``KEY=VALUE`` pairs, if the second token is ``=``."""
    filters: dict[str, str] = {}
    index = 0
    while tokens[index].kind == "word" and tokens[index + 1].kind == "=":
        key = tokens[index]
        if key.text in filters:
            raise ShorthandError(
                f"filter {key.text!r} is given twice (to accept several values, write "
                f"filters: {{{key.text}: [a, b]}} instead)",
                key.column,
            )
        value = tokens[index + 2]
        if value.kind not in ("word", "string"):
            raise ShorthandError(
                f"expected a value after '{key.text}=' at {value.describe()}", value.column
            )
        filters[key.text] = _unquote(value)
        index += 3
        if tokens[index].kind != ",":
            break
        index += 1
        if not (tokens[index].kind == "word" and tokens[index + 1].kind == "="):
            raise ShorthandError(
                f"expected KEY=VALUE after ',' at {tokens[index].describe()}", tokens[index].column
            )
    return filters, index


def _adverb(tokens: list[_Token], index: int) -> tuple[Granularity, int]:
    token = tokens[index]
    if token.kind == "word" and token.text in ADVERBS:
        return ADVERBS[token.text], index + 1
    raise ShorthandError(
        f"expected one of {', '.join(ADVERBS)} at {token.describe()}{_adverb_hint(tokens, index)}",
        token.column,
    )


def _adverb_hint(tokens: list[_Token], index: int) -> str:
    token = tokens[index]
    close = difflib.get_close_matches(token.text, ADVERBS, n=1)
    if token.kind == "word" and close:
        return f" (did you mean {close[0]!r}?)"
    if token.kind == "word" and tokens[index + 1].kind == "=":
        return " (separate filters with ',')"
    if token.kind == "string" and tokens[index + 1].kind == "=":
        return " (only filter values may be quoted, not keys)"
    if token.kind in ("word", "other") and index > 0:
        return ' (quote a filter value that contains spaces or other characters: key="a b")'
    return ""


def _expect_usage(tokens: list[_Token], index: int) -> int:
    token = tokens[index]
    if token.kind == "word" and token.text == "usage":
        return index + 1
    raise ShorthandError(f"expected 'usage' at {token.describe()}", token.column)


def _op(tokens: list[_Token], index: int) -> tuple[Op, int]:
    token = tokens[index]
    if token.kind == "op":
        return _OPS[token.text], index + 1
    raise ShorthandError(f"expected one of >, >=, <, <= at {token.describe()}", token.column)


def _number(tokens: list[_Token], index: int) -> tuple[float, int]:
    token = tokens[index]
    if token.kind == "word" and _NUMBER.fullmatch(token.text):
        value = float(token.text.replace("_", ""))
        if not math.isfinite(value):
            raise ShorthandError(f"the number {token.text[:20]}... is too large", token.column)
        return value, index + 1
    raise ShorthandError(
        f"expected a number (like 50000, 50_000 or 0.5) at {token.describe()}", token.column
    )
