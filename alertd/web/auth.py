"""Who may see the status page, and proof that a form was sent from it (pure checks and one
aiohttp middleware).

Where it sits: :func:`alertd.web.app.install` puts :func:`middleware` in front of every status
page and ``/api/v1/`` route; ``/metrics``, ``/healthz`` and ``/readyz`` are not behind it
(Prometheus and load balancers keep scraping them as before).

Access (:class:`Access`): with ``server.token_file`` a request needs ``Authorization: Bearer
TOKEN`` or the session cookie the login form sets (``HttpOnly``, ``SameSite=Strict``; its
value is an HMAC of the token, so it proves knowledge of the token without holding it); with
``server.basic_auth_file`` HTTP basic credentials (the browser asks). Without either, the
pages are served only when ``server.listen`` is a loopback address; bound elsewhere they
answer 403 saying which setting to add — the page shows customer data. Comparisons are
constant-time.

Cross-site requests: every state-changing request is a POST whose form carries ``csrf``, the
HMAC (with a per-process random key) of a random ``alertd_csrf`` cookie (``SameSite=Strict``,
``HttpOnly``) — a double-submit token another site can neither read nor forge; a POST whose
``Origin`` names another host is refused too. A request authenticated by an ``Authorization:
Bearer`` header needs no form token: browsers never add that header by themselves.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

SESSION_COOKIE = "alertd_session"
#: The form token of this request, for templates.
CSRF: web.RequestKey[str] = web.RequestKey("csrf", str)
CSRF_COOKIE = "alertd_csrf"
#: Paths anyone may reach: the login form and the static health doors.
OPEN_PATHS = frozenset({"/login", "/metrics", "/healthz", "/readyz"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def is_loopback(listen: str) -> bool:
    """Whether ``HOST:PORT`` binds only this machine (``localhost``, 127/8, ``::1``)."""
    host = listen.rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def session_value(token: str) -> str:
    return hmac.new(token.encode(), b"alertd-session-v1", hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Access:
    """The configured credentials. ``open_without`` says whether no credentials is fine."""

    token: str | None = None
    basic: tuple[str, str] | None = None
    open_without: bool = True
    csrf_key: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)

    @property
    def required(self) -> bool:
        return self.token is not None or self.basic is not None

    def csrf_for(self, cookie: str) -> str:
        return hmac.new(self.csrf_key, cookie.encode(), hashlib.sha256).hexdigest()

    def bearer_ok(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        return (self.token is not None and scheme.lower() == "bearer"
                and hmac.compare_digest(value.strip().encode(), self.token.encode()))

    def basic_ok(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        if self.basic is None or scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode(
                "utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        # Both compared, always: no early exit that tells a right user name by timing.
        good_user = hmac.compare_digest(user.encode(), self.basic[0].encode())
        good_password = hmac.compare_digest(password.encode(), self.basic[1].encode())
        return good_user and good_password

    def session_ok(self, cookie: str | None) -> bool:
        return (self.token is not None and cookie is not None
                and hmac.compare_digest(cookie.encode(), session_value(self.token).encode()))

    def token_ok(self, offered: str) -> bool:
        return self.token is not None and hmac.compare_digest(offered.encode(),
                                                              self.token.encode())


def _authenticated(access: Access, request: web.Request) -> bool:
    header = request.headers.get("Authorization", "")
    return (access.bearer_ok(header) or access.basic_ok(header)
            or access.session_ok(request.cookies.get(SESSION_COOKIE)))


def _refusal(access: Access, request: web.Request) -> web.StreamResponse:
    if not access.required:
        return web.Response(status=403, text=(
            "the status page is off: server.listen is not a loopback address, so it needs "
            "server.token_file or server.basic_auth_file (it shows customer data)\n"))
    if access.basic is not None:
        return web.Response(status=401, text="authentication required\n",
                            headers={"WWW-Authenticate": 'Basic realm="alertd"'})
    if request.method == "GET" and not request.path.startswith("/api/"):
        raise web.HTTPSeeOther(f"/login?next={request.path_qs}")
    return web.Response(status=401, text="authentication required: Authorization: Bearer\n")


def same_origin(origin: str | None, host: str | None) -> bool:
    """No ``Origin`` (old browsers, curl) or one whose host is the request's ``Host``."""
    if not origin:
        return True
    return origin != "null" and urlsplit(origin).netloc == (host or "")


async def _check_form(access: Access, request: web.Request) -> web.StreamResponse | None:
    if access.bearer_ok(request.headers.get("Authorization", "")):
        return None
    if not same_origin(request.headers.get("Origin"), request.host):
        return web.Response(status=403, text="cross-site request refused\n")
    cookie = request.cookies.get(CSRF_COOKIE)
    form = await request.post()
    offered = form.get("csrf")
    if cookie is None or not isinstance(offered, str) or not hmac.compare_digest(
            offered.encode(), access.csrf_for(cookie).encode()):
        return web.Response(status=403, text=(
            "form token missing or wrong (reload the page and send the form again)\n"))
    return None


def middleware(access: Access) -> Middleware:
    """Access control, the CSRF cookie and its check, and headers that keep pages private."""

    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS - {"/login"}:
            return await handler(request)
        allowed = (_authenticated(access, request) if access.required
                   else access.open_without)
        if request.path != "/login" and not allowed:
            return _refusal(access, request)
        offered = request.cookies.get(CSRF_COOKIE)
        fresh = offered is None
        cookie = secrets.token_urlsafe(24) if offered is None else offered
        request[CSRF] = access.csrf_for(cookie)
        if request.method not in ("GET", "HEAD"):
            refused = await _check_form(access, request)
            if refused is not None:
                return refused
        response = await handler(request)
        if fresh:
            response.set_cookie(CSRF_COOKIE, cookie, httponly=True, samesite="Strict", path="/")
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "form-action 'self'; frame-ancestors 'none'")
        return response

    return guard
