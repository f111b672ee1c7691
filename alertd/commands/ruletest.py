"""``alertd test FILE…``: run rule unit tests; exit 1 when any fails, 2 when a file is invalid."""

from __future__ import annotations

import argparse
from pathlib import Path

from alertd.ruletest import format_results, run_file


def main(args: argparse.Namespace) -> int:
    results = []
    for name in args.files:
        results.extend(run_file(Path(name)))
    print(format_results(results))
    return 0 if all(r.passed for r in results) else 1
