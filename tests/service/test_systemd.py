"""sd_notify datagrams over a real Unix datagram socket."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from alertd.service.systemd import SystemdNotifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield path, sock
    sock.close()


def receive(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_ready_with_status(notify_socket: tuple[str, socket.socket]) -> None:
    path, sock = notify_socket
    assert SystemdNotifier(path).ready("3 rules, 10 customers")
    assert receive(sock) == ["READY=1", "STATUS=3 rules, 10 customers"]


def test_reloading_carries_monotonic_usec_in_the_same_datagram(
    notify_socket: tuple[str, socket.socket],
) -> None:
    path, sock = notify_socket
    SystemdNotifier(path).reloading("reloading")
    fields = receive(sock)
    assert fields[0] == "RELOADING=1"
    assert fields[1].startswith("MONOTONIC_USEC=") and int(fields[1].split("=")[1]) > 0
    assert fields[2] == "STATUS=reloading"


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda n: n.watchdog(), ["WATCHDOG=1"]),
        (lambda n: n.status("last poll 12:00"), ["STATUS=last poll 12:00"]),
        (lambda n: n.stopping(), ["STOPPING=1"]),
    ],
)
def test_each_message(notify_socket: tuple[str, socket.socket], call, expected) -> None:  # type: ignore[no-untyped-def]
    path, sock = notify_socket
    call(SystemdNotifier(path))
    assert receive(sock) == expected


def test_abstract_namespace_socket() -> None:
    name = f"alertd-test-{id(object())}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert SystemdNotifier("@" + name).ready()
        assert receive(sock) == ["READY=1"]
    finally:
        sock.close()


def test_no_op_outside_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()
    assert not notifier.enabled
    assert notifier.ready() is False


def test_missing_socket_is_not_fatal(tmp_path: Path) -> None:
    assert SystemdNotifier(str(tmp_path / "absent.sock")).ready() is False


def test_watchdog_interval_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert SystemdNotifier("").watchdog_interval == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert SystemdNotifier("").watchdog_interval is None
