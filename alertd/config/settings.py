"""Settings: the YAML config file, overridden by ``ALERTD_`` environment variables.

This is the first edge of the data flow: :func:`load_settings` reads the file with positions,
merges the environment over it (pydantic-settings, prefix ``ALERTD_``, nesting with ``__``, so
``ALERTD_STRIPE__REQUESTS_PER_SECOND=25``), validates once, and hands out a frozen
:class:`Settings`. Secrets are ``SecretStr`` and may come from ``*_file`` settings (systemd
``LoadCredential=``) or, for the API key, from ``STRIPE_API_KEY``.

Every invalid key is reported as ``FILE:LINE:COL: message``, all at once.

Precedence, highest first: ``ALERTD_`` variables, then (for the API key only) ``STRIPE_API_KEY``,
then the file. A secret set in the environment, as a value or as a ``*_file``, replaces both
forms of it in the file; the two forms set together in one place are an error.

A secret file holds the secret on one line (a trailing newline is fine); an empty, multi-line,
non-UTF-8 or oversized file is refused with a message that never shows its content, by
``validate`` (located at the ``*_file`` key) and at run time alike (:func:`read_secret`).

Why over 400 lines: the whole settings schema, one pydantic model tree that is validated and
located as one document.
"""

from __future__ import annotations

import glob
import ipaddress
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from alertd.clock import parse_duration
from alertd.config.yamlpos import Located, Path_, load_located, read_document, validation_problems
from alertd.errors import ConfigError, Problem

#: The longest duration any setting takes (ten years): longer ones overflow date arithmetic.
MAX_DURATION = 3650 * 86400.0


def _duration(value: Any) -> float:
    if isinstance(value, str | int | float):
        try:
            seconds = parse_duration(value)
        except OverflowError:  # an integer too large for a float
            seconds = math.inf
        if not seconds <= MAX_DURATION:  # also NaN
            raise ValueError(f"a duration is at most 3650d (ten years), got {value!r}")
        return seconds
    raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 4h, 7d)")


#: Seconds, written in YAML as ``30s``, ``5m``, ``4h``, ``7d`` (or a plain number of seconds).
Duration = Annotated[float, BeforeValidator(_duration)]


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


class Section(BaseModel):
    # Infinite or NaN numbers (`.inf`, `1e400`) are refused, not carried into rate limits.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              allow_inf_nan=False)


#: A secret file longer than this is not a secret file (a key is about 100 bytes).
MAX_SECRET_BYTES = 64 * 1024


def secret_file_text(file: Path, what: str) -> str:
    """The secret a ``*_file`` setting names; :class:`ConfigError` says what is wrong with the
    file without ever quoting it (a wrong file may hold other secrets)."""
    try:
        with file.open("rb") as stream:
            raw = stream.read(MAX_SECRET_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {file}: {exc.strerror}") from None
    if len(raw) > MAX_SECRET_BYTES:
        raise ConfigError(f"{what}: {file} is larger than {MAX_SECRET_BYTES // 1024} KiB; it "
                          "must hold only the secret, on one line")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what}: {file} is not UTF-8 text; it must hold only the secret, "
                          "on one line (its content is not shown)") from None
    problem = secret_text_problem(text.strip(), f"{what}: {file}")
    if problem is not None:
        raise ConfigError(problem)
    return text.strip()


def secret_text_problem(secret: str, where: str) -> str | None:
    """Why ``secret`` (already stripped) cannot be one, or ``None``."""
    if not secret:
        return f"{where} is empty; it must hold the secret, on one line"
    if any(mark in secret for mark in "\r\n"):
        return (f"{where} has more than one line; it must hold only the secret, on one line "
                "(its content is not shown)")
    return None


def read_secret(value: SecretStr | None, file: Path | None, what: str) -> SecretStr | None:
    """The secret itself, or the contents of the file that holds it (checked as above)."""
    if value is not None:
        problem = secret_text_problem(value.get_secret_value().strip(), what.removesuffix("_file"))
        if problem is not None:
            raise ConfigError(problem)
        return SecretStr(value.get_secret_value().strip())
    if file is None:
        return None
    return SecretStr(secret_file_text(file, what))


NO_API_KEY = (
    "no Stripe API key: set STRIPE_API_KEY (or ALERTD_STRIPE__API_KEY), or stripe.api_key_file "
    "in the config; a restricted key needs read access to Billing meters and Customers"
)


def api_key_problem(key: SecretStr, where: str = "stripe.api_key") -> str | None:
    """A key that Stripe would refuse for reading usage, said before any request."""
    if key.get_secret_value().startswith("pk_"):
        return (f"{where}: a publishable key (pk_...) cannot read usage; use a secret "
                "(sk_...) or restricted (rk_...) key")
    return None


def _http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018  (raises ValueError for a port out of range)
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL with a host, e.g. "
                         "https://hooks.example.com/alertd")
    return value


#: An ``http://`` or ``https://`` URL with a host (and a valid port, if any).
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class StripeSettings(Section):
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    api_base: HttpUrl = "https://api.stripe.com"
    api_version: str = "2025-11-17.preview"
    source: Literal["meter_usage", "event_summaries"] = "meter_usage"
    #: Whether dimension/tenant filter values are sent in array form. ``auto`` = arrays for
    #: ``2025-11-17.preview`` and later (Stripe's spec), plain strings before.
    array_filters: Literal["auto", "always", "never"] = "auto"
    requests_per_second: Annotated[float, Field(gt=0)] = 100.0
    general_requests_per_second: Annotated[float, Field(gt=0)] = 20.0
    #: The most requests in flight on each budget. Below it, each budget keeps as many as its
    #: rate × Stripe's measured latency needs (alertd.source.inflight): 256 holds 100
    #: requests/s up to about 1.6 s a request.
    max_in_flight: Annotated[int, Field(ge=1)] = 256
    timeout: PositiveDuration = 30.0
    freshness_lag: Duration = 300.0
    stale_after: PositiveDuration = 7200.0
    max_retries: Annotated[int, Field(ge=0)] = 5
    retry_max_elapsed: PositiveDuration = 120.0
    #: Largest response body read, in bytes; a longer one is a bad answer, never read whole.
    #: 32 MiB: a meter-usage row is ~200 bytes of JSON, so this is ~160,000 rows (a month of
    #: hourly buckets for 5 meters with ~40 group values each), and a customers page (100 with
    #: full metadata, 50 keys of 500 characters) is under 3 MB.
    max_response_bytes: Annotated[int, Field(ge=1024)] = 32 * 1024 * 1024
    #: How long customers' prices, billing periods and credit are kept before they are read
    #: again (general budget; only rules with measure: cost, window: billing_period or a
    #: credit condition read them).
    billing_refresh: PositiveDuration = 3600.0
    #: Consecutive failed polls after which the source-failure meta-alert fires.
    failure_alert_after: Annotated[int, Field(ge=1)] = 3
    #: Where answers of 64 KiB or more are decoded (alertd.source.decoder): ``thread`` (a
    #: worker thread, the default) or ``process`` (one child process: the event loop no
    #: longer waits for the GIL while an answer is parsed, so sends keep the budget's pace
    #: more closely, at the price of the child's own memory, ~96 MB measured).
    decode_answers_in: Literal["thread", "process"] = "thread"
    #: Keep complete usage buckets in the state store between polls (alertd.buckets).
    bucket_cache: bool = True
    #: How far back a poll re-reads: Stripe takes back-dated events and cancellations for 24 h.
    settle_window: Duration = 86_400.0
    #: How often each cached series is read in full anyway (repairs the cache).
    full_reread_every: PositiveDuration = 7 * 86_400.0

    def resolved_api_key(self) -> SecretStr | None:
        """The key, or ``None`` when none is set; :class:`ConfigError` for a key or key file
        that cannot be used. (:func:`load_settings` has already let ``STRIPE_API_KEY`` replace
        a key written in the file; here it only fills in for settings built in code.)"""
        key = read_secret(self.api_key, self.api_key_file, "stripe.api_key_file")
        where = "stripe.api_key"
        if key is None and os.environ.get("STRIPE_API_KEY"):
            key = read_secret(SecretStr(os.environ["STRIPE_API_KEY"]), None, "STRIPE_API_KEY")
            where = "STRIPE_API_KEY"
        problem = api_key_problem(key, where) if key is not None else None
        if problem is not None:
            raise ConfigError(problem)
        return key


#: An account's name: part of its lease (``stripe:NAME``), labels, fingerprints and URLs.
ACCOUNT_NAME = r"^[a-z0-9][a-z0-9_-]{0,39}$"
#: The ``stripe:`` settings an account of ``accounts:`` may set for itself.
ACCOUNT_OVERRIDES = ("api_base", "api_version", "source", "array_filters",
                     "requests_per_second", "general_requests_per_second", "max_in_flight",
                     "timeout", "freshness_lag", "stale_after")


class AccountSettings(Section):
    """One Stripe account of ``accounts:`` (:mod:`alertd.accounts`): a name, its key (the
    key itself, a file holding it, or the environment variable holding it), and the
    ``stripe:`` settings that differ for it; the rest is taken from ``stripe:``."""

    name: Annotated[str, Field(pattern=ACCOUNT_NAME)]
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    api_key_env: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] | None = None
    api_base: HttpUrl | None = None
    api_version: str | None = None
    source: Literal["meter_usage", "event_summaries"] | None = None
    array_filters: Literal["auto", "always", "never"] | None = None
    requests_per_second: Annotated[float, Field(gt=0)] | None = None
    general_requests_per_second: Annotated[float, Field(gt=0)] | None = None
    max_in_flight: Annotated[int, Field(ge=1)] | None = None
    timeout: PositiveDuration | None = None
    freshness_lag: Duration | None = None
    stale_after: PositiveDuration | None = None
    #: This account had the one ``stripe.api_key`` before: it adopts that key's stored
    #: alerts (:func:`alertd.accounts.heir_of`; implied when there is one account).
    was_stripe_api_key: bool = False

    @model_validator(mode="after")
    def _one_key(self) -> AccountSettings:
        given = [k for k in ("api_key", "api_key_file", "api_key_env") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"account {self.name}: set exactly one of api_key, api_key_file "
                             f"or api_key_env (found {', '.join(given) or 'none'})")
        return self

    def resolved_api_key(self) -> SecretStr:
        """The account's key; :class:`ConfigError` when it cannot be had or used."""
        where = f"accounts.{self.name}"
        if self.api_key_env is not None:
            value = os.environ.get(self.api_key_env, "")
            if not value:
                raise ConfigError(f"{where}.api_key_env: the environment variable "
                                  f"{self.api_key_env} is not set")
            key = read_secret(SecretStr(value), None, self.api_key_env)
        else:
            key = read_secret(self.api_key, self.api_key_file, f"{where}.api_key_file")
        assert key is not None  # _one_key
        problem = api_key_problem(key, f"{where}.api_key")
        if problem is not None:
            raise ConfigError(problem)
        return key

    def stripe_settings(self, base: StripeSettings) -> StripeSettings:
        """``base`` with this account's key and overrides (the key resolved now)."""
        update: dict[str, Any] = {k: getattr(self, k) for k in ACCOUNT_OVERRIDES
                                  if getattr(self, k) is not None}
        update.update(api_key=self.resolved_api_key(), api_key_file=None)
        return base.model_copy(update=update)


class StateSettings(Section):
    path: Path | None = None
    #: ``postgresql://USER@HOST:PORT/DB``: the PostgreSQL store, shared by replicas.
    url: str | None = None
    password_file: Path | None = None
    #: How long a leader's lease lasts without a renewal (a standby takes over after it).
    lease: PositiveDuration = 15.0
    #: This replica's name in leases and claims (default: host name and process id).
    replica: str | None = None
    #: How long a replica holds a notification it is delivering before another may send it
    #: (again, same Idempotency-Key): longer than the longest receiver timeout.
    claim: PositiveDuration = 150.0

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("postgresql://", "postgres://")):
            raise ValueError("use postgresql://USER@HOST:PORT/DATABASE (or leave it out for "
                             "the SQLite file at state.path)")
        if value is not None and ":" in (value.split("://", 1)[1].split("@", 1)[0]
                                         if "@" in value else ""):
            raise ValueError("keep the password out of the URL: use state.password_file or "
                             "ALERTD_STATE_PASSWORD")
        return value

    def resolved_password(self) -> SecretStr | None:
        """The database password: ``state.password_file``, else ``ALERTD_STATE_PASSWORD``
        (libpq's own ``PGPASSWORD`` and ``~/.pgpass`` work too, read by the driver)."""
        secret = read_secret(None, self.password_file, "state.password_file")
        if secret is None and os.environ.get("ALERTD_STATE_PASSWORD"):
            secret = read_secret(SecretStr(os.environ["ALERTD_STATE_PASSWORD"]), None,
                                 "ALERTD_STATE_PASSWORD")
        return secret

    def resolved_path(self) -> Path:
        if self.path is not None:
            return self.path
        state_dir = os.environ.get("STATE_DIRECTORY")
        if state_dir:
            return Path(state_dir.split(":")[0]) / "alertd.db"
        return Path("alertd.db")


class ServerSettings(Section):
    listen: str = "127.0.0.1:9464"
    #: The base URL users reach alertd at (behind a proxy, say): ``externalURL`` and
    #: ``generatorURL`` of webhooks and the links in every channel point under it. Empty: no
    #: links.
    external_url: HttpUrl | Literal[""] = ""
    #: The status page's bearer token (``Authorization: Bearer``, or the login form), one line.
    token_file: Path | None = None
    #: ``USER:PASSWORD`` on one line for HTTP basic authentication of the status page.
    basic_auth_file: Path | None = None

    def resolved_token(self) -> SecretStr | None:
        return read_secret(None, self.token_file, "server.token_file")

    def resolved_basic_auth(self) -> tuple[str, SecretStr] | None:
        """``(user, password)`` from :attr:`basic_auth_file`; :class:`ConfigError` unless it
        holds ``USER:PASSWORD``."""
        secret = read_secret(None, self.basic_auth_file, "server.basic_auth_file")
        if secret is None:
            return None
        user, colon, password = secret.get_secret_value().partition(":")
        if not colon or not user or not password:
            raise ConfigError(f"server.basic_auth_file: {self.basic_auth_file} must hold "
                              "USER:PASSWORD on one line (its content is not shown)")
        return user, SecretStr(password)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value and (":" not in value or not value.rsplit(":", 1)[1].isdigit()):
            raise ValueError("use HOST:PORT, e.g. 127.0.0.1:9464, or an empty string to disable")
        # Port 0 asks the system for a free port (logged at start); tests rely on it.
        if value and int(value.rsplit(":", 1)[1]) > 65535:
            raise ValueError("the port must be between 0 and 65535")
        return value


class SmtpSettings(Section):
    host: str = "localhost"
    port: Annotated[int, Field(ge=1, le=65535)] = 587
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    security: Literal["starttls", "tls", "none"] = "starttls"
    #: With ``security: none`` and a ``username``, the password crosses the network in clear
    #: text; allowed only with this set and a loopback ``host`` (a relay on this machine).
    allow_insecure_auth: bool = False
    from_: str = Field("alertd@localhost", alias="from")
    timeout: PositiveDuration = 30.0

    def resolved_password(self) -> SecretStr | None:
        return read_secret(self.password, self.password_file, "smtp.password_file")


class EmailReceiver(Section):
    to: list[str] = []
    to_customer: bool = False
    cc: list[str] = []
    subject: str | None = None  # a Jinja2 template; default templates/email_subject.txt

    @model_validator(mode="after")
    def _someone(self) -> EmailReceiver:
        if not self.to and not self.to_customer:
            raise ValueError("an email receiver needs 'to' addresses or 'to_customer: true'")
        return self


WebhookPreset = Literal["alertmanager_webhook", "slack", "pagerduty", "teams", "discord",
                        "alertmanager", "generic"]


class WebhookReceiver(Section):
    url: HttpUrl
    preset: WebhookPreset = "alertmanager_webhook"
    secret: SecretStr | None = None
    secret_file: Path | None = None
    headers: dict[str, str] = {}
    body: str | None = None  # a Jinja2 template for a custom JSON body
    routing_key: SecretStr | None = None  # PagerDuty Events v2
    timeout: PositiveDuration = 10.0

    def resolved_secret(self) -> SecretStr | None:
        return read_secret(self.secret, self.secret_file, "webhook.secret_file")


class Receiver(Section):
    name: str
    email: EmailReceiver | None = None
    webhook: WebhookReceiver | None = None
    send_resolved: bool = True

    @model_validator(mode="after")
    def _one_channel(self) -> Receiver:
        if (self.email is None) == (self.webhook is None):
            raise ValueError("a receiver has exactly one of 'email' or 'webhook'")
        return self


class Route(Section):
    receiver: str | None = None
    match: dict[str, str] = {}
    match_re: dict[str, str] = {}
    continue_: bool = Field(False, alias="continue")
    group_by: list[str] | None = None
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    routes: list[Route] = []


class RootRoute(Route):
    receiver: str | None = None
    group_by: list[str] | None = ["rule", "customer"]
    group_wait: Duration | None = 30.0
    group_interval: Duration | None = 300.0
    repeat_interval: Duration | None = 4 * 3600.0


class CustomerSelection(Section):
    ids: list[str] | None = None
    all: bool = False
    search: str | None = None
    refresh: PositiveDuration = 3600.0

    @model_validator(mode="after")
    def _one_selector(self) -> CustomerSelection:
        chosen = sum([self.ids is not None, self.all, self.search is not None])
        if chosen > 1:
            raise ValueError("choose one of 'ids', 'all: true' or 'search'")
        return self


class DeliverySettings(Section):
    #: How long ``check`` (not the daemon) waits for deliveries before leaving them queued.
    delivery_timeout: PositiveDuration = 30.0
    #: A notification still undelivered after this long is given up and reported.
    max_age: PositiveDuration = 24 * 3600.0
    initial_backoff: PositiveDuration = 5.0
    max_backoff: PositiveDuration = 600.0


class ScheduleSettings(Section):
    """The deadline scheduler (:mod:`alertd.service.schedule`, :mod:`alertd.deadlines`)."""

    #: Read each customer when its series could next matter (``every`` at the latest);
    #: false: every poll reads every customer of its rules at ``every``, as before.
    deadlines: bool = True
    #: How often each poll group looks for customers whose deadline has come.
    tick: PositiveDuration = 30.0
    #: A customer is never read again sooner than this after a read.
    min_interval: PositiveDuration = 60.0
    #: A threshold's crossing is projected at this many times the series' recent peak rate.
    safety: Annotated[float, Field(ge=1.0)] = 3.0
    #: The remembered peak growth rate halves over this long without a higher one.
    peak_half_life: PositiveDuration = 86_400.0


class HeartbeatSettings(Section):
    url: HttpUrl | None = None
    interval: PositiveDuration = 300.0


class Settings(BaseSettings):
    """The whole configuration. Frozen: a reload builds a new one."""

    model_config = SettingsConfigDict(
        env_prefix="ALERTD_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
        populate_by_name=True,
    )

    stripe: StripeSettings = StripeSettings()
    state: StateSettings = StateSettings()
    server: ServerSettings = ServerSettings()
    rule_files: list[str] = ["rules/*.yaml"]
    templates_dir: Path | None = None
    smtp: SmtpSettings = SmtpSettings()
    receivers: list[Receiver] = []
    route: RootRoute = RootRoute()
    customers: CustomerSelection = CustomerSelection()
    delivery: DeliverySettings = DeliverySettings()
    heartbeat: HeartbeatSettings = HeartbeatSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    #: Several Stripe accounts in one deployment (:mod:`alertd.accounts`); empty: the one
    #: account of ``stripe.api_key``.
    accounts: list[AccountSettings] = []
    log_format: Literal["text", "json"] = "text"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: The folder relative paths are resolved against (the config file's folder).
    base_dir: Path = Path(".")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The environment overrides the file, which arrives as init arguments.
        return (env_settings, init_settings)

    @model_validator(mode="after")
    def _receivers_known(self) -> Settings:
        names = [r.name for r in self.receivers]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"receiver names must be unique: {sorted(duplicates)}")
        return self

    def receiver(self, name: str) -> Receiver | None:
        return next((r for r in self.receivers if r.name == name), None)

    def rule_paths(self, patterns: list[str] | None = None) -> list[Path]:
        """Every rule file the ``rule_files`` globs (or ``patterns``) match, relative to the
        config's folder."""
        found: list[Path] = []
        for pattern in self.rule_files if patterns is None else patterns:
            matched = sorted(glob.glob(self.rule_pattern(pattern)))
            found.extend(Path(p) for p in matched if Path(p) not in found)
        return found

    def rule_pattern(self, pattern: str) -> str:
        """A ``rule_files`` glob as it is matched: relative ones under the config's folder."""
        return pattern if os.path.isabs(pattern) else str(self.base_dir / pattern)

    def state_where(self) -> str:
        """The store for messages: the PostgreSQL URL (it holds no password) or the file."""
        return self.state.url or str(self.state_path())

    def state_path(self) -> Path:
        path = self.state.resolved_path()
        return path if path.is_absolute() else self.base_dir / path


DEFAULT_CONFIG_PATHS = (Path("/etc/alertd/alertd.yaml"), Path("alertd.yaml"))


def find_config(explicit: str | None) -> Path | None:
    """``-c`` wins, then ``$ALERTD_CONFIG``, then ``/etc/alertd/alertd.yaml``, ``./alertd.yaml``."""
    if explicit:
        return Path(explicit)
    if os.environ.get("ALERTD_CONFIG"):
        return Path(os.environ["ALERTD_CONFIG"])
    return next((p for p in DEFAULT_CONFIG_PATHS if p.exists()), None)


def load_settings(path: Path | None, overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read, merge and validate the configuration; :class:`ConfigError` lists every problem."""
    doc = config_document(path)
    data = dict(doc.data)
    data.update(overrides or {})
    data.setdefault("base_dir", path.parent if path is not None else Path("."))
    environment = _environment()
    _let_environment_secrets_win(data, environment)
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, doc)) from None
    problems = [
        *_route_problems(settings, doc),
        *_smtp_problems(settings.smtp, doc),
        *_secret_pair_problems(settings, doc, environment),
        *_account_problems(settings, doc),
    ]
    if problems:
        raise ConfigError(problems)
    return settings


def config_document(path: Path | None) -> Located:
    """The config file with positions (an empty mapping without a file), bounded and checked
    to be a mapping; :class:`ConfigError` otherwise."""
    if path is None:
        return Located("<defaults>", {}, {})
    doc = load_located(read_document(path), str(path))
    if doc.data is None:
        doc.data = {}
    if not isinstance(doc.data, dict):
        raise ConfigError([doc.problem((), "the config file must be a YAML mapping")])
    return doc


def _environment() -> dict[str, str]:
    # pydantic-settings reads ALERTD_ names case-insensitively; so does this.
    return {name.upper(): value for name, value in os.environ.items() if value}


#: Secrets a section holds: (section, value key, file key, other environment variables).
_SECRETS = (
    ("stripe", "api_key", "api_key_file", ("STRIPE_API_KEY",)),
    ("smtp", "password", "password_file", ()),
)


def _env_names(section: str, *keys: str) -> list[str]:
    return [f"ALERTD_{section}__{key}".upper() for key in keys]


def _let_environment_secrets_win(data: dict[str, Any], environment: Mapping[str, str]) -> None:
    """A secret set in the environment (value or file) replaces both forms in the file."""
    for section, value_key, file_key, others in _SECRETS:
        in_file = data.get(section)
        names = [*_env_names(section, value_key, file_key), *others]
        if isinstance(in_file, dict) and any(name in environment for name in names):
            data[section] = {k: v for k, v in in_file.items() if k not in (value_key, file_key)}


def _secret_pair_problems(
    settings: Settings, doc: Located, environment: Mapping[str, str]
) -> list[Problem]:
    """A secret given both as a value and as a file, in the same place."""
    pairs: list[tuple[Path_, str, str, object, object]] = [
        (("stripe",), "api_key", "api_key_file", settings.stripe.api_key,
         settings.stripe.api_key_file),
        (("smtp",), "password", "password_file", settings.smtp.password,
         settings.smtp.password_file),
    ]
    for index, receiver in enumerate(settings.receivers):
        if receiver.webhook is not None:
            pairs.append((("receivers", index, "webhook"), "secret", "secret_file",
                          receiver.webhook.secret, receiver.webhook.secret_file))
    problems = []
    for at, value_key, file_key, value, file in pairs:
        if value is None or file is None:
            continue
        env = _env_names(str(at[0]), value_key, file_key)
        if all(name in environment for name in env):
            problems.append(Problem("", 0, 0, f"{env[0]} and {env[1]} are both set; set one"))
        else:
            where = ".".join(str(part) for part in at)
            message = f"{where}: {value_key} and {file_key} are both set; keep one"
            problems.append(doc.problem((*at, file_key), message))
    return problems


def _account_problems(settings: Settings, doc: Located) -> list[Problem]:
    """Account names used twice, and a ``stripe:`` key beside ``accounts:`` (which key
    would the accounts use?)."""
    problems = []
    seen: set[str] = set()
    for index, account in enumerate(settings.accounts):
        if account.name in seen:
            problems.append(doc.problem(("accounts", index, "name"), f"accounts: the name "
                                        f"{account.name!r} is used twice; names are unique",
                                        at_value=True))
        seen.add(account.name)
    marked = [i for i, a in enumerate(settings.accounts) if a.was_stripe_api_key]
    problems += [doc.problem(("accounts", index, "was_stripe_api_key"), "accounts: only one "
                             "account can have been stripe.api_key (was_stripe_api_key: true)",
                             at_value=True) for index in marked[1:]]
    stripe = doc.data.get("stripe") if isinstance(doc.data, dict) else None
    for key in ("api_key", "api_key_file"):
        if settings.accounts and isinstance(stripe, dict) and key in stripe:
            problems.append(doc.problem(("stripe", key), f"stripe.{key}: with accounts:, "
                                        "each account names its own key; move this one into "
                                        "an account"))
    return problems


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _smtp_problems(smtp: SmtpSettings, doc: Located) -> list[Problem]:
    """Credentials in clear text: refused unless explicitly allowed to a loopback relay."""
    if smtp.allow_insecure_auth and not _is_loopback(smtp.host):
        return [doc.problem(("smtp", "allow_insecure_auth"),
                            "smtp.allow_insecure_auth: only allowed when smtp.host is a "
                            f"loopback address (localhost, 127.0.0.1, ::1), not {smtp.host!r}")]
    if smtp.security == "none" and smtp.username and not smtp.allow_insecure_auth:
        return [doc.problem(("smtp", "security"),
                            "smtp.security: none with a username would send the password in "
                            "clear text; use starttls or tls (for a relay on this machine, set "
                            "smtp.allow_insecure_auth: true)", at_value=True)]
    return []


def secret_problems(settings: Settings, doc: Located) -> list[Problem]:
    """Every secret read now, as ``alertd run`` will read it: unreadable, empty, multi-line
    or non-UTF-8 files, a missing or publishable API key. Located at the ``*_file`` key (or
    the value) when the file set it; the content of a secret is never part of a message."""
    environment = _environment()
    problems = []
    stripe_at = _secret_origin(("stripe",), "api_key", "api_key_file", settings.stripe.api_key,
                               settings.stripe.api_key_file, environment)
    try:
        if not settings.accounts and settings.stripe.resolved_api_key() is None:
            problems.append(Problem("", 0, 0, NO_API_KEY))
    except ConfigError as exc:
        problems += _relocated(exc, doc, stripe_at)
    for index, account in enumerate(settings.accounts):
        key = next(k for k in ("api_key", "api_key_file", "api_key_env") if getattr(account, k))
        problems += _resolve(account.resolved_api_key, doc, ("accounts", index, key))
    smtp_at = _secret_origin(("smtp",), "password", "password_file", settings.smtp.password,
                             settings.smtp.password_file, environment)
    problems += _resolve(settings.smtp.resolved_password, doc, smtp_at)
    for index, receiver in enumerate(settings.receivers):
        if receiver.webhook is not None:
            at: Path_ = ("receivers", index, "webhook")
            where = (*at, "secret" if receiver.webhook.secret is not None else "secret_file")
            problems += _resolve(receiver.webhook.resolved_secret, doc, where)
    # Read by the daemon as it opens the status page and the database: a bad file stops it.
    if settings.server.listen:
        problems += _resolve(settings.server.resolved_token, doc, ("server", "token_file"))
        problems += _resolve(settings.server.resolved_basic_auth, doc,
                             ("server", "basic_auth_file"))
    if settings.state.url is not None:
        problems += _resolve(settings.state.resolved_password, doc, ("state", "password_file"))
    return problems


def _secret_origin(
    at: Path_, value_key: str, file_key: str, value: object, file: object,
    environment: Mapping[str, str],
) -> Path_ | None:
    """Where a secret was set in the file, or ``None`` when the environment set it."""
    if value is None and file is None:
        return None  # e.g. STRIPE_API_KEY
    key = value_key if value is not None else file_key
    if _env_names(str(at[0]), key)[0] in environment:
        return None
    return (*at, key)


def _resolve(read: Any, doc: Located, at: Path_ | None) -> list[Problem]:
    try:
        read()
    except ConfigError as exc:
        return _relocated(exc, doc, at)
    return []


def _relocated(exc: ConfigError, doc: Located, at: Path_ | None) -> list[Problem]:
    if at is None or at not in doc.marks:
        return list(exc.problems)
    return [doc.problem(at, p.message, at_value=True) for p in exc.problems]


def _route_problems(settings: Settings, doc: Located) -> list[Problem]:
    known = {r.name for r in settings.receivers}
    problems: list[Problem] = []
    if settings.receivers and settings.route.receiver is None:
        problems.append(doc.problem(("route",), "route.receiver: a default receiver is required"))

    def walk(route: Route, path: tuple[str | int, ...]) -> None:
        if route.receiver is not None and route.receiver not in known:
            problems.append(
                doc.problem((*path, "receiver"), f"unknown receiver {route.receiver!r}",
                            at_value=True)
            )
        for index, child in enumerate(route.routes):
            walk(child, (*path, "routes", index))

    walk(settings.route, ("route",))
    return problems
