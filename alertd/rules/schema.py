"""The rule file schema: what users write in ``rules/*.yaml``, validated once at the edge.

Pydantic models with ``extra="forbid"`` and a discriminated union on ``condition.type``. The
loader (:mod:`alertd.rules.loader`) turns a ``when:`` shorthand into the same fields before
validation and locates every error in the file. Past this module, code reads frozen
:class:`Rule` objects and never raw dicts.

Thresholds with ``value_from`` read a per-customer quota from Stripe customer metadata; with
``levels`` *and* ``value_from``, each level is a percent of that quota.
"""

from __future__ import annotations

import functools
import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from alertd.model import Granularity
from alertd.settings import Duration, PositiveDuration

NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
Op = Literal[">", ">=", "<", "<="]
Direction = Literal["up", "down", "both"]
UPPER_OPS = frozenset({">", ">="})


class _Strict(BaseModel):
    # allow_inf_nan=False: `.inf`, `.nan` and `1e400` are refused wherever a rule takes a
    # number (values, levels, percents, volumes, durations), with the value's position.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True,
                              allow_inf_nan=False)


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


class ValueFrom(_Strict):
    """A per-customer number read from Stripe customer metadata, scaled by ``percent``."""

    metadata: str
    percent: Annotated[float, Field(gt=0)] = 100.0


class ThresholdCondition(_Strict):
    type: Literal["threshold"]
    op: Op = ">"
    value: float | None = None
    value_from: ValueFrom | None = None
    levels: dict[str, float] | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> ThresholdCondition:
        if self.levels is not None:
            if self.value is not None:
                raise ValueError("use either 'value' or 'levels', not both")
            if not self.levels:
                raise ValueError("'levels' needs at least one level")
        elif (self.value is None) == (self.value_from is None):
            raise ValueError("a threshold needs exactly one of 'value' or 'value_from'")
        return self

    def ordered_levels(self) -> list[tuple[str, float]]:
        """Levels from least to most severe: for ``>``, ascending bounds; for ``<``, descending."""
        assert self.levels is not None
        return sorted(self.levels.items(), key=lambda kv: kv[1], reverse=self.op not in UPPER_OPS)


class ChangeCondition(_Strict):
    type: Literal["change"]
    compare_to: Literal["previous", "last_week"] = "previous"
    direction: Direction = "up"
    percent: Annotated[float, Field(gt=0)]
    min_volume: Annotated[float, Field(ge=0)] = 0.0


class AnomalyCondition(_Strict):
    type: Literal["anomaly"]
    sensitivity: Annotated[float, Field(gt=0)] = 4.0
    direction: Direction = "both"
    #: Five weeks: the judged hour and each hour of the week before it have four earlier weeks.
    history: PositiveDuration = 35 * 86400.0
    min_history: PositiveDuration = 7 * 86400.0
    min_volume: Annotated[float, Field(ge=0)] = 0.0


class ForecastCondition(_Strict):
    type: Literal["forecast"]
    value: float | None = None
    value_from: ValueFrom | None = None
    min_elapsed: Duration = 3 * 86400.0
    #: How far back the run rate is measured.
    rate_window: PositiveDuration = 7 * 86400.0

    @model_validator(mode="after")
    def _budget(self) -> ForecastCondition:
        if (self.value is None) == (self.value_from is None):
            raise ValueError("a forecast needs exactly one budget: 'value' or 'value_from'")
        return self


class AbsenceCondition(_Strict):
    type: Literal["absence"]
    duration: PositiveDuration
    floor: Annotated[float, Field(ge=0)] = 0.0


Condition = Annotated[
    ThresholdCondition | ChangeCondition | AnomalyCondition | ForecastCondition | AbsenceCondition,
    Field(discriminator="type"),
]


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
    timezone: TimeZone = "UTC"
    every: PositiveDuration = 900.0
    condition: Condition
    for_: Duration = Field(0.0, alias="for")
    keep_firing_for: Duration = 0.0
    severity: str = "warning"
    labels: dict[str, str] = {}
    annotations: dict[str, str] = {}
    receivers: list[str] | None = None
    #: Where the rule was read from, for messages: ``FILE:LINE``.
    source: str = Field("", exclude=True)

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
