"""Helpers for the export and import tests: a source store full of what must survive a move,
and a snapshot of everything a client or an admin could tell apart, to compare stores."""

from __future__ import annotations

from typing import Any

from casella.store.base import Store
from casella.store.model import AppendItem, DeliveryTarget

PASSWORD_HASH = "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"


def mail(n: int, size: int = 0, subject: str | None = None) -> bytes:
    body = "".join(f"line {i} of message {n}\r\n" for i in range(max(1, size // 24)))
    return (f"From: Sender <sender@example.org>\r\nTo: alice@example.test\r\n"
            f"Subject: {subject or f'message {n}'}\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
            f"Message-ID: <{n}@example.org>\r\n\r\n{body}").encode()


async def append(store: Store, mailbox_id: int, datas: list[bytes],
                 flags: tuple[str, ...] = (), date: int | None = None) -> tuple[int, ...]:
    items = [AppendItem(await store.blobs.stage(d), flags, date) for d in datas]
    try:
        return (await store.append(mailbox_id, items)).uids
    finally:
        for item in items:
            item.blob.discard()


async def fill(store: Store) -> None:
    """Two domains with limits, three accounts, aliases, nested and Unicode mailboxes, a
    placeholder, flags and keywords, expunge records, POP3 downloads and hidden messages, a
    body shared by several mailboxes and accounts, a big body, an unsubscribed mailbox."""
    for d in ("example.test", "other.test"):
        await store.add_domain(d)
    await store.set_send_limits("example.test", {"messages_per_hour": 500})
    alice = await store.add_account("alice@example.test", PASSWORD_HASH, 10**9, 5000)
    bob = await store.add_account("bob@example.test", PASSWORD_HASH + "b", 0)
    carol = await store.add_account("carol@other.test", PASSWORD_HASH + "c", 2**20)
    await store.set_send_limits("alice@example.test", {"defers_failures_percent": 70})
    await store.set_sending_held("bob@example.test", True)
    await store.set_pop3_policy("bob@example.test", "hide", 30)
    await store.add_alias("info@example.test", ["alice@example.test", "x@remote.org"])
    await store.add_alias("@other.test", ["carol@other.test"])

    inbox = await store.get_mailbox(alice.id, "INBOX")
    assert inbox is not None
    await append(store, inbox.id, [mail(n) for n in range(1, 13)], date=1_700_000_000)
    await store.store_flags(inbox.id, [(2, 4)], "add", ["\\Seen", "$Label1"])
    await store.store_flags(inbox.id, [(5, 5)], "add", ["\\Flagged", "\\Answered", "Work"])
    await store.store_flags(inbox.id, [(6, 7)], "add", ["\\Deleted"])
    await store.expunge(inbox.id)
    await store.store_flags(inbox.id, [(8, 8)], "add", ["\\Deleted", "\\Draft"])
    await store.pop3_mark_retrieved(inbox.id, [1, 2, 3], 1_700_000_100)
    await store.pop3_hide(inbox.id, [3])
    shared = await store.blobs.stage(mail(99, subject="to everyone"))
    try:
        await store.deliver(shared, [DeliveryTarget(alice.id), DeliveryTarget(bob.id),
                                     DeliveryTarget(alice.id, "Archive")])
    finally:
        shared.discard()
    await append(store, inbox.id, [mail(100, size=200_000)], flags=("\\Seen",))

    lists = await store.create_mailbox(alice.id, "Lists/dev")
    await append(store, lists.id, [mail(n) for n in range(20, 25)], flags=("\\Seen",))
    await store.copy(inbox.id, [(1, 2)], lists.id)
    uni = await store.create_mailbox(alice.id, "Grüße/日本")
    await append(store, uni.id, [mail(30)])
    await store.delete_mailbox(alice.id, "Grüße")          # a placeholder now
    await store.unsubscribe(alice.id, "Junk")
    await store.subscribe(alice.id, "Lists/dev")
    trash = await store.get_mailbox(alice.id, "Trash")
    assert trash is not None
    await store.set_special_use(trash.id, "\\Trash")
    await store.delete_mailbox(alice.id, "Archive")
    await store.create_mailbox(alice.id, "Archive", "\\Archive")  # a newer UIDVALIDITY

    carol_inbox = await store.get_mailbox(carol.id, "INBOX")
    assert carol_inbox is not None
    await append(store, carol_inbox.id, [mail(n) for n in range(40, 43)])


async def snapshot(store: Store, bodies: bool = True) -> dict[str, Any]:
    """Everything an admin or a client could tell apart, keyed for a readable diff."""
    out: dict[str, Any] = {
        "domains": [(d.name, d.messages_per_hour, d.defers_failures_per_hour,
                     d.defers_failures_percent) for d in await store.list_domains()],
        "aliases": [(a.source, a.destinations) for a in await store.list_aliases()],
    }
    for acct in await store.list_accounts():
        key = acct.address
        out[key] = (acct.password_hash, acct.quota_bytes, acct.quota_messages, acct.used_bytes,
                    acct.used_messages, acct.sending_held, acct.messages_per_hour,
                    acct.defers_failures_per_hour, acct.defers_failures_percent,
                    acct.pop3_delete, acct.pop3_expire_days)
        out[f"{key} subscriptions"] = await store.list_subscriptions(acct.id)
        for mb in await store.list_mailboxes(acct.id):
            where = f"{key} {mb.name}"
            out[where] = (mb.uidvalidity, mb.uidnext, mb.highestmodseq, mb.special_use,
                          mb.selectable, mb.messages, mb.unseen, mb.deleted, mb.size)
            if not mb.selectable:
                continue
            snap = await store.select(mb.id)
            out[f"{where} keywords"] = snap.keywords
            out[f"{where} first unseen"] = snap.first_unseen_uid
            metas = await store.fetch_messages(mb.id, [(1, 2**32 - 1)], ())
            out[f"{where} messages"] = [(m.uid, m.modseq, m.flags, m.internaldate, m.savedate,
                                         m.size, s.digest if s else None) for m, s in metas]
            if bodies:
                out[f"{where} bodies"] = [await store.read_blob(s.digest)
                                          for _, s in metas if s]
            out[f"{where} pop3"] = [(m.uid, first) for m, first in await store.pop3_list(mb.id)]
            out[f"{where} uidls"] = await store.pop3_uidls(mb.id)
            out[f"{where} expunged"] = await store.expunge_records(mb.id)
    return out


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    keys = sorted(set(a) | set(b))
    return [f"{k}: {a.get(k)!r:.300} != {b.get(k)!r:.300}" for k in keys if a.get(k) != b.get(k)]
