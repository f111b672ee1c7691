"""Tests that need an external program: skip with the reason where it is absent, fail in CI.

``needs_program(name, path)`` returns the program's path. When it is missing the test is
skipped with a printed reason — unless ``ALERTD_REQUIRE_PROGRAMS`` (set by ``.ci/run``, a
comma-separated list, or ``all``) names it: there a missing program fails the test, so CI
can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil

import pytest


def required(name: str) -> bool:
    wanted = {w.strip() for w in os.environ.get("ALERTD_REQUIRE_PROGRAMS", "").split(",")}
    return "all" in wanted or name in wanted


def needs_program(name: str, *candidates: str) -> str:
    for candidate in (*candidates, name):
        found = shutil.which(candidate)
        if found:
            return found
    reason = f"needs {name} ({', '.join(candidates or (name,))} not found)"
    if required(name):
        pytest.fail(f"{reason}, and ALERTD_REQUIRE_PROGRAMS requires it")
    pytest.skip(reason)


def needs_module(name: str, program: str) -> None:
    """A Python package the test needs (e.g. playwright for chromium); same rule as above."""
    try:
        __import__(name)
    except ImportError:
        reason = f"needs the Python package {name}"
        if required(program):
            pytest.fail(f"{reason}, and ALERTD_REQUIRE_PROGRAMS requires {program}")
        pytest.skip(reason)
