"""YAML with positions: load a document and remember where every key and value stood.

This is the edge where user files enter alertd. Pydantic validates the plain data; this module
turns each validation error's ``loc`` back into ``FILE:LINE:COL`` so that ``alertd validate``
points at the offending key (unknown or missing keys) or at the value (wrong type or value).

Every document is bounded before and while it is read, so that no file can make ``validate``,
``check`` or a reload run for long or eat memory (a "billion laughs" alias bomb, a huge or
endlessly nested file): at most :data:`MAX_DOCUMENT_BYTES` bytes, :data:`MAX_DEPTH` levels of
nesting, and :data:`MAX_VALUES` values once aliases and merge keys are expanded (an alias
counts as every value it stands for; counted on the composed graph, before anything is
built). Each bound is a located :class:`ConfigError`; reading stops at the first one, since
the document cannot be used.

Why over 400 lines: the bounded YAML loader and the position map it builds are one edge of one
format.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from alertd.errors import ConfigError, Problem

Path_ = tuple[str | int, ...]

#: 1 MiB: thousands of rules. Larger files are refused before they are parsed.
MAX_DOCUMENT_BYTES = 1024 * 1024
#: Levels of nested mappings and lists; real configs and rules use fewer than ten.
MAX_DEPTH = 64
#: Values (keys count too) in one document, written out or once aliases and ``<<`` merges
#: are expanded: over 2,000 rules of 15 values, read in under a second (PyYAML composes about
#: 50,000 values a second); a reload blocks the daemon's loop for at most that long.
MAX_VALUES = 50_000


@dataclass(frozen=True, slots=True)
class Mark:
    """1-based positions of a key and of its value."""

    key_line: int
    key_col: int
    value_line: int
    value_col: int


@dataclass(slots=True)
class Located:
    """A loaded document: plain Python data plus a mark for every path in it.

    ``text`` is the source the document was read from (empty when it was built in code); it
    lets :meth:`problem_inside` point at a character inside a string value.
    """

    file: str
    data: Any
    marks: dict[Path_, Mark]
    text: str = ""

    def problem(self, path: Path_, message: str, *, at_value: bool = False) -> Problem:
        """A problem at ``path``, or at the nearest ancestor that has a mark."""
        probe = tuple(path)
        while probe and probe not in self.marks:
            probe = probe[:-1]
        mark = self.marks.get(probe, Mark(1, 1, 1, 1))
        if at_value:
            return Problem(self.file, mark.value_line, mark.value_col, message)
        return Problem(self.file, mark.key_line, mark.key_col, message)

    def problem_inside(self, path: Path_, offset: int, message: str) -> Problem:
        """A problem at character ``offset`` (0-based) of the string value at ``path``.

        Exact when that character is on the first line of a plain, single-quoted or
        double-quoted scalar; otherwise (block scalars, folded lines) the problem points at the
        value and the message says which character it means.
        """
        mark = self.marks.get(tuple(path))
        value = self._value_at(path)
        if mark is not None and isinstance(value, str):
            lines = _LINE_BREAK.split(self.text)
            if mark.value_line <= len(lines):
                line = lines[mark.value_line - 1]
                column = _column_in_scalar(line, mark.value_col - 1, value, offset)
                if column is not None:
                    return Problem(self.file, mark.value_line, column + 1, message)
        located = self.problem(path, message, at_value=True)
        return replace(located, message=f"{message} (character {offset + 1} of the value)")

    def _value_at(self, path: Path_) -> Any:
        node = self.data
        for part in path:
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return None
        return node


# PyYAML's line breaks; str.splitlines() would also split on \v, \f and others YAML keeps.
_LINE_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
_HEX_ESCAPE_LENGTH = {"x": 4, "u": 6, "U": 10}


def _column_in_scalar(line: str, start: int, value: str, offset: int) -> int | None:
    """The 0-based column in ``line`` of ``value[offset]``, for a scalar starting at ``start``.

    ``None`` when the character is not on this line or the scalar style is not one whose
    characters map one to one onto the source (block scalars, escapes we cannot follow).
    """
    if start >= len(line):
        return None
    quote = line[start]
    if quote not in "'\"":
        # A plain scalar: the value is the source text, up to the end of its first line.
        first_line = line[start : start + offset]
        return start + offset if value[:offset] == first_line and offset <= len(value) else None
    pos = start + 1
    for _ in range(offset):
        if pos >= len(line) or (line[pos] == quote and not line.startswith("''", pos)):
            return None
        pos += _raw_length(line, pos, quote)
    return pos if pos < len(line) else None


def _raw_length(line: str, pos: int, quote: str) -> int:
    """How many source characters the next value character takes inside a quoted scalar."""
    if quote == "'":
        return 2 if line.startswith("''", pos) else 1
    if line[pos] == "\\" and pos + 1 < len(line):
        return _HEX_ESCAPE_LENGTH.get(line[pos + 1], 2)
    return 1


class _Loader(yaml.SafeLoader):
    """SafeLoader used only to compose nodes and to construct single scalars.

    Composing is recursive in PyYAML; the depth is bounded here, before Python's own
    recursion limit turns a deeply nested file into a ``RecursionError``.
    """

    _depth = 0
    _nodes = 0

    def fetch_flow_collection_start(self, token_class: type[yaml.Token]) -> None:
        # Bounded in the scanner too: it looks ahead over every open `[`/`{` for a possible
        # key, which is quadratic in their number, long before the composer sees the depth.
        if self.flow_level >= MAX_DEPTH:
            mark = self.get_mark()
            raise _Refused(mark.line + 1, mark.column + 1,
                           f"nested more than {MAX_DEPTH} levels deep")
        super().fetch_flow_collection_start(token_class)

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        if self._depth >= MAX_DEPTH:
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise _Refused(mark.line + 1, mark.column + 1,
                           f"nested more than {MAX_DEPTH} levels deep")
        self._nodes += 1
        if self._nodes > MAX_VALUES:  # written out, not via aliases: bounded while composing
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise _Refused(mark.line + 1, mark.column + 1,
                           f"more than {MAX_VALUES} values in one file; split it into several "
                           "files")
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Refused(Exception):
    """A bound of the document was exceeded at ``line``:``col`` (1-based)."""

    def __init__(self, line: int, col: int, message: str) -> None:
        super().__init__(message)
        self.line, self.col, self.message = line, col, message


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _Builder:
    """Turns a composed node tree into plain data and marks, collecting every problem.

    Problems here do not stop the build (a duplicate key keeps its first value, an unreadable
    scalar stays a string), so the caller can still validate the rest of the document.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.marks: dict[Path_, Mark] = {}
        self.problems: list[Problem] = []
        # A fresh loader per document: construct_object() caches every node it builds.
        self._scalars = _Loader("")
        self._open: set[int] = set()

    def build(self, node: yaml.Node, path: Path_) -> Any:
        if id(node) in self._open:
            self._add(node, "recursive alias: this value contains itself")
            return None
        self._open.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            if isinstance(node, yaml.SequenceNode):
                return self._sequence(node, path)
            return self._scalar(node)
        finally:
            self._open.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        result: dict[str, Any] = {}
        explicit, merged = self._pairs(node)
        for key_node, value_node in explicit:
            key = self._key(key_node)
            if key is None:
                continue
            if key in result:
                self._add(key_node, f"duplicate key {key!r}")
                continue
            result[key] = self._child(key_node, value_node, (*path, key))
        for key_node, value_node in merged:
            key = self._key(key_node)
            # Keys written in the mapping win over merged ones (YAML merge key semantics).
            if key is not None and key not in result:
                result[key] = self._child(key_node, value_node, (*path, key))
        return result

    def _pairs(self, node: yaml.MappingNode) -> tuple[list[_Pair], list[_Pair]]:
        """The mapping's own pairs, and the pairs its ``<<`` merge keys bring in."""
        explicit: list[_Pair] = []
        merged: list[_Pair] = []
        for key_node, value_node in node.value:
            if key_node.tag != _MERGE_TAG:
                explicit.append((key_node, value_node))
                continue
            is_list = isinstance(value_node, yaml.SequenceNode)
            sources = value_node.value if is_list else [value_node]
            for source in sources:
                if not isinstance(source, yaml.MappingNode) or id(source) in self._open:
                    self._add(source, "'<<' merges a mapping or a list of mappings")
                    continue
                self._open.add(id(source))
                own, inherited = self._pairs(source)
                self._open.discard(id(source))
                merged.extend(own + inherited)
        return explicit, merged

    def _child(self, key_node: yaml.Node, value_node: yaml.Node, path: Path_) -> Any:
        self.marks[path] = Mark(
            key_node.start_mark.line + 1,
            key_node.start_mark.column + 1,
            value_node.start_mark.line + 1,
            value_node.start_mark.column + 1,
        )
        return self.build(value_node, path)

    def _sequence(self, node: yaml.SequenceNode, path: Path_) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            items.append(self._child(item, item, (*path, index)))
        return items

    def _key(self, node: yaml.Node) -> str | None:
        if not isinstance(node, yaml.ScalarNode):
            self._add(node, "mapping keys must be plain scalars")
            return None
        if self._scalar(node) is None:
            self._add(node, "a mapping key cannot be empty or null")
            return None
        # The key as written: YAML 1.1 would read `on:` as True and `0x1F:` as 31.
        return str(node.value)

    def _scalar(self, node: yaml.Node) -> Any:
        try:
            return self._scalars.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self._add(node, f"cannot read {node.value!r}: {exc.problem}")
        except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
            # e.g. `2025-13-01` looks like a date to YAML but is not one.
            self._add(node, f"cannot read {node.value!r}: {exc}")
        return node.value

    def _add(self, node: yaml.Node, message: str) -> None:
        self.problems.append(_at(self.file, node, message))


_Pair = tuple[yaml.Node, yaml.Node]


def _at(file: str, node: yaml.Node, message: str) -> Problem:
    return Problem(file, node.start_mark.line + 1, node.start_mark.column + 1, message)


def load_located(text: str, file: str, *, collect: list[Problem] | None = None) -> Located:
    """Parse one YAML document; syntax errors become a located :class:`ConfigError`.

    Problems that leave a usable document (duplicate keys, unreadable scalars such as
    ``2025-13-01``, non-scalar keys) raise :class:`ConfigError` too, all of them at once,
    unless ``collect`` is given: then they are appended to it and the document is returned
    (first value of a duplicated key kept), so the caller can report them with the rest.
    Merge keys (``<<: *defaults``) are followed; merged values keep the marks of where they
    were written.
    """
    if len(text) > MAX_DOCUMENT_BYTES:
        raise ConfigError([Problem(file, 1, 1, _too_large(len(text), "characters"))])
    builder = _Builder(file)
    try:
        data = _build(builder, _compose(text))
    except _Refused as exc:
        raise ConfigError([Problem(file, exc.line, exc.col, exc.message)]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        reason = exc.problem or exc.context or "invalid YAML"
        raise ConfigError([Problem(file, line, col, f"YAML syntax error: {reason}")]) from None
    except yaml.reader.ReaderError as exc:
        # A control character YAML does not allow, found before parsing (no mark).
        line, col = _line_col(text, exc.position)
        char = exc.character
        shown = f"U+{char:04X}" if isinstance(char, int) else repr(char)
        message = f"YAML syntax error: character {shown} is not allowed in YAML"
        raise ConfigError([Problem(file, line, col, message)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, 1, 1, f"YAML error: {exc}")]) from None
    if builder.problems:
        if collect is None:
            raise ConfigError(builder.problems)
        collect.extend(builder.problems)
    return Located(file, data, builder.marks, text)


def _compose(text: str) -> yaml.Node | None:
    loader = _Loader(text)
    try:
        return loader.get_single_node()
    finally:
        loader.dispose()


def _line_col(text: str, position: int) -> tuple[int, int]:
    """1-based line and column of character ``position`` of ``text``."""
    before = _LINE_BREAK.split(text[:position])
    return len(before), len(before[-1]) + 1


def _build(builder: _Builder, node: yaml.Node | None) -> Any:
    builder.marks[()] = Mark(1, 1, 1, 1)
    if node is None:
        return None
    _refuse_expansion(node)
    line, col = node.start_mark.line + 1, node.start_mark.column + 1
    builder.marks[()] = Mark(line, col, line, col)
    return builder.build(node, ())


def _refuse_expansion(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it beyond :data:`MAX_VALUES`, before building it.

    The composed document is a graph in which an alias is the anchored node itself, so the
    expanded size of every node is counted once (linear in the document as written). The
    problem points at the smallest value that is already too large: where the expansion
    happens (e.g. the list that repeats ``*a6`` nine times), not at the document's top.
    """
    sizes: dict[int, int] = {}
    if _expanded_size(root, sizes, set()) <= MAX_VALUES:
        return
    node = root
    while True:
        larger = [child for child in _children(node) if sizes.get(id(child), 0) > MAX_VALUES]
        if not larger:
            break
        node = larger[0]
    raise _Refused(
        node.start_mark.line + 1, node.start_mark.column + 1,
        f"this value expands to more than {MAX_VALUES} values once aliases and merge keys are "
        "expanded (an alias bomb?); repeat it less, or write the values out",
    )


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int]) -> int:
    """Values ``node`` stands for once expanded (memoised in ``sizes``; a node that contains
    itself counts once: the builder reports it)."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    if id(node) in open_:
        return 1
    open_.add(id(node))
    size = 1 + sum(_expanded_size(child, sizes, open_) for child in _children(node))
    open_.discard(id(node))
    sizes[id(node)] = size
    return size


def _too_large(size: int, unit: str) -> str:
    return (f"the file is larger than {MAX_DOCUMENT_BYTES // 1024} KiB ({size} {unit} or "
            "more); split it into several files")


def read_document(path: Path) -> str:
    """The UTF-8 text of a YAML file, read no further than :data:`MAX_DOCUMENT_BYTES`.

    A file that cannot be read, is too large or is not UTF-8 is a located
    :class:`ConfigError` (a bad byte is pointed at by line and column).
    """
    file = str(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise ConfigError([Problem(file, 1, 1, f"cannot read: {exc.strerror}")]) from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ConfigError([Problem(file, 1, 1, _too_large(len(raw), "bytes"))])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        message = f"not UTF-8 text: byte 0x{raw[exc.start]:02x} cannot be decoded"
        raise ConfigError([Problem(file, line, col, message)]) from None


_VALUE_ERRORS_AT_KEY = {"extra_forbidden", "missing", "union_tag_invalid", "union_tag_not_found"}
_FROM_DOC: Any = object()


@dataclass(frozen=True, slots=True)
class _Error:
    """One pydantic error with its ``loc`` split into the data path and union branch names."""

    path: Path_
    kind: str
    message: str
    #: The path of the first union the error went through, and the branch it tried there.
    union: Path_ | None = None
    branch: str = ""
    value: Any = None


def validation_problems(
    error: ValidationError, doc: Located, prefix: Path_ = (), *, data: Any = _FROM_DOC
) -> list[Problem]:
    """Every error of a pydantic validation, located in ``doc``.

    ``prefix`` is where the validated object sits in the document (e.g. ``("rules", 3)``), and
    ``data`` what was validated when it is not the document's value there (the rule loader
    expands ``when:`` first). Unknown and missing keys point at the key; wrong types and values
    point at the value. A value that fits no member of a union gets one message (``expected a
    string or a list``), not one per member.
    """
    root = doc._value_at(prefix) if data is _FROM_DOC else data
    errors = [_split(item, root) for item in error.errors(include_url=False)]
    problems = []
    for item in _collapse_unions(errors):
        path = (*prefix, *item.path)
        if item.kind == "missing":
            problems.append(doc.problem(path[:-1], item.message))
        else:
            at_value = item.kind not in _VALUE_ERRORS_AT_KEY
            problems.append(doc.problem(path, item.message, at_value=at_value))
    return _unique(problems)


def _split(item: ErrorDetails, root: Any) -> _Error:
    """Tell data keys from union branch names in ``loc`` by walking the validated data.

    Pydantic puts the name of a union member (``str``, ``list[str]``, ``AllCustomers``, a
    discriminator tag such as ``threshold``) in ``loc``. Such a part is not a key of the data
    at that point, and looks like a type name or is the value of the discriminator; other
    parts missing from the data (values that came from the environment) stay in the path.
    """
    loc = item["loc"]
    path: list[str | int] = []
    union: Path_ | None = None
    branch = ""
    node = root
    for index, part in enumerate(loc):
        is_last_missing = index == len(loc) - 1 and item["type"] == "missing"
        if _has(node, part) or is_last_missing or not _is_branch_name(part, node):
            path.append(part)
            node = _get(node, part)
        elif union is None:
            union, branch = tuple(path), str(part)
    tag_error = _tag_error(item, tuple(path))
    if tag_error is not None:
        return tag_error
    field = ".".join(str(p) for p in path) or "(document)"
    message = _message(item["type"], field, item.get("msg", ""), item.get("ctx"))
    if item["type"] in _TYPE_NAMES or item["type"] == "finite_number":
        message += f", got {_describe(item.get('input'))}"
    if item["type"] == "float_type" and isinstance(item.get("input"), int):
        message = f"{field}: the number is too large"
    return _Error(tuple(path), item["type"], message, union, branch, item.get("input"))


_TYPE_WORDS = frozenset({"str", "int", "float", "bool", "bytes", "list", "dict", "none"})


def _is_branch_name(part: str | int, node: Any) -> bool:
    if not isinstance(part, str):
        return False
    if "[" in part or "-" in part or part.lstrip("_")[:1].isupper() or part in _TYPE_WORDS:
        return True
    return isinstance(node, dict) and part in node.values()


def _tag_error(item: ErrorDetails, path: Path_) -> _Error | None:
    """A discriminated union's tag (``condition.type``) missing or unknown, said of the tag."""
    ctx = item.get("ctx") or {}
    key = str(ctx.get("discriminator", "")).strip("'")
    if not key.isidentifier():
        return None
    if item["type"] == "union_tag_not_found":
        return _Error((*path, key), "missing", f"missing required key {key!r}")
    if item["type"] == "union_tag_invalid":
        field = ".".join(str(p) for p in (*path, key))
        expected = str(ctx.get("expected_tags", "")).replace("'", "")
        message = f"{field}: unknown {key} {ctx.get('tag')!r} (expected one of {expected})"
        return _Error((*path, key), "value_error", message)
    return None


def _has(node: Any, part: str | int) -> bool:
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _get(node: Any, part: str | int) -> Any:
    return node[part] if _has(node, part) else None


def _collapse_unions(errors: list[_Error]) -> list[_Error]:
    """Errors outside unions as they are; per union, only what helps the user."""
    result = [e for e in errors if e.union is None]
    unions: dict[Path_, dict[str, list[_Error]]] = {}
    for item in errors:
        if item.union is not None:
            unions.setdefault(item.union, {}).setdefault(item.branch, []).append(item)
    for path, branches in unions.items():
        result.extend(_union_errors(path, branches))
    return result


def _union_errors(path: Path_, branches: dict[str, list[_Error]]) -> list[_Error]:
    # Members the value is not even the right type for say nothing useful when another member
    # got further (a mapping given where a list or a mapping is accepted).
    deeper = {
        name: errs for name, errs in branches.items()
        if not all(_is_type_mismatch(e, path) for e in errs)
    }
    field = ".".join(str(p) for p in path) or "(document)"
    if len(deeper) == 1:
        return next(iter(deeper.values()))
    if not deeper:
        kinds = [_TYPE_NAMES.get(e.kind, e.kind) for errs in branches.values() for e in errs]
        expected = " or ".join(dict.fromkeys(kinds))
        got = _describe(next(iter(branches.values()))[0].value)
        return [_Error(path, "type_error", f"{field}: expected {expected}, got {got}")]
    common = set.intersection(*({(e.path, e.kind, e.message) for e in errs}
                                for errs in deeper.values()))
    if common:
        return [_Error(p, kind, message) for p, kind, message in sorted(common, key=str)]
    tried = "; ".join(errs[0].message for errs in deeper.values())
    return [_Error(path, "union_error", f"{field}: matches none of its accepted forms ({tried})")]


def _is_type_mismatch(item: _Error, union: Path_) -> bool:
    return item.path == union and (
        item.kind.endswith(("_type", "_parsing")) or item.kind == "literal_error"
    )


_TYPE_NAMES = {
    "list_type": "a list",
    "string_type": "a string",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "float_type": "a number",
    "float_parsing": "a number",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _message(kind: str, field: str, msg: str, ctx: dict[str, Any] | None) -> str:
    key = field.rsplit(".", 1)[-1]
    if kind == "extra_forbidden":
        return f"unknown key {key!r}"
    if kind == "missing":
        return f"missing required key {key!r}"
    if kind == "too_long" and ctx:
        return f"{field}: at most {ctx['max_length']} items, got {ctx['actual_length']}"
    if kind == "too_short" and ctx:
        return f"{field}: at least {ctx['min_length']} items, got {ctx['actual_length']}"
    if kind == "finite_number":
        return f"{field}: must be a finite number"
    if kind in _TYPE_NAMES:
        return f"{field}: expected {_TYPE_NAMES[kind]}"
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
