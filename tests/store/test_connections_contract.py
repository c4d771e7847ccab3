"""The open-connection counts of the store contract (casella.store.base "open connections"),
on every backend: what limits.max_connections_per_ip and imap.max_connections_per_user_ip
count, shared by every worker process and node (DESIGN.md: counters that limits depend on live
where every worker and node sees them, never in one process's memory)."""

from __future__ import annotations

import asyncio

from casella.store.base import Store
from tests.store.conftest import open_store


async def test_acquire_counts_up_to_the_limit_over_all_owners(store: Store) -> None:
    assert await store.connections_acquire("n/0", [("ip:192.0.2.1", 3)]) is None
    assert await store.connections_acquire("n/1", [("ip:192.0.2.1", 3)]) is None
    assert await store.connections_acquire("n/1", [("ip:192.0.2.1", 3)]) is None
    # The fourth, whoever asks: refused, and the key at its limit is named.
    assert await store.connections_acquire("n/0", [("ip:192.0.2.1", 3)]) == "ip:192.0.2.1"
    assert await store.connections_count(["ip:192.0.2.1", "ip:192.0.2.2"]) == \
        {"ip:192.0.2.1": 3}
    await store.connections_release("n/1", ["ip:192.0.2.1"])
    assert await store.connections_acquire("n/0", [("ip:192.0.2.1", 3)]) is None
    assert await store.connections_count(["ip:192.0.2.1"]) == {"ip:192.0.2.1": 3}


async def test_acquire_is_all_or_nothing(store: Store) -> None:
    """A connection counted against two keys (an address and a user at that address) is
    counted against both or, when one is at its limit, against neither."""
    ip, user = "ip:198.51.100.7", "imap-user-ip:a@example.test 198.51.100.7"
    assert await store.connections_acquire("n/0", [(ip, 10), (user, 1)]) is None
    assert await store.connections_acquire("n/0", [(ip, 10), (user, 1)]) == user
    assert await store.connections_count([ip, user]) == {ip: 1, user: 1}
    assert await store.connections_acquire("n/0", [(ip, 10)]) is None
    assert await store.connections_acquire("n/0", [(user, 5), (ip, 2)]) == ip
    assert await store.connections_count([ip, user]) == {ip: 2, user: 1}
    assert await store.connections_acquire("n/0", []) is None


async def test_release_takes_only_from_its_owner_and_never_below_zero(store: Store) -> None:
    key = "ip:203.0.113.9"
    await store.connections_acquire("n/0", [(key, 10)])
    await store.connections_acquire("n/1", [(key, 10)])
    await store.connections_release("n/2", [key])          # holds none: nothing changes
    assert await store.connections_count([key]) == {key: 2}
    await store.connections_release("n/0", [key])
    await store.connections_release("n/0", [key])          # again: still not below zero
    assert await store.connections_count([key]) == {key: 1}
    await store.connections_release("n/1", [key])
    assert await store.connections_count([key]) == {}
    await store.connections_release("n/1", [])


async def test_forget_drops_an_owner_or_a_whole_node(store: Store) -> None:
    """A worker that died is forgotten by its replacement ("node/3"), a node that starts
    forgets all of its workers ("node"), and no other node's counts go with them."""
    key = "ip:192.0.2.50"
    for owner in ("mx1/0", "mx1/0", "mx1/1", "mx10/0", "mx2/0"):
        assert await store.connections_acquire(owner, [(key, 100)]) is None
    assert await store.connections_forget("mx1/0") == 2
    assert await store.connections_count([key]) == {key: 3}
    assert await store.connections_forget("mx1") == 1
    assert await store.connections_count([key]) == {key: 2}     # mx10 and mx2 stay
    assert await store.connections_forget("mx1") == 0


async def test_two_processes_share_the_counts(store: Store) -> None:
    """A second store on the same data (another worker process, opened without repair, as
    workers are) sees the first's counts, and concurrent acquires from both never let more
    than the limit through: exactly `limit` of them succeed."""
    other = await open_store(store.test_backend, store.test_data_dir,  # type: ignore[attr-defined]
                             repair=False)
    try:
        key = "imap-user-ip:race@example.test 192.0.2.77"
        await store.connections_acquire("n/0", [(key, 10)])
        assert await other.connections_count([key]) == {key: 1}
        await other.connections_release("n/0", [key])
        assert await store.connections_count([key]) == {}

        limit = 7
        results = await asyncio.gather(*(
            (store if i % 2 else other).connections_acquire(f"n/{i % 2}", [(key, limit)])
            for i in range(40)))
        assert sum(1 for r in results if r is None) == limit
        assert all(r in (None, key) for r in results)
        assert await store.connections_count([key]) == {key: limit}
    finally:
        await other.close()
