"""YAML with positions: load a document and remember where every key and value stood.

This is the edge where user files enter alertd. Pydantic validates the plain data; this module
turns each validation error's ``loc`` back into ``FILE:LINE:COL`` so that ``alertd validate``
points at the offending key (unknown or missing keys) or at the value (wrong type or value).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import ValidationError

from alertd.errors import ConfigError, Problem

Path_ = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Mark:
    """1-based positions of a key and of its value."""

    key_line: int
    key_col: int
    value_line: int
    value_col: int


@dataclass(slots=True)
class Located:
    """A loaded document: plain Python data plus a mark for every path in it."""

    file: str
    data: Any
    marks: dict[Path_, Mark]

    def problem(self, path: Path_, message: str, *, at_value: bool = False) -> Problem:
        """A problem at ``path``, or at the nearest ancestor that has a mark."""
        probe = tuple(path)
        while probe and probe not in self.marks:
            probe = probe[:-1]
        mark = self.marks.get(probe, Mark(1, 1, 1, 1))
        if at_value:
            return Problem(self.file, mark.value_line, mark.value_col, message)
        return Problem(self.file, mark.key_line, mark.key_col, message)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""


def _construct(node: yaml.Node, path: Path_, marks: dict[Path_, Mark], file: str) -> Any:
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _scalar(key_node)
            if not isinstance(key, str | int | float | bool) or key is None:
                raise ConfigError([_at(file, key_node, "mapping keys must be plain scalars")])
            key = str(key) if not isinstance(key, str) else key
            if key in result:
                raise ConfigError([_at(file, key_node, f"duplicate key {key!r}")])
            child = (*path, key)
            marks[child] = Mark(
                key_node.start_mark.line + 1,
                key_node.start_mark.column + 1,
                value_node.start_mark.line + 1,
                value_node.start_mark.column + 1,
            )
            result[key] = _construct(value_node, child, marks, file)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            child = (*path, index)
            line, col = item.start_mark.line + 1, item.start_mark.column + 1
            marks[child] = Mark(line, col, line, col)
            items.append(_construct(item, child, marks, file))
        return items
    return _scalar(node)


_SCALARS = _Loader("")


def _scalar(node: yaml.Node) -> Any:
    return _SCALARS.construct_object(node, deep=True)


def _at(file: str, node: yaml.Node, message: str) -> Problem:
    return Problem(file, node.start_mark.line + 1, node.start_mark.column + 1, message)


def load_located(text: str, file: str) -> Located:
    """Parse one YAML document; syntax errors become a located :class:`ConfigError`."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([Problem(file, line, col, f"YAML syntax error: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, 1, 1, f"YAML error: {exc}")]) from None
    marks: dict[Path_, Mark] = {(): Mark(1, 1, 1, 1)}
    data = None if node is None else _construct(node, (), marks, file)
    return Located(file, data, marks)


_VALUE_ERRORS_AT_KEY = {"extra_forbidden", "missing", "union_tag_invalid", "union_tag_not_found"}


def validation_problems(
    error: ValidationError, doc: Located, prefix: Path_ = ()
) -> list[Problem]:
    """Every error of a pydantic validation, located in ``doc``.

    ``prefix`` is where the validated object sits in the document (e.g. ``("rules", 3)``).
    Unknown and missing keys point at the key; wrong types and values point at the value.
    """
    problems = []
    for item in error.errors(include_url=False):
        loc = tuple(part for part in item["loc"] if not _is_union_branch(part))
        path = (*prefix, *loc)
        kind = item["type"]
        field = ".".join(str(p) for p in loc) or "(document)"
        message = _message(kind, field, item.get("msg", ""), item.get("input"))
        if kind == "missing":
            problems.append(doc.problem(path[:-1], message))
        else:
            problems.append(doc.problem(path, message, at_value=kind not in _VALUE_ERRORS_AT_KEY))
    return _unique(problems)


def _is_union_branch(part: str | int) -> bool:
    # Pydantic names union/tagged-union branches in loc (e.g. "threshold", "function-after[...]").
    return isinstance(part, str) and ("[" in part or part in _UNION_TAGS)


_UNION_TAGS = {"threshold", "change", "anomaly", "forecast", "absence", "str", "list[str]"}


def _message(kind: str, field: str, msg: str, value: Any) -> str:
    if kind == "extra_forbidden":
        return f"unknown key {field.rsplit('.', 1)[-1]!r}"
    if kind == "missing":
        return f"missing required key {field.rsplit('.', 1)[-1]!r}"
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    return f"{field}: {msg}"


def _unique(problems: Iterable[Problem]) -> list[Problem]:
    seen: set[Problem] = set()
    result = []
    for problem in problems:
        if problem not in seen:
            seen.add(problem)
            result.append(problem)
    return result
