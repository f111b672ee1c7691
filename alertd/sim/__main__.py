"""``python -m alertd.sim --port P --customers N --seed S --days D [--rate 100] …``: serve the
Stripe simulator until Ctrl-C (what ``alertd simulate`` and :class:`SimulatorProcess` run)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from alertd.clock import parse_instant
from alertd.sim.server import run


def _instant(text: str) -> float:
    import time

    return float(parse_instant(text, time.time()))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m alertd.sim", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=12111, help="0 picks a free port")
    parser.add_argument("--customers", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--days", type=int, default=90, help="days of history before now")
    parser.add_argument("--start", type=_instant, help="history start (ISO 8601 or e.g. 90d)")
    parser.add_argument("--now", type=_instant, help="freeze the server clock at this instant")
    parser.add_argument("--incident-rate", type=float, default=1.0,
                        help="incidents per customer per 30 days")
    parser.add_argument("--rate", type=int, default=100,
                        help="analytics requests per second (0: unlimited)")
    parser.add_argument("--general-rate", type=int, default=25,
                        help="other requests per second (0: unlimited)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added per response")
    parser.add_argument("--lag", type=float, default=60.0, help="refreshed_at lag in seconds")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    run(
        args.port, args.customers, args.seed, args.days,
        host=args.host,
        start=None if args.start is None else int(args.start),
        now=args.now,
        incident_rate=args.incident_rate,
        analytics_rate=args.rate or None,
        general_rate=args.general_rate or None,
        latency=args.latency,
        lag=args.lag,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
