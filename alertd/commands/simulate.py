"""``alertd simulate``: serve the local Stripe simulator until Ctrl-C.

Point alertd at it with ``stripe.api_base: http://127.0.0.1:PORT`` and any ``sk_test_`` key.
"""

from __future__ import annotations

import argparse

from alertd.sim.server import run


def main(args: argparse.Namespace) -> int:
    run(
        args.port,
        args.customers,
        args.seed,
        args.days,
        incident_rate=args.incident_rate,
        analytics_rate=args.rate or None,
        latency=args.latency,
    )
    return 0
