"""The status page: HTML routes on the daemon's HTTP server (beside ``/metrics``).

Where it sits: :func:`install` adds these routes, the JSON API (:mod:`alertd.web.api`) and
the access middleware (:mod:`alertd.web.auth`) to the application
:func:`alertd.service.http.build_app` builds. Everything a page shows comes from a
:class:`StatusContext`: the :class:`~alertd.web.board.Board` (pending and firing series), the
state store (silences, the notification history, through its paged queries), and the source
for a customer's chart (:mod:`alertd.web.usage`). Pages are Jinja2 templates, autoescaped,
usable without JavaScript (charts are inline SVG, forms are plain POSTs that redirect back).

Routes: ``/`` overview, ``/alerts/{fingerprint}``, ``/customers`` and ``/customers/{id}``,
``/silences`` (POST creates; ``/silences/{id}/expire``), ``/notifications`` (keyset-paged
with ``?before=CREATED_AT:ID``), ``/notifications/{id}`` (POST ``…/resend``), ``/login``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2
from aiohttp import web

from alertd import silences as silence_ops
from alertd.charts import bar_chart, comparable_values, stacked_chart, stacked_rows
from alertd.clock import Clock
from alertd.errors import SourceError, StoreError
from alertd.model import Bucket
from alertd.source import Source
from alertd.store.base import OutboxCursor, OutboxStatus, Store
from alertd.web import auth
from alertd.web.board import Board
from alertd.web.usage import UsageView

PAGE = 50
STATUSES: tuple[OutboxStatus, ...] = ("pending", "delivered", "failed", "undeliverable")


@dataclass
class StatusContext:
    """What the pages read; the daemon fills in ``source``, ``wake`` and ``meters`` as its
    world (re)loads."""

    store: Store
    board: Board
    clock: Clock
    access: auth.Access
    source: Callable[[], Source | None] = lambda: None
    wake: Callable[[], None] = lambda: None
    meters: Callable[[], Sequence[str]] = lambda: ()
    usage: UsageView = field(default_factory=UsageView)


KEY: web.AppKey[StatusContext] = web.AppKey("status", StatusContext)


def _when(value: float | None) -> str:
    if value is None:
        return "—"
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _number(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"


def bucket_label(starts_at: int, buckets: Sequence[Bucket]) -> str:
    """``MM-DD`` when every bucket starts at midnight UTC, else ``MM-DD HH:MM``."""
    daily = all(b.starts_at % 86400 == 0 for b in buckets)
    return dt.datetime.fromtimestamp(starts_at, dt.UTC).strftime(
        "%m-%d" if daily else "%m-%d %H:%M")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("alertd.web", "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["when"] = _when
    env.filters["number"] = _number
    return env


_ENV = environment()


def render(request: web.Request, name: str, **values: Any) -> web.Response:
    ctx = request.app[KEY]
    html = _ENV.get_template(name).render(csrf=request.get(auth.CSRF, ""), now=ctx.clock.now(),
                                          board=ctx.board, **values)
    return web.Response(text=html, content_type="text/html")


def cursor(text: str | None) -> OutboxCursor | None:
    """``CREATED_AT:ID`` → ``(created_at, id)``; anything else is the first page."""
    if not text or ":" not in text:
        return None
    created, _, row_id = text.partition(":")
    try:
        return float(created), row_id
    except ValueError:
        return None


def status_of(text: str | None) -> OutboxStatus | None:
    return next((s for s in STATUSES if s == text), None)


async def overview(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    state = request.query.get("state") if request.query.get("state") in ("firing",
                                                                         "pending") else None
    start = _int(request.query.get("start"), 0)
    entries = ctx.board.page(state, start, PAGE)
    return render(request, "overview.html", entries=entries, state=state, start=start,
                  total=ctx.board.count(state), page=PAGE, meta=ctx.board.meta())


def _int(text: str | None, default: int) -> int:
    try:
        return max(0, int(text)) if text is not None else default
    except ValueError:
        return default


async def alert_page(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    entry = ctx.board.get(request.match_info["fingerprint"])
    if entry is None:
        raise web.HTTPNotFound(text="no pending or firing alert with this fingerprint (it may "
                               "have resolved: see the notification history)\n")
    values, cumulative = comparable_values([(b.starts_at, b.value) for b in entry.recent],
                                           entry.window_start, entry.value)
    chart = bar_chart([(bucket_label(b.starts_at, entry.recent), v)
                       for b, v in zip(entry.recent, values, strict=True)],
                      threshold=entry.threshold, band=entry.band)
    sent = await ctx.store.outbox_for_alert(entry.fingerprint)
    return render(request, "alert.html", entry=entry, chart=chart, sent=sent[:PAGE],
                  cumulative=cumulative,
                  matchers="\n".join(entry.silence_matchers))


async def customers(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    wanted = request.query.get("id", "").strip()
    if wanted:
        raise web.HTTPSeeOther(f"/customers/{wanted}")
    seen = sorted({e.customer.id: e.customer for e in ctx.board.entries.values()
                   if e.customer.id}.values(), key=lambda c: c.id)
    start = _int(request.query.get("start"), 0)
    return render(request, "customers.html", customers=seen[start:start + PAGE], start=start,
                  total=len(seen), page=PAGE)


async def customer_page(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    customer = request.match_info["customer"]
    meters = list(ctx.meters())
    meter = request.query.get("meter") or (meters[0] if meters else "")
    group_by = request.query.get("group_by", "model")
    problem, rows, daily = None, [], None
    source = ctx.source()
    if source is None or not meter:
        problem = "no Stripe source or meter to read usage from"
    else:
        try:
            daily = await ctx.usage.daily(source, customer, meter, group_by, ctx.clock.now())
            rows = stacked_rows(daily.sums, daily.dates)
        except ValueError as exc:
            problem = str(exc)
        except SourceError as exc:
            problem = f"Stripe did not answer: {exc}"
    alerts = [e for e in ctx.board.entries.values() if e.customer.id == customer]
    return render(request, "customer.html", customer=customer, meters=meters, meter=meter,
                  group_by=group_by, problem=problem, chart=stacked_chart(rows), rows=rows,
                  daily=daily, alerts=alerts)


async def silences_page(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    show_all = request.query.get("all") == "1"
    found = await silence_ops.listing(ctx.store, int(ctx.clock.now()), include_expired=show_all)
    found.reverse()  # newest first
    start = _int(request.query.get("start"), 0)
    return render(request, "silences.html", silences=found[start:start + PAGE],
                  total=len(found), start=start, page=PAGE, show_all=show_all,
                  error=None, matchers=request.query.get("matchers", ""))


async def create_silence(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    form = await request.post()
    now = int(ctx.clock.now())
    matchers = [line.strip() for line in str(form.get("matchers", "")).splitlines()
                if line.strip()]
    try:
        hours = float(str(form.get("hours", "2")))
        if not 0 < hours <= 24 * 365:
            raise ValueError("the duration must be between a minute and a year (hours)")
        silence = silence_ops.new_silence(
            matchers, starts_at=now, ends_at=now + int(hours * 3600),
            comment=str(form.get("comment", "")), created_by=str(form.get("by", "")) or "web",
            now=now)
    except ValueError as exc:
        found = await silence_ops.listing(ctx.store, now)
        response = render(request, "silences.html", silences=found, total=len(found), start=0,
                          page=PAGE, show_all=False, error=str(exc),
                          matchers="\n".join(matchers))
        response.set_status(400)
        return response
    await silence_ops.add(ctx.store, silence)
    raise web.HTTPSeeOther("/silences")


async def expire_silence(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    try:
        await silence_ops.expire(ctx.store, request.match_info["id"], int(ctx.clock.now()))
    except ValueError as exc:
        raise web.HTTPNotFound(text=f"{exc}\n") from None
    raise web.HTTPSeeOther("/silences")


async def notifications_page(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    status = status_of(request.query.get("status"))
    receiver = request.query.get("receiver") or None
    rows = await ctx.store.outbox_page(status=status, receiver=receiver,
                                       before=cursor(request.query.get("before")),
                                       limit=PAGE + 1)
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    after = f"{rows[-1].created_at!r}:{rows[-1].id}" if more and rows else None
    return render(request, "notifications.html", rows=rows, status=status, statuses=STATUSES,
                  receiver=receiver or "", after=after)


async def notification_page(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    row = await ctx.store.outbox_row(request.match_info["id"])
    if row is None:
        raise web.HTTPNotFound(text="no notification with this id (finished ones are pruned "
                               "after notify.keep_delivered)\n")
    return render(request, "notification.html", row=row,
                  attempts=await ctx.store.attempts(row.id))


async def resend(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    row = await ctx.store.resend(request.match_info["id"], ctx.clock.now())
    if row is None:
        raise web.HTTPNotFound(text="no notification with this id\n")
    if row.status != "pending":
        raise web.HTTPConflict(text=f"only a failed or undeliverable notification is resent; "
                               f"this one is {row.status}\n")
    ctx.wake()
    raise web.HTTPSeeOther(f"/notifications/{row.id}")


async def login_form(request: web.Request) -> web.Response:
    return render(request, "login.html", error=None, next=_next(request.query.get("next")))


def _next(target: str | None) -> str:
    # Only a path on this site: an open redirect would make the login form a phishing aid.
    return target if target and target.startswith("/") and not target.startswith("//") else "/"


async def login(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    form = await request.post()
    target = _next(str(form.get("next", "/")))
    if not ctx.access.token_ok(str(form.get("token", ""))):
        response = render(request, "login.html", error="wrong token", next=target)
        response.set_status(401)
        return response
    assert ctx.access.token is not None  # token_ok says so
    response = web.HTTPSeeOther(target)
    response.set_cookie(auth.SESSION_COOKIE, auth.session_value(ctx.access.token),
                        httponly=True, samesite="Strict", path="/")
    raise response


@web.middleware
async def store_failed(request: web.Request, handler: auth.Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except StoreError as exc:
        return web.Response(status=503, text=f"the state store failed: {exc}\n")


def install(app: web.Application, ctx: StatusContext) -> None:
    """Adds the status page, the JSON API and their middleware to ``app``."""
    from alertd.web import api  # the API imports this module's helpers

    app[KEY] = ctx
    app.middlewares.append(auth.middleware(ctx.access))
    app.middlewares.append(store_failed)
    add = app.router
    add.add_get("/", overview)
    add.add_get("/alerts/{fingerprint}", alert_page)
    add.add_get("/customers", customers)
    add.add_get("/customers/{customer}", customer_page)
    add.add_get("/silences", silences_page)
    add.add_post("/silences", create_silence)
    add.add_post("/silences/{id}/expire", expire_silence)
    add.add_get("/notifications", notifications_page)
    add.add_get("/notifications/{id}", notification_page)
    add.add_post("/notifications/{id}/resend", resend)
    add.add_get("/login", login_form)
    add.add_post("/login", login)
    api.add_routes(app)
