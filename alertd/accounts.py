"""Stripe accounts: which ones a deployment watches, and what each one's alerts are called.

Where it sits: between the settings and everything that talks to Stripe. A configuration
watches either the one account of ``stripe.api_key`` (the first release's shape) or every
account of ``accounts:``::

    accounts:
      - {name: eu, api_key_file: /run/credentials/alertd.service/stripe_eu}
      - {name: us, api_key_env: STRIPE_US_KEY, requests_per_second: 50}

Each :class:`Account` carries a whole :class:`~alertd.config.settings.Settings` whose
``stripe`` section is that account's (its key, and the keys it overrides over ``stripe:``),
so everything built from settings — the HTTP client and its rate budgets, the usage source,
the customer directory, the engine — is built per account unchanged: the budgets are per
account, as Stripe's limits are.

Identity (:func:`with_account`): with ``accounts:``, every alert series carries its
account's name (:attr:`~alertd.model.SeriesKey.account`), so two accounts' ``cus_123`` are
two series, with two fingerprints, and the ``account`` label (routing, grouping — a group
never spans accounts — silences, templates, webhooks). The one account of
``stripe.api_key`` is named ``""``: its series, fingerprints and stored state are exactly the
first release's. Its lease is still ``stripe``; an account of ``accounts:`` leads under
``stripe:NAME``.

A rule watches every account unless it names ``accounts: [..]`` (:func:`rules_for`).

Alert state of accounts no longer watched (:func:`settlement`, decided by the leader of the
first account, at the daemon's start or when it takes the lease over later,
:func:`alertd.service.settling.settle_accounts`):

* **Adopted.** Moving from ``stripe.api_key`` to ``accounts:`` leaves the first release's rows
  (account ``""``). When ``accounts:`` has one account, or one marked
  ``was_stripe_api_key: true``, that account adopts them (:func:`adoption`): each series'
  state moves to the same series of that account — ``for`` timers, firing episodes, levels
  and the levels announced in a period carry on, so nothing is judged again from scratch and
  a quota told once this month is not told again. The alerts' labels change (they gain
  ``account``), and receivers know an alert by its labels (its fingerprint), so the old
  alerts are resolved through the outbox in the same transaction, and the next poll files
  the adopted ones, still firing, under their new labels. A series the account already has
  (a recording ``alertd check`` ran first) keeps its own state; the old one only resolves.
* **Resolved.** Every other account's rows — ``""`` when several accounts have no mark, an
  account removed from ``accounts:``, named accounts after moving back to
  ``stripe.api_key`` — are resolved (the receivers are told, through the outbox, as for a
  removed rule) and forgotten.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

from alertd.alerts import AlertState
from alertd.buckets import BucketEntry, BucketExtent
from alertd.config.settings import Settings
from alertd.model import Finding, Series, SeriesKey
from alertd.notify.pipeline import Lifecycle, retirement
from alertd.rules.loader import RuleSet
from alertd.store.base import (
    BucketStore,
    FlushSet,
    GroupId,
    GroupScope,
    NotificationGroup,
    Store,
)

#: The lease of the one account of ``stripe.api_key`` (the first release's name).
SOLE_LEASE = "stripe"


@dataclass(frozen=True, slots=True)
class Account:
    """One watched Stripe account: its name (``""`` for the one of ``stripe.api_key``) and
    the settings everything for it is built from."""

    name: str
    settings: Settings

    @property
    def lease(self) -> str:
        """The lease its leader holds: ``stripe``, or ``stripe:NAME``."""
        return f"{SOLE_LEASE}:{self.name}" if self.name else SOLE_LEASE

    @property
    def label(self) -> str:
        """Its name in metrics (``alertd_leader{account}``) and logs."""
        return self.name or SOLE_LEASE


def accounts_of(settings: Settings) -> tuple[Account, ...]:
    """The accounts ``settings`` watches, in configuration order; their keys are read now
    (:class:`~alertd.errors.ConfigError` when one cannot be had)."""
    if not settings.accounts:
        return (Account("", settings),)
    return tuple(
        Account(entry.name, settings.model_copy(
            update={"stripe": entry.stripe_settings(settings.stripe)}))
        for entry in settings.accounts)


def rules_for(rules: RuleSet, account: str) -> RuleSet:
    """The rules that watch ``account``: those naming it, and those naming no account."""
    if not account:
        return rules
    return RuleSet(tuple(r for r in rules if r.accounts is None or account in r.accounts),
                   rules.files)


def with_account(
    findings: tuple[Finding, ...], series: dict[SeriesKey, Series], account: str,
) -> tuple[tuple[Finding, ...], dict[SeriesKey, Series]]:
    """Findings and series of one pass, their keys carrying ``account`` (pure; unchanged for
    the account ``""``)."""
    if not account:
        return findings, series
    stamped = tuple(replace(f, key=replace(f.key, account=account)) for f in findings)
    moved: dict[SeriesKey, Series] = {}
    for key, one in series.items():
        new_key = replace(key, account=account)
        moved[new_key] = replace(one, key=new_key)
    return stamped, moved



class AccountView:
    """``store`` as one account's pipeline sees it (the account of ``accounts:`` named
    ``account``): only its alert states and its groups (those whose labels name it) are
    loaded, so its leader flushes its own groups and no other's; its cached usage buckets
    are keyed apart; every other call (commits, the notification log, silences, the outbox)
    goes to ``store`` unchanged."""

    def __init__(self, store: Store, account: str) -> None:
        self._store = store
        self.account = account

    async def load_states(self, rules: Iterable[str] | None = None
                          ) -> dict[SeriesKey, AlertState]:
        found = await self._store.load_states(rules)
        return {key: state for key, state in found.items() if key.account == self.account}

    async def load_groups(self) -> dict[GroupId, NotificationGroup]:
        found = await self._store.load_groups()
        return {ident: group for ident, group in found.items()
                if group.group_labels.get("account", "") == self.account}

    async def load_scope(self, scope: GroupScope) -> FlushSet:
        found = await self._store.load_scope(scope)
        groups = {ident: group for ident, group in found.groups.items()
                  if group.group_labels.get("account", "") == self.account}
        return FlushSet(groups, {ident: record for ident, record in found.sent.items()
                                 if ident in groups or ident in scope.idents})

    async def next_group_due(self, account: str | None = None) -> float | None:
        # The database's MIN over this account's groups: a timer round loads none of them.
        return await self._store.next_group_due(self.account if account is None else account)

    # Two accounts may have the same customer and meter ids: their cached usage is apart.
    async def load_buckets(self, keys: Iterable[str]) -> dict[str, BucketEntry]:
        prefix = self._bucket_prefix
        found = await cast(BucketStore, self._store).load_buckets(prefix + k for k in keys)
        return {key.removeprefix(prefix): replace(entry, key=key.removeprefix(prefix))
                for key, entry in found.items()}

    async def load_extents(self, keys: Iterable[str]) -> dict[str, BucketExtent]:
        prefix = self._bucket_prefix
        found = await cast(BucketStore, self._store).load_extents(prefix + k for k in keys)
        return {key.removeprefix(prefix): replace(extent, key=key.removeprefix(prefix))
                for key, extent in found.items()}

    async def save_buckets(self, entries: Iterable[BucketEntry], now: int) -> None:
        await cast(BucketStore, self._store).save_buckets(
            (replace(e, key=self._bucket_prefix + e.key) for e in entries), now)

    @property
    def _bucket_prefix(self) -> str:
        return f"account={self.account}\x1f"

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def account_store(store: Store, account: str) -> Store:
    """``store`` for ``account``'s pipeline: as it is for the account ``""``."""
    # AccountView is the Store protocol by delegation (__getattr__), which mypy cannot see.
    return cast(Store, AccountView(store, account)) if account else store


def whole_store(store: Store) -> Store:
    """The store behind an account's view (``store`` itself when it is none)."""
    return store._store if isinstance(store, AccountView) else store


def account_view(store: Store, account: str) -> Store:
    """The store behind ``store`` showing ``account``'s alerts and groups only — for the
    account ``""`` too, unlike :func:`account_store` (whose ``""`` sees everything)."""
    return cast(Store, AccountView(whole_store(store), account))


# --------------------------------------------------------------------------- settling


@dataclass(frozen=True, slots=True)
class Settlement:
    """What becomes of the stored alerts of accounts a configuration does not watch (see
    the module docstring): ``heir`` adopts those of ``""``; ``orphans`` are resolved."""

    heir: str | None = None
    orphans: tuple[str, ...] = ()


def heir_of(settings: Settings) -> str | None:
    """The account of ``accounts:`` that adopts the alerts of the former
    ``stripe.api_key``: the one marked ``was_stripe_api_key``, else the only one."""
    marked = [entry.name for entry in settings.accounts if entry.was_stripe_api_key]
    if marked:
        return marked[0]
    return settings.accounts[0].name if len(settings.accounts) == 1 else None


def settlement(stored: Collection[str], settings: Settings) -> Settlement:
    """What to do with the alerts of the ``stored`` accounts (the names in the alert state)
    that ``settings`` does not watch (pure)."""
    watched = {account.name for account in settings.accounts} or {""}
    gone = sorted(set(stored) - watched)
    heir = heir_of(settings) if "" in gone else None
    return Settlement(heir, tuple(name for name in gone if not (name == "" and heir)))


def adoption(states: Mapping[SeriesKey, AlertState], heir: str, taken: Collection[SeriesKey],
             now: int) -> Lifecycle:
    """``heir`` adopting ``states`` (of the account ``""``): each moves to the same series of
    ``heir`` unless that series is in ``taken`` (it has a state of its own), and every old
    announced alert resolves, since its labels change (pure; see the module docstring)."""
    step = retirement(states, now, f"adopted by account {heir} (moved to accounts:)")
    moved: dict[SeriesKey, AlertState | None] = {}
    for key, state in states.items():
        new_key = replace(key, account=heir)
        if new_key not in taken:
            moved[new_key] = state
    return replace(step, states={**step.states, **moved})
