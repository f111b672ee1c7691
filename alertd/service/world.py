"""Wiring: build the long-lived collaborators from settings, as async context managers.

The commands (``check``, ``backtest``, ``run``, ``demo``) all need the same things — a Stripe
HTTP client with its rate budgets, the usage source the config names, the customer and meter
directory — built the same way. Tests pass a ``transport`` (``httpx.MockTransport``) or point
``api_base`` at the simulator; nothing here is patched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from alertd.clock import Clock
from alertd.config.settings import NO_API_KEY, Settings, find_config, load_settings
from alertd.config.validate import rule_file_problems
from alertd.errors import ConfigError, Problem
from alertd.rules.loader import RuleSet, load_rules
from alertd.service.metrics import Metrics
from alertd.source import Source, build_source
from alertd.source.directory import Directory
from alertd.source.http import USER_AGENT, StripeHTTP
from alertd.store.open import replica_name


@dataclass(frozen=True, slots=True)
class World:
    """A complete, validated configuration: what a reload swaps in as a whole."""

    settings: Settings
    rules: RuleSet
    config_path: Path | None


def load_world(config: str | Path | None) -> World:
    """Settings and every rule, validated; :class:`ConfigError` lists every problem. A
    ``rule_files`` pattern that matches no file is one (as ``validate`` says): a command run
    without the rules it was meant to judge would look fine while judging nothing."""
    path = find_config(str(config) if config is not None else None)
    settings = load_settings(path)
    unmatched = rule_file_problems(settings, path)
    if unmatched:
        raise ConfigError(unmatched)
    rules = load_rules(settings.rule_paths(), settings)
    return World(settings, rules, path)


@dataclass(frozen=True, slots=True)
class StripeStack:
    http: StripeHTTP
    source: Source
    directory: Directory


async def verify_meters(rules: RuleSet, directory: Directory) -> None:
    """Refuse rules that name a meter the Stripe account does not have (one problem each)."""
    missing = set(await directory.check_meters(rule.meter for rule in rules))
    if not missing:
        return
    known = ", ".join(sorted((await directory.meters()).keys())) or "none"
    raise ConfigError([
        Problem.at(rule.source, f"rule {rule.name}: meter {rule.meter} does not exist in this "
                                f"Stripe account (its meters: {known})")
        for rule in rules if rule.meter in missing
    ])


@asynccontextmanager
async def stripe_stack(
    settings: Settings,
    *,
    clock: Clock,
    metrics: Metrics | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> AsyncIterator[StripeStack]:
    """The HTTP client, usage source and directory for ``settings.stripe``."""
    api_key = settings.stripe.resolved_api_key()
    if api_key is None:
        raise ConfigError(NO_API_KEY)
    # Replicas name themselves to Stripe (and to the simulator's request log): which one
    # polled is then visible from the outside.
    agent = USER_AGENT if settings.state.url is None else \
        f"{USER_AGENT} replica/{replica_name(settings)}"
    async with AsyncExitStack() as stack:
        http = await stack.enter_async_context(StripeHTTP(
            settings.stripe, api_key, transport=transport, clock=clock, observer=metrics,
            user_agent=agent,
        ))
        # Closed before the client: its background refreshes and listings use it.
        directory = await stack.enter_async_context(
            Directory(http, clock=clock, refresh=settings.customers.refresh))
        yield StripeStack(http, build_source(http, settings.stripe), directory)
