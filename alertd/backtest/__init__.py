"""Backtest: replay history through the daemon's own evaluation, lifecycle and notification
pipeline. The pure core; :mod:`alertd.commands.backtest` is the shell that fetches and prints.

Where it sits::

    rules × customers --history_needs--> one hourly DataNeed per (rule, customer) (one per
        priced meter for a cost summed over the customer's meters),
        from the warm-up before ``since`` to ``until``
        --planner.plan--> UsageQuery… --Source.fetch, each once--> UsageResult…
        --planner.extract_rows--> hourly rows per (rule, customer)
        --replay_all--> Change… (fired / escalated / resolved) --firings_of--> Firing…
        --NotificationReplay--> what would have been sent

**Fetching once.** Hour buckets in a rule's time zone sum exactly into that zone's days, weeks
and months, and they are the finest buckets Stripe serves, so one hourly history per (rule,
customer) answers every evaluation instant: at instant ``t`` the evaluator's own need
(``conditions.needs(rule, customer, t)``) is filled from the hours visible at ``t``. The planner
folds the histories into the fewest requests and the source paces them within the rate budget,
so a backtest costs one request per customer and time zone (more only when Stripe answers
``has_more`` and the source splits the range).

The modules, in data-flow order:

- :mod:`~alertd.backtest.window`: what replay covers: the window and how data became
  visible, the warm-up, the one hourly need per (rule, customer), the rules selected, and the
  instants at which a rule's findings may change.
- :mod:`~alertd.backtest.history`: one (rule, customer)'s history cut into the series each
  instant needs, complete buckets built once.
- :mod:`~alertd.backtest.evaluating`: the findings at an instant, and which instants to
  evaluate (bisection for upper thresholds).
- :mod:`~alertd.backtest.batching`: a rule's customers judged together at each instant, one
  ``evaluate_many`` per instant (as a pass judges a batch), with each customer's findings
  those it would have alone.
- :mod:`~alertd.backtest.steps`: the daemon's own judging and lifecycle steps, shared with
  ``alertd test``.
- :mod:`~alertd.backtest.replaying`: rules × customers through the lifecycle (each customer's
  on its own, in time order), into changes and the firings reported.
- :mod:`~alertd.backtest.notifications`: the changes through the notification pipeline's
  stages, into what would have been sent.

Each shortcut (instants, bisection, series built once, customers judged together, skipped
lifecycle ticks and flushes) saves work the daemon would do without changing an answer; the
tests hold each against the plain way.
"""

from alertd.backtest.evaluating import (
    closing_ends,
    closing_findings,
    evaluations,
    findings_at,
    monotone,
)
from alertd.backtest.history import HistorySeries, RuleFrame
from alertd.backtest.notifications import NotificationReplay, SentNotification
from alertd.backtest.replaying import (
    Change,
    Firing,
    NoProgress,
    Progress,
    Replayed,
    ReplayFailure,
    firings_of,
    lifecycle_changes,
    replay,
    replay_all,
    replay_changes,
)
from alertd.backtest.steps import SeriesStates, judge
from alertd.backtest.window import (
    ReplayWindow,
    history_need,
    history_needs,
    instants,
    judged_granularity,
    warm_start,
    within_data,
)
from alertd.rules.loader import select_rules

__all__ = [
    "Change",
    "Firing",
    "HistorySeries",
    "NoProgress",
    "NotificationReplay",
    "Progress",
    "ReplayFailure",
    "ReplayWindow",
    "Replayed",
    "RuleFrame",
    "SentNotification",
    "SeriesStates",
    "closing_ends",
    "closing_findings",
    "evaluations",
    "findings_at",
    "firings_of",
    "history_need",
    "history_needs",
    "instants",
    "judge",
    "judged_granularity",
    "lifecycle_changes",
    "monotone",
    "replay",
    "replay_all",
    "replay_changes",
    "select_rules",
    "warm_start",
    "within_data",
]
