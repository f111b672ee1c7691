"""``alertd run``: the long-running daemon (systemd ``ExecStart``); see
:mod:`alertd.service.daemon`."""

from __future__ import annotations

import argparse
import asyncio

from alertd.service.daemon import Daemon


def main(args: argparse.Namespace) -> int:
    return asyncio.run(Daemon(getattr(args, "config", None)).run())
