"""Leader leases on both backends: acquisition, renewal, expiry, takeover, fencing."""

from __future__ import annotations

import pytest

from alertd.store.base import Changes, Lease, LeaseLostError, next_lease
from tests.store.conftest import OpenStore
from tests.store.test_sqlite import FIRING, KEY, NOW, changes

TTL = 15.0


def test_next_lease_decides_renewal_takeover_and_refusal() -> None:
    mine = Lease("acct", "a", 3, NOW + 5)
    assert next_lease(None, "acct", "a", NOW + TTL, NOW) == Lease("acct", "a", 1, NOW + TTL)
    assert next_lease(mine, "acct", "a", NOW + TTL, NOW) == Lease("acct", "a", 3, NOW + TTL)
    assert next_lease(mine, "acct", "b", NOW + TTL, NOW) is None
    # Expired: anyone may take it, and taking it bumps the generation, even for its old holder.
    assert next_lease(mine, "acct", "b", NOW + 20, NOW + 5) == Lease("acct", "b", 4, NOW + 20)
    assert next_lease(mine, "acct", "a", NOW + 20, NOW + 6) == Lease("acct", "a", 4, NOW + 20)


async def test_one_holder_at_a_time_until_the_lease_expires(make_store: OpenStore) -> None:
    async with make_store() as a, make_store() as b:
        first = await a.acquire_lease("acct_1", "replica-a", TTL, NOW)
        assert first == Lease("acct_1", "replica-a", 1, NOW + TTL)
        # The standby sees the leader's lease and does not get it while it is live.
        assert await b.acquire_lease("acct_1", "replica-b", TTL, NOW + 10) == first
        renewed = await a.acquire_lease("acct_1", "replica-a", TTL, NOW + 10)
        assert renewed == Lease("acct_1", "replica-a", 1, NOW + 10 + TTL)
        # The leader stops renewing: after expiry the standby takes over, one generation up.
        taken = await b.acquire_lease("acct_1", "replica-b", TTL, NOW + 10 + TTL)
        assert taken == Lease("acct_1", "replica-b", 2, NOW + 10 + 2 * TTL)
        assert await a.acquire_lease("acct_1", "replica-a", TTL, NOW + 30) == taken
        assert await a.leases() == [taken]


async def test_another_account_has_its_own_lease(make_store: OpenStore) -> None:
    async with make_store() as a:
        one = await a.acquire_lease("acct_1", "replica-a", TTL, NOW)
        two = await a.acquire_lease("acct_2", "replica-b", TTL, NOW)
        assert (one.holder, two.holder) == ("replica-a", "replica-b")


async def test_a_released_lease_is_free_at_once(make_store: OpenStore) -> None:
    async with make_store() as a:
        lease = await a.acquire_lease("acct_1", "replica-a", TTL, NOW)
        await a.release_lease(lease)
        taken = await a.acquire_lease("acct_1", "replica-b", TTL, NOW + 1)
        assert (taken.holder, taken.generation) == ("replica-b", 2)


async def test_a_stale_leader_cannot_write_after_losing_its_lease(
    make_store: OpenStore,
) -> None:
    async with make_store() as old, make_store() as new:
        stale = await old.acquire_lease("acct_1", "replica-a", TTL, NOW)
        await old.commit_transitions(Changes(states={KEY: FIRING}), fence=stale)
        # replica-a pauses (GC, VM migration, SIGSTOP) past its lease; replica-b takes over.
        current = await new.acquire_lease("acct_1", "replica-b", TTL, NOW + TTL + 1)
        with pytest.raises(LeaseLostError, match="no longer held by replica-a"):
            await old.commit_transitions(changes(states={KEY: None}), fence=stale)
        # Nothing of the refused transaction was written: state and outbox as before.
        assert await new.load_states() == {KEY: FIRING}
        assert await new.outbox() == [] and await new.load_groups() == {}
        await new.commit_transitions(changes(), fence=current)
        assert [r.id for r in await new.outbox()] == ["n1"]
