"""``alertd state migrate`` and ``alertd state copy``: the state store's schema and a move
from a SQLite file to PostgreSQL (see :mod:`alertd.store.copy`)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from alertd.config.settings import find_config, load_settings
from alertd.errors import EXIT_OK, ConfigError
from alertd.store.open import open_store


def main(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    settings = load_settings(find_config(getattr(args, "config", None)))
    if args.state_command == "migrate":
        # Opening migrates (in one transaction); a newer or foreign store is refused.
        async with open_store(settings):
            pass
        print(f"state store {settings.state_where()} is at the current schema")
        return EXIT_OK
    url = args.to or settings.state.url
    if url is None:
        raise ConfigError("alertd state copy: say where to: --to postgresql://USER@HOST/DB "
                          "or state.url in the config")
    from alertd.store.copy import copy_file  # psycopg: loaded only where it is used
    from alertd.store.pg_schema import redacted

    password = settings.state.resolved_password()
    copied = await copy_file(Path(args.source), url,
                             None if password is None else password.get_secret_value())
    print(f"copied {args.source} to {redacted(url)}: " +
          ", ".join(f"{table} {count}" for table, count in copied.items()))
    return EXIT_OK
