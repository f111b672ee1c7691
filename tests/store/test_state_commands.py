"""``alertd silence`` against either store, ``alertd state migrate`` and ``alertd state copy``
from a real SQLite file into a real PostgreSQL schema (the CLI, in this process)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from alertd.cli import main
from alertd.sim.testing import running_simulator
from alertd.store.base import Attempt, Changes
from alertd.store.postgres import PostgresStore
from alertd.store.sqlite import SqliteStore
from tests.service.test_daemon import hooks_sink, rule, write_config
from tests.store.test_sqlite import FIRING, KEY, NOW, changes, group, notification


def config(tmp_path: Path, state: str) -> str:
    path = tmp_path / "alertd.yaml"
    path.write_text(f"rule_files: []\nstate:\n  {state}\n")
    return str(path)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_silences_work_against_either_store(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    state = (f"path: {tmp_path / 'alertd.db'}" if backend == "sqlite"
             else f"url: \"{request.getfixturevalue('pg_url')}\"")
    cfg = config(tmp_path, state)
    assert main(["silence", "add", "-c", cfg, "customer=cus_1", "--comment", "maintenance"]) == 0
    silence_id = capsys.readouterr().out.split()[2]
    assert main(["silence", "list", "-c", cfg]) == 0
    assert "maintenance" in capsys.readouterr().out
    assert main(["silence", "expire", "-c", cfg, silence_id]) == 0
    assert main(["silence", "list", "-c", cfg]) == 0
    assert "maintenance" not in capsys.readouterr().out


def test_state_migrate_brings_an_empty_database_up(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["state", "migrate", "-c", config(tmp_path, f'url: "{pg_url}"')]) == 0
    assert "current schema" in capsys.readouterr().out


async def test_state_copy_moves_every_row_and_refuses_a_second_time(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "alertd.db"
    async with SqliteStore(path) as store:
        await store.commit_transitions(changes(outbox=(notification("n1"),
                                                       notification("n2", group_key="g2"))))
        await store.record_attempts([Attempt("n1", "delivered", 1, NOW + 5)])
    cfg = config(tmp_path, f'url: "{pg_url}"')
    # The CLI runs its own event loop: in a thread, away from this test's.
    assert await asyncio.to_thread(main, ["state", "copy", "-c", cfg, "--from", str(path)]) == 0
    assert "outbox 2" in capsys.readouterr().out
    async with PostgresStore(pg_url) as store:
        assert await store.load_states() == {KEY: FIRING}
        assert await store.load_groups() == {("ops", "g1"): group()}
        assert [(r.id, r.status) for r in await store.outbox()] == [("n1", "delivered"),
                                                                   ("n2", "pending")]
        await store.commit_transitions(Changes())
    assert await asyncio.to_thread(main, ["state", "copy", "-c", cfg, "--from", str(path)]) == 2
    assert "already holds alert state" in capsys.readouterr().err


async def test_check_records_only_with_the_lease(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    async with running_simulator(customers=2, days=40, now=None) as sim, \
            hooks_sink() as hooks:
        cfg = str(write_config(tmp_path, sim.url, hooks.url, [rule("tokens")],
                               state={"url": pg_url, "replica": "cli"}))
        async with PostgresStore(pg_url) as store:
            held = await store.acquire_lease("stripe", "replica-a", 15, time.time())
        assert await asyncio.to_thread(main, ["check", "-c", cfg]) == 2
        assert "led by replica replica-a" in capsys.readouterr().err
        async with PostgresStore(pg_url) as store:
            assert await store.load_states() == {}  # nothing recorded
            await store.release_lease(held)
        assert await asyncio.to_thread(main, ["check", "-c", cfg]) == 0
        assert hooks.at("/alertd")  # and delivered
        async with PostgresStore(pg_url) as store:
            assert await store.load_states()  # recorded under its own lease, released after
            (lease,) = await store.leases()
            assert lease.holder == "cli" and lease.expires_at == 0


@pytest.mark.parametrize(("url", "said"), [
    ("mysql://alertd@db/alertd", "use postgresql://"),
    ("postgresql://alertd:s3cret@db/alertd", "keep the password out of the URL"),
])
def test_a_bad_state_url_is_refused_at_its_key_without_echoing_a_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str, said: str,
) -> None:
    assert main(["validate", "-c", config(tmp_path, f'url: "{url}"')]) == 2
    err = capsys.readouterr()
    text = err.out + err.err
    assert f"alertd.yaml:3:8: state.url: {said}" in text
    assert "s3cret" not in text
