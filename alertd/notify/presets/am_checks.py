"""What ``validate`` refuses for receivers with the ``alertmanager`` preset.

Alertmanager resolves an alert by itself when its ``endsAt`` passes; alertd sends a firing
alert with ``endsAt`` :data:`~alertd.notify.presets.alertmanager.FIRING_VALIDITY` (24 h) after
each send. Two settings would break that contract, so they are configuration errors, each at
the key that sets them:

* ``send_resolved: false``: alertd never tells Alertmanager that the alert resolved, and
  Alertmanager shows it active for up to a day afterwards.
* ``repeat_interval`` of 24 h or more on a route to such a receiver: between two re-sends the
  alert's ``endsAt`` passes and Alertmanager resolves an alert that is still firing.

Alertmanager's own ``resolve_timeout`` does not apply: it only fills in ``endsAt`` for alerts
sent without one, and alertd always sends one. Pure: settings and positions in, problems out.
"""

from __future__ import annotations

from collections.abc import Iterator

from alertd.config.settings import Route, Settings
from alertd.config.yamlpos import Located, Path_
from alertd.errors import Problem
from alertd.notify.presets.alertmanager import FIRING_VALIDITY


def alertmanager_problems(settings: Settings, doc: Located) -> list[Problem]:
    receivers = {r.name for r in settings.receivers
                 if r.webhook is not None and r.webhook.preset == "alertmanager"
                 and r.webhook.body is None}
    problems = []
    for index, receiver in enumerate(settings.receivers):
        if receiver.name in receivers and not receiver.send_resolved:
            problems.append(doc.problem(
                ("receivers", index, "send_resolved"), "send_resolved: false with the "
                "alertmanager preset leaves the alert active in Alertmanager for up to 24h "
                "after alertd resolved it; remove the setting", at_value=True))
    for _path, route_receiver, interval in _routes(settings.route, ("route",), None, None):
        value, where = interval
        if route_receiver in receivers and value is not None and value >= FIRING_VALIDITY:
            problems.append(doc.problem(
                where, f"repeat_interval: {value / 3600:g}h reaches receiver {route_receiver!r} "
                "(alertmanager preset), whose alerts Alertmanager ends 24h after each send: "
                "a still-firing alert would resolve there between re-sends; use less than 24h",
                at_value=True))
    return problems


_Interval = tuple[float | None, Path_]


def _routes(route: Route, path: Path_, receiver: str | None,
            inherited: _Interval | None) -> Iterator[tuple[Path_, str | None, _Interval]]:
    receiver = route.receiver or receiver
    interval: _Interval = (
        (route.repeat_interval, (*path, "repeat_interval"))
        if route.repeat_interval is not None or inherited is None else inherited)
    yield path, receiver, interval
    for index, child in enumerate(route.routes):
        yield from _routes(child, (*path, "routes", index), receiver, interval)
