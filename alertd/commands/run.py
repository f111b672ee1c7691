"""``alertd run``: the long-running daemon (systemd ``ExecStart``); see
:mod:`alertd.service.daemon`."""

from __future__ import annotations

import argparse
import asyncio

from alertd import gctune
from alertd.service import trim
from alertd.service.daemon import Daemon


def main(args: argparse.Namespace) -> int:
    gctune.tune()  # a daemon's pace for the collector: see alertd.gctune
    trim.one_arena()  # before any thread: see alertd.service.trim
    return asyncio.run(Daemon(getattr(args, "config", None)).run())
