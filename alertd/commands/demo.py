"""``alertd demo``: the embedded default — see alertd work in a minute, no Stripe account.

Starts the Stripe simulator (40 customers, 90 days of generated usage with injected incidents),
a local SMTP sink and a webhook sink, writes a config that points alertd at them, and runs the
real daemon on the example rules in ``rules/``. Each notification is printed as it is
delivered. To make something happen at once, the simulated clock is set to a moment of the
generated history where incidents are under way (quota overuse, spikes, stopped usage; the
simulator's prices and credit grants make the spend and credit rules fire too), and
every rule is polled every few seconds; the demo's clock then runs at real speed from there.
Ctrl-C (or ``--seconds``) stops everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

from alertd.clock import OffsetClock, iso
from alertd.model import Notification
from alertd.notify.email import plan_mail
from alertd.notify.templates import Templates, annotated
from alertd.service.daemon import Daemon
from alertd.sim.generator import UsageGenerator
from alertd.sim.incidents import Incident
from alertd.sim.server import Simulator, SimulatorConfig
from alertd.sinks import Delivery, mail_sink, webhook_sink
from alertd.tasks import cancel

CUSTOMERS = 40
SEED = 7
INCIDENT_RATE = 4.0
POLL_EVERY = 5.0
WEBHOOK_SECRET = "demo-webhook-secret"
RULES_DIR = Path(__file__).resolve().parents[2] / "rules"


def interesting_moment(incidents: Iterable[Incident], earliest: int) -> int:
    """An instant right after a quota overuse with the most other incidents under way (pure).

    Anomaly rules need weeks of history, so only moments after ``earliest`` are considered.
    """
    found = [i for i in incidents if i.starts_at >= earliest]
    candidates = [i.ends_at + 3600 for i in found if i.kind == "overuse"]
    if not candidates:
        raise ValueError("the simulated history holds no quota overuse to show")

    def score(moment: int) -> int:
        recent = [i for i in found if i.starts_at <= moment and moment - i.ends_at < 6 * 3600]
        return len({(i.customer, i.kind) for i in recent})

    return max(candidates, key=lambda moment: (score(moment), moment))


def demo_config(directory: Path, sim_url: str, smtp_port: int, hook_url: str) -> Path:
    """The config file the demo daemon runs with."""
    config = {
        "stripe": {"api_base": sim_url, "api_key": "sk_test_alertd_demo",
                   "freshness_lag": "2m"},
        "state": {"path": str(directory / "alertd.db")},
        "server": {"listen": ""},
        "rule_files": [str(RULES_DIR / "*.yaml")],
        "customers": {"all": True},
        "smtp": {"host": "127.0.0.1", "port": smtp_port, "security": "none",
                 "from": "alertd-demo@localhost"},
        "receivers": [
            {"name": "ops", "email": {"to": ["ops@example.com"]}},
            {"name": "owner", "email": {"to_customer": True}},
            {"name": "hooks", "webhook": {"url": f"{hook_url}/alertd",
                                          "secret": WEBHOOK_SECRET}},
        ],
        "route": {
            "receiver": "ops", "group_by": ["rule"], "group_wait": "3s",
            "group_interval": "10s", "repeat_interval": "4h",
            "routes": [
                {"match": {"severity": "critical"}, "receiver": "hooks", "continue": True},
                {"match": {"rule": "daily-token-quota"}, "receiver": "owner",
                 "continue": True},
            ],
        },
        "delivery": {"initial_backoff": "1s"},
        "log_level": "error",
    }
    path = directory / "alertd.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def delivery_printer(config: Path, write: Callable[[str], None]) -> Callable[[Notification], None]:
    """What the demo prints for each delivered notification."""
    from alertd.service.world import load_world

    settings = load_world(config).settings
    templates = Templates()

    def show(notification: Notification) -> None:
        receiver = settings.receiver(notification.receiver)
        if receiver is None:
            return
        if receiver.email is not None:
            context = templates.notification_context(notification)
            channel = "email"
            target = " ".join(templates.render("email_subject.txt", context).split())
            mails = len(plan_mail(notification, receiver.email).envelopes)
            if mails > 1:  # to_customer: one mail per customer, each with its own alerts
                target += f" — {mails} separate mails, one per customer"
        else:
            channel, target = "webhook", receiver.webhook.url if receiver.webhook else ""
        write(f"delivered  {receiver.name:<6} {channel:<8} {target}")
        for alert in annotated(notification).alerts[:3]:
            summary = alert.annotations.get("summary") or alert.message
            write(textwrap.indent(textwrap.shorten(summary, 110), "    "))
        if len(notification.alerts) > 3:
            write(f"    … and {len(notification.alerts) - 3} more")

    return show


async def run_demo(seconds: float, write: Callable[[str], None] = print) -> int:
    generator = UsageGenerator(customers=CUSTOMERS, seed=SEED, days=90,
                               incident_rate=INCIDENT_RATE)
    moment = interesting_moment(generator.incidents(), generator.history_start + 35 * 86400)
    offset = moment - time.time()
    config = SimulatorConfig(analytics_rate=100, general_rate=25, lag=60.0)
    ignore: Callable[[Delivery], None] = lambda _: None  # noqa: E731
    clock = OffsetClock(offset)
    with tempfile.TemporaryDirectory(prefix="alertd-demo-") as folder:
        async with (
            Simulator(generator, port=0, config=config, now=moment) as sim,
            mail_sink(ignore) as mail,
            webhook_sink(ignore, secret=WEBHOOK_SECRET, clock=clock) as hooks,
        ):
            path = demo_config(Path(folder), sim.url, mail.port, hooks.url)
            write(f"alertd demo: simulated Stripe at {sim.url} ({CUSTOMERS} customers), "
                  f"mail sink 127.0.0.1:{mail.port}, webhook sink {hooks.url}")
            write(f"simulated time {iso(moment)}; rules from {RULES_DIR}; Ctrl-C stops\n")
            daemon = Daemon(path, clock=clock, every_override=POLL_EVERY,
                            on_delivered=delivery_printer(path, write))
            ticker = asyncio.create_task(_follow(sim, offset))
            stopper = asyncio.create_task(_stop_after(daemon, seconds))
            try:
                code = await daemon.run()
            finally:
                await cancel(ticker)
                await cancel(stopper)
            write(f"\ndemo finished: {len(mail.received)} emails and "
                  f"{len(hooks.received)} webhooks delivered "
                  f"({sum(bool(d.signature_ok) for d in hooks.received)} with a valid signature)")
            return code


async def _follow(sim: Simulator, offset: float) -> None:
    """Keep the simulator's frozen clock moving with the demo's clock."""
    while True:
        sim.clock.set(time.time() + offset)
        await asyncio.sleep(1.0)


async def _stop_after(daemon: Daemon, seconds: float) -> None:
    await asyncio.sleep(seconds)
    daemon.stop_event.set()


def main(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(run_demo(args.seconds))
    except KeyboardInterrupt:
        return 0
