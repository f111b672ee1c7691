"""alertd — usage alerting for Stripe usage-based billing.

Data flow (functional core, imperative shell)::

    config (settings, yamlpos, validate) + rules/*.yaml ─► rules.loader ─► RuleSet (frozen)
    planner.plan(rules, customers, now) ─► UsageQuery list (fewest requests)
    source (analytics | summaries) + ratelimit ─► UsageResult
    conditions.series ─► Series ─► conditions.<kind>.evaluate ─► Finding   [pure]
    alerts.apply(state, findings, now) ─► Transition                        [pure]
    notify: route → group → silence → dedup → outbox (store) → deliver
    web (status page, /api/v1/) ◄─ each poll's findings (web.board) + the store + source

Periods and time zones are :mod:`alertd.calendar`. The shell that runs it all — the engine,
poll scheduling, recording, the daemon and its HTTP, metrics, heartbeat and sd_notify side
doors, and :func:`alertd.service.open.open_services` — is :mod:`alertd.service`; the commands
in :mod:`alertd.commands` are its front doors; :mod:`alertd.web` is the status page on the
daemon's HTTP server, and :mod:`alertd.charts` the chart shapes it and alert emails draw. See
``alertd.model`` for the shared value types and ``alertd.errors`` for the error tree.
"""

__version__ = "0.1.0"
