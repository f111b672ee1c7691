"""``alertd silence add|list|expire``: silences kept in the state store.

A silence mutes every alert whose labels match all its matchers (``rule=gpt4-daily-usage``,
``customer=~cus_12.*``, ``severity!=critical``) between its start and end; silenced alerts still
change state, and ``check --dry-run`` shows them as ``suppressed (silence)``. The running
daemon sees a new silence at its next flush (it reads silences from the same state file).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from alertd import silences
from alertd.alerts import SOURCE_FAILURE, STALE_DATA
from alertd.clock import format_duration, iso, parse_duration, parse_instant, readable_duration
from alertd.commands.output import table
from alertd.config.settings import find_config, load_settings
from alertd.errors import EXIT_OK, ConfigError
from alertd.store.open import AnyStore, open_store

META_RULES = frozenset({STALE_DATA, SOURCE_FAILURE})


def main(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> int:
    import time

    settings = load_settings(find_config(getattr(args, "config", None)))
    now = int(time.time())
    async with open_store(settings) as store:
        try:
            if args.silence_command == "add":
                await _add(store, args, now)
            elif args.silence_command == "list":
                await _list(store, args, now)
            else:
                expired = await silences.expire(store, args.id, now)
                print(f"expired silence {expired.id}")
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    return EXIT_OK


async def _add(store: AnyStore, args: argparse.Namespace, now: int) -> None:
    starts_at = parse_instant(args.start, now, option="--start") if args.start else now
    try:
        length = parse_duration(args.duration)
    except ValueError as exc:
        raise ValueError(f"--duration: {exc}") from None
    silence = silences.new_silence(
        args.matchers,
        starts_at=starts_at,
        ends_at=starts_at + int(length),
        comment=args.comment,
        created_by=args.author or getpass.getuser(),
        now=now,
    )
    await silences.add(store, silence)
    print(f"added silence {silence.id} until {iso(silence.ends_at)} "
          f"({format_duration(length)}): {' '.join(str(m) for m in silence.matchers)}")
    for warning in silence_warnings(silence, length, _rule_names(args)):
        print(f"warning: {warning}", file=sys.stderr)


#: A silence longer than this is most likely a typo (``99999d``), so it is pointed out.
LONG_SILENCE = 90 * 86400


def silence_warnings(silence: silences.Silence, length: float,
                     rules: frozenset[str] | None) -> list[str]:
    """What looks wrong about a new silence (pure): added anyway, but said. ``rules`` are
    the loaded rule names, ``None`` when they could not be read."""
    found = []
    if length > LONG_SILENCE:
        found.append(f"the silence lasts {readable_duration(length, units=2)}, until "
                     f"{iso(silence.ends_at)}; expire it with 'alertd silence expire "
                     f"{silence.id[:12]}' if that was not meant")
    known = (rules or frozenset()) | META_RULES
    for matcher in silence.matchers:
        if rules is not None and matcher.name in ("rule", "alertname") and matcher.op == "=" \
                and matcher.value not in known:
            found.append(f"{matcher}: no rule of that name is loaded (known: "
                         f"{', '.join(sorted(rules)) or 'none'}); it matches nothing now")
    return found


def _rule_names(args: argparse.Namespace) -> frozenset[str] | None:
    from alertd.service.world import load_world

    try:
        world = load_world(getattr(args, "config", None))
    except (ConfigError, OSError):
        return None
    return frozenset(rule.name for rule in world.rules)


async def _list(store: AnyStore, args: argparse.Namespace, now: int) -> None:
    found = await silences.listing(store, now, include_expired=args.all)
    if not found:
        print("no silences" if args.all else "no active or pending silences (--all for expired)")
        return
    rows = [
        (s.id[:12], s.state(now), iso(s.starts_at) or "", iso(s.ends_at) or "",
         " ".join(str(m) for m in s.matchers), s.created_by or "-", s.comment)
        for s in found
    ]
    print(table(("ID", "STATE", "STARTS", "ENDS", "MATCHERS", "BY", "COMMENT"), rows))
