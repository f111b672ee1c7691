"""``alertd run``: the long-running daemon (systemd ``ExecStart``); see :mod:`alertd.daemon`."""

from __future__ import annotations

import argparse
import asyncio

from alertd.daemon import Daemon


def main(args: argparse.Namespace) -> int:
    return asyncio.run(Daemon(getattr(args, "config", None)).run())
