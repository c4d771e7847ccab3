"""The store contract for the IMAP extensions (issue 9), run on every backend: EMAILID and
THREADID (RFC 8474), header-only reads, the expunge log behind VANISHED (RFC 7162), DELETED-
STORAGE (RFC 9208), and quota warnings handed out once per threshold crossing upwards."""

from __future__ import annotations

import asyncio

from casella.store.base import Store
from casella.store.model import AppendItem, DeliveryTarget
from casella.store.sqlite_imapext import thread_keys
from tests.store.test_contract import account, append, inbox


def mail(msgid: str, subject: str = "s", refs: str = "", reply: str = "",
         body: str = "x") -> bytes:
    head = f"From: a@example.org\r\nSubject: {subject}\r\nMessage-ID: <{msgid}>\r\n"
    if refs:
        head += f"References: {refs}\r\n"
    if reply:
        head += f"In-Reply-To: {reply}\r\n"
    return (head + "\r\n" + body + "\r\n").encode()


def test_thread_keys_parsing() -> None:
    header = (b"Message-ID: <C@x>\r\nReferences: <A@x>\r\n <B@x>\r\n"
              b"In-Reply-To: <B@x> (sent earlier)\r\n\r\n")
    assert thread_keys(header) == ("c@x", ["a@x", "b@x"])
    assert thread_keys(b"Subject: none\r\n\r\n") == (None, [])
    assert thread_keys(b"message-id:<Self@X>\r\nreferences: <self@x>\r\n\r\n") == ("self@x", [])


async def test_threads_follow_references_per_account(store: Store) -> None:
    alice = await account(store)
    bob = await account(store, "bob@example.test")
    box = await inbox(store, alice.id)
    (root, reply, other) = await append(store, box.id, mail("r@x"), mail("q@x", refs="<r@x>"),
                                        mail("o@x"))
    # A reply that arrives before its parent links up when the parent comes.
    (late_child,) = await append(store, box.id, mail("c2@x", reply="<p2@x>"))
    (late_parent,) = await append(store, box.id, mail("p2@x"))
    ids = {m.uid: m for m in await store.fetch_ids(box.id, [(1, 100)])}
    assert ids[root].thread_id == ids[reply].thread_id != 0
    assert ids[other].thread_id not in (0, ids[root].thread_id)
    assert ids[late_child].thread_id == ids[late_parent].thread_id
    # A copy keeps its thread and its EMAILID source (the same blob).
    drafts = await store.get_mailbox(alice.id, "Drafts")
    await store.copy(box.id, [(root, root)], drafts.id)
    (copy,) = await store.fetch_ids(drafts.id, [(1, 10)])
    assert copy.thread_id == ids[root].thread_id and copy.digest == ids[root].digest
    # Another account never joins alice's threads.
    bob_box = await inbox(store, bob.id)
    (b1,) = await append(store, bob_box.id, mail("q@x", refs="<r@x>"))
    (bids,) = await store.fetch_ids(bob_box.id, [(b1, b1)])
    assert bids.thread_id not in (ids[root].thread_id, 0)


async def test_delivered_messages_thread_per_account(store: Store) -> None:
    """One delivery to two accounts stores the body once; each account threads it on its own,
    a reply joins it, and the same content delivered again stays in its thread."""
    alice = await account(store)
    bob = await account(store, "bob@example.test")

    async def deliver(data: bytes, *accounts) -> list[int]:
        staged = await store.blobs.stage(data)
        try:
            outcomes = await store.deliver(staged, [DeliveryTarget(a.id) for a in accounts])
        finally:
            staged.discard()
        assert all(o.error is None for o in outcomes)
        return [o.uid for o in outcomes]

    a_root, b_root = await deliver(mail("d@x"), alice, bob)
    (a_reply,) = await deliver(mail("e@x", reply="<d@x>"), alice)
    (a_again,) = await deliver(mail("d@x"), alice)
    (a_other,) = await deliver(mail("f@x"), alice)
    a_box, b_box = await inbox(store, alice.id), await inbox(store, bob.id)
    a_ids = {m.uid: m for m in await store.fetch_ids(a_box.id, [(1, 100)])}
    (b_ids,) = await store.fetch_ids(b_box.id, [(b_root, b_root)])
    thread = a_ids[a_root].thread_id
    assert thread != 0 and a_ids[a_reply].thread_id == thread
    assert a_ids[a_again].thread_id == thread
    assert a_ids[a_again].digest == a_ids[a_root].digest == b_ids.digest
    assert a_ids[a_other].thread_id not in (0, thread)
    assert b_ids.thread_id not in (0, thread, a_ids[a_other].thread_id)


async def test_messages_without_message_id_are_their_own_thread(store: Store) -> None:
    alice = await account(store)
    box = await inbox(store, alice.id)
    a, b = await append(store, box.id, b"Subject: a\r\n\r\none\r\n", b"Subject: b\r\n\r\ntwo\r\n")
    got = {m.uid: m.thread_id for m in await store.fetch_ids(box.id, [(a, b)])}
    assert got[a] != got[b] and 0 not in got.values()


async def test_headers_vanished_and_deleted_storage(store: Store) -> None:
    alice = await account(store)
    box = await inbox(store, alice.id)
    uids = await append(store, box.id, mail("1@x", body="a" * 100), mail("2@x"), mail("3@x"))
    metas = await store.fetch_meta(box.id, [(1, 10)])
    headers = await store.fetch_headers([m.blob_id for m in metas])
    assert headers[metas[0].blob_id].startswith(b"From: a@example.org\r\n")
    assert headers[metas[0].blob_id].endswith(b"\r\n\r\n")
    assert await store.deleted_storage(box.id) == 0
    res = await store.store_flags(box.id, [(uids[0], uids[1])], "add", ["\\Deleted"])
    assert await store.deleted_storage(box.id) == metas[0].size + metas[1].size
    before = res.highestmodseq
    await store.expunge(box.id, [(uids[1], uids[1])])
    assert await store.vanished_since(box.id, before) == [uids[1]]
    await store.expunge(box.id)
    assert await store.vanished_since(box.id, before) == [uids[0], uids[1]]
    assert await store.vanished_since(box.id, 10**9) == []
    assert await store.deleted_storage(box.id) == 0


async def test_quota_warnings_once_per_crossing(store: Store) -> None:
    alice = await account(store, quota=10_000)
    box = await inbox(store, alice.id)
    assert await store.take_quota_warnings(alice.id) == []
    big = mail("big@x", body="b" * 7_000)
    await append(store, box.id, big)                       # ~71 %: nothing yet
    assert await store.take_quota_warnings(alice.id) == []
    await append(store, box.id, mail("m1@x", body="c" * 1_000))     # crosses 80 %
    assert await store.take_quota_warnings(alice.id) == [80]
    assert await store.take_quota_warnings(alice.id) == []          # handed out once
    await append(store, box.id, mail("m2@x", body="d" * 1_400))     # crosses 95 %
    assert await store.take_quota_warnings(alice.id) == [95]
    # Back under 80 % and over it again: a new crossing, a new warning.
    await store.store_flags(box.id, [(1, 1)], "add", ["\\Deleted"])
    await store.expunge(box.id)
    assert await store.take_quota_warnings(alice.id) == []
    await append(store, box.id, mail("m3@x", body="e" * 7_200))
    assert await store.take_quota_warnings(alice.id) == [80, 95]


async def test_results_say_when_a_quota_warning_waits(store: Store) -> None:
    """APPEND's result and each delivery outcome say whether a warning waits, so callers ask
    for it only then."""
    alice = await account(store, quota=10_000)
    bob = await account(store, "bob@example.test")          # no quota: never a warning
    box = await inbox(store, alice.id)
    staged = await store.blobs.stage(mail("a@x", body="a" * 7_000))
    try:
        result = await store.append(box.id, [AppendItem(staged, ())])
    finally:
        staged.discard()
    assert not result.quota_warning                          # ~71 %
    staged = await store.blobs.stage(mail("b@x", body="b" * 1_000))
    try:
        outcomes = await store.deliver(staged, [DeliveryTarget(alice.id),
                                                DeliveryTarget(bob.id)])
    finally:
        staged.discard()
    assert [o.quota_warning for o in outcomes] == [True, False]   # alice crossed 80 %
    # Not taken yet: the next delivery, which crosses nothing, still says one waits.
    staged = await store.blobs.stage(mail("w@x", body="w" * 10))
    try:
        (outcome,) = await store.deliver(staged, [DeliveryTarget(alice.id)])
    finally:
        staged.discard()
    assert outcome.quota_warning
    assert await store.take_quota_warnings(alice.id) == [80]
    staged = await store.blobs.stage(mail("c@x", body="c" * 10))
    try:
        (outcome,) = await store.deliver(staged, [DeliveryTarget(alice.id)])
    finally:
        staged.discard()
    assert not outcome.quota_warning                           # taken already


async def test_quota_warning_not_given_for_a_move_inside_the_account(store: Store) -> None:
    alice = await account(store, quota=10_000)
    box = await inbox(store, alice.id)
    (uid,) = await append(store, box.id, mail("m@x", body="m" * 7_800))
    assert await store.take_quota_warnings(alice.id) == []
    archive = await store.get_mailbox(alice.id, "Archive")
    await store.move(box.id, [(uid, uid)], archive.id)      # inserts before it removes
    assert await store.take_quota_warnings(alice.id) == []


async def test_concurrent_deliveries_warn_once(store: Store) -> None:
    alice = await account(store, quota=20_000)
    data = [mail(f"c{i}@x", body="z" * 1_500) for i in range(12)]
    staged = [await store.blobs.stage(d) for d in data]
    try:
        outcomes = await asyncio.gather(*(store.deliver(s, [DeliveryTarget(alice.id)])
                                          for s in staged))
    finally:
        for s in staged:
            s.discard()
    assert all(o[0].error is None for o in outcomes)
    got = await asyncio.gather(*(store.take_quota_warnings(alice.id) for _ in range(5)))
    assert sorted(t for g in got for t in g) == [80]
