"""The store contract (DESIGN.md "Store contract", PROMISES D/U/X/Q), run on every backend."""

from __future__ import annotations

import asyncio
from email.utils import format_datetime
from datetime import datetime, timezone

import pytest

from casella.errors import (
    AlreadyExists,
    BodyGone,
    InvalidName,
    MailboxExists,
    MailboxNotAllowed,
    MailboxNotFound,
    NotFound,
    QuotaExceeded,
    UserError,
)
from casella.store.base import Store
from casella.store.blobs import StagedBlob
from casella.store.model import AppendItem, DeliveryTarget, QueueRecipient

PASSWORD_HASH = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


def message(n: int, body: str = "hello", subject: str | None = None) -> bytes:
    date = format_datetime(datetime(2026, 1, 1, 12, 0, n % 60, tzinfo=timezone.utc))
    return (f"From: Sender <sender@example.org>\r\nTo: alice@example.test\r\n"
            f"Subject: {subject or f'message {n}'}\r\nDate: {date}\r\n"
            f"Message-ID: <{n}@example.org>\r\n\r\n{body} {n}\r\n").encode()


async def account(store: Store, address: str = "alice@example.test", quota: int = 0):
    domain = address.split("@")[1]
    if await store.get_domain(domain) is None:
        await store.add_domain(domain)
    return await store.add_account(address, PASSWORD_HASH, quota)


async def append(store: Store, mailbox_id: int, *datas: bytes, flags=()) -> tuple[int, ...]:
    items = [AppendItem(await store.blobs.stage(d), tuple(flags)) for d in datas]
    try:
        result = await store.append(mailbox_id, items)
    finally:
        for item in items:
            item.blob.discard()
    return result.uids


async def inbox(store: Store, account_id: int):
    mb = await store.get_mailbox(account_id, "INBOX")
    assert mb is not None
    return mb


# --- domains, accounts, aliases -------------------------------------------------------------

async def test_domains_and_accounts(store: Store) -> None:
    await store.add_domain("Example.TEST")
    with pytest.raises(AlreadyExists):
        await store.add_domain("example.test")
    with pytest.raises(InvalidName):
        await store.add_domain("no_dots")
    acct = await store.add_account("Alice@Example.Test", PASSWORD_HASH, 1000)
    assert acct.address == "alice@example.test"
    assert acct.quota_bytes == 1000 and acct.used_bytes == 0
    with pytest.raises(AlreadyExists):
        await store.add_account("alice@example.test", PASSWORD_HASH, 0)
    with pytest.raises(NotFound):
        await store.add_account("bob@unknown.test", PASSWORD_HASH, 0)
    with pytest.raises(InvalidName):
        await store.add_account("bad address@example.test", PASSWORD_HASH, 0)
    assert (await store.get_account("ALICE@example.test")).id == acct.id
    assert [a.address for a in await store.list_accounts("example.test")] == [acct.address]
    with pytest.raises(UserError):
        await store.remove_domain("example.test")
    assert await store.get_account("alice@example.test") is not None
    await store.remove_domain("example.test", force=True)
    assert await store.get_account("alice@example.test") is None
    assert await store.list_domains() == []


async def test_new_account_has_six_special_use_mailboxes(store: Store) -> None:
    acct = await account(store)
    boxes = {m.name: m.special_use for m in await store.list_mailboxes(acct.id)}
    assert boxes == {"INBOX": None, "Drafts": "\\Drafts", "Sent": "\\Sent",
                     "Trash": "\\Trash", "Junk": "\\Junk", "Archive": "\\Archive"}
    assert sorted(await store.list_subscriptions(acct.id)) == sorted(boxes)


async def test_password_quota_and_removal(store: Store) -> None:
    acct = await account(store)
    await store.set_password(acct.address, "new-hash")
    await store.set_quota(acct.address, 5000, 10)
    changed = await store.get_account(acct.address)
    assert (changed.password_hash, changed.quota_bytes, changed.quota_messages) == \
        ("new-hash", 5000, 10)
    with pytest.raises(NotFound):
        await store.set_password("nobody@example.test", "x")
    mb = await inbox(store, acct.id)
    await append(store, mb.id, message(1))
    await store.remove_account(acct.address)
    assert await store.get_account(acct.address) is None
    assert await store.get_mailbox_by_id(mb.id) is None


async def test_aliases_and_catch_all(store: Store) -> None:
    await account(store)
    alias = await store.add_alias("Info@example.test", ["alice@example.test", "x@remote.org"])
    assert alias.destinations == ("alice@example.test", "x@remote.org")
    await store.add_alias("@example.test", ["alice@example.test"])
    with pytest.raises(AlreadyExists):
        await store.add_alias("info@example.test", ["alice@example.test"])
    with pytest.raises(NotFound):
        await store.add_alias("info@elsewhere.test", ["alice@example.test"])
    assert (await store.get_alias("INFO@example.test")).source == "info@example.test"
    assert (await store.get_alias("@EXAMPLE.test")).destinations == ("alice@example.test",)
    assert [a.source for a in await store.list_aliases()] == ["@example.test",
                                                               "info@example.test"]
    await store.remove_alias("info@example.test")
    assert await store.get_alias("info@example.test") is None
    with pytest.raises(NotFound):
        await store.remove_alias("info@example.test")


# --- mailboxes ------------------------------------------------------------------------------

async def test_create_with_parents_and_invalid_names(store: Store) -> None:
    acct = await account(store)
    mb = await store.create_mailbox(acct.id, "Projects/2026/Q1")
    names = {m.name for m in await store.list_mailboxes(acct.id)}
    assert {"Projects", "Projects/2026", "Projects/2026/Q1"} <= names
    assert mb.uidnext == 1 and mb.uidvalidity > 0
    with pytest.raises(MailboxExists):
        await store.create_mailbox(acct.id, "Projects/2026/Q1")
    with pytest.raises(MailboxExists):
        await store.create_mailbox(acct.id, "inbox")
    for bad in ["", "a//b", "/a", "a/", "../x", "a/../b", "a/./b", "~x", "bad\x01", "x" * 256,
                " lead"]:
        with pytest.raises(InvalidName):
            await store.create_mailbox(acct.id, bad)
    assert (await store.get_mailbox(acct.id, "inbox")).name == "INBOX"
    assert (await store.get_mailbox(acct.id, "InBoX/sub")) is None


async def test_delete_with_children_keeps_noselect_placeholder(store: Store) -> None:
    acct = await account(store)
    parent = await store.create_mailbox(acct.id, "Parent")
    await store.create_mailbox(acct.id, "Parent/Child")
    await append(store, parent.id, message(1))
    await store.delete_mailbox(acct.id, "Parent")
    placeholder = await store.get_mailbox(acct.id, "Parent")
    assert placeholder is not None and not placeholder.selectable and placeholder.messages == 0
    assert (await store.get_account_by_id(acct.id)).used_bytes == 0
    with pytest.raises(MailboxNotAllowed):
        await store.delete_mailbox(acct.id, "Parent")
    await store.delete_mailbox(acct.id, "Parent/Child")
    await store.delete_mailbox(acct.id, "Parent")
    assert await store.get_mailbox(acct.id, "Parent") is None
    with pytest.raises(MailboxNotAllowed):
        await store.delete_mailbox(acct.id, "INBOX")
    with pytest.raises(MailboxNotFound):
        await store.delete_mailbox(acct.id, "Nope")


async def test_recreated_mailbox_gets_greater_uidvalidity(store: Store) -> None:
    """PROMISES U3: DELETE + CREATE never presents the old UIDVALIDITY."""
    acct = await account(store)
    first = await store.create_mailbox(acct.id, "Box")
    await append(store, first.id, message(1), message(2))
    await store.delete_mailbox(acct.id, "Box")
    second = await store.create_mailbox(acct.id, "Box")
    assert second.uidvalidity > first.uidvalidity
    assert second.uidnext == 1


async def test_rename_with_children_and_subscriptions(store: Store) -> None:
    acct = await account(store)
    a = await store.create_mailbox(acct.id, "A")
    await store.create_mailbox(acct.id, "A/B")
    await store.subscribe(acct.id, "A/B")
    uids = await append(store, a.id, message(1))
    await store.rename_mailbox(acct.id, "A", "Z/Y")
    names = {m.name for m in await store.list_mailboxes(acct.id)}
    assert {"Z", "Z/Y", "Z/Y/B"} <= names and "A" not in names and "A/B" not in names
    renamed = await store.get_mailbox(acct.id, "Z/Y")
    assert renamed.id == a.id and renamed.uidvalidity == a.uidvalidity
    assert [m.uid for m in await store.fetch_meta(a.id, [(1, 100)])] == list(uids)
    assert "Z/Y/B" in await store.list_subscriptions(acct.id)
    assert "A/B" not in await store.list_subscriptions(acct.id)
    with pytest.raises(MailboxExists):
        await store.rename_mailbox(acct.id, "Z/Y", "Sent")
    with pytest.raises(MailboxNotFound):
        await store.rename_mailbox(acct.id, "Nope", "Other")
    with pytest.raises(MailboxNotAllowed):
        await store.rename_mailbox(acct.id, "Z", "Z/Y/B/C")


async def test_rename_inbox_moves_messages_and_leaves_inbox_empty(store: Store) -> None:
    """RFC 3501 §6.3.5."""
    acct = await account(store)
    box = await inbox(store, acct.id)
    await store.create_mailbox(acct.id, "INBOX/Kept")
    await append(store, box.id, message(1), message(2))
    await store.rename_mailbox(acct.id, "INBOX", "Old Mail")
    old = await store.get_mailbox(acct.id, "Old Mail")
    assert old.messages == 2 and old.uidvalidity != box.uidvalidity
    new_inbox = await inbox(store, acct.id)
    assert new_inbox.messages == 0 and new_inbox.uidvalidity == box.uidvalidity
    assert new_inbox.uidnext == box.uidnext + 2
    assert await store.get_mailbox(acct.id, "INBOX/Kept") is not None
    uid = (await append(store, new_inbox.id, message(3)))[0]
    assert uid == 3  # never reused (PROMISES U1)
    account_now = await store.get_account_by_id(acct.id)
    assert account_now.used_messages == 3


# --- messages -------------------------------------------------------------------------------

async def test_search_uids_by_header_field(store: Store) -> None:
    """search_uids answers FROM/TO/CC/BCC/SUBJECT from the values worked out at delivery:
    decoded, casefolded, every occurrence of the field."""
    acct = await account(store)
    mb = await inbox(store, acct.id)
    uids = await append(
        store, mb.id, message(1, subject="Invoice 42"),
        message(2, subject="=?utf-8?q?Gr=C3=BC=C3=9Fe?= from home"),
        b"To: Bob <bob@example.test>\r\nSubject: one\r\nSubject: second INVOICE\r\n"
        b"Cc: carol@example.org\r\n\r\nbody\r\n")
    seen = await append(store, mb.id, message(4, subject="seen invoice"), flags=["\\Seen"])
    top = seen[-1]

    async def search(*pairs: tuple[str, str], **kw: object) -> list[int]:
        return await store.search_uids(mb.id, top, header_contains=pairs, **kw)

    assert await search(("subject", "invoice")) == [uids[0], uids[2], seen[0]]
    assert await search(("subject", "invoice"), with_flags=["\\Seen"]) == [seen[0]]
    assert await search(("subject", "grüsse")) == [uids[1]]          # "Grüße" casefolded
    assert await search(("from", "sender@example.org")) == [*uids[:2], seen[0]]
    assert await search(("to", "bob@")) == [uids[2]]
    assert await search(("cc", "carol")) == [uids[2]]
    assert await search(("bcc", "x")) == []
    assert await search(("subject", "invoice"), ("to", "alice")) == [uids[0], seen[0]]
    assert await search(("subject", "invoice"), larger=1000) == []
    assert await store.search_uids(mb.id, uids[1], header_contains=[("subject", "invoice")]) \
        == [uids[0]]
    for bad in [("x-priority", "1"), ("subject", ""), ("subject", "a\nb")]:
        with pytest.raises(ValueError):
            await search(bad)


async def test_append_uids_modseq_counters_and_quota(store: Store) -> None:
    acct = await account(store)
    box = await inbox(store, acct.id)
    uids = await append(store, box.id, message(1), message(2), flags=["\\Seen", "$Label1"])
    assert uids == (1, 2)
    more = await append(store, box.id, message(3))
    assert more == (3,)
    mb = await store.get_mailbox_by_id(box.id)
    assert (mb.messages, mb.unseen, mb.uidnext) == (3, 1, 4)
    assert mb.highestmodseq > box.highestmodseq
    metas = await store.fetch_meta(box.id, [(1, 3)])
    assert [m.uid for m in metas] == [1, 2, 3]
    assert metas[0].flags == ("\\Seen", "$Label1")
    assert metas[2].modseq > metas[0].modseq
    acct2 = await store.get_account_by_id(acct.id)
    assert acct2.used_bytes == sum(m.size for m in metas) == mb.size
    snap = await store.select(box.id)
    assert list(snap.uids) == [1, 2, 3] and snap.first_unseen_uid == 3
    assert snap.keywords == ("$Label1",)


async def test_quota_refuses_and_changes_nothing(store: Store) -> None:
    acct = await account(store, quota=len(message(1)) * 2 + 10)
    box = await inbox(store, acct.id)
    await append(store, box.id, message(1), message(2))
    before = await store.get_mailbox_by_id(box.id)
    with pytest.raises(QuotaExceeded):
        await append(store, box.id, message(3))
    after = await store.get_mailbox_by_id(box.id)
    assert after == before
    assert (await store.get_account_by_id(acct.id)).used_messages == 2


async def test_static_data_and_blob_reads(store: Store) -> None:
    acct = await account(store)
    box = await inbox(store, acct.id)
    data = message(7, subject="Static")
    await append(store, box.id, data)
    meta = (await store.fetch_meta(box.id, [(1, 1)]))[0]
    static = (await store.fetch_static([meta.blob_id]))[meta.blob_id]
    assert static.size == len(data) == meta.size
    assert b"Static" in static.envelope
    assert static.bodystructure.startswith(b"(")
    assert static.header.endswith(b"\r\n\r\n")
    assert await store.read_blob(static.digest) == data
    assert await store.read_blob(static.digest, 6, 6) == data[6:12]


async def test_copy_and_move_return_uid_maps(store: Store) -> None:
    acct = await account(store)
    box = await inbox(store, acct.id)
    other = await store.create_mailbox(acct.id, "Other")
    await append(store, box.id, message(1), message(2), message(3), flags=["\\Flagged"])
    copied = await store.copy(box.id, [(1, 2)], other.id)
    assert copied.pairs == ((1, 1), (2, 2)) and copied.uidvalidity == other.uidvalidity
    assert (await store.get_account_by_id(acct.id)).used_messages == 5
    moved = await store.move(box.id, [(3, 3), (2, 2)], other.id)
    assert moved.pairs == ((2, 3), (3, 4)) and moved.expunged == (2, 3)
    assert [m.uid for m in await store.fetch_meta(box.id, [(1, 10)])] == [1]
    dest = await store.fetch_meta(other.id, [(1, 10)])
    assert [m.uid for m in dest] == [1, 2, 3, 4]
    assert all(m.has("\\Flagged") for m in dest)
    assert (await store.get_account_by_id(acct.id)).used_messages == 5
    changes = await store.changes_since(box.id, 0)
    assert changes.expunged == (2, 3)
    empty = await store.copy(box.id, [(50, 60)], other.id)
    assert empty.pairs == ()


async def test_move_into_the_same_mailbox(store: Store) -> None:
    """RFC 6851 §3.3 (MOVE is COPY, then the expunge of the originals) with the source as the
    target: new UIDs above the old UIDNEXT (U1), one MODSEQ for the copies and a higher one
    for the expunge (U7), flags kept, and the quota unchanged, even when it is full (Q3); COPY into the same mailbox
    needs room like any copy."""
    acct = await account(store, quota=2 * len(message(1)))
    box = await inbox(store, acct.id)
    await append(store, box.id, message(1), message(2), flags=["\\Flagged"])
    before = await store.get_mailbox_by_id(box.id)
    used = (await store.get_account_by_id(acct.id)).used_bytes
    moved = await store.move(box.id, [(1, 1)], box.id)
    assert moved.pairs == ((1, 3),) and moved.expunged == (1,)
    assert moved.uidvalidity == before.uidvalidity
    metas = await store.fetch_meta(box.id, [(1, 10)])
    assert [m.uid for m in metas] == [2, 3] and all(m.has("\\Flagged") for m in metas)
    after = await store.get_mailbox_by_id(box.id)
    assert after.uidnext == 4 and after.messages == 2
    assert after.highestmodseq == before.highestmodseq + 2
    assert metas[1].modseq == before.highestmodseq + 1
    changes = await store.changes_since(box.id, before.highestmodseq)
    assert changes.expunged == (1,) and [m.uid for m in changes.messages] == [3]
    acct_after = await store.get_account_by_id(acct.id)
    assert acct_after.used_bytes == used and acct_after.used_messages == 2
    with pytest.raises(QuotaExceeded):      # a copy needs room, a move does not
        await store.copy(box.id, [(2, 2)], box.id)


async def test_move_within_account_is_allowed_at_full_quota(store: Store) -> None:
    """Q3 and RFC 9208: moving inside one quota root does not need more space."""
    acct = await account(store, quota=len(message(1)))
    box = await inbox(store, acct.id)
    await append(store, box.id, message(1))
    trash = await store.get_mailbox(acct.id, "Trash")
    with pytest.raises(QuotaExceeded):
        await store.copy(box.id, [(1, 1)], trash.id)
    await store.move(box.id, [(1, 1)], trash.id)
    assert (await store.get_mailbox_by_id(trash.id)).messages == 1


async def test_store_flags_modseq_and_unchangedsince(store: Store) -> None:
    acct = await account(store)
    box = await inbox(store, acct.id)
    await append(store, box.id, message(1), message(2), message(3))
    r = await store.store_flags(box.id, [(1, 2)], "add", ["\\Seen", "Work"])
    assert [m.uid for m in r.changed] == [1, 2]
    assert r.changed[0].flags == ("\\Seen", "Work") and r.changed[0].modseq == r.highestmodseq
    again = await store.store_flags(box.id, [(1, 2)], "add", ["\\seen"])
    assert again.changed == () and [m.uid for m in again.unchanged] == [1, 2]
    assert again.highestmodseq == r.highestmodseq  # no change, no new MODSEQ (U7)
    mb = await store.get_mailbox_by_id(box.id)
    assert mb.unseen == 1
    old = r.highestmodseq
    await store.store_flags(box.id, [(2, 2)], "remove", ["work"])
    cond = await store.store_flags(box.id, [(1, 3)], "replace", ["\\Flagged"],
                                   unchangedsince=old)
    assert cond.modified == (2,)
    assert [m.uid for m in cond.changed] == [1, 3]
    metas = {m.uid: m for m in await store.fetch_meta(box.id, [(1, 3)])}
    assert metas[1].flags == ("\\Flagged",) and metas[2].flags == ("\\Seen",)
    assert (await store.get_mailbox_by_id(box.id)).unseen == 2
    changes = await store.changes_since(box.id, old)
    assert sorted(m.uid for m in changes.messages) == [1, 2, 3]


async def test_expunge_and_changes_since(store: Store) -> None:
    acct = await account(store)
    box = await inbox(store, acct.id)
    await append(store, box.id, *(message(i) for i in range(1, 6)))
    base = (await store.get_mailbox_by_id(box.id)).highestmodseq
    await store.store_flags(box.id, [(2, 2), (4, 5)], "add", ["\\Deleted"])
    partial = await store.expunge(box.id, [(4, 4)])
    assert partial.uids == (4,)
    rest = await store.expunge(box.id)
    assert rest.uids == (2, 5)
    nothing = await store.expunge(box.id)
    assert nothing.uids == ()
    ch = await store.changes_since(box.id, base)
    assert ch.expunged == (2, 4, 5) and ch.messages == ()
    mb = await store.get_mailbox_by_id(box.id)
    assert (mb.messages, mb.deleted) == (2, 0)
    acct2 = await store.get_account_by_id(acct.id)
    assert acct2.used_messages == 2 and acct2.used_bytes == mb.size
    new = await append(store, box.id, message(9))
    assert new == (6,)  # U1: never reused
    ch2 = await store.changes_since(box.id, rest.highestmodseq)
    assert [m.uid for m in ch2.messages] == [6] and ch2.expunged == ()


async def test_remove_messages_ignores_flags(store: Store) -> None:
    acct = await account(store)
    box = await inbox(store, acct.id)
    await append(store, box.id, message(1), message(2))
    r = await store.remove_messages(box.id, [(1, 1)])
    assert r.uids == (1,)
    assert (await store.get_mailbox_by_id(box.id)).messages == 1


async def test_claim_recent_goes_to_one_session(store: Store) -> None:
    """PROMISES X5."""
    acct = await account(store)
    box = await inbox(store, acct.id)
    await append(store, box.id, message(1), message(2))
    assert await store.claim_recent(box.id) == (1, 3)
    assert await store.claim_recent(box.id) == (3, 3)
    await append(store, box.id, message(3))
    assert await store.claim_recent(box.id) == (3, 4)


async def test_concurrent_appends_get_distinct_uids(store: Store) -> None:
    """PROMISES X6: concurrent deliveries never lose a message."""
    acct = await account(store)
    box = await inbox(store, acct.id)

    async def one(i: int) -> tuple[int, ...]:
        return await append(store, box.id, message(i, body="x" * i))

    results = await asyncio.gather(*(one(i) for i in range(60)))
    uids = sorted(u for r in results for u in r)
    assert uids == list(range(1, 61))
    mb = await store.get_mailbox_by_id(box.id)
    assert mb.messages == 60 and mb.uidnext == 61
    metas = await store.fetch_meta(box.id, [(1, 60)])
    assert (await store.get_account_by_id(acct.id)).used_bytes == sum(m.size for m in metas)


async def test_deliver_stores_body_once_and_refcounts(store: Store) -> None:
    accounts = [await account(store, f"user{i}@example.test") for i in range(5)]
    full = await account(store, "full@example.test", quota=10)
    staged = await store.blobs.stage(message(1))
    try:
        outcomes = await store.deliver(
            staged, [DeliveryTarget(a.id) for a in accounts] + [DeliveryTarget(full.id)] +
            [DeliveryTarget(accounts[0].id, mailbox="Archive"),
             DeliveryTarget(accounts[1].id, mailbox="NoSuchBox")])
    finally:
        staged.discard()
    assert [o.error is None for o in outcomes] == [True] * 5 + [False, True, True]
    assert isinstance(outcomes[5].error, QuotaExceeded)
    archive = await store.get_mailbox(accounts[0].id, "Archive")
    assert outcomes[6].mailbox_id == archive.id
    inbox1 = await inbox(store, accounts[1].id)
    assert outcomes[7].mailbox_id == inbox1.id
    assert await store.stored_bodies() == [staged.digest]
    # Expunging every copy releases the body.
    for o in outcomes:
        if o.error is None:
            await store.remove_messages(o.mailbox_id, [(o.uid, o.uid)])
    await asyncio.sleep(0)
    await store.add_domain("flush.test")  # one more write runs the collector's turn
    # The collector runs after that write has been answered: give it time to finish.
    for _ in range(100):
        if not await store.stored_bodies():
            break
        await asyncio.sleep(0.05)
    assert await store.stored_bodies() == []


async def test_read_of_a_body_collected_meanwhile_is_body_gone(store: Store) -> None:
    """A body read after every message holding it was removed and the body collected (another
    session expunged the message after this one read its metadata) raises BodyGone, which
    protocols answer as an expunge (RFC 2180 §4.1), never as an unavailable store; a body
    still held is read as usual."""
    acct = await account(store)
    box = await inbox(store, acct.id)
    big = message(1, body="x" * 100_000)        # a file in every backend that has files
    await append(store, box.id, message(2), big, message(3))
    metas = await store.fetch_meta(box.id, [(1, 3)])
    statics = await store.fetch_static([m.blob_id for m in metas])
    digests = [statics[m.blob_id].digest for m in metas]
    await store.remove_messages(box.id, [(1, 2)])
    await store.add_domain("flush.test")  # one more write runs the collector's turn
    for _ in range(100):
        if len(await store.stored_bodies()) == 1:
            break
        await asyncio.sleep(0.05)
    assert await store.stored_bodies() == [digests[2]]
    for digest in digests[:2]:
        with pytest.raises(BodyGone):
            await store.read_blob(digest)
        with pytest.raises(BodyGone):
            await store.read_blob(digest, 10, 20)
        with pytest.raises(BodyGone):
            await store.read_blobs([(digests[2], 0, 5), (digest, 0, 5)])
    assert await store.read_blob(digests[2]) == message(3)
    assert await store.read_blobs([(digests[2], 0, 5)]) == [message(3)[:5]]


async def test_same_body_appended_twice_shares_the_blob(store: Store) -> None:
    acct = await account(store)
    box = await inbox(store, acct.id)
    await append(store, box.id, message(1))
    await append(store, box.id, message(1))
    assert len(await store.stored_bodies()) == 1
    await store.remove_messages(box.id, [(1, 1)])
    assert len(await store.stored_bodies()) == 1
    metas = await store.fetch_meta(box.id, [(1, 2)])
    static = await store.fetch_static([metas[0].blob_id])
    assert await store.read_blob(static[metas[0].blob_id].digest) == message(1)


async def test_pop3_bookkeeping(store: Store) -> None:
    acct = await account(store)
    box = await inbox(store, acct.id)
    await append(store, box.id, message(1), message(2), message(3))
    await store.pop3_mark_retrieved(box.id, [1, 2], 1000)
    await store.pop3_mark_retrieved(box.id, [1], 2000)
    await store.pop3_hide(box.id, [3])
    listed = await store.pop3_list(box.id)
    assert [(m.uid, t) for m, t in listed] == [(1, 1000), (2, 1000)]
    assert (await store.get_mailbox_by_id(box.id)).messages == 3


async def test_queue_entries(store: Store) -> None:
    acct = await account(store)
    staged = await store.blobs.stage(message(1))
    try:
        qid = await store.enqueue(staged, "alice@example.test",
                                  [QueueRecipient("bob@remote.org", notify=("FAILURE",)),
                                   QueueRecipient("carol@remote.org", orcpt="rfc822;c@r.org")],
                                  account_id=acct.id, envid="E1", ret="HDRS")
    finally:
        staged.discard()
    entry = await store.get_queue_entry(qid)
    assert entry.sender == "alice@example.test" and entry.envid == "E1"
    assert [r.address for r in entry.recipients] == ["bob@remote.org", "carol@remote.org"]
    assert entry.recipients[0].notify == ("FAILURE",) and entry.recipients[0].state == "queued"
    assert [e.id for e in await store.list_queue()] == [qid]
    assert await store.stored_bodies() == [staged.digest]


async def test_change_bus_hears_commits(store: Store) -> None:
    acct = await account(store)
    box = await inbox(store, acct.id)
    sub = store.bus.subscribe(box.id)
    acct_sub = store.bus.subscribe_account(acct.id)
    try:
        await append(store, box.id, message(1))
        events = await asyncio.wait_for(sub.wait(), 5)
        assert events[0].mailbox_id == box.id and events[0].modseq > 0
        assert acct_sub.drain()
    finally:
        sub.close()
        acct_sub.close()
    assert store.bus.subscriber_count == 0


async def test_reopen_keeps_uids_and_never_reuses(store: Store) -> None:
    """U1/U2/U7 across restart."""
    from tests.store.conftest import open_store
    acct = await account(store)
    box = await inbox(store, acct.id)
    await append(store, box.id, message(1), message(2))
    await store.store_flags(box.id, [(2, 2)], "add", ["\\Deleted"])
    await store.expunge(box.id)
    before = await store.get_mailbox_by_id(box.id)
    await store.close()
    reopened = await open_store(store.test_backend, store.test_data_dir)
    try:
        after = await reopened.get_mailbox_by_id(box.id)
        assert after == before
        assert (await append(reopened, box.id, message(3))) == (3,)
        assert (await reopened.get_mailbox_by_id(box.id)).highestmodseq > before.highestmodseq
    finally:
        await reopened.close()
    await store.open()


# --- authentication defence -----------------------------------------------------------------

async def test_auth_failure_counters_window_and_block(store: Store) -> None:
    keys = ["ip:192.0.2.1", "user:alice@example.test"]
    for i in range(1, 4):
        counts = await store.auth_record_failure(keys, now=1000 + i, window=600, block_after=3,
                                                 block_for=900)
        assert counts == {k: i for k in keys}
    status = await store.auth_status(keys + ["ip:198.51.100.9"], now=1010)
    assert status["ip:192.0.2.1"] == (3, 1003 + 900)
    assert status["user:alice@example.test"] == (3, 0)
    assert "ip:198.51.100.9" not in status
    # After the window, counting starts again but the block stays until it expires.
    counts = await store.auth_record_failure(["ip:192.0.2.1"], now=2000, window=600,
                                             block_after=3, block_for=900)
    assert counts == {"ip:192.0.2.1": 1}
    assert (await store.auth_status(["ip:192.0.2.1"], 2000))["ip:192.0.2.1"] == (1, 1903)
    assert await store.auth_clear(["ip:192.0.2.1", "user:nobody"]) == 1
    assert await store.auth_status(["ip:192.0.2.1"], 2000) == {}


async def test_deliver_and_enqueue_is_one_transaction(store: Store) -> None:
    """PROMISES D12: local copies and the queue entry commit together or not at all."""
    acct = await account(store)
    box = await inbox(store, acct.id)
    local = await store.blobs.stage(message(1))
    queued = await store.blobs.stage(message(2))
    try:
        outcomes, qid = await store.deliver_and_enqueue(
            local, [DeliveryTarget(acct.id)], queued, "alice@example.test",
            [QueueRecipient("bob@remote.org")], account_id=acct.id)
        assert outcomes[0].uid == 1 and qid is not None
        queued.discard()
        # A body whose temporary file is gone cannot be published: the whole job fails.
        staged = await store.blobs.stage(message(3))
        staged.discard()
        broken = StagedBlob(store.blobs, store.blobs.new_tmp_path(), staged.digest,
                            staged.size, staged.parsed)
        with pytest.raises(Exception):
            await store.deliver_and_enqueue(
                local, [DeliveryTarget(acct.id)], broken, "alice@example.test",
                [QueueRecipient("carol@remote.org")], account_id=acct.id)
    finally:
        local.discard()
    assert (await store.get_mailbox_by_id(box.id)).messages == 1
    assert [e.id for e in await store.list_queue()] == [qid]
    only_local, none = await store.deliver_and_enqueue(
        await store.blobs.stage(message(4)), [DeliveryTarget(acct.id)], None, "", [])
    assert none is None and only_local[0].error is None


async def test_removed_account_leaves_nothing_for_a_reused_id(store: Store) -> None:
    """Account ids can be reused: a new account must not inherit the old one's per-account
    rows (send history, threads, quota warnings)."""
    acct = await account(store, "old@example.test")
    box = await inbox(store, acct.id)
    await append(store, box.id, message(1))
    staged = await store.blobs.stage(message(2))
    try:
        await store.enqueue(staged, "old@example.test", [QueueRecipient("x@remote.org")],
                            account_id=acct.id)
    finally:
        staged.discard()
    assert await store.send_events(acct.id, 0) != []
    await store.remove_account("old@example.test")
    assert await store.send_events(acct.id, 0) == []
