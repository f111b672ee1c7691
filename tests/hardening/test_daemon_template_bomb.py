"""A real daemon with a template bomb keeps serving everything else.

``python -m alertd run`` against the simulator, with two rules: ``good``, and ``bomb``, whose
annotation and whose second receiver's body run a 10^10-iteration loop — for this rule only, so
``validate``'s sample render passes them (a template that depends on the data). Unbounded, the
first render froze the event loop for minutes (``/healthz`` dead, SIGTERM ignored, nothing else
sent). Now: ``/healthz`` keeps answering, both rules' notifications reach the hooks receiver
(the bomb's annotation as its raw text, with a warning), the bomb receiver's notification is
undeliverable after ONE attempt (not retried for 24 h), and SIGTERM stops the daemon promptly.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx

from tests.service.test_daemon import (
    DaemonProcess,
    NotifySocket,
    eventually,
    hooks_sink,
    live_simulator,
    log_file,  # noqa: F401  (a fixture)
    metric_samples,
    rule,
    write_config,
)

LOOPS = ("{% for a in range(n) %}{% for b in range(n) %}{% endfor %}{% endfor %}")
ANNOTATION = "{% set n = 100000 if rule == 'bomb' else 1 %}" + LOOPS
BODY = ('{% set n = 100000 if alerts[0].rule == "bomb" else 1 %}' + LOOPS
        + '{"text": {{ alerts[0].rule | tojson }}}')


async def test_a_template_bomb_does_not_stop_the_daemon(tmp_path: Path, log_file: Path) -> None:  # noqa: F811
    async with live_simulator() as sim, hooks_sink() as hooks, NotifySocket() as notify:
        bomb = {**rule("bomb"), "annotations": {"summary": ANNOTATION},
                "receivers": ["hooks", "bombhook"]}
        receivers = [
            {"name": "hooks", "webhook": {"url": f"{hooks.url}/alertd", "timeout": "60s"}},
            {"name": "bombhook", "webhook": {"url": f"{hooks.url}/bomb", "body": BODY}},
        ]
        config = write_config(tmp_path, sim.url, hooks.url, [rule("good"), bomb],
                              receivers=receivers)
        async with DaemonProcess(config, notify, log_file) as daemon:
            await notify.next("READY=1")
            url = await daemon.server_url()
            slowest = 0.0
            async with httpx.AsyncClient() as client:
                async def delivered() -> bool:
                    nonlocal slowest
                    started = time.monotonic()
                    health = await client.get(f"{url}/healthz", timeout=10)
                    slowest = max(slowest, time.monotonic() - started)
                    assert health.status_code == 200
                    text = log_file.read_text()
                    names = {name for name, _ in hooks.alerts()}
                    return names == {"good", "bomb"} and "receiver=bombhook" in text \
                        and "undeliverable" in text

                await eventually(delivered, timeout=30, what="both notifications and the report")
                await asyncio.sleep(1.5)  # long enough for a retry, were there one
                _, samples = metric_samples((await client.get(f"{url}/metrics")).text)
            # Generous for a shared 2-core machine at load 10 (these were 1 s and 5 s); a
            # frozen loop misses /healthz for minutes and ignores SIGTERM altogether.
            assert slowest < 5.0
            started = time.monotonic()
            daemon.signal(signal.SIGTERM)
            assert await daemon.exit_code(timeout=30) == 0
            assert time.monotonic() - started < 25

    summaries = {hook.body["alerts"][0]["labels"]["alertname"]:
                 hook.body["alerts"][0]["annotations"].get("summary")
                 for hook in hooks.at("/alertd")}
    assert summaries["bomb"] == ANNOTATION  # sent unrendered
    assert hooks.at("/bomb") == []
    outcome = ("alertd_notifications_total", (("outcome", "undeliverable"),
                                              ("receiver", "bombhook")))
    assert samples[outcome] == 1
    assert ("alertd_notifications_total", (("outcome", "retry"), ("receiver", "bombhook"))) \
        not in samples
    text = log_file.read_text()
    assert "annotation failed, sent unrendered rule=bomb" in text
    assert "webhook template failed: template exceeded 2000000 steps" in text
