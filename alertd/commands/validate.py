"""``alertd validate``: every problem of config, rules and templates, one per line on stderr as
``FILE:LINE:COL: message``; exit 2 when there is any. Contacts nothing.

Says which config file it read (or that none was found and the built-in defaults were
checked), and how many rule files and rules it loaded; with rules that price usage, which
Stripe price shapes alertd supports."""

from __future__ import annotations

import argparse
import sys

from alertd.config.settings import DEFAULT_CONFIG_PATHS, find_config
from alertd.config.validate import validate_report
from alertd.errors import EXIT_CONFIG, EXIT_OK
from alertd.pricing import SUPPORTED_SHAPES


def priced_note(priced: int, summed: int) -> str:
    """What ``validate`` says about rules that price usage: which price shapes are supported
    and what becomes an error finding instead of an amount."""
    note = (f"{priced} rule(s) price usage with each customer's Stripe price for the meter; "
            f"supported price shapes: {'; '.join(SUPPORTED_SHAPES)}. Any other (or no price, "
            "or another currency) is an error finding naming the price.")
    if summed:
        note += (f" {summed} of them sum every metered price of the customer (no meter): each "
                 "price on its own meter's total, in one currency; prices in several "
                 "currencies or on different billing periods are an error finding naming "
                 "them.")
    return note


def main(args: argparse.Namespace) -> int:
    path = find_config(args.config)
    if path is None:
        looked = ", ".join(str(p) for p in DEFAULT_CONFIG_PATHS)
        print(f"no config file found (-c, $ALERTD_CONFIG, {looked}); checking the built-in "
              "defaults", file=sys.stderr)
    report = validate_report(path)
    for problem in report.problems:
        print(problem, file=sys.stderr)
    if report.problems:
        print(f"{len(report.problems)} problem(s) found", file=sys.stderr)
        return EXIT_CONFIG
    loaded = f"{len(report.rule_files)} rule file(s), {report.rules} rule(s) loaded"
    if path is None:
        print(f"no config file found: the built-in defaults are valid ({loaded}); write "
              "alertd.yaml (see config.example.yaml) or pass -c CONFIG")
    else:
        print(f"{path}: configuration, rules and templates are valid ({loaded})")
    if report.priced:
        print(priced_note(report.priced, report.summed))
    return EXIT_OK
