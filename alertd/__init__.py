"""alertd — usage alerting for Stripe usage-based billing.

Data flow (functional core, imperative shell)::

    settings + rules/*.yaml ─► rules.loader ─► RuleSet (frozen)
    planner.plan(rules, customers, now) ─► UsageQuery list (fewest requests)
    source (analytics | summaries) + ratelimit ─► UsageResult
    series.build ─► Series ─► evaluate.<type> ─► Finding                  [pure]
    alerts.apply(state, findings, now) ─► Transition                        [pure]
    notify: route → group → silence → dedup → outbox (store) → deliver

See ``alertd.model`` for the shared value types and ``alertd.errors`` for the error tree.
"""

__version__ = "0.1.0"
