"""YAML with positions: duplicate keys, odd documents, merge keys, and pointing into strings."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alertd.config.yamlpos import Mark, load_located, validation_problems
from alertd.errors import ConfigError, Problem


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_located(text, "f.yaml")
    return [str(p) for p in caught.value.problems]


def test_duplicate_keys_are_all_reported() -> None:
    text = "a: 1\nb:\n  c: 1\n  c: 2\na: 3\n"
    assert problems(text) == ["f.yaml:4:3: duplicate key 'c'", "f.yaml:5:1: duplicate key 'a'"]


def test_collect_keeps_the_document_and_the_first_value() -> None:
    found: list[Problem] = []
    doc = load_located("a: 1\na: 2\nb: 2025-02-30\n", "f.yaml", collect=found)
    assert doc.data == {"a": 1, "b": "2025-02-30"}
    assert [str(p) for p in found] == [
        "f.yaml:2:1: duplicate key 'a'",
        "f.yaml:3:4: cannot read '2025-02-30': day is out of range for month",
    ]


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("", None),
        ("# only a comment\n", None),
        ("- a\n- b\n", ["a", "b"]),
        ("just text\n", "just text"),
        ("42\n", 42),
    ],
)
def test_non_mapping_documents_load_as_what_they_are(text: str, data: Any) -> None:
    # Whether a list or a scalar is acceptable is the caller's decision (the rule loader
    # and the settings refuse them with a located message).
    assert load_located(text, "f.yaml").data == data


def test_root_mark_is_where_the_document_starts() -> None:
    assert load_located("# comment\n\n  [1, 2]\n", "f.yaml").marks[()] == Mark(3, 3, 3, 3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a: [1\n", ["f.yaml:2:1: YAML syntax error: expected ',' or ']', but got '<stream end>'"]),
        ("a: *nowhere\n", ["f.yaml:1:4: YAML syntax error: found undefined alias 'nowhere'"]),
        ("a: 1\n---\nb: 2\n", ["f.yaml:2:1: YAML syntax error: but found another document"]),
        ("a: !!python/object:os.system x\n",
         ["f.yaml:1:4: cannot read 'x': could not determine a constructor for the tag "
          "'tag:yaml.org,2002:python/object:os.system'"]),
        ("? [a]\n: 1\n", ["f.yaml:1:3: mapping keys must be plain scalars"]),
        ("~: 1\n", ["f.yaml:1:1: a mapping key cannot be empty or null"]),
        ("a: &x\n  b: *x\n", ["f.yaml:1:4: recursive alias: this value contains itself"]),
        ("a: &x\n  <<: *x\n", ["f.yaml:1:4: '<<' merges a mapping or a list of mappings"]),
        ("a:\n  <<: 5\n", ["f.yaml:2:7: '<<' merges a mapping or a list of mappings"]),
    ],
)
def test_document_problems(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_keys_are_kept_as_written() -> None:
    # YAML 1.1 reads `on` as True and `0x10` as 16; a label key means the text.
    assert load_located("on: 1\n0x10: 2\nyes: 3\n", "f.yaml").data == {
        "on": 1, "0x10": 2, "yes": 3,
    }


def test_merge_keys() -> None:
    text = (
        "base: &base {a: 1, b: 1}\n"
        "more: &more {b: 2, c: 2}\n"
        "one:\n  <<: *base\n  b: 9\n"
        "two:\n  <<: [*more, *base]\n"
    )
    doc = load_located(text, "f.yaml")
    assert doc.data["one"] == {"b": 9, "a": 1}
    assert doc.data["two"] == {"b": 2, "c": 2, "a": 1}
    # A merged value keeps the mark of where it was written.
    assert doc.marks[("two", "a")] == Mark(1, 14, 1, 17)
    assert doc.marks[("one", "b")] == Mark(5, 3, 5, 6)


@pytest.mark.parametrize(
    ("line", "offset", "expected"),
    [
        ("k: daily usage > x", 14, "f.yaml:1:18: here"),
        ("k: daily usage > x  # comment", 14, "f.yaml:1:18: here"),
        ("k: daily usage >", 13, "f.yaml:1:17: here"),
        ("k: 'it''s x'", 5, "f.yaml:1:11: here"),
        ('k: "a\\"b x"', 4, "f.yaml:1:10: here"),
        ('k: "\\x41\\u00e9 x"', 3, "f.yaml:1:16: here"),
        ('k: "tab\\there x"', 9, "f.yaml:1:15: here"),
        ("k: abc", 3, "f.yaml:1:7: here"),
        ("k: >-\n  folded text\n", 7, "f.yaml:1:4: here (character 8 of the value)"),
        ("k: first\n  second\n", 8, "f.yaml:1:4: here (character 9 of the value)"),
        ('k: "first\n  second"\n', 8, "f.yaml:1:4: here (character 9 of the value)"),
    ],
)
def test_problem_inside_a_string(line: str, offset: int, expected: str) -> None:
    doc = load_located(line, "f.yaml")
    assert str(doc.problem_inside(("k",), offset, "here")) == expected


class _Search(BaseModel):
    model_config = ConfigDict(extra="forbid")
    search: str


class _All(BaseModel):
    model_config = ConfigDict(extra="forbid")
    all: bool


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customers: list[str] | _All | _Search = []
    filters: dict[str, str | list[str]] = {}
    tags: list[str] = Field([], max_length=2)
    count: int = 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("customers: 5\n", ["f.yaml:1:12: customers: expected a list or a mapping, got 5"]),
        ("customers: {al: true}\n", ["f.yaml:1:13: unknown key 'al'"]),
        ("customers: {all: true, search: x}\n", [
            "f.yaml:1:12: customers: matches none of its accepted forms (unknown key 'search'; "
            "unknown key 'all')",
        ]),
        ("customers: [a, {b: 1}]\n", [
            "f.yaml:1:16: customers.1: expected a string, got a mapping",
        ]),
        ("filters: {str: 1}\n", ["f.yaml:1:16: filters.str: expected a string or a list, got 1"]),
        ("tags: [a, b, c]\n", ["f.yaml:1:7: tags: at most 2 items, got 3"]),
        ("count: many\n", ["f.yaml:1:8: count: expected an integer, got 'many'"]),
        ("count: 1.5\n", [
            "f.yaml:1:8: count: Input should be a valid integer, got a number with a "
            "fractional part",
        ]),
        ("bogus: 1\n", ["f.yaml:1:1: unknown key 'bogus'"]),
    ],
)
def test_validation_problems(text: str, expected: list[str]) -> None:
    doc = load_located(text, "f.yaml")
    with pytest.raises(ValidationError) as caught:
        _Model.model_validate(doc.data)
    assert [str(p) for p in validation_problems(caught.value, doc)] == expected


def test_values_not_in_the_file_keep_their_path() -> None:
    # e.g. a value that came from the environment: no mark, but the message names the field.
    doc = load_located("other: 1\n", "f.yaml")
    with pytest.raises(ValidationError) as caught:
        _Model.model_validate({"count": "x"})
    assert [p.message for p in validation_problems(caught.value, doc)] == [
        "count: expected an integer, got 'x'"
    ]
