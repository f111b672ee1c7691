"""The status page's data as JSON under ``/api/v1/`` (read-only; the README documents it).

Where it sits: :func:`alertd.web.app.install` adds these routes behind the same access
middleware as the pages (use ``Authorization: Bearer TOKEN`` or basic credentials). Lists are
paged like the pages: ``alerts`` by ``start``/``limit``, ``notifications`` by the ``next``
cursor each answer carries. ``customers/{id}/usage?meter=&window=day&group_by=KEY[&days=30]``
answers the guide's chart data: one row per date with a value per dimension value, plus the
``_start``/``_end`` bounds, from one cached Stripe request (:mod:`alertd.web.usage`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from alertd import silences as silence_ops
from alertd.charts import series_keys, stacked_rows
from alertd.errors import SourceError
from alertd.store.base import OutboxRow
from alertd.web.app import KEY, PAGE, _int, cursor, status_of


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def notification_dict(row: OutboxRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "idempotency_key": row.id,
        "receiver": row.receiver,
        "group_key": row.group_key,
        "status": row.status,
        "notification_status": row.notification.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "next_attempt_at": row.next_attempt_at if row.status == "pending" else None,
        "delivered_at": row.delivered_at,
        "alerts": [a.fingerprint for a in row.notification.alerts],
    }


async def alerts(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    state = request.query.get("state")
    state = state if state in ("firing", "pending") else None
    start, limit = _int(request.query.get("start"), 0), _int(request.query.get("limit"), PAGE)
    return _json({"alerts": [e.to_dict() for e in ctx.board.page(state, start, limit)],
                  "total": ctx.board.count(state), "last_poll": ctx.board.last_poll})


async def alert(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    entry = ctx.board.get(request.match_info["fingerprint"])
    if entry is None:
        return _json({"error": "no pending or firing alert with this fingerprint"}, 404)
    sent = await ctx.store.outbox_for_alert(entry.fingerprint)
    return _json({**entry.to_dict(), "notifications": [notification_dict(r) for r in sent]})


async def silences(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    now = int(ctx.clock.now())
    found = await silence_ops.listing(ctx.store, now,
                                      include_expired=request.query.get("all") == "1")
    return _json({"silences": [{**s.to_dict(), "state": s.state(now)} for s in found]})


async def notifications(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    limit = max(1, min(_int(request.query.get("limit"), PAGE), 500))
    rows = await ctx.store.outbox_page(
        status=status_of(request.query.get("status")),
        receiver=request.query.get("receiver") or None,
        before=cursor(request.query.get("before")), limit=limit + 1)
    more = len(rows) > limit
    rows = rows[:limit]
    after = f"{rows[-1].created_at!r}:{rows[-1].id}" if more and rows else None
    return _json({"notifications": [notification_dict(r) for r in rows], "next": after})


async def usage(request: web.Request) -> web.Response:
    ctx = request.app[KEY]
    if request.query.get("window", "day") != "day":
        return _json({"error": "window: only day is served"}, 400)
    meter = request.query.get("meter", "")
    source = ctx.source()
    if source is None:
        return _json({"error": "no Stripe source configured"}, 503)
    try:
        daily = await ctx.usage.daily(source, request.match_info["customer"], meter,
                                      request.query.get("group_by", ""), ctx.clock.now(),
                                      _int(request.query.get("days"), 30))
    except ValueError as exc:
        return _json({"error": str(exc)}, 400)
    except SourceError as exc:
        return _json({"error": f"Stripe did not answer: {exc}"}, 502)
    rows = stacked_rows(daily.sums, daily.dates)
    return _json({"data": rows, "keys": series_keys(rows), "refreshed_at": daily.refreshed_at})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/alerts", alerts)
    app.router.add_get("/api/v1/alerts/{fingerprint}", alert)
    app.router.add_get("/api/v1/silences", silences)
    app.router.add_get("/api/v1/notifications", notifications)
    app.router.add_get("/api/v1/customers/{customer}/usage", usage)
