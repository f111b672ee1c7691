"""The state file on real disks: private modes whatever the umask, damage found at start and at
run time, and a daemon that goes unready (and says how to recover) instead of staying
"healthy" while it records nothing."""

from __future__ import annotations

import logging
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from alertd.clock import SystemClock
from alertd.errors import StoreDamagedError, StoreError
from alertd.service.daemon import StoreWatch
from alertd.service.http import Health, serve
from alertd.service.metrics import Metrics
from alertd.silences import new_silence
from alertd.store.lock import exclusive, lock_path
from alertd.store.schema import quick_check
from alertd.store.sqlite import SqliteStore


@pytest.fixture
def umask() -> Iterator[None]:
    """Restores the process umask after a test that changes it."""
    old = os.umask(0o022)
    os.umask(old)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def fill(store: SqliteStore, count: int = 300) -> None:
    """Enough rows for the file to span dozens of pages."""
    for i in range(count):
        await store.add_silence(new_silence(
            [f"rule=r{i}"], starts_at=0, ends_at=4_000_000_000, comment="c" * 200,
            created_by="test", now=0,
        ))


def damage(path: Path) -> None:
    """Overwrite the middle of every page after the first (the header stays valid)."""
    size = path.stat().st_size
    assert size > 8 * 4096, "the file must span several pages"
    with path.open("r+b") as file:
        for offset in range(4096, size, 4096):
            file.seek(offset + 100)
            file.write(bytes(range(256)) + b"\xff" * 144)


def checkpoint(path: Path) -> None:
    """What another process (``alertd silence add``) may do meanwhile: move the WAL into the
    main file, so this process's next read comes from the (damaged) pages on disk."""
    other = sqlite3.connect(path)
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    other.close()


async def damaged_file(path: Path) -> Path:
    async with SqliteStore(path) as store:
        await fill(store)
    checkpoint(path)
    damage(path)
    return path


# --------------------------------------------------------------------------- modes


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o277])
async def test_state_wal_shm_and_lock_are_0600_whatever_the_umask(
    tmp_path: Path, umask: None, mask: int
) -> None:
    os.umask(mask)
    path = tmp_path / "state" / "alertd.db"
    with exclusive(path, "the test"):
        async with SqliteStore(path) as store:
            await fill(store, 3)
            files = [path, path.with_name("alertd.db-wal"), path.with_name("alertd.db-shm"),
                     lock_path(path)]
            assert {f.name: oct(mode(f)) for f in files} == {f.name: "0o600" for f in files}


async def test_an_existing_world_readable_file_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "alertd.db"
    async with SqliteStore(path) as store:
        await fill(store, 1)
    for name in ("alertd.db", "alertd.db-wal", "alertd.db-shm"):
        if (tmp_path / name).exists():
            (tmp_path / name).chmod(0o644)
    async with SqliteStore(path) as store:
        await store.silences(0)
        for name in ("alertd.db", "alertd.db-wal", "alertd.db-shm"):
            assert mode(tmp_path / name) == 0o600, name


# --------------------------------------------------------------------------- damage


async def test_a_damaged_file_is_refused_at_start_with_how_to_recover(tmp_path: Path) -> None:
    path = await damaged_file(tmp_path / "alertd.db")
    with pytest.raises(StoreDamagedError) as raised:
        await SqliteStore(path).open()
    message = str(raised.value)
    assert "\n" not in message
    assert f"{path} is damaged" in message and "quick_check" in message
    assert f"mv {path} {path}.damaged" in message and ".recover" in message


async def test_the_start_check_is_bounded_in_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "alertd.db"
    async with SqliteStore(path) as store:
        await fill(store)
    conn = sqlite3.connect(path)
    try:
        quick_check(conn, path)  # given the time: a verdict (ok)
        assert "cut short" not in caplog.text
        quick_check(conn, path, limit=0.0)  # no time at all: cut short, logged, file used
        assert "check cut short" in caplog.text
    finally:
        conn.close()


async def test_damage_at_run_time_is_a_store_error_told_to_the_observer(tmp_path: Path) -> None:
    path = tmp_path / "alertd.db"
    watch = StoreWatch(Metrics(), Health(first_poll_done=True))
    async with SqliteStore(path, observer=watch) as store:
        await fill(store)
        checkpoint(path)
        damage(path)
        with pytest.raises(StoreDamagedError, match=r"sqlite3 .*damaged \.recover"):
            await store.silences(0, include_expired=True)
    assert watch.health.store_problem is not None
    assert "damaged" in watch.health.store_problem


def metric(metrics: Metrics, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


async def test_run_time_damage_turns_readyz_503_counts_and_logs_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alertd.daemon")
    path = tmp_path / "alertd.db"
    metrics, health = Metrics(), Health(first_poll_done=True)
    async with (serve("127.0.0.1:0", metrics, health, SystemClock()) as url,
                SqliteStore(path, observer=StoreWatch(metrics, health)) as store,
                httpx.AsyncClient(base_url=url) as client):
        await fill(store)
        assert (await client.get("/readyz")).status_code == 200
        checkpoint(path)
        damage(path)
        for _ in range(2):
            with pytest.raises(StoreError):
                await store.silences(0, include_expired=True)
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert "state store failing" in ready.text and ".recover" in ready.text
        await store.pending_count()  # a query that avoids the broken pages: damage is sticky
        assert (await client.get("/readyz")).status_code == 503
    assert metric(metrics, "alertd_store_errors_total", kind="damaged") == 2
    failures = [r for r in caplog.records if "state store failing" in r.getMessage()]
    assert len(failures) == 1 and "mv " in failures[0].getMessage()


async def test_a_transient_store_error_clears_readiness_once_the_store_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="alertd.daemon")
    path = tmp_path / "alertd.db"
    metrics, health = Metrics(), Health(first_poll_done=True)
    async with SqliteStore(path, observer=StoreWatch(metrics, health), busy_timeout=0.05
                           ) as store:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        with pytest.raises(StoreError, match="locked"):
            await fill(store, 1)
        assert health.not_ready_reason() is not None
        assert "locked" in (health.store_problem or "")
        other.execute("ROLLBACK")
        other.close()
        await fill(store, 1)
    assert health.not_ready_reason() is None
    assert metric(metrics, "alertd_store_errors_total", kind="error") == 1
    assert "state store works again" in caplog.text
