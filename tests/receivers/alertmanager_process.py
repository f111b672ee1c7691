"""A real Prometheus Alertmanager (Debian's ``prometheus-alertmanager``) on loopback.

Started per test on a free port with clustering off and its storage in a temporary folder;
stopped (SIGTERM, then SIGKILL) when the test ends. Only ``127.0.0.1`` is listened on.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

PROGRAM = "prometheus-alertmanager"

CONFIG = """\
global:
  resolve_timeout: 5m
route:
  receiver: blackhole
  group_by: [alertname]
  routes:
    - matchers: ['severity="critical"']
      receiver: blackhole
receivers:
  - name: blackhole
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Alertmanager:
    def __init__(self, url: str) -> None:
        self.url = url

    def alerts(self, **params: Any) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v2/alerts", params=params, timeout=10)
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return found

    def post(self, alerts: list[dict[str, Any]]) -> httpx.Response:
        return httpx.post(f"{self.url}/api/v2/alerts", json=alerts, timeout=10)

    def groups(self) -> list[dict[str, Any]]:
        response = httpx.get(f"{self.url}/api/v2/alerts/groups", timeout=10)
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()
        return found


@contextlib.contextmanager
def running(folder: Path, config: str = CONFIG) -> Iterator[Alertmanager]:
    program = shutil.which(PROGRAM)
    assert program is not None, f"{PROGRAM} is not installed"
    (folder / "alertmanager.yml").write_text(config)
    (folder / "data").mkdir()
    port = free_port()
    log = (folder / "alertmanager.log").open("wb")
    process = subprocess.Popen(
        [program, f"--config.file={folder / 'alertmanager.yml'}",
         f"--storage.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address=", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, folder)
        yield Alertmanager(url)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _wait_ready(url: str, process: subprocess.Popen[bytes], folder: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError((folder / "alertmanager.log").read_text())
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise AssertionError("Alertmanager did not become ready in 20 s")
