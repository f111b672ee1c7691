"""Templates that would freeze or exhaust the daemon stop themselves, quickly, in bounded memory.

Every bomb from issue 9 (and the obvious relatives) renders through the one production path,
:func:`alertd.templating.render_limited`, and must end in a ``TemplateError`` that says what
went over, in well under its time limit for size bombs and at its step limit for loops. The
same templates reach the notifiers: a receiver template that cannot render is a permanent,
reported failure (never a 24 h retry) — but one that ran out of *time*, which a busy machine
can cause, is retried —, a rule's annotation falls back to its raw text.

Timing bounds here are generous (a shared 2-core machine reaches load 10) or CPU time; what
must hold exactly is asserted on errors, steps and counts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from jinja2 import TemplateError

from alertd.clock import FakeClock
from alertd.config.settings import DeliverySettings, Receiver, SmtpSettings
from alertd.errors import PermanentDeliveryError, TransientDeliveryError
from alertd.model import Customer
from alertd.notify.email import EmailNotifier
from alertd.notify.outbox import Outbox
from alertd.notify.templates import Templates, render_annotations, source_problems
from alertd.notify.webhook import WebhookNotifier
from alertd.store.base import Changes
from alertd.store.sqlite import SqliteStore
from alertd.templating import (
    RenderLimits,
    TemplateLimitError,
    TemplateTimeLimitError,
    check_template,
    format_number,
    render_limited,
    template_environment,
)
from tests.notify.conftest import HookSink, hook_server, make_alert, make_notification

LOOP = "{% for a in range(100000) %}{% for b in range(100000) %}X{% endfor %}{% endfor %}"
#: Squaring a number ten times: each product is one C call that holds the GIL; unchecked,
#: the last ones take seconds (the ticker below saw the loop stall), and no step check runs.
INT_GROWTH = ("{% set n = namespace(v=7 ** 4000) %}{% for i in range(10) %}"
              "{% set n.v = n.v * n.v %}{% endfor %}{{ n.v % 10 }}")
#: One power of 8.4 million bits: 2 s of CPU in one call before integers were capped.
POWER = "{{ (7 ** 3000000) % 10 }}"

#: (template, what the error says). Each would take minutes or gigabytes unbounded.
BOMBS = [
    ("{{ 'x' * 10**9 }}", "would exceed"),
    ("{{ ['x'] * 10**9 }}", "would exceed"),
    ("{{ (['x' * 100000] * 100000) | join }}", "would exceed"),
    ("{{ 10 ** (10 ** 10) }}", "would exceed"),
    (POWER, "would exceed 4300 digits"),
    ("{{ ((7 ** 4000) * (7 ** 4000)) % 10 }}", "would exceed 4300 digits"),
    (INT_GROWTH, "would exceed 4300 digits"),
    ("{{ (7).__lshift__(10**9) }}", "unsafe"),  # Jinja has no <<; the method is off limits
    ("{{ 'x' | center(10**9) }}", "center filter would exceed"),
    ("{{ ('a\nb\n' * 100000) | indent(10000) }}", "indent filter would exceed"),
    ("{{ ('x' * 100000).join('y' * 100000) }}", r"join\(\) would exceed"),
    ("{{ '%01000000000d' % 1 }}", "format width"),
    ("{{ '{:>999999999}'.format(1) }}", "format width"),
    ("{{ '%s' | format('x') ~ ('%0*d' | format(10**9, 1)) }}", "format width"),
    ("{% set a = 'x' * 3000000 %}{% set b = a ~ a %}{% set c = b ~ b %}{{ c }}", "exceed"),
    ("{% set a = 'x' * 900000 %}{% set b = [a, a, a, a] %}{{ [b, b, b, b] }}", "exceed"),
    ("{% macro m() %}{% for i in range(100000) %}{{ 'x' * 100000 }}{% endfor %}{% endmacro %}"
     "{{ m() | length }}", "output exceeded"),
    ("{% set s %}{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}{% endset %}"
     "{{ s | length }}", "output exceeded|longer than"),
    ("{{ [[1] * 1000] * 1000 | sum(start=[]) }}", "sum of lists"),
    ("{% set l = [1] %}{% for i in range(60) %}{{ l.extend(l) }}{% endfor %}", "unsafe"),
    ("{{ range(10**9) | list }}", "Range too big"),
    ("{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}", "RecursionError"),
]


@pytest.mark.parametrize(("source", "message"), BOMBS)
def test_a_bomb_stops_itself_quickly_in_bounded_memory(source: str, message: str) -> None:
    template = template_environment().from_string(source)
    tracemalloc.start()
    started = time.process_time()  # the limit is CPU time, so is the bound: load cannot fail it
    try:
        with pytest.raises(TemplateError, match=message):
            render_limited(template, {})
        elapsed = time.process_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 6.0  # the default time limit is 5 s; tracemalloc slows loops down
    assert peak < 64_000_000


@pytest.mark.parametrize("source", [
    "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}", LOOP])
def test_a_loop_stops_at_the_step_limit(source: str) -> None:
    """With a minute of wall time, only the step limit can stop these (10^10 iterations)."""
    limits = RenderLimits(max_steps=100_000, seconds=60)
    started = time.process_time()
    with pytest.raises(TemplateLimitError, match="exceeded 100000 steps") as raised:
        render_limited(template_environment().from_string(source), {}, limits)
    assert not isinstance(raised.value, TemplateTimeLimitError)
    assert time.process_time() - started < 5.0  # 100,000 steps: milliseconds of CPU


def test_integers_up_to_the_digit_limit_still_compute() -> None:
    source = "{{ 10 ** 4299 % 7 }} {{ (3 ** 4000 * 3 ** 4000) % 10 }} {{ 2 ** -2 }} {{ 6 * 7 }}"
    rendered = render_limited(template_environment().from_string(source), {})
    assert rendered == f"{10 ** 4299 % 7} {3 ** 8000 % 10} 0.25 42"
    with pytest.raises(TemplateLimitError, match="exceed 10 digits"):
        render_limited(template_environment().from_string("{{ 10 ** 10 }}"), {},
                       RenderLimits(max_digits=10))


def test_a_loop_that_is_under_the_step_limit_stops_at_the_time_limit() -> None:
    limits = RenderLimits(max_steps=10**12, seconds=0.3)
    started, cpu = time.monotonic(), time.process_time()
    with pytest.raises(TemplateTimeLimitError, match=r"longer than 0\.3s"):
        render_limited(template_environment().from_string(LOOP), {}, limits)
    # Never before its limit (wall time is never less than CPU time); after it, within a
    # margin of CPU time, which a loaded machine cannot stretch.
    assert time.monotonic() - started >= 0.3
    assert time.process_time() - cpu < 3.0


def test_output_is_capped_even_in_small_pieces() -> None:
    limits = RenderLimits(max_output=1000)
    source = "{% for i in range(2000) %}x{% endfor %}"
    with pytest.raises(TemplateLimitError, match="output exceeded 1000 characters"):
        render_limited(template_environment().from_string(source), {}, limits)
    assert render_limited(template_environment().from_string(source), {}) == "x" * 2000


def test_ordinary_templates_render_as_before() -> None:
    source = ("{% for m in models %}{{ m | upper }}{{ ', ' if not loop.last }}{% endfor %}: "
              "{{ (value * 2) | number }} ({{ '%.1f' % share }}%, {{ '{:>6}'.format(n) }}) "
              "{{ ['a', 'b'] | join('-') }} {{ 'ab' ~ 'cd' }} {{ 2 ** 10 }}")
    context = {"models": ["gpt-4", "o1"], "value": 5_000_000.5, "share": 12.345, "n": 42}
    rendered = render_limited(template_environment().from_string(source), context)
    assert rendered == "GPT-4, O1: 10,000,001 (12.3%,     42) a-b abcd 1024"


@pytest.mark.parametrize(("value", "shown"), [
    (math.inf, "inf"), (-math.inf, "-inf"), (math.nan, "nan"), (1e308, "1.00e+308"),
    (-1e308, "-1.00e+308"), (10**400, "1.00e+400"), (-(10**400), "-1.00e+400"),
    (10**15, "1.00e+15"), (999_999_999_999_999, "999,999,999,999,999"), (1234567.5, "1,234,568"),
])
def test_format_number_never_crashes(value: float, shown: str) -> None:
    assert format_number(value) == shown
    assert format_number(value, 2) == (shown if "," not in shown else f"{value:,.2f}")


def test_format_number_bounds_its_decimals() -> None:
    assert format_number(1.5, 10**9) == f"{1.5:.20f}"
    rendered = render_limited(template_environment().from_string("{{ v | number }}"),
                              {"v": 10**400})
    assert rendered == "1.00e+400"


# --------------------------------------------------------------------------- validate


def test_check_template_rejects_a_bomb_in_milliseconds() -> None:
    tracemalloc.start()
    started = time.process_time()
    try:
        issues = check_template("{{ customer.name }} {{ 'x' * 10**9 }}")
        elapsed = time.process_time() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [i.message for i in issues] == [
        "template error: a repeated value would exceed 4000000 characters or items"]
    assert elapsed < 0.5 and peak < 20_000_000  # CPU seconds: load cannot fail it


def test_check_template_leaves_data_dependent_failures_to_run_time() -> None:
    assert check_template("{{ customer.metadata.quota | int * 2 }} {{ 1 / (value - value) }}") \
        == []


def test_a_receiver_template_bomb_is_a_validate_problem() -> None:
    problems = source_problems('{"n": {{ range(10**9) | list | length }}}',
                               file="alertd.yaml", line=7, col=13)
    assert [(p.line, p.col) for p in problems] == [(7, 13)]
    assert "Range too big" in problems[0].message


# --------------------------------------------------------------------------- delivery


def hooks(url: str, body: str) -> Receiver:
    return Receiver.model_validate({"name": "hooks", "webhook": {"url": url, "body": body}})


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "alertd.db") as opened:
        yield opened


@pytest.mark.parametrize("body", [
    '{"text": {{ ("x" * 10**9) | tojson }}}',
    '{"n": {{ range(10**9) | list | length }}}',  # an OverflowError: retried for 24 h before
])
async def test_a_receiver_template_that_cannot_render_is_undeliverable_at_once(
    store: SqliteStore, body: str,
) -> None:
    sink = HookSink()
    clock = FakeClock(1_735_920_000)
    notification = make_notification(receiver="hooks")
    await store.commit_transitions(Changes(outbox=(notification,)))
    async with hook_server(sink) as base, \
            WebhookNotifier(hooks(base, body), Templates(), clock=clock) as notifier:
        outbox = Outbox(store, {"hooks": notifier}, DeliverySettings(), clock,
                        rng=random.Random(1))
        report = await outbox.run_until_idle(timeout=86400)
    (row,) = await store.outbox()
    assert (row.status, row.attempts) == ("undeliverable", 1)
    assert row.last_error is not None and "webhook template failed" in row.last_error
    assert report.outcomes == {"undeliverable": 1} and clock.sleeps == []
    assert sink.requests == []


async def test_an_annotation_bomb_is_sent_as_its_raw_text_with_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="alertd.notify.templates")
    bomb = "{% for a in range(value|int) %}{% for b in range(value|int) %}{% endfor %}{% endfor %}"
    alert = make_alert(annotations={"summary": "{{ customer.name }} is over", "detail": bomb},
                       value=100_000.0)
    sink = HookSink()
    async with hook_server(sink) as base:
        receiver = Receiver.model_validate({"name": "hooks", "webhook": {"url": base}})
        async with WebhookNotifier(receiver, Templates(), clock=FakeClock()) as notifier:
            await notifier.send(make_notification(alert))
    (request,) = sink.requests
    annotations = json.loads(request.body)["alerts"][0]["annotations"]
    assert annotations == {"summary": "Acme Analytics Inc. is over", "detail": bomb}
    (warning,) = [r for r in caplog.records if "annotation failed" in r.getMessage()]
    assert "annotation=detail" in warning.getMessage() and "steps" in warning.getMessage()


def test_render_annotations_keeps_good_ones_when_one_goes_over() -> None:
    rendered = render_annotations({"a": "{{ rule }}", "b": "{{ 'x' * 10**9 }}"},
                                  {"rule": "quota"})
    assert rendered == {"a": "quota", "b": "{{ 'x' * 10**9 }}"}


@pytest.mark.parametrize(("bomb", "error", "message"), [
    (LOOP, TransientDeliveryError, "longer than 1s"),  # time: a busy machine, retried
    (POWER, PermanentDeliveryError, "4300 digits"),
    ("{{ (7 ** 10000000) % 10 }}", PermanentDeliveryError, "4300 digits"),
    (INT_GROWTH, PermanentDeliveryError, "4300 digits"),
])
async def test_a_render_at_its_limits_never_stalls_the_event_loop(
    bomb: str, error: type[Exception], message: str,
) -> None:
    """The render runs in a worker thread: a ticker on the loop keeps ticking meanwhile. A
    big-integer operation is one C call holding the GIL, which no thread or step check can
    interrupt: those must be refused before they run."""
    templates = Templates(limits=RenderLimits(max_steps=10**12, seconds=1.0))
    receiver = hooks("http://127.0.0.1:9/never", '{"t": "' + bomb + '"}')
    gaps: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    stop = asyncio.Event()
    ticking = asyncio.create_task(ticker(stop))
    async with WebhookNotifier(receiver, templates, clock=FakeClock()) as notifier:
        with pytest.raises(error, match=message):
            await notifier.send(make_notification())
    stop.set()
    await ticking
    # 1 s: four times the 0.25 s this had, for a loaded machine; ``7 ** 10000000`` alone held
    # the GIL for several seconds.
    assert max(gaps, default=0.0) < 1.0
    if error is TransientDeliveryError:
        assert len(gaps) > 20  # it ran for its whole second, off the loop


def test_a_digest_of_a_thousand_alerts_renders_within_the_limits() -> None:
    """The limits stop bombs, not big honest digests: 1,000 alerts as email and as JSON."""
    alerts = [make_alert(customer=Customer(f"cus_{i}", f"Customer {i}", None, {}),
                         fingerprint=f"fp{i}") for i in range(1000)]
    notification = make_notification(*alerts)
    templates = Templates()
    email = EmailNotifier(
        Receiver.model_validate({"name": "ops", "email": {"to": ["ops@example.com"]}}),
        SmtpSettings.model_validate({"host": "localhost", "from": "alertd@example.com"}),
        templates)
    rendered = email.render(notification)
    assert rendered.html.count("Customer 999") >= 1 and len(rendered.html) > 500_000
    body = templates.render_source("{{ alerts | tojson }}",
                                   templates.notification_context(notification))
    assert len(json.loads(body)) == 1000


async def test_cancelling_a_send_stops_its_render_thread() -> None:
    """A send cut off by its timeout (or shutdown) leaves no render running in the thread."""
    templates = Templates(limits=RenderLimits(max_steps=10**12, seconds=30.0))
    receiver = hooks("http://127.0.0.1:9/never", '{"t": "' + LOOP + '"}')
    async with WebhookNotifier(receiver, templates, clock=FakeClock()) as notifier:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await notifier.send(make_notification())
    started = time.monotonic()
    await asyncio.get_running_loop().shutdown_default_executor()  # waits for the thread
    assert time.monotonic() - started < 10  # the render would run 30 s; a step is µs
