"""The store contract for moving mail in and out (issue 19), on every backend:
`import_mailbox`, `import_messages`, `expunge_records` and `pop3_uidls` keep UIDVALIDITY, UIDs,
MODSEQs and POP3 UIDLs, never reuse a UID below UIDNEXT (PROMISES U1, U2, U3, U5, U7) and
write a batch all or nothing."""

from __future__ import annotations

import time

import pytest

from casella.errors import MailboxExists, UserError
from casella.store.base import Store
from casella.store.model import ImportItem
from tests.store.test_contract import account, append, inbox, message

UIDVALIDITY = 1_600_000_000


async def items(store: Store, specs: list[dict[str, object]]) -> list[ImportItem]:
    """ImportItems from specs: uid, modseq and any other ImportItem field; the body is
    message(uid) unless `body` is given."""
    out = []
    for spec in specs:
        spec = dict(spec)
        body = spec.pop("body", None) or message(int(spec["uid"]))  # type: ignore[arg-type]
        out.append(ImportItem(await store.blobs.stage(body), **spec))  # type: ignore[arg-type]
    return out


async def import_(store: Store, mailbox_id: int, specs: list[dict[str, object]]):
    batch = await items(store, specs)
    try:
        return await store.import_messages(mailbox_id, batch)
    finally:
        for item in batch:
            item.blob.discard()


async def test_import_mailbox_creates_adopts_and_never_lowers(store: Store) -> None:
    acct = await account(store)
    mb = await store.import_mailbox(acct.id, "Lists/dev", UIDVALIDITY, uidnext=40,
                                    highestmodseq=77, special_use="\\Archive")
    assert (mb.name, mb.uidvalidity, mb.uidnext, mb.highestmodseq, mb.special_use) == (
        "Lists/dev", UIDVALIDITY, 40, 77, "\\Archive")
    assert mb.selectable and mb.messages == 0
    assert await store.get_mailbox(acct.id, "Lists") is not None        # the parent too
    again = await store.import_mailbox(acct.id, "Lists/dev", UIDVALIDITY, uidnext=12,
                                       highestmodseq=5)
    assert (again.id, again.uidnext, again.highestmodseq, again.special_use) == (
        mb.id, 40, 77, "\\Archive")                                       # never lowered
    # The default INBOX of a new account never held mail: it takes the imported UIDVALIDITY.
    box = await store.import_mailbox(acct.id, "INBOX", UIDVALIDITY + 1, uidnext=3)
    assert (box.id, box.uidvalidity, box.uidnext) == ((await inbox(store, acct.id)).id,
                                                      UIDVALIDITY + 1, 3)
    # One that held mail under another UIDVALIDITY refuses: its clients know those UIDs.
    sent = await store.get_mailbox(acct.id, "Sent")
    await append(store, sent.id, message(1))
    with pytest.raises(MailboxExists):
        await store.import_mailbox(acct.id, "Sent", UIDVALIDITY + 2)
    assert (await store.get_mailbox(acct.id, "Sent")).uidvalidity == sent.uidvalidity


async def test_import_mailbox_keeps_uidvalidity_ascending(store: Store) -> None:
    """PROMISES U3: a mailbox created after an import whose UIDVALIDITY lies in the future
    still gets a greater one."""
    acct = await account(store)
    future = int(time.time()) + 10_000_000
    await store.import_mailbox(acct.id, "Old", future)
    created = await store.create_mailbox(acct.id, "New")
    assert created.uidvalidity > future


@pytest.mark.parametrize("kwargs", [
    {"uidvalidity": 0}, {"uidvalidity": 2**32}, {"uidnext": 0}, {"highestmodseq": 0},
    {"special_use": "\\Bogus"}, {"expunged": [(50, 1)]}, {"expunged": [(3, 99)]},
])
async def test_import_mailbox_refuses_bad_values(store: Store,
                                                 kwargs: dict[str, object]) -> None:
    acct = await account(store)
    args: dict[str, object] = {"uidvalidity": UIDVALIDITY, "uidnext": 10, "highestmodseq": 20}
    args.update(kwargs)
    uidvalidity = args.pop("uidvalidity")
    with pytest.raises(UserError):
        await store.import_mailbox(acct.id, "Box", uidvalidity, **args)  # type: ignore[arg-type]
    assert await store.get_mailbox(acct.id, "Box") is None


async def test_import_messages_keeps_identity_and_state(store: Store) -> None:
    acct = await account(store)
    mb = await store.import_mailbox(acct.id, "INBOX", UIDVALIDITY)
    after = await import_(store, mb.id, [
        {"uid": 3, "modseq": 9, "flags": ("\\Seen", "$Label1"), "internaldate": 1_500_000_000,
         "savedate": 1_500_000_100},
        {"uid": 7, "modseq": 4, "flags": ("\\Deleted",), "internaldate": 1_500_000_500,
         "pop3_uidl": "dovecot-7", "pop3_retrieved": 1_500_001_000},
        {"uid": 8, "modseq": 5, "pop3_hidden": True, "internaldate": 1_500_000_600},
    ])
    assert (after.uidvalidity, after.uidnext, after.highestmodseq) == (UIDVALIDITY, 9, 9)
    assert (after.messages, after.unseen, after.deleted) == (3, 2, 1)
    metas = await store.fetch_meta(mb.id, [(1, 100)])
    assert [(m.uid, m.modseq, m.flags, m.internaldate) for m in metas] == [
        (3, 9, ("\\Seen", "$Label1"), 1_500_000_000), (7, 4, ("\\Deleted",), 1_500_000_500),
        (8, 5, (), 1_500_000_600)]
    assert metas[0].savedate == 1_500_000_100
    assert after.size == sum(m.size for m in metas) == sum(len(message(u)) for u in (3, 7, 8))
    assert await store.read_blob((await store.fetch_static([metas[1].blob_id]))[
        metas[1].blob_id].digest) == message(7)
    acct_after = await store.get_account_by_id(acct.id)
    assert (acct_after.used_messages, acct_after.used_bytes) == (3, after.size)
    snap = await store.select(mb.id)
    assert list(snap.uids) == [3, 7, 8] and snap.first_unseen_uid == 7
    assert "$Label1" in snap.keywords
    # POP3: the stored UIDL, the first download, the hidden message.
    assert await store.pop3_uidls(mb.id) == {7: "dovecot-7"}
    assert [(m.uid, first) for m, first in await store.pop3_list(mb.id)] == [
        (3, None), (7, 1_500_001_000)]
    # Not \Recent, and the next delivery goes above everything imported.
    assert await store.claim_recent(mb.id) == (9, 9)
    (uid,) = await append(store, mb.id, message(20))
    assert uid == 9
    assert (await store.get_mailbox_by_id(mb.id)).highestmodseq > 9
    changes = await store.changes_since(mb.id, 4)
    assert [m.uid for m in changes.messages] == [3, 8, 9]


async def test_import_continues_above_uidnext_only(store: Store) -> None:
    """PROMISES U1: a UID below UIDNEXT may have been given out (and expunged): refused, even
    when no message holds it; a refused batch writes nothing."""
    acct = await account(store)
    mb = await store.import_mailbox(acct.id, "Box", UIDVALIDITY, uidnext=5)
    bodies_before = sorted(await store.stored_bodies())
    for specs in ([{"uid": 4, "modseq": 1}],
                  [{"uid": 6, "modseq": 1}, {"uid": 6, "modseq": 2}],
                  [{"uid": 9, "modseq": 1}, {"uid": 8, "modseq": 1}],
                  [{"uid": 6, "modseq": 0}],
                  [{"uid": 2**32, "modseq": 1}],
                  [{"uid": 6, "modseq": 1, "pop3_uidl": "has space"}],
                  [{"uid": 6, "modseq": 1, "pop3_uidl": "x" * 71}],
                  [{"uid": 6, "modseq": 1, "pop3_uidl": "a"},
                   {"uid": 7, "modseq": 1, "pop3_uidl": "a"}]):
        with pytest.raises(UserError):
            await import_(store, mb.id, specs)
    after = await store.get_mailbox_by_id(mb.id)
    assert (after.uidnext, after.messages) == (5, 0)
    assert sorted(await store.stored_bodies()) == bodies_before
    ok = await import_(store, mb.id, [{"uid": 5, "modseq": 3}, {"uid": 6, "modseq": 2}])
    assert ok.uidnext == 7
    with pytest.raises(UserError):
        await import_(store, mb.id, [{"uid": 6, "modseq": 1}])
    with pytest.raises(UserError):
        await store.import_messages(mb.id, [])


async def test_pop3_uidls_are_unique_per_mailbox(store: Store) -> None:
    """PROMISES U5: a stored UIDL already used in the mailbox refuses the whole batch; other
    mailboxes may use it; a copy does not take it along (it is a new message there)."""
    acct = await account(store)
    box = await store.import_mailbox(acct.id, "INBOX", UIDVALIDITY)
    await import_(store, box.id, [{"uid": 1, "modseq": 1, "pop3_uidl": "u-1"}])
    with pytest.raises(UserError):
        await import_(store, box.id, [{"uid": 2, "modseq": 1}, {"uid": 3, "modseq": 1,
                                                               "pop3_uidl": "u-1"}])
    assert list((await store.select(box.id)).uids) == [1]
    other = await store.import_mailbox(acct.id, "Other", UIDVALIDITY + 1)
    await import_(store, other.id, [{"uid": 1, "modseq": 1, "pop3_uidl": "u-1"}])
    assert await store.pop3_uidls(other.id) == {1: "u-1"}
    trash = await store.get_mailbox(acct.id, "Trash")
    copied = await store.copy(box.id, [(1, 1)], trash.id)
    assert copied.pairs and await store.pop3_uidls(trash.id) == {}
    await store.remove_messages(box.id, [(1, 1)])
    assert await store.pop3_uidls(box.id) == {}


async def test_import_stores_a_body_once(store: Store) -> None:
    """Every copy of one content in an import shares one stored body, as deliveries do."""
    acct = await account(store)
    a = await store.import_mailbox(acct.id, "A", UIDVALIDITY)
    b = await store.import_mailbox(acct.id, "B", UIDVALIDITY + 1)
    body = message(42)
    await import_(store, a.id, [{"uid": 1, "modseq": 1, "body": body},
                                {"uid": 2, "modseq": 1, "body": body}])
    await import_(store, b.id, [{"uid": 10, "modseq": 1, "body": body}])
    assert len(await store.stored_bodies()) == 1
    ids = await store.fetch_ids(a.id, [(1, 2)]) + await store.fetch_ids(b.id, [(10, 10)])
    assert len({i.digest for i in ids}) == 1 and all(i.thread_id for i in ids)


async def test_quota_is_counted_not_enforced(store: Store) -> None:
    """The imported mail already belongs to the account: an import over the quota is kept,
    the usage counts it, and the next delivery is refused as usual."""
    acct = await account(store, quota=100)
    mb = await store.import_mailbox(acct.id, "INBOX", UIDVALIDITY)
    after = await import_(store, mb.id, [{"uid": 1, "modseq": 1}, {"uid": 2, "modseq": 1}])
    assert (await store.get_account_by_id(acct.id)).used_bytes == after.size > 100


async def test_expunge_records_travel(store: Store) -> None:
    """QRESYNC (RFC 7162 §3.2.5.2): expunge records come back with their MODSEQs, so a client
    that synced before the move still learns what vanished since; a record for a UID that
    holds a message is not added."""
    acct = await account(store)
    src = await store.import_mailbox(acct.id, "Src", UIDVALIDITY)
    await import_(store, src.id, [{"uid": u, "modseq": u} for u in (1, 2, 3, 4)])
    await store.store_flags(src.id, [(2, 3)], "add", ["\\Deleted"])
    await store.expunge(src.id)
    records = await store.expunge_records(src.id)
    modseq = (await store.get_mailbox_by_id(src.id)).highestmodseq
    assert records == [(2, modseq), (3, modseq)]
    dst = await store.import_mailbox(acct.id, "Dst", UIDVALIDITY + 1)
    await import_(store, dst.id, [{"uid": 1, "modseq": 1}, {"uid": 4, "modseq": 4}])
    done = await store.import_mailbox(acct.id, "Dst", UIDVALIDITY + 1, uidnext=5,
                                      highestmodseq=modseq,
                                      expunged=records + [(1, 2)])
    assert (done.uidnext, done.highestmodseq) == (5, modseq)
    assert await store.expunge_records(dst.id) == records
    assert await store.vanished_since(dst.id, 4) == [2, 3]
    assert await store.expunge_records(10**9) == []
