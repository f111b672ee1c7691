"""Shared fixtures for the rule tests: a clean environment and rule files in ``tmp_path``."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from alertd.config.settings import Settings
from alertd.errors import ConfigError
from alertd.rules import load_rules


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No ALERTD_* variables from the caller's shell; files are named relative to tmp_path."""
    for name in list(os.environ):
        if name.startswith("ALERTD_") or name == "STRIPE_API_KEY":
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield


def _make_settings(**overrides: object) -> Settings:
    """Settings with two receivers, ``ops`` and ``hooks``."""
    data: dict[str, object] = {
        "receivers": [
            {"name": "ops", "email": {"to": ["ops@example.com"]}},
            {"name": "hooks", "webhook": {"url": "https://hooks.example.com/a"}},
        ],
        "route": {"receiver": "ops"},
    }
    data.update(overrides)
    return Settings(**data)  # type: ignore[arg-type]


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    """Settings with two receivers, ``ops`` and ``hooks``; keyword arguments override."""
    return _make_settings


@pytest.fixture
def problems_of(tmp_path: Path) -> Callable[..., list[str]]:
    """Write ``{name: yaml}`` files, load them in order, return every problem as text."""

    def run(files: dict[str, str], settings: Settings | None = None) -> list[str]:
        paths = []
        for name, text in files.items():
            (tmp_path / name).write_text(textwrap.dedent(text).lstrip("\n"))
            paths.append(Path(name))
        try:
            load_rules(paths, settings or _make_settings())
        except ConfigError as exc:
            return [str(problem) for problem in exc.problems]
        return []

    return run
