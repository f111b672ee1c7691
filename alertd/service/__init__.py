"""The daemon's shell: everything that does I/O and keeps time around the pure core.

Where it sits in the data flow: :mod:`alertd.service.world` reads a configuration into a
:class:`~alertd.service.world.World` (settings + rules, validated by :mod:`alertd.config`);
:mod:`alertd.service.open` opens the services one world runs on — the Stripe source and
customer directory, the :class:`~alertd.service.engine.Engine` (plan → fetch → series →
evaluate, each rule isolated by :mod:`alertd.service.guarded`), the state store, the
notification pipeline and the outbox; :mod:`alertd.service.polling` runs one poll of a
group of rules (fetch, record, meta-alerts, readiness) and :mod:`alertd.service.recording`
applies each pass to the store and the pipeline; :mod:`alertd.service.daemon` owns the
process (lifecycle, signals, reload, and the APScheduler that schedules the polls, one job
per poll interval) with its side doors: :mod:`alertd.service.http` (``/metrics``,
``/healthz``, ``/readyz``), :mod:`alertd.service.metrics`, :mod:`alertd.service.heartbeat` and
:mod:`alertd.service.systemd` (sd_notify).

The decisions themselves (planning, conditions, alert lifecycle, notification stages) live
outside this package and do no I/O; the commands (:mod:`alertd.commands`) are thin front doors
onto it.
"""
