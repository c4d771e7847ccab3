"""Store contract: the outbound queue's runner cycle and the sending-limit facts (every
backend in CASELLA_TEST_BACKENDS)."""

from __future__ import annotations

import asyncio

import pytest

from casella.errors import NotFound, UserError
from casella.store.base import Store
from casella.store.model import QueueRecipient
from casella.store.sending import RecipientResult


async def setup(store: Store) -> int:
    await store.add_domain("example.test")
    acct = await store.add_account("alice@example.test", "x", 0)
    return acct.id


async def enqueue(store: Store, rcpts: list[str], sender: str = "alice@example.test",
                  account_id: int | None = None, body: bytes = b"Subject: q\r\n\r\nhi\r\n",
                  notify: tuple[str, ...] = ()) -> int:
    blob = await store.blobs.stage(body)
    try:
        return await store.enqueue(blob, sender, [QueueRecipient(r, notify=notify)
                                                  for r in rcpts], account_id)
    finally:
        blob.discard()


async def test_enqueue_records_submitted_events(store: Store) -> None:
    aid = await setup(store)
    await enqueue(store, ["a@r.test", "b@r.test"], account_id=aid)
    await enqueue(store, ["c@r.test"], sender="", account_id=aid)      # a DSN: not counted
    await enqueue(store, ["d@r.test"])                                  # no account
    events = await store.send_events(aid, 0)
    assert [(e.kind, e.count) for e in events] == [("submitted", 2)]
    # An automatic reply (issue 20): the null sender, counted all the same.
    blob = await store.blobs.stage(b"Subject: away\r\n\r\nx\r\n")
    try:
        await store.enqueue(blob, "", [QueueRecipient("e@r.test")], aid, count=True)
    finally:
        blob.discard()
    events = await store.send_events(aid, 0)
    assert [(e.kind, e.count) for e in events] == [("submitted", 2), ("submitted", 1)]


async def test_due_claim_record_and_finish(store: Store) -> None:
    aid = await setup(store)
    qid = await enqueue(store, ["a@r.test", "b@r.test", "c@r.test"], account_id=aid)
    due = await store.queue_due(10**10)
    assert [e.id for e in due] == [qid] and len(due[0].recipients) == 3
    ids = [r.id for r in due[0].recipients]
    assert await store.queue_claim(ids[:2]) == ids[:2]
    assert await store.queue_claim(ids[:2]) == []                 # already claimed
    assert [r.address for r in (await store.queue_due(10**10))[0].recipients] == ["c@r.test"]
    await store.queue_record([
        RecipientResult(ids[0], "delivered", "250 ok", remote_mta="mx.r.test"),
        RecipientResult(ids[1], "deferred", "451 later", next_attempt=5000)], now=1000)
    entry = await store.get_queue_entry(qid)
    assert entry is not None
    states = {r.address: (r.state, r.attempts, r.next_attempt, r.last_reply)
              for r in entry.recipients}
    assert states["a@r.test"] == ("delivered", 1, 0, "250 ok")
    assert states["b@r.test"] == ("deferred", 1, 5000, "451 later")
    # Deferred is due only when its time has come.
    due = await store.queue_due(4999)
    assert [r.address for r in due[0].recipients] == ["c@r.test"]
    assert {r.address for r in (await store.queue_due(5000))[0].recipients} == {"b@r.test",
                                                                                 "c@r.test"}
    events = await store.send_events(aid, 0)
    assert sorted((e.kind, e.detail) for e in events if e.kind != "submitted") == [
        ("deferred", "b@r.test"), ("delivered", "")]
    await store.queue_claim([ids[1], ids[2]])
    await store.queue_record([RecipientResult(ids[1], "delivered", "250 ok"),
                              RecipientResult(ids[2], "failed", "550 no")], now=1001)
    assert await store.get_queue_entry(qid) is None                # all final, no DSN owed
    assert await store.list_queue() == []


async def test_blob_is_released_when_the_entry_finishes(store: Store) -> None:
    await setup(store)
    body = b"Subject: unique blob\r\n\r\nxyz\r\n"
    qid = await enqueue(store, ["a@r.test"], body=body)
    entry = await store.get_queue_entry(qid)
    assert entry is not None
    static = (await store.fetch_static([entry.blob_id]))[entry.blob_id]
    assert await store.read_blob(static.digest) == body
    await store.queue_claim([entry.recipients[0].id])
    await store.queue_record([RecipientResult(entry.recipients[0].id, "delivered", "250")], 1)
    # Unreferenced blobs are collected right after the commit (sqlite: on the writer thread).
    for _ in range(100):
        if await store.fetch_static([entry.blob_id]) == {}:
            break
        await asyncio.sleep(0.02)
    assert await store.fetch_static([entry.blob_id]) == {}


async def test_dsn_owed_keeps_the_entry_until_sent(store: Store) -> None:
    aid = await setup(store)
    qid = await enqueue(store, ["a@r.test", "b@r.test"], account_id=aid)
    rid = [r.id for r in (await store.get_queue_entry(qid)).recipients]
    await store.queue_claim(rid)
    await store.queue_record([RecipientResult(rid[0], "failed", "550 5.1.1 no", dsn="failed",
                                              remote_mta="mx"),
                              RecipientResult(rid[1], "deferred", "451 4.0.0 later",
                                              next_attempt=9, dsn="delayed")], now=7)
    notices = await store.queue_pending_notices()
    assert len(notices) == 1 and notices[0].entry.id == qid
    assert [(n.recipient.address, n.action, n.remote_mta, n.updated)
            for n in notices[0].recipients] == [("a@r.test", "failed", "mx", 7),
                                                ("b@r.test", "delayed", "", 7)]
    await store.queue_notices_sent(rid)
    assert await store.queue_pending_notices() == []
    # One delay notice per recipient: a second "delayed" is ignored.
    await store.queue_claim([rid[1]])
    await store.queue_record([RecipientResult(rid[1], "deferred", "451 later",
                                              next_attempt=20, dsn="delayed")], now=8)
    assert await store.queue_pending_notices() == []
    await store.queue_claim([rid[1]])
    await store.queue_record([RecipientResult(rid[1], "failed", "550 gave up",
                                              dsn="failed")], now=9)
    assert [n.action for n in (await store.queue_pending_notices())[0].recipients] == ["failed"]
    assert await store.get_queue_entry(qid) is not None
    await store.queue_notices_sent([rid[1]])
    assert await store.get_queue_entry(qid) is None


async def test_recover_hold_flush_remove(store: Store) -> None:
    aid = await setup(store)
    qid = await enqueue(store, ["a@r.test", "b@r.test"], account_id=aid)
    rid = [r.id for r in (await store.get_queue_entry(qid)).recipients]
    await store.queue_claim(rid)
    assert await store.queue_due(10**10) == []
    assert await store.queue_recover(now=50) == 2
    entry = await store.get_queue_entry(qid)
    assert {(r.state, r.next_attempt, r.attempts) for r in entry.recipients} == {
        ("deferred", 50, 0)}
    await store.queue_set_held(qid, True)
    assert (await store.get_queue_entry(qid)).held and await store.queue_due(10**10) == []
    await store.queue_set_held(qid, False)
    await store.set_sending_held("alice@example.test", True)
    assert (await store.get_account("alice@example.test")).sending_held
    assert await store.queue_due(10**10) == []
    await store.set_sending_held("alice@example.test", False)
    await store.queue_claim(rid)
    await store.queue_record([RecipientResult(r, "deferred", "451", next_attempt=10**6)
                              for r in rid], now=60)
    assert await store.queue_due(100) == []
    assert await store.queue_flush(qid, 100) == 2
    assert len((await store.queue_due(100))[0].recipients) == 2
    assert await store.queue_flush(None, 100) == 0
    await store.queue_remove(qid)
    assert await store.get_queue_entry(qid) is None
    with pytest.raises(NotFound):
        await store.queue_remove(qid)
    with pytest.raises(NotFound):
        await store.queue_set_held(qid, True)
    with pytest.raises(NotFound):
        await store.queue_flush(qid, 1)
    with pytest.raises(NotFound):
        await store.set_sending_held("nobody@example.test", True)


async def test_record_for_a_removed_entry_is_ignored(store: Store) -> None:
    await setup(store)
    qid = await enqueue(store, ["a@r.test"])
    rid = (await store.get_queue_entry(qid)).recipients[0].id
    await store.queue_claim([rid])
    await store.queue_remove(qid)
    await store.queue_record([RecipientResult(rid, "delivered", "250")], now=1)
    assert await store.list_queue() == []


async def test_limit_settings(store: Store) -> None:
    await setup(store)
    await store.set_send_limits("example.test", {"messages_per_hour": 50})
    await store.set_send_limits("Alice@Example.test", {"defers_failures_per_hour": 3,
                                                       "defers_failures_percent": 20})
    d = await store.get_domain("example.test")
    a = await store.get_account("alice@example.test")
    assert (d.messages_per_hour, d.defers_failures_per_hour) == (50, None)
    assert (a.messages_per_hour, a.defers_failures_per_hour, a.defers_failures_percent) == \
        (None, 3, 20)
    await store.set_send_limits("alice@example.test", {"defers_failures_per_hour": None})
    assert (await store.get_account("alice@example.test")).defers_failures_per_hour is None
    with pytest.raises(NotFound):
        await store.set_send_limits("bob@example.test", {"messages_per_hour": 1})
    with pytest.raises(NotFound):
        await store.set_send_limits("nowhere.test", {"messages_per_hour": 1})
    with pytest.raises(UserError):
        await store.set_send_limits("example.test", {"messages_per_hour": -1})
    with pytest.raises(UserError):
        await store.set_send_limits("example.test", {"defers_failures_percent": 101})
    with pytest.raises(UserError):
        await store.set_send_limits("example.test", {"quota": 1})


async def test_events_window_reset_prune_and_guard(store: Store) -> None:
    aid = await setup(store)
    await enqueue(store, ["a@r.test"], account_id=aid)
    qid = await enqueue(store, ["b@r.test"], account_id=aid)
    rid = (await store.get_queue_entry(qid)).recipients[0].id
    await store.queue_claim([rid])
    await store.queue_record([RecipientResult(rid, "failed", "550")], now=100)
    events = await store.send_events(aid, 0)
    assert events[0].kind == "failed"        # oldest first (at=100)
    assert [e.kind for e in await store.send_events(aid, 100)] == ["submitted", "submitted"]
    assert await store.prune_send_events(100) == 1
    assert await store.get_send_guard(aid) is None
    await store.set_send_guard(aid, 5000)
    assert await store.get_send_guard(aid) == 5000
    await store.set_send_guard(aid, 6000)
    assert await store.get_send_guard(aid) == 6000
    assert await store.reset_send_usage([aid]) == 2
    assert await store.send_events(aid, 0) == []
    assert await store.get_send_guard(aid) is None
    await store.set_send_guard(aid, 10)
    await store.prune_send_events(20)
    assert await store.get_send_guard(aid) is None
    await store.set_send_guard(aid, 30)
    await store.set_send_guard(aid, None)
    assert await store.get_send_guard(aid) is None


async def test_add_send_events_counts_like_queue_events(store: Store) -> None:
    """Issue 20: a submission refused as spam is recorded as "failed" events (one per
    recipient) that the sending guard counts like the queue's own; all or nothing, and only
    for an existing account."""
    from casella.store.sending import SendEvent

    aid = await setup(store)
    await store.add_send_events(aid, [SendEvent(100, "failed", 1, "a@r.test"),
                                      SendEvent(100, "failed", 1, "b@r.test")])
    await store.add_send_events(aid, [])
    events = await store.send_events(aid, 0)
    assert [(e.at, e.kind, e.count, e.detail) for e in events] == [
        (100, "failed", 1, "a@r.test"), (100, "failed", 1, "b@r.test")]
    with pytest.raises(NotFound):
        await store.add_send_events(aid + 1000, [SendEvent(100, "failed", 1, "c@r.test")])
    with pytest.raises(ValueError):
        await store.add_send_events(aid, [SendEvent(100, "failed", 1, "c@r.test"),
                                          SendEvent(100, "bogus", 1, "d@r.test")])
    assert len(await store.send_events(aid, 0)) == 2
    assert await store.prune_send_events(100) == 2
