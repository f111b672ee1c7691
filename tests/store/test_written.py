"""The outbox claim hands back the notifications this process wrote, undecoded, on both
backends — and what it hands back is what decoding the stored row gives (alertd.store.written)."""

from __future__ import annotations

import dataclasses

from alertd.model import Alert, Bucket, Notification
from alertd.store.base import Changes
from alertd.store.rows import outbox_params
from alertd.store.written import Written, faithful
from tests.store.conftest import OpenStore
from tests.store.test_sqlite import NOW
from tests.store.test_sqlite import alert as unordered_alert


def alert(**changes: object) -> Alert:
    """The store tests' alert, its labels in name order as ``alert_labels`` makes them."""
    base = unordered_alert()
    return dataclasses.replace(base, **{"labels": dict(sorted(base.labels.items())),
                                        "recent": (Bucket(NOW, NOW + 3600, 3.0, True),),
                                        **changes})


def notification(nid: str = "n1") -> Notification:
    return Notification(nid, "ops", "firing", "g1", {"rule": "gpt4-daily"}, (alert(),), NOW)


def decoded_like_a_restart(n: Notification) -> Notification:
    return Written().take(outbox_params(n)[3])  # nothing noted: decoded


async def test_claim_takes_back_what_this_process_wrote(make_store: OpenStore) -> None:
    n = notification()
    assert faithful(n)
    async with make_store() as store:
        await store.commit_transitions(Changes(outbox=(n,)))
        (row,) = await store.due_deliveries(NOW)
        assert row.notification is n
    async with make_store() as reopened:  # a restart: the same row is decoded
        (again,) = await reopened.due_deliveries(NOW)
        assert again.notification is not n
        assert again.notification == n
        assert again.notification.to_dict() == n.to_dict()
        assert list(again.notification.alerts[0].labels) == list(n.alerts[0].labels)


async def test_an_older_row_under_the_same_id_is_decoded(make_store: OpenStore) -> None:
    first = notification()
    changed = dataclasses.replace(first, group_labels={"rule": "other"})
    async with make_store() as store:
        await store.commit_transitions(Changes(outbox=(first,)))
    async with make_store() as store:
        await store.commit_transitions(Changes(outbox=(changed,)))  # ignored: id exists
        (row,) = await store.due_deliveries(NOW)
        assert row.notification is not changed
        assert row.notification == first


def test_only_notifications_that_decode_back_the_same_are_kept() -> None:
    plain = notification()
    assert faithful(plain)
    decoded = decoded_like_a_restart(plain)
    assert decoded == plain and decoded.to_dict() == plain.to_dict()

    unordered = dataclasses.replace(plain, alerts=(alert(labels={"z": "1", "a": "2"}),))
    assert not faithful(unordered)
    assert list(decoded_like_a_restart(unordered).alerts[0].labels) == ["a", "z"]

    tupled = dataclasses.replace(plain, alerts=(alert(details={"range": (1, 2)}),))
    assert not faithful(tupled)
    assert decoded_like_a_restart(tupled).alerts[0].details == {"range": [1, 2]}

    whole = dataclasses.replace(plain, alerts=(alert(recent=(Bucket(NOW, NOW + 3600, 3, True),)),))
    assert not faithful(whole)
    assert type(decoded_like_a_restart(whole).alerts[0].recent[0].value) is float


def test_taken_once_and_bounded() -> None:
    written = Written(capacity=2)
    texts = []
    ns = [notification(f"n{i}") for i in range(3)]
    for n in ns:
        texts.append(outbox_params(n, written)[3])
    assert len(written) == 2  # the oldest went first
    assert written.take(texts[0]) is not ns[0] and written.take(texts[0]) == ns[0]
    assert written.take(texts[2]) is ns[2]
    assert written.take(texts[2]) is not ns[2]  # taken: a second claim decodes
    assert len(written) == 1
