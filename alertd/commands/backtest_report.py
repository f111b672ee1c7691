"""What ``alertd backtest`` found and how it is shown: :class:`BacktestResult` (several
accounts' results merged into one by :func:`merged_results`), the contract's JSON, the text
tables and the progress bar drawn on a terminal.

Where it sits: the last step of :mod:`alertd.commands.backtest`, which runs the replay
(:mod:`alertd.backtest`) and hands its result here. Pure but for the progress bar's writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence, Sized
from dataclasses import dataclass
from typing import Any, TextIO

from alertd.backtest import Firing, ReplayFailure, ReplayWindow, SentNotification
from alertd.clock import iso
from alertd.commands.output import bound, bounds_json, number, series_label, table, window_json

FIRING_COLUMNS = ("AT (UTC)", "RULE", "CUSTOMER", "SERIES", "LEVEL", "VALUE", "BOUND")
NOTIFICATION_COLUMNS = ("AT (UTC)", "RECEIVER", "STATUS", "ALERTS", "WHY")


@dataclass(frozen=True, slots=True)
class BacktestResult:
    """What a backtest found: firings and notifications in time order, and what it cost."""

    window: ReplayWindow
    firings: tuple[Firing, ...]
    notifications: tuple[SentNotification, ...]
    rules: tuple[str, ...]
    customers: int
    queries: int
    requests: int
    #: (rule, customer) pairs whose replay raised; their firings are missing from the above.
    failures: tuple[ReplayFailure, ...] = ()
    #: The Stripe accounts of ``accounts:`` replayed (none: the one of ``stripe.api_key``).
    accounts: tuple[str, ...] = ()


def merged_results(results: Sequence[BacktestResult], window: ReplayWindow) -> BacktestResult:
    """The backtests of several accounts as one, in time order (pure; stable, so one
    account's entries at one instant keep their order)."""
    if len(results) == 1:
        return results[0]
    return BacktestResult(
        window=window,
        firings=tuple(sorted((f for r in results for f in r.firings), key=lambda f: f.at)),
        notifications=tuple(sorted((n for r in results for n in r.notifications),
                                   key=lambda n: n.at)),
        rules=tuple(dict.fromkeys(name for r in results for name in r.rules)),
        customers=sum(r.customers for r in results),
        queries=sum(r.queries for r in results),
        requests=sum(r.requests for r in results),
        failures=tuple(f for r in results for f in r.failures),
        accounts=tuple(a for r in results for a in r.accounts),
    )


# --------------------------------------------------------------------------- output


def firing_json(firing: Firing) -> dict[str, Any]:
    """One firing in the contract's ``backtest`` shape (``window`` as in findings), with
    ``account`` only with ``accounts:`` (as ``check``'s findings)."""
    finding = firing.finding
    entry: dict[str, Any] = {
        "at": iso(firing.at),
        **({"account": finding.key.account} if finding.key.account else {}),
        "rule": finding.rule,
        "customer": finding.customer,
        "meter": finding.meter,
        "dimensions": dict(finding.dimensions),
        "kind": firing.kind,
        "level": finding.level,
        "previous_level": firing.previous_level,
        "value": finding.value,
    }
    entry.update(bounds_json(finding))
    entry.update(window=window_json(finding), complete=finding.complete,
                 message=finding.message)
    return entry


def notification_json(sent: SentNotification) -> dict[str, Any]:
    """One notification that would have been sent, in the ``check`` shape plus when (and
    its account, with ``accounts:``: a group never spans accounts)."""
    notification = sent.notification
    account = _account_of(sent)
    return {
        "at": iso(sent.at),
        **({"account": account} if account else {}),
        "receiver": notification.receiver,
        "status": notification.status,
        "fingerprints": [alert.fingerprint for alert in notification.alerts],
        "group_key": notification.group_key,
        "reason": sent.reason,
    }


def backtest_json(result: BacktestResult, requests: int) -> dict[str, Any]:
    """The contract's ``backtest --format json`` document. ``requests`` counts every HTTP
    request of the run (customers, usage, retries)."""
    document: dict[str, Any] = {
        "since": iso(result.window.since),
        "until": iso(result.window.until),
        "requests": requests,
        "firings": [firing_json(f) for f in result.firings],
        "notifications": [notification_json(n) for n in result.notifications],
    }
    if result.failures:  # only then, so a clean run keeps the contract's keys exactly
        document["errors"] = [{**({"account": f.account} if f.account else {}),
                               "rule": f.rule, "customer": f.customer, "message": f.message}
                              for f in result.failures]
    return document


def _account_of(sent: SentNotification) -> str:
    return sent.notification.group_labels.get("account", "")


def firing_row(firing: Firing) -> tuple[str, ...]:
    finding = firing.finding
    level = finding.level or "-"
    if firing.kind == "escalated":
        level = f"{firing.previous_level or '-'} → {level}"
    customer = f"{finding.key.account}/{finding.customer}" if finding.key.account \
        else finding.customer  # as check's rows
    return (_when(firing.at), finding.rule, customer, series_label(finding), level,
            number(finding.value), bound(finding))


def notification_row(sent: SentNotification, *, accounts: bool = False) -> tuple[str, ...]:
    notification = sent.notification
    account = (_account_of(sent) or "-",) if accounts else ()
    return (_when(sent.at), *account, notification.receiver, notification.status,
            str(len(notification.alerts)), sent.reason)


def _when(instant: int) -> str:
    return (iso(instant) or "").replace("T", " ").removesuffix("Z")


def backtest_text(result: BacktestResult, requests: int) -> str:
    """Firings in time order, then the notifications they would have caused, then one
    summary line."""
    lines = []
    if result.firings:
        lines += [table(FIRING_COLUMNS, (firing_row(f) for f in result.firings)), ""]
    if result.notifications:
        accounts = bool(result.accounts)
        columns = ((*NOTIFICATION_COLUMNS[:1], "ACCOUNT", *NOTIFICATION_COLUMNS[1:])
                   if accounts else NOTIFICATION_COLUMNS)
        lines += [table(columns, (notification_row(n, accounts=accounts)
                                  for n in result.notifications)), ""]
    lines += [f"not replayed: rule={f.rule} customer={_in_account(f.account)}{f.customer}: "
              f"{f.message} (its firings are missing above)" for f in result.failures]
    lines.append(_summary(result, requests))
    return "\n".join(lines)


def _in_account(account: str) -> str:
    return f"{account}/" if account else ""


def _summary(result: BacktestResult, requests: int) -> str:
    kinds = Counter(f.kind for f in result.firings)
    what = _count(result.firings, "firing")
    if kinds["escalated"]:
        what += f" ({kinds['fired']} fired, {kinds['escalated']} escalated)"
    accounts = f"{_count(result.accounts, 'account')} ({', '.join(result.accounts)}), " \
        if result.accounts else ""
    return (f"{what} and {_count(result.notifications, 'notification')} from "
            f"{iso(result.window.since)} to {iso(result.window.until)}; {accounts}"
            f"{_count(result.rules, 'rule')}, {_count(range(result.customers), 'customer')}; "
            f"{result.queries} history quer{'ies' if result.queries != 1 else 'y'}, "
            f"{requests} Stripe requests")


def _count(items: Sized, noun: str) -> str:
    return f"{len(items)} {noun}{'s' if len(items) != 1 else ''}"


# --------------------------------------------------------------------------- progress


class ProgressBar:
    """``fetching   [##########----------]  50%  500/1000`` redrawn in place on ``stream``
    (a terminal), at most once per percent, so a long run writes a few hundred bytes."""

    def __init__(self, stream: TextIO, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.phase = ""
        self.total = 0
        self.done = 0
        self._shown = -1

    def start(self, phase: str, total: int) -> None:
        self.phase, self.total, self.done, self._shown = phase, total, 0, -1
        self._draw()

    def advance(self, done: int = 1) -> None:
        self.done += done
        self._draw()

    def finish(self) -> None:
        self.done = self.total
        self._draw()
        self.stream.write("\n")
        self.stream.flush()

    def _draw(self) -> None:
        percent = 100 if self.total <= 0 else min(100, self.done * 100 // self.total)
        if percent == self._shown:
            return
        self._shown = percent
        filled = self.width * percent // 100
        bar = "#" * filled + "-" * (self.width - filled)
        self.stream.write(f"\r{self.phase:<10} [{bar}] {percent:3d}%  {self.done}/{self.total}")
        self.stream.flush()
