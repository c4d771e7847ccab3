"""Store contract: the admin API's tokens and the counts /metrics reads (issue 18; every
backend in CASELLA_TEST_BACKENDS)."""

from __future__ import annotations

import pytest

from casella.errors import AlreadyExists, InvalidName, NotFound
from casella.store.base import Store
from casella.store.model import QueueRecipient
from casella.store.sending import RecipientResult


async def test_tokens_add_get_list_remove(store: Store) -> None:
    await store.add_domain("example.test")
    every = await store.add_api_token("a1", "panel", None, "h" * 64)
    limited = await store.add_api_token("b2", "reseller", "Example.TEST", "k" * 64)
    assert (every.domain, limited.domain) == (None, "example.test")
    assert await store.get_api_token("b2") == limited
    assert await store.get_api_token("zz") is None
    assert [t.name for t in await store.list_api_tokens()] == ["panel", "reseller"]
    await store.remove_api_token("panel")            # by name
    await store.remove_api_token("b2")               # by id
    assert await store.list_api_tokens() == []
    with pytest.raises(NotFound):
        await store.remove_api_token("panel")


async def test_token_names_and_ids_are_unique_and_domains_must_exist(store: Store) -> None:
    await store.add_api_token("a1", "panel", None, "h" * 64)
    with pytest.raises(AlreadyExists):
        await store.add_api_token("a2", "panel", None, "h" * 64)
    with pytest.raises(AlreadyExists):
        await store.add_api_token("a1", "other", None, "h" * 64)
    with pytest.raises(NotFound):
        await store.add_api_token("a3", "x", "nowhere.test", "h" * 64)
    with pytest.raises(InvalidName):
        await store.add_api_token("a4", "y", "not a domain", "h" * 64)
    assert [t.id for t in await store.list_api_tokens()] == ["a1"]


async def test_stats_count_domains_accounts_holds_and_the_waiting_queue(store: Store) -> None:
    empty = await store.stats()
    assert (empty.domains, empty.accounts, empty.queue_entries, empty.queue_oldest) == \
        (0, 0, 0, None)
    await store.add_domain("example.test")
    await store.add_domain("other.test")
    alice = await store.add_account("alice@example.test", "x", 0)
    await store.add_account("bob@example.test", "x", 0)
    await store.set_sending_held("bob@example.test", True)
    ids = []
    for rcpts in (["a@r.test", "b@r.test"], ["c@r.test"]):
        blob = await store.blobs.stage(b"Subject: q\r\n\r\nhi\r\n")
        try:
            ids.append(await store.enqueue(blob, "alice@example.test",
                                           [QueueRecipient(r) for r in rcpts], alice.id))
        finally:
            blob.discard()
    first = await store.get_queue_entry(ids[0])
    assert first is not None
    stats = await store.stats()
    assert (stats.domains, stats.accounts, stats.accounts_sending_held) == (2, 2, 1)
    assert (stats.queue_entries, stats.queue_recipients) == (2, 3)
    assert stats.queue_oldest == first.created
    # A delivered recipient no longer waits; an entry with none waiting is not counted.
    second = await store.get_queue_entry(ids[1])
    assert second is not None
    await store.queue_record([RecipientResult(second.recipients[0].id, "delivered", "250")],
                             now=first.created)
    after = await store.stats()
    assert (after.queue_entries, after.queue_recipients) == (1, 2)
