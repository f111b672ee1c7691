"""``alertd simulate``: serve the local Stripe simulator until Ctrl-C.

Point alertd at it with ``stripe.api_base: http://127.0.0.1:PORT`` and any ``sk_test_`` key.
The history ends at the real present and starts where incidents are under way now
(:func:`alertd.sim.present.lively_start`), so a first ``alertd --dry-run`` shows alerts.
"""

from __future__ import annotations

import argparse
import time

from alertd.sim.present import lively_start
from alertd.sim.server import run


def main(args: argparse.Namespace) -> int:
    start = lively_start(args.seed, args.customers, args.incident_rate, args.days,
                         int(time.time()))
    run(
        args.port,
        args.customers,
        args.seed,
        args.days,
        start=start,
        incident_rate=args.incident_rate,
        analytics_rate=args.rate or None,
        latency=args.latency,
    )
    return 0
