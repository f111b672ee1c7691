"""The simulator's request validation: Stripe's rules for each endpoint, as pure functions.

Each function takes the decoded form (:func:`alertd.sim.stripe_form.parse_form`) and returns a
typed request, or raises :class:`~alertd.sim.stripe_form.StripeRequestError` naming the
parameter, the way Stripe answers a bad request with a 400.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, cast
from zoneinfo import ZoneInfoNotFoundError

from alertd import calendar
from alertd.model import GRANULARITIES, Filters, Granularity, MeterSpec, UsageQuery, make_filters
from alertd.sim.profiles import METERS_BY_ID, MeterDef
from alertd.sim.stripe_form import (
    FormValue,
    StripeRequestError,
    array,
    check_known,
    invalid,
    limit,
    missing,
    param_name,
    required_integer,
    required_text,
    text,
)

#: From this version on the analytics API answers in the ``rows`` shape.
CURRENT_SHAPE_FROM = "2025-09-30"
#: From this version on dimension and tenant filter values must be arrays.
ARRAY_FILTERS_FROM = "2025-11-17"
#: Stripe's limits, kept apart from :mod:`alertd.stripe_limits` on purpose: the simulator
#: plays Stripe, and must not agree with alertd only because both read one constant.
MAX_METERS = 5
MAX_GROUP_BY = 2
MAX_DIMENSION_FILTERS = 10
MAX_TENANT_FILTERS = 3
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(\.[a-z]+)?$")
_USAGE_PARAMS = ("customer", "starts_at", "ends_at", "meters", "value_grouping_window", "timezone")
_SPEC_PARAMS = ("meter", "dimension_filters", "tenant_filters", "dimension_group_by_keys")
_SUMMARY_PARAMS = (
    "customer", "start_time", "end_time", "value_grouping_window",
    "limit", "starting_after", "ending_before",
)

SummaryWindow = Literal["hour", "day"]


@dataclass(frozen=True, slots=True)
class ApiVersion:
    """A ``Stripe-Version`` such as ``2025-11-17.preview``; compared by its date."""

    text: str

    @property
    def date(self) -> str:
        return self.text[:10]

    @property
    def current_shape(self) -> bool:
        return self.date >= CURRENT_SHAPE_FROM

    @property
    def array_filters(self) -> bool:
        return self.date >= ARRAY_FILTERS_FROM


def api_version(header: str | None, default: str) -> ApiVersion:
    """The request's API version (the account default when the header is absent)."""
    chosen = header.strip() if header else default
    if not _VERSION.match(chosen):
        raise StripeRequestError(
            400, f"Invalid Stripe API version: {chosen}", code="api_version_invalid"
        )
    return ApiVersion(chosen)


# ---------------------------------------------------------------------- meter usage


def usage_query(
    form: Mapping[str, FormValue], version: ApiVersion, customer_exists: Callable[[str], bool]
) -> UsageQuery:
    """``GET /v1/billing/analytics/meter_usage`` → the query it asks for."""
    check_known(form, _USAGE_PARAMS)
    customer = required_text(form, "customer")
    if not customer_exists(customer):
        raise invalid(f"No such customer: '{customer}'", "customer", "resource_missing")
    starts_at, ends_at = _range(form, "starts_at", "ends_at")
    return UsageQuery(
        customer=customer,
        starts_at=starts_at,
        ends_at=ends_at,
        window=_window(form),
        timezone=_timezone(form),
        meters=_specs(form.get("meters"), version),
    )


def _range(form: Mapping[str, FormValue], start_key: str, end_key: str) -> tuple[int, int]:
    start, end = required_integer(form, start_key), required_integer(form, end_key)
    for key, value in ((start_key, start), (end_key, end)):
        if value % 60:
            raise invalid(
                f"{key} must be aligned to a minute boundary (a multiple of 60); got {value}", key
            )
    if start >= end:
        raise invalid(
            f"Param {start_key} should be less than {end_key}", start_key, "invalid_time_range"
        )
    return start, end


def _window(form: Mapping[str, FormValue]) -> Granularity | None:
    window = text(form, "value_grouping_window")
    if window is None:
        return None
    if window not in GRANULARITIES:
        raise invalid(
            f"Invalid value_grouping_window: {window!r}; must be one of hour, day, week, month",
            "value_grouping_window",
        )
    return window


def _timezone(form: Mapping[str, FormValue]) -> str:
    name = text(form, "timezone") or "UTC"
    try:
        calendar.zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid(f"Invalid timezone: {name!r} is not an IANA time zone", "timezone") from None
    return name


def _specs(raw: FormValue | None, version: ApiVersion) -> tuple[MeterSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, dict) or not all(key.isdigit() for key in raw):
        raise invalid("Invalid array: meters must be an array of hashes", "meters")
    if len(raw) > MAX_METERS:
        raise invalid(f"You can pass at most {MAX_METERS} meters per request.", "meters")
    return tuple(_spec(raw[key], int(key), version) for key in sorted(raw, key=int))


def _spec(raw: FormValue, index: int, version: ApiVersion) -> MeterSpec:
    if not isinstance(raw, dict):
        raise invalid(f"Invalid hash: meters[{index}]", param_name("meters", index))
    check_known(raw, _SPEC_PARAMS, "meters", index)
    meter_id = text(raw, "meter", param_name("meters", index, "meter"))
    if not meter_id:
        raise missing(param_name("meters", index, "meter"))
    meter = METERS_BY_ID.get(meter_id)
    if meter is None:
        raise invalid(
            f"No such meter: '{meter_id}'", param_name("meters", index, "meter"), "resource_missing"
        )
    return MeterSpec(
        meter=meter.id,
        dimension_filters=_filters(raw, index, "dimension_filters", version, meter),
        tenant_filters=_filters(raw, index, "tenant_filters", version, meter),
        group_by=_group_by(raw, index, meter),
    )


def _group_by(raw: Mapping[str, FormValue], index: int, meter: MeterDef) -> tuple[str, ...]:
    value = raw.get("dimension_group_by_keys")
    if value is None:
        return ()
    param = param_name("meters", index, "dimension_group_by_keys")
    keys = array(value, param)
    if len(keys) > MAX_GROUP_BY:
        raise invalid(f"You can pass at most {MAX_GROUP_BY} dimension_group_by_keys.", param)
    for position, key in enumerate(keys):
        if key not in meter.dimension_keys:
            raise invalid(
                f"{key!r} is not a dimension of meter {meter.id} "
                f"(dimensions: {', '.join(meter.dimension_keys) or 'none'})",
                f"{param}[{position}]",
            )
    return tuple(keys)


def _filters(
    raw: Mapping[str, FormValue], index: int, kind: str, version: ApiVersion, meter: MeterDef
) -> Filters:
    value = raw.get(kind)
    if value is None:
        return ()
    param = param_name("meters", index, kind)
    if not isinstance(value, dict):
        raise invalid(f"Invalid hash: {param} must be a hash of key to values", param)
    tenant = kind == "tenant_filters"
    most = MAX_TENANT_FILTERS if tenant else MAX_DIMENSION_FILTERS
    if len(value) > most:
        raise invalid(f"You can pass at most {most} {kind}.", param)
    known = meter.dimension_keys
    if tenant:
        known = (meter.tenant_key,) if meter.tenant_key else ()
    chosen: dict[str, list[str]] = {}
    for key, values in value.items():
        name = f"{param}[{key}]"
        if key not in known:
            what = "tenant key" if tenant else "dimension"
            raise invalid(f"{key!r} is not a {what} of meter {meter.id}", name)
        chosen[key] = _filter_values(values, name, version)
    return make_filters(chosen)


def _filter_values(value: FormValue, name: str, version: ApiVersion) -> list[str]:
    if version.array_filters:
        if isinstance(value, str):
            raise invalid(
                f"Invalid array: {name} must be an array of values from Stripe-Version "
                f"{ARRAY_FILTERS_FROM}.preview on (send {name}[0]={value}); "
                f"this request uses {version.text}",
                name,
            )
        values = array(value, name)
        if not values:
            raise invalid(f"Invalid array: {name} must not be empty", name)
        return values
    if not isinstance(value, str):
        raise invalid(
            f"Invalid string: {name} must be a single value before Stripe-Version "
            f"{ARRAY_FILTERS_FROM}.preview; this request uses {version.text}",
            name,
        )
    return [value]


# ---------------------------------------------------------------------- event summaries


@dataclass(frozen=True, slots=True)
class SummaryRequest:
    """``GET /v1/billing/meters/{meter}/event_summaries``."""

    customer: str
    start_time: int
    end_time: int
    window: SummaryWindow | None
    limit: int
    starting_after: str | None
    ending_before: str | None


def summary_request(
    form: Mapping[str, FormValue], customer_exists: Callable[[str], bool]
) -> SummaryRequest:
    check_known(form, _SUMMARY_PARAMS)
    customer = required_text(form, "customer")
    if not customer_exists(customer):
        raise invalid(f"No such customer: '{customer}'", "customer", "resource_missing")
    start, end = _range(form, "start_time", "end_time")
    window = text(form, "value_grouping_window")
    if window not in (None, "hour", "day"):
        raise invalid(
            f"Invalid value_grouping_window: {window!r}; must be one of hour, day",
            "value_grouping_window",
        )
    step = {"hour": 3600, "day": 86_400}.get(window or "")
    if step is not None:
        for key, value in (("start_time", start), ("end_time", end)):
            if value % step:
                boundary = "an hour" if window == "hour" else "a UTC day"
                raise invalid(
                    f"{key} must be aligned to {boundary} boundary for "
                    f"value_grouping_window={window}",
                    key,
                )
    return SummaryRequest(
        customer, start, end, cast("SummaryWindow | None", window), limit(form),
        text(form, "starting_after"), text(form, "ending_before"),
    )


# ---------------------------------------------------------------------- lists


@dataclass(frozen=True, slots=True)
class ListRequest:
    """A plain Stripe list request: ``limit``, ``starting_after``, ``ending_before``."""

    limit: int
    starting_after: str | None
    ending_before: str | None
    filters: Mapping[str, str]


def list_request(form: Mapping[str, FormValue], filters: tuple[str, ...] = ()) -> ListRequest:
    check_known(form, ("limit", "starting_after", "ending_before", *filters))
    if form.get("starting_after") is not None and form.get("ending_before") is not None:
        raise invalid(
            "You may only specify one of these parameters: starting_after, ending_before.",
            "starting_after", "parameters_exclusive",
        )
    chosen = {key: value for key in filters if (value := text(form, key)) is not None}
    return ListRequest(
        limit(form), text(form, "starting_after"), text(form, "ending_before"), chosen
    )


def page_request(form: Mapping[str, FormValue]) -> tuple[str, int, int]:
    """A search request: ``(query, limit, offset)`` where ``page`` encodes the offset."""
    check_known(form, ("query", "limit", "page"))
    query = required_text(form, "query")
    page = text(form, "page")
    offset = 0
    if page is not None:
        if not page.startswith("page_") or not page[5:].isdigit():
            raise invalid(f"Invalid page: {page!r}", "page")
        offset = int(page[5:])
    return query, limit(form), offset

