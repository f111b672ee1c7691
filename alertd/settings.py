"""Settings: the YAML config file, overridden by ``ALERTD_`` environment variables.

This is the first edge of the data flow: :func:`load_settings` reads the file with positions,
merges the environment over it (pydantic-settings, prefix ``ALERTD_``, nesting with ``__``, so
``ALERTD_STRIPE__REQUESTS_PER_SECOND=25``), validates once, and hands out a frozen
:class:`Settings`. Secrets are ``SecretStr`` and may come from ``*_file`` settings (systemd
``LoadCredential=``) or, for the API key, from ``STRIPE_API_KEY``.

Every invalid key is reported as ``FILE:LINE:COL: message``, all at once.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

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
from alertd.errors import ConfigError, Problem
from alertd.yamlpos import Located, load_located, validation_problems


def _duration(value: Any) -> float:
    if isinstance(value, str | int | float):
        return parse_duration(value)
    raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 4h, 7d)")


#: Seconds, written in YAML as ``30s``, ``5m``, ``4h``, ``7d`` (or a plain number of seconds).
Duration = Annotated[float, BeforeValidator(_duration)]


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def read_secret(value: SecretStr | None, file: Path | None, what: str) -> SecretStr | None:
    """The secret itself, or the stripped contents of the file that holds it."""
    if value is not None:
        return value
    if file is None:
        return None
    try:
        return SecretStr(file.read_text().strip())
    except OSError as exc:
        raise ConfigError(f"cannot read {what} from {file}: {exc.strerror}") from None


class StripeSettings(Section):
    api_key: SecretStr | None = None
    api_key_file: Path | None = None
    api_base: str = "https://api.stripe.com"
    api_version: str = "2025-11-17.preview"
    source: Literal["meter_usage", "event_summaries"] = "meter_usage"
    #: Whether dimension/tenant filter values are sent in array form. ``auto`` = arrays for
    #: ``2025-11-17.preview`` and later (Stripe's spec), plain strings before.
    array_filters: Literal["auto", "always", "never"] = "auto"
    requests_per_second: Annotated[float, Field(gt=0)] = 100.0
    general_requests_per_second: Annotated[float, Field(gt=0)] = 20.0
    max_in_flight: Annotated[int, Field(ge=1)] = 32
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
    #: Consecutive failed polls after which the source-failure meta-alert fires.
    failure_alert_after: Annotated[int, Field(ge=1)] = 3

    def resolved_api_key(self) -> SecretStr | None:
        key = read_secret(self.api_key, self.api_key_file, "stripe.api_key_file")
        if key is None and os.environ.get("STRIPE_API_KEY"):
            return SecretStr(os.environ["STRIPE_API_KEY"])
        return key


class StateSettings(Section):
    path: Path | None = None

    def resolved_path(self) -> Path:
        if self.path is not None:
            return self.path
        state_dir = os.environ.get("STATE_DIRECTORY")
        if state_dir:
            return Path(state_dir.split(":")[0]) / "alertd.db"
        return Path("alertd.db")


class ServerSettings(Section):
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        if value and (":" not in value or not value.rsplit(":", 1)[1].isdigit()):
            raise ValueError("use HOST:PORT, e.g. 127.0.0.1:9464, or an empty string to disable")
        return value


class SmtpSettings(Section):
    host: str = "localhost"
    port: int = 587
    username: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    security: Literal["starttls", "tls", "none"] = "starttls"
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
    url: str
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


class HeartbeatSettings(Section):
    url: str | None = None
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

    def rule_paths(self) -> list[Path]:
        """Every rule file the ``rule_files`` globs match, relative to the config's folder."""
        found: list[Path] = []
        for pattern in self.rule_files:
            full = pattern if os.path.isabs(pattern) else str(self.base_dir / pattern)
            found.extend(Path(p) for p in sorted(glob.glob(full)) if Path(p) not in found)
        return found

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
    doc = Located("<defaults>", {}, {})
    if path is not None:
        try:
            text = path.read_text()
        except OSError as exc:
            problem = Problem(str(path), 1, 1, f"cannot read config: {exc.strerror}")
            raise ConfigError([problem]) from None
        doc = load_located(text, str(path))
        if doc.data is None:
            doc.data = {}
        if not isinstance(doc.data, dict):
            raise ConfigError([doc.problem((), "the config file must be a YAML mapping")])
    data = dict(doc.data)
    data.update(overrides or {})
    data.setdefault("base_dir", path.parent if path is not None else Path("."))
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(validation_problems(exc, doc)) from None
    problems = _route_problems(settings, doc)
    if problems:
        raise ConfigError(problems)
    return settings


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
