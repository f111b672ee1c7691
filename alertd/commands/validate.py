"""``alertd validate``: every problem of config, rules and templates, one per line on stderr as
``FILE:LINE:COL: message``; exit 2 when there is any. Contacts nothing."""

from __future__ import annotations

import argparse
import sys

from alertd.errors import EXIT_CONFIG, EXIT_OK
from alertd.settings import find_config
from alertd.validate import validate_config


def main(args: argparse.Namespace) -> int:
    path = find_config(args.config)
    problems = validate_config(path)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) found", file=sys.stderr)
        return EXIT_CONFIG
    print(f"{path or 'defaults'}: configuration, rules and templates are valid")
    return EXIT_OK
