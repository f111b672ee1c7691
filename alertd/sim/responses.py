"""Stripe's JSON for each simulated object, built from generator data (pure functions).

The analytics answer can hold thousands of rows, so it is rendered from the generator's
columns straight into text rather than through one dict per row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from alertd.sim import hashing
from alertd.sim.generator import RowGroup
from alertd.sim.hashing import IntArray
from alertd.sim.profiles import CustomerProfile, MeterDef

USAGE_URL = "/v1/billing/analytics/meter_usage"
_CURRENT_ROW = (
    '{"object":"billing.analytics.meter_usage_row","id":"mtrusgrow_%016x",'
    '"starts_at":%d,"ends_at":%d,"value":%d.0%s'
)
_GUIDE_ROW = '{"starts_at":%d,"ends_at":%d,"value":%d%s'


def meter_usage(
    groups: Sequence[RowGroup],
    *,
    current_shape: bool,
    refreshed_at: int,
    livemode: bool,
    max_rows: int,
    order_key: int,
    customer: str,
) -> str:
    """The analytics response body, rows in a shuffled order fixed by ``order_key``.

    Row ids are stable: a hash of customer, meter, dimensions and bucket start.

    More than ``max_rows`` rows: the earliest ``max_rows`` (by bucket start) and
    ``has_more: true``, so a client narrows its time range and asks again.
    """
    sizes = [len(group) for group in groups]
    total = sum(sizes)
    group_of = np.repeat(np.arange(len(groups), dtype=np.int64), sizes)
    starts = np.concatenate([g.starts for g in groups]) if groups else np.zeros(0, np.int64)
    ends = np.concatenate([g.ends for g in groups]) if groups else np.zeros(0, np.int64)
    values = np.concatenate([g.values for g in groups]) if groups else np.zeros(0, np.int64)
    keep = np.arange(total)
    if total > max_rows:
        keep = np.lexsort((group_of, starts))[:max_rows]
    shuffle = hashing.mix_array(keep.astype(np.uint64) ^ np.uint64(order_key & hashing.MASK64))
    keep = keep[np.argsort(shuffle, kind="stable")]
    meters = [json.dumps(g.meter) for g in groups]
    dimensions = [
        json.dumps(dict(g.dimensions), separators=(",", ":")) if g.dimensions else "null"
        for g in groups
    ]
    group_keys = np.array(
        [_stable_hash(f"{customer}|{m}|{d}") for m, d in zip(meters, dimensions, strict=True)],
        dtype=np.uint64,
    )
    columns = _Columns(group_of[keep], starts[keep], ends[keep], values[keep])
    rows = _rows(columns, meters, dimensions, current_shape, group_keys)
    has_more = "true" if total > max_rows else "false"
    if not current_shape:
        return (
            f'{{"data":[{rows}],"data_refreshed_at":{refreshed_at},"has_more":{has_more}}}'
        )
    return (
        f'{{"object":"billing.analytics.meter_usage","livemode":{_bool(livemode)},'
        f'"refreshed_at":{refreshed_at},"rows":{{"object":"list","url":"{USAGE_URL}",'
        f'"has_more":{has_more},"total":{total},"data":[{rows}]}}}}'
    )


@dataclass(frozen=True, slots=True, eq=False)
class _Columns:
    """The rows to render, in output order: group index, bucket start and end, value."""

    groups: IntArray
    starts: IntArray
    ends: IntArray
    values: IntArray


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _rows(
    columns: _Columns,
    meters: list[str],
    dimensions: list[str],
    current_shape: bool,
    group_keys: npt.NDArray[np.uint64],
) -> str:
    # %-formatting one template over zipped columns is the fastest pure-Python rendering here
    # (about twice as fast as an f-string per row); values are integers, rendered as floats.
    tails = [f',"meter":{m},"dimensions":{d}}}' for m, d in zip(meters, dimensions, strict=True)]
    tail = [tails[g] for g in columns.groups.tolist()]
    starts, ends = columns.starts.tolist(), columns.ends.tolist()
    values = columns.values.tolist()
    if not current_shape:
        return ",".join(map(_GUIDE_ROW.__mod__, zip(starts, ends, values, tail, strict=True)))
    ids = hashing.mix_array(
        hashing.mix_array(columns.starts.astype(np.uint64)) ^ group_keys[columns.groups]
    ).tolist()
    return ",".join(map(_CURRENT_ROW.__mod__, zip(ids, starts, ends, values, tail, strict=True)))


def _bool(value: bool) -> str:
    return "true" if value else "false"


def summary(
    summary_id: str, meter: str, start: int, end: int, value: int, livemode: bool
) -> dict[str, Any]:
    return {
        "id": summary_id,
        "object": "billing.meter_event_summary",
        "aggregated_value": float(value),
        "end_time": end,
        "livemode": livemode,
        "meter": meter,
        "start_time": start,
    }


def meter(definition: MeterDef, created: int, livemode: bool) -> dict[str, Any]:
    return {
        "id": definition.id,
        "object": "billing.meter",
        "created": created,
        "customer_mapping": {"event_payload_key": "stripe_customer_id", "type": "by_id"},
        "default_aggregation": {"formula": "sum"},
        "dimension_payload_keys": list(definition.dimension_keys),
        "display_name": definition.display_name,
        "event_name": definition.event_name,
        "event_time_window": None,
        "livemode": livemode,
        "status": "active",
        "status_transitions": {"deactivated_at": None},
        "updated": created,
        "value_settings": {"event_payload_key": "value"},
    }


def customer(profile: CustomerProfile, livemode: bool) -> dict[str, Any]:
    return {
        "id": profile.id,
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": profile.created,
        "currency": "usd",
        "default_source": None,
        "delinquent": False,
        "description": None,
        "email": profile.email,
        "invoice_prefix": profile.id[-6:].upper(),
        "livemode": livemode,
        "metadata": dict(profile.metadata),
        "name": profile.name,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def page(url: str, data: list[dict[str, Any]], has_more: bool) -> dict[str, Any]:
    return {"object": "list", "data": data, "has_more": has_more, "url": url}


def search_page(
    url: str, data: list[dict[str, Any]], has_more: bool, next_page: str | None
) -> dict[str, Any]:
    return {
        "object": "search_result",
        "data": data,
        "has_more": has_more,
        "next_page": next_page,
        "url": url,
    }
