"""Judging many customers of one rule together at each replayed instant: what
:func:`~alertd.backtest.evaluating.evaluations` makes for one customer, made for a block of
customers with one :func:`alertd.conditions.evaluate_many` call per instant. Pure; between
:mod:`~alertd.backtest.history` (each customer's series at an instant) and
:mod:`~alertd.backtest.replaying` (which steps each customer's lifecycle, one after the
other, on what this judged).

**Why per instant, across customers.** A kind may judge a rule's series cheaper together
(``anomaly`` does: its detector and its local-time lay-out run over all of them at once, and
judged one series at a time it costs several times more per series). A daemon's pass hands a
rule's series of a whole batch of customers over at one ``now``; replay did one customer at a
time, one instant at a time, so every call held one series. Every customer of a rule shares
the rule's evaluation instants (:class:`~alertd.backtest.history.RuleFrame`) and, at an
instant, the evaluator's need range, so the series of all customers at one instant are what a
pass would judge together — same ``now``, same bucket starts — and ``evaluate_many``'s
contract (the findings of each item, in order) makes the findings those of each customer
judged alone. Batching instants of one customer instead would mix ``now`` values in one call,
which the evaluator interface does not take.

Which rules are batched (:func:`batched`): those of a kind that judges many series its own
way (it overrides :meth:`~alertd.conditions.base.ConditionKind.evaluate_many`: today
``anomaly``), evaluated at every instant of their schedule. For an upper threshold,
:func:`~alertd.backtest.evaluating.evaluations` picks each customer's instants by bisection on
that customer's own verdicts, so there is no common instant to judge at. A kind that judges a
batch one series after the other gains nothing from it, and loses: replaying the tour's credit
rules customer-interleaved took 1.2-1.6 times the CPU of replaying them customer by customer
(``bench/backtest.py``, load ~10), the walk over one customer's buckets no longer finding them
in the processor's caches; so those stay one customer at a time. Should such a kind (absence,
say) learn to judge batches, overriding ``evaluate_many`` makes replay batch it.

**Failures stay one customer's.** A customer whose series cannot be built, or whose series
make the evaluator raise, is carried as that exception and judged no further, as replaying it
alone would have stopped there. When the block's ``evaluate_many`` raises (or answers the
wrong number of findings), each customer's series at that instant are judged again alone,
as :func:`~alertd.backtest.evaluating.findings_at` does, so one bad series costs its own
customer only, with the very error it would have had alone.
"""

from __future__ import annotations

from collections.abc import Sequence

from alertd import conditions
from alertd.backtest.evaluating import Evaluation, monotone
from alertd.backtest.history import History, reads_columns
from alertd.backtest.window import ReplayWindow
from alertd.model import Customer, Finding, Series
from alertd.rules.schema import Rule

#: What judging one customer came to: its evaluations in time order, or what stopped it.
Judged = list[Evaluation] | Exception


def batched(rule: Rule) -> bool:
    """Whether replay judges ``rule``'s customers together (:func:`evaluations_together`):
    its kind judges batches its own way, and the rule is evaluated at every instant of its
    schedule (not :func:`~alertd.backtest.evaluating.monotone`: those bisect per customer)."""
    return reads_columns(rule) and not monotone(rule)


def evaluations_together(
    rule: Rule,
    schedule: Sequence[int],
    histories: Sequence[History],
    customers: Sequence[Customer],
    window: ReplayWindow,
) -> list[Judged]:
    """For each of ``customers`` (with its ``histories``, in the same order), what
    :func:`~alertd.backtest.evaluating.evaluations` makes for a rule evaluated at every instant
    (not :func:`~alertd.backtest.evaluating.monotone`; replay asks this of :func:`batched` ones):
    ``(instant, findings)`` at every instant of ``schedule``, the rule's frame's; or the
    exception that evaluating it alone would have raised first."""
    judged: list[Judged] = [[] for _ in customers]
    for instant in schedule:
        live = [i for i, found in enumerate(judged) if not isinstance(found, Exception)]
        if not live:
            break
        found_now = findings_together(rule, [histories[i] for i in live],
                                      [customers[i] for i in live], instant, window)
        for index, findings in zip(live, found_now, strict=True):
            evaluations = judged[index]
            if isinstance(findings, Exception):
                judged[index] = findings
            elif not isinstance(evaluations, Exception):
                evaluations.append((instant, findings))
    return judged


def findings_together(
    rule: Rule,
    histories: Sequence[History],
    customers: Sequence[Customer],
    now: int,
    window: ReplayWindow,
) -> list[list[Finding] | Exception]:
    """:func:`~alertd.backtest.evaluating.findings_at` of each customer at ``now``, the
    series of all of them judged in one ``evaluate_many`` (each customer's findings, or the
    exception its own evaluation raises)."""
    found: list[list[Finding] | Exception] = []
    items: list[tuple[Series, Customer]] = []
    spans: list[tuple[int, int, int]] = []  # (customer's place in found, its items' range)
    for history, customer in zip(histories, customers, strict=True):
        try:
            need = history.frame.need_at(now, customer.id)
            series = history.series(need, now, now - window.refresh_delay,
                                    window.freshness_lag)
        except Exception as exc:  # this customer's only, as alone
            found.append(exc)
            continue
        spans.append((len(found), len(items), len(items) + len(series)))
        found.append([])
        items.extend((one, customer) for one in series)
    together = _evaluated(rule, items, now)
    for place, start, end in spans:
        found[place] = (together[start:end] if together is not None
                        else _alone(rule, items[start:end], now))
    return found


def _evaluated(rule: Rule, items: Sequence[tuple[Series, Customer]], now: int
               ) -> list[Finding] | None:
    """The findings of ``items`` judged together, or ``None`` when that raised or did not
    answer one finding per item (then each customer is judged alone)."""
    if not items:
        return []
    try:
        findings = conditions.evaluate_many(rule, items, now)
    except Exception:
        return None
    return findings if len(findings) == len(items) else None


def _alone(rule: Rule, items: Sequence[tuple[Series, Customer]], now: int
           ) -> list[Finding] | Exception:
    """One customer's series judged on their own, as a replay of that customer alone does."""
    try:
        return conditions.evaluate_many(rule, items, now)
    except Exception as exc:
        return exc
