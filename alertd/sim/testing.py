"""Starting a simulator from tests and benchmarks.

In-process, for tests (rate limits off unless asked for, clock frozen at ``now``)::

    async with running_simulator(customers=5, seed=1, days=30, now=TEST_NOW) as sim:
        client = httpx.AsyncClient(base_url=sim.url, auth=(API_KEY, ""))

In another process, for benchmarks (the simulator's CPU is then not the client's)::

    with SimulatorProcess(customers=1000, rate=100, latency=0.02) as sim:
        ...  # sim.url; sim.stats(); sim.reset_stats()
"""

from __future__ import annotations

import contextlib
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping
from typing import IO, Any

import httpx

from alertd.sim.faults import Fault
from alertd.sim.generator import UsageGenerator
from alertd.sim.incidents import IncidentKind
from alertd.sim.server import Simulator, SimulatorConfig

#: A fixed "now" for tests: Monday 2025-03-10 12:00:00 UTC (the day after the US DST change).
TEST_NOW = 1_741_608_000
#: A key the simulator accepts by default.
API_KEY = "sk_test_simulator"


@contextlib.asynccontextmanager
async def running_simulator(
    *,
    customers: int = 5,
    seed: int = 1,
    days: int = 30,
    now: float | None = TEST_NOW,
    start: int | None = None,
    incident_rate: float = 1.0,
    incident_weights: Mapping[IncidentKind, float] | None = None,
    analytics_rate: int | None = None,
    general_rate: int | None = None,
    **config: Any,
) -> AsyncIterator[Simulator]:
    """A simulator on a free loopback port for the duration of the block.

    ``now`` freezes the server clock there and ends the generated history there (``None``:
    real time). Rate limits are off unless given; other keyword arguments are
    :class:`~alertd.sim.server.SimulatorConfig` fields.
    """
    generator = UsageGenerator(
        customers=customers, seed=seed, days=days, start=start, now=now,
        incident_rate=incident_rate, incident_weights=incident_weights,
    )
    settings = SimulatorConfig(analytics_rate=analytics_rate, general_rate=general_rate, **config)
    async with Simulator(generator, port=0, config=settings, now=now) as sim:
        yield sim


class SimulatorProcess:
    """``python -m alertd.sim`` in a child process, as a context manager (sync or async).

    Entering starts it on a free port, waits until it answers and sets :attr:`url`; leaving
    stops it (SIGTERM, then SIGKILL after ``stop_timeout``).
    """

    def __init__(
        self,
        *,
        customers: int = 1000,
        seed: int = 1,
        days: int = 90,
        rate: int | None = 100,
        general_rate: int | None = 25,
        latency: float = 0.0,
        lag: float = 60.0,
        now: float | None = None,
        incident_rate: float = 1.0,
        python: str = sys.executable,
        startup_timeout: float = 60.0,
        stop_timeout: float = 5.0,
    ) -> None:
        self.command = [
            python, "-m", "alertd.sim", "--port", "0",
            "--customers", str(customers), "--seed", str(seed), "--days", str(days),
            "--rate", str(rate or 0), "--general-rate", str(general_rate or 0),
            "--latency", str(latency), "--lag", str(lag), "--incident-rate", str(incident_rate),
        ]
        if now is not None:
            self.command += ["--now", _iso(now)]
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.url = ""
        self._process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def __enter__(self) -> SimulatorProcess:
        self._process = subprocess.Popen(
            self.command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True
        )
        try:
            self.url = self._read_url(self._process)
            self._wait_until_answering()
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(
        self, *exc_info: object
    ) -> None:
        self._stop()

    async def __aenter__(self) -> SimulatorProcess:
        import asyncio

        return await asyncio.to_thread(self.__enter__)

    async def __aexit__(
        self, *exc_info: object
    ) -> None:
        import asyncio

        await asyncio.to_thread(self._stop)

    def _read_url(self, process: subprocess.Popen[str]) -> str:
        lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None  # set by Popen(stdout=PIPE)
        threading.Thread(target=_drain, args=(process.stdout, lines), daemon=True).start()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=0.1)
            except queue.Empty:
                if process.poll() is not None:
                    break
                continue
            match = re.search(r"listening on (http://\S+)", line)
            if match:
                return match.group(1)
        raise RuntimeError(f"the simulator did not start: {' '.join(self.command)}")

    def _wait_until_answering(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                httpx.get(f"{self.url}/__now", timeout=2.0).raise_for_status()
                return
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(self.stop_timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    # ------------------------------------------------------------------ controls over HTTP

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/__stats")

    def reset_stats(self) -> dict[str, Any]:
        return self._call("POST", "/__stats/reset")

    def set_now(self, instant: float | None) -> dict[str, Any]:
        return self._call("POST", "/__now", {"now": instant})

    def add_fault(self, fault: Fault) -> dict[str, Any]:
        return self._call("POST", "/__faults", fault.to_json())

    def clear_faults(self) -> dict[str, Any]:
        return self._call("DELETE", "/__faults")

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = httpx.request(method, f"{self.url}{path}", json=body, timeout=30.0)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


def _drain(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _iso(instant: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(instant))
