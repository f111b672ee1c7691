"""Failover time: SIGKILL the leader, measure until the standby's first poll of Stripe.

Usage::

    python bench/failover.py [--rounds 3] [--lease 5] [--every 2]
                             [--state postgresql://postgres@127.0.0.1:5432/test]

What runs: the simulator (real loopback HTTP, real time), a loopback webhook sink, and two
``alertd run`` processes (replicas ``r0`` and ``r1``) on one PostgreSQL database (a schema of
its own, dropped afterwards), one threshold rule polled every ``--every`` seconds. Each round
waits until the leader has polled, SIGKILLs it, and reads the simulator's request log (the
replicas name themselves in the User-Agent) for the first ``meter_usage`` request of the
other replica; the killed one is started again as the new standby. Target per round:
kill → first poll by the new leader <= lease + one poll interval. Also checked: no request of
the killed replica after its death, and none of the standby before it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from alertd.sim.testing import API_KEY, running_simulator
from alertd.sinks import serve_posts
from bench.common import figure, machine_note, print_table
from bench.notify import fresh_schema


def write_config(folder: Path, name: str, sim: str, sink: str, url: str,
                 lease: float, every: float) -> Path:
    path = folder / f"{name}.yaml"
    (folder / "rules.yaml").write_text(yaml.safe_dump({"rules": [{
        "name": "tokens", "meter": "mtr_sim_tokens", "window": "month", "every": f"{every:g}s",
        "condition": {"type": "threshold", "op": ">=", "value": 0}}]}))
    path.write_text(yaml.safe_dump({
        "stripe": {"api_base": sim, "api_key": API_KEY, "max_retries": 0},
        "state": {"url": url, "replica": name, "lease": f"{lease:g}s", "claim": "10s"},
        "server": {"listen": ""}, "rule_files": ["rules.yaml"], "customers": {"all": True},
        "receivers": [{"name": "hooks", "webhook": {"url": f"{sink}/hook"}}],
        "route": {"receiver": "hooks", "group_wait": "0s"}, "log_level": "warning",
    }))
    return path


async def start(config: Path, log: Path) -> asyncio.subprocess.Process:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALERTD_")}
    # The replicas run this checkout's alertd, whatever is installed.
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    with log.open("ab") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "alertd", "run", "-c", str(config),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr, env=env)


async def polls(sim: str, replica: str) -> list[float]:
    async with httpx.AsyncClient() as client:
        recent: list[dict[str, Any]] = (await client.get(f"{sim}/__stats")).json()["recent"]
    return [r["at"] for r in recent if r["endpoint"] == "meter_usage"
            and r["agent"].endswith(f"replica/{replica}")]


async def first_poll_after(sim: str, replica: str, after: float, limit: float) -> float:
    deadline = time.time() + limit
    while time.time() < deadline:
        later = [at for at in await polls(sim, replica) if at > after]
        if later:
            return min(later)
        await asyncio.sleep(0.05)
    raise SystemExit(f"replica {replica} never polled within {limit:g}s of the kill")


async def round_trip(sim: str, names: list[str], procs: dict[str, asyncio.subprocess.Process],
                     configs: dict[str, Path], folder: Path, lease: float, every: float
                     ) -> tuple[float, bool]:
    """Kills whichever replica polled last; returns (failover seconds, clean handover)."""
    latest = {n: max(await polls(sim, n), default=0.0) for n in names}
    leader = max(names, key=lambda n: latest[n])
    standby = next(n for n in names if n != leader)
    procs[leader].send_signal(signal.SIGKILL)
    killed = time.time()
    await procs[leader].wait()
    first = await first_poll_after(sim, standby, killed, lease + every + 30)
    clean = max(await polls(sim, leader)) < killed and \
        all(at < latest[leader] or at > killed for at in await polls(sim, standby))
    procs[leader] = await start(configs[leader], folder / f"{leader}.log")
    await asyncio.sleep(every * 2)  # the restarted replica settles in as the standby
    return first - killed, clean


async def main(args: argparse.Namespace) -> None:
    print(machine_note())

    async def ok(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    with tempfile.TemporaryDirectory() as tmp, fresh_schema(args.state) as url:
        folder = Path(tmp)
        async with running_simulator(customers=2, days=40, now=None) as sim, \
                serve_posts(ok) as sink:
            names = ["r0", "r1"]
            configs = {n: write_config(folder, n, sim.url, sink, url, args.lease, args.every)
                       for n in names}
            procs = {n: await start(configs[n], folder / f"{n}.log") for n in names}
            try:
                while not any([await polls(sim.url, n) for n in names]):
                    await asyncio.sleep(0.1)
                results = [await round_trip(sim.url, names, procs, configs, folder,
                                            args.lease, args.every)
                           for _ in range(args.rounds)]
            finally:
                for proc in procs.values():
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()
    bound = args.lease + args.every
    rows = [figure(f"round {i + 1}: kill -> first poll by the new leader, s", seconds,
                   "{:.2f}", f"<= {bound:g}", lambda v: v <= bound)
            for i, (seconds, _) in enumerate(results)]
    rows.append(figure("rounds with a poll from both replicas at once",
                       sum(not clean for _, clean in results), "{:.0f}", "0", lambda v: v == 0))
    print_table(f"failover: lease {args.lease:g}s, poll every {args.every:g}s "
                f"({machine_note()})", rows)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--lease", type=float, default=5.0)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--state", default="postgresql://postgres@127.0.0.1:5432/test")
    return parser.parse_args()


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
