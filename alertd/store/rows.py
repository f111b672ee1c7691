"""How store records become table rows and back, whatever the SQL engine.

Where it sits: :mod:`alertd.store.sqlite` and :mod:`alertd.store.postgres` run their own SQL
(placeholders and upserts differ) but share these encoders and decoders, so a record written
by one backend reads back identically from the other and ``alertd state copy`` moves rows
column for column. Rows are read as mappings (``sqlite3.Row`` or psycopg's ``dict_row``).
JSON columns are compact, key-sorted text on both backends.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from alertd.alerts import AlertState
from alertd.model import Alert, Notification, SeriesKey
from alertd.silences import Silence
from alertd.store.base import GroupEntry, GroupId, NotificationGroup, OutboxRow, SentRecord
from alertd.store.written import Written

Row = Mapping[str, Any]

#: Columns of an outbox row as :func:`outbox_row` reads them.
OUTBOX_COLUMNS = ("id", "receiver", "group_key", "notification", "status", "attempts",
                  "next_attempt_at", "last_error", "created_at", "delivered_at")


def to_json(value: Any) -> str:
    # default=str: condition details may hold values JSON lacks; they are only shown to people.
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def group_text(key: SeriesKey) -> str:
    return to_json([list(pair) for pair in key.group])


def state_params(key: SeriesKey, state: AlertState) -> tuple[Any, ...]:
    """``alert_state`` columns: rule, customer, grp, fingerprint, state, updated_at,
    account."""
    updated = max(v for v in (state.last_active_at, state.resolved_at, 0) if v is not None)
    return (key.rule, key.customer, group_text(key), key.fingerprint,
            to_json(state.to_dict()), updated, key.account)


def state_where(key: SeriesKey) -> tuple[Any, ...]:
    """The ``alert_state`` primary key of ``key``: rule, customer, grp, account."""
    return (key.rule, key.customer, group_text(key), key.account)


def state_item(row: Row) -> tuple[SeriesKey, AlertState]:
    key = SeriesKey(row["rule"], row["customer"],
                    tuple((k, v) for k, v in json.loads(row["grp"])), row["account"])
    return key, AlertState.from_dict(json.loads(row["state"]))


def group_params(group: NotificationGroup) -> tuple[Any, ...]:
    """``alert_groups`` columns in table order."""
    return (group.receiver, group.group_key, to_json(dict(group.group_labels)),
            group.group_wait, group.group_interval, group.repeat_interval,
            int(group.send_resolved), group.created_at, group.flushed_at)


def entry_params(group: NotificationGroup) -> list[tuple[Any, ...]]:
    """``group_alerts`` rows of one group."""
    return [(group.receiver, group.group_key, e.instance, e.rank, to_json(e.alert.to_dict()))
            for e in group.entries]


def sent_params(record: SentRecord) -> tuple[Any, ...]:
    return (record.receiver, record.group_key, to_json(dict(record.firing)),
            to_json(sorted(record.resolved)), record.sent_at, record.notification_id)


def outbox_params(n: Notification, written: Written | None = None) -> tuple[Any, ...]:
    """id, receiver, group_key, notification, next_attempt_at, created_at of a new row;
    noted in ``written`` for the claim to take back undecoded."""
    text = to_json(n.to_dict())
    if written is not None:
        written.note(n, text)
    return (n.id, n.receiver, n.group_key, text, n.created_at, n.created_at)


def groups_from(group_rows: Iterable[Row], entry_rows: Iterable[Row]
                ) -> dict[GroupId, NotificationGroup]:
    """Groups from their header rows and their entries (entries ordered by instance)."""
    entries: dict[GroupId, list[GroupEntry]] = {}
    for row in entry_rows:
        entries.setdefault((row["receiver"], row["group_key"]), []).append(
            GroupEntry(row["instance"], row["rank"], Alert.from_dict(json.loads(row["alert"])))
        )
    groups: dict[GroupId, NotificationGroup] = {}
    for row in group_rows:
        ident = (row["receiver"], row["group_key"])
        groups[ident] = NotificationGroup(
            receiver=row["receiver"],
            group_key=row["group_key"],
            group_labels=json.loads(row["group_labels"]),
            group_wait=row["group_wait"],
            group_interval=row["group_interval"],
            repeat_interval=row["repeat_interval"],
            send_resolved=bool(row["send_resolved"]),
            created_at=row["created_at"],
            flushed_at=row["flushed_at"],
            entries=tuple(entries.get(ident, ())),
        )
    return groups


def sent_record(row: Row) -> SentRecord:
    return SentRecord(
        receiver=row["receiver"],
        group_key=row["group_key"],
        firing=json.loads(row["firing"]),
        resolved=frozenset(json.loads(row["resolved"])),
        sent_at=row["sent_at"],
        notification_id=row["notification_id"],
    )


def outbox_row(row: Row, written: Written | None = None) -> OutboxRow:
    """The row; its notification taken from ``written`` when this process wrote it."""
    text = row["notification"]
    return OutboxRow(
        id=row["id"],
        receiver=row["receiver"],
        group_key=row["group_key"],
        notification=(Notification.from_dict(json.loads(text)) if written is None
                      else written.take(text)),
        status=row["status"],
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        last_error=row["last_error"],
        created_at=row["created_at"],
        delivered_at=row["delivered_at"],
    )


def silence_params(silence: Silence) -> tuple[Any, ...]:
    return (silence.id, to_json([str(m) for m in silence.matchers]), silence.starts_at,
            silence.ends_at, silence.comment, silence.created_by, silence.created_at,
            int(silence.expired))


def silence(row: Row) -> Silence:
    return Silence.from_dict({**dict(row), "matchers": json.loads(row["matchers"])})
