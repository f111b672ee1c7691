"""The rule file schema: what users write in ``rules/*.yaml``, validated once at the edge.

Pydantic models with ``extra="forbid"`` and a discriminated union on ``condition.type``, made
of the models of the kinds in :mod:`alertd.conditions.registry` (each kind's module holds its
condition model). The
loader (:mod:`alertd.rules.loader`) turns a ``when:`` shorthand into the same fields before
validation and locates every error in the file. Past this module, code reads frozen
:class:`Rule` objects and never raw dicts.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Any, Literal, Union
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator
from pydantic.fields import FieldInfo

from alertd.conditions import registry
from alertd.conditions.base import ConditionModel, StrictModel
from alertd.config.settings import Duration, PositiveDuration
from alertd.errors import Location
from alertd.model import Granularity

NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


class _Strict(BaseModel):
    # The condition models' configuration (unknown keys refused, frozen, finite numbers).
    model_config = StrictModel.model_config



#: Files in the time zone database that are not zones Stripe knows by name.
_NOT_ZONES = frozenset({"Factory", "localtime", "posixrules"})


@functools.cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) - _NOT_ZONES


def _timezone(value: str) -> str:
    """An IANA zone name. ``ZoneInfo`` also opens ``Factory`` and ``posix/UTC`` (files of the
    database, not names Stripe accepts), so the name must be in the database's list; where no
    list can be found, whatever ``ZoneInfo`` opens is accepted."""
    names = _zone_names()
    known = value in names if names else _opens(value)
    if not known or value in _NOT_ZONES:
        raise ValueError(
            f"unknown time zone {value!r} (use an IANA name like America/New_York)"
        )
    return value


def _opens(value: str) -> bool:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


TimeZone = Annotated[str, AfterValidator(_timezone)]


def _condition_union() -> Any:
    """The discriminated union on ``type`` of every registered kind's model."""
    return Annotated[Union[registry.models()], Field(discriminator="type")]  # noqa: UP007


def _accept_registered_kinds() -> None:
    """Rebuild :class:`Rule`'s ``condition`` field from the registry. Pydantic fixes a union
    when the model is built, so a kind registered later (a test's throwaway kind) is accepted
    only once the field is replaced and the model rebuilt."""
    Rule.__pydantic_fields__["condition"] = FieldInfo.from_annotation(_condition_union())
    Rule.model_rebuild(force=True)


class CustomerSearch(_Strict):
    search: str


class AllCustomers(_Strict):
    all: Literal[True]


CustomerSelector = list[str] | AllCustomers | CustomerSearch
FilterValue = str | list[str]


class Rule(_Strict):
    """One validated rule. ``when:`` has already been expanded by the loader."""

    name: str
    meter: str | None = None
    customers: CustomerSelector | None = None
    filters: dict[str, FilterValue] = {}
    tenant_filters: dict[str, FilterValue] = {}
    group_by: Annotated[list[str], Field(max_length=2)] = []
    window: Granularity = "day"
    #: ``window: billing_period`` in the rule file: judged over each subscription item's own
    #: current period (the loader keeps ``window: month`` for the calendar code's sake).
    billing_period: bool = Field(False, exclude=True)
    timezone: TimeZone = "UTC"
    every: PositiveDuration = 900.0
    #: One of the registered kinds' models (:func:`_condition_union`, set below).
    condition: ConditionModel
    for_: Duration = Field(0.0, alias="for")
    keep_firing_for: Duration = 0.0
    severity: str = "warning"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    receivers: list[str] | None = None
    #: The Stripe accounts of ``accounts:`` it watches (default: every one).
    accounts: Annotated[list[str], Field(min_length=1)] | None = None
    #: Where the rule was read from, for messages (set by the loader, never by users).
    source: Location | None = Field(None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _billing_window(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("window") == "billing_period":
            return {**data, "window": "month", "billing_period": True}
        if isinstance(data, dict) and "billing_period" in data:
            raise ValueError("billing_period: write window: billing_period")
        return data

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("use lower-case letters, digits and '-' (e.g. gpt4-daily-usage)")
        return value

    @field_validator("filters", "tenant_filters")
    @classmethod
    def _non_empty_values(cls, value: dict[str, FilterValue]) -> dict[str, FilterValue]:
        for key, item in value.items():
            if isinstance(item, list) and not item:
                raise ValueError(f"filter {key!r} needs at least one value")
        return value


_accept_registered_kinds()
registry.on_change(_accept_registered_kinds)
