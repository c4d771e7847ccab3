"""SQLite backend: what moving mail in and out needs (issue 19, casella.move).

Lives here: `import_mailbox` and `import_messages` (mailboxes and messages written with the
UIDVALIDITY, UIDs, MODSEQs and POP3 state they had in another store, inside one write job
each), and the reads only an export or POP3 needs besides the others: `expunge_records` and
`pop3_uidls`. Must never: give out a UID below a mailbox's UIDNEXT, lower UIDNEXT or
HIGHESTMODSEQ, or report a change before COMMIT (the base publishes events after it).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from casella.errors import MailboxExists, UserError
from casella.store.model import (
    SPECIAL_USES,
    ImportItem,
    Mailbox,
    split_flags,
    valid_pop3_uidl,
)
from casella.store.names import normalize_mailbox_name
from casella.store.sqlite_base import _DELETED_BIT, _SEEN_BIT, _now, _Txn
from casella.store.sqlite_imapext import ImapExtOps
from casella.store.sqlite_mail import MailOps

_MAX_UID = 2**32 - 1            # RFC 9051 §2.3.1.1: UIDs and UIDVALIDITY are 32-bit
_MAX_MODSEQ = 2**63 - 1         # RFC 7162 §7: mod-sequence-value


def _check_range(what: str, value: int, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise UserError(f"{what} {value!r} is outside {low}..{high}")


class MoveOps(MailOps, ImapExtOps):
    async def import_mailbox(self, account_id: int, name: str, uidvalidity: int, *,
                             uidnext: int = 1, highestmodseq: int = 1,
                             special_use: str | None = None,
                             expunged: Sequence[tuple[int, int]] = ()) -> Mailbox:
        canon = normalize_mailbox_name(name)
        _check_range("UIDVALIDITY", uidvalidity, 1, _MAX_UID)
        _check_range("UIDNEXT", uidnext, 1, _MAX_UID + 1)
        _check_range("HIGHESTMODSEQ", highestmodseq, 1, _MAX_MODSEQ)
        if special_use is not None and special_use not in SPECIAL_USES:
            raise UserError(f"unknown special-use {special_use!r}")
        records = [(int(u), int(m)) for u, m in expunged]

        def op(txn: _Txn) -> Mailbox:
            cur = txn.cur
            self._account_row(cur, account_id)
            self._create_missing_parents(cur, account_id, canon)
            mb = self._find_mailbox(cur, account_id, canon)
            if mb is None:
                c = cur.execute(
                    "INSERT INTO mailboxes (account_id, name, uidvalidity, special_use, "
                    "created) VALUES (?, ?, ?, ?, ?)",
                    (account_id, canon, uidvalidity, special_use, _now()))
                mailbox_id = int(c.lastrowid or 0)
            elif mb.uidvalidity == uidvalidity:
                mailbox_id = mb.id
            elif mb.uidnext == 1 and mb.messages == 0:
                # Never held a message: no client can know UIDs of it under the old value.
                mailbox_id = mb.id
                cur.execute("UPDATE mailboxes SET uidvalidity = ?, selectable = 1 WHERE id = ?",
                            (uidvalidity, mailbox_id))
                cur.execute("DELETE FROM expunged WHERE mailbox_id = ?", (mailbox_id,))
            else:
                raise MailboxExists(
                    f"mailbox {canon} already exists with UIDVALIDITY {mb.uidvalidity} and has "
                    f"held mail; it cannot take UIDVALIDITY {uidvalidity}")
            # A mailbox created later must still get a greater UIDVALIDITY (PROMISES U3).
            cur.execute("INSERT INTO meta (key, value) VALUES ('uidvalidity', ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
                        (uidvalidity,))
            cur.execute(
                "UPDATE mailboxes SET uidnext = max(uidnext, ?), "
                "highestmodseq = max(highestmodseq, ?), "
                "first_recent_uid = max(first_recent_uid, max(uidnext, ?)), "
                "special_use = coalesce(?, special_use) WHERE id = ?",
                (uidnext, highestmodseq, uidnext, special_use, mailbox_id))
            mb = self._mailbox_row(cur, mailbox_id)
            for uid, modseq in records:
                if not 1 <= uid < mb.uidnext or not 1 <= modseq <= mb.highestmodseq:
                    raise UserError(f"expunge record (UID {uid}, MODSEQ {modseq}) is outside "
                                    f"UIDNEXT {mb.uidnext} / HIGHESTMODSEQ {mb.highestmodseq}")
            if records:
                cur.executemany(
                    "INSERT OR IGNORE INTO expunged (mailbox_id, uid, modseq) SELECT ?, ?, ? "
                    "WHERE NOT EXISTS (SELECT 1 FROM messages WHERE mailbox_id = ? AND uid = ?)",
                    [(mailbox_id, u, m, mailbox_id, u) for u, m in records])
            txn.events.append((account_id, mailbox_id, mb.highestmodseq))
            return mb
        return await self._write(op)

    async def import_messages(self, mailbox_id: int, items: Sequence[ImportItem]) -> Mailbox:
        if not items:
            raise UserError("nothing to import")
        previous = 0
        uidls: set[str] = set()
        for item in items:
            _check_range("UID", item.uid, 1, _MAX_UID)
            _check_range("MODSEQ", item.modseq, 1, _MAX_MODSEQ)
            if item.uid <= previous:
                raise UserError(f"UID {item.uid} does not ascend (after {previous})")
            previous = item.uid
            if item.pop3_uidl is not None:
                if not valid_pop3_uidl(item.pop3_uidl):
                    raise UserError(f"POP3 UIDL {item.pop3_uidl!r} of UID {item.uid} is not 1-70 "
                                    "printable ASCII characters")
                if item.pop3_uidl in uidls:
                    raise UserError(f"POP3 UIDL {item.pop3_uidl!r} is given twice")
                uidls.add(item.pop3_uidl)

        def op(txn: _Txn) -> Mailbox:
            cur = txn.cur
            mb = self._selectable(cur, mailbox_id)
            if items[0].uid < mb.uidnext:
                raise UserError(f"UID {items[0].uid} is below UIDNEXT {mb.uidnext} of "
                                f"{mb.name}: it may have been given out before")
            now = _now()
            rows = []
            keywords_used: set[str] = set()
            unseen = deleted = size = 0
            for item in items:
                bits, keywords = split_flags(item.flags)
                keywords_used.update(keywords)
                blob_id = self._blob_ref(txn, item.blob)
                rows.append((mb.id, item.uid, item.modseq, bits, " ".join(keywords),
                             item.internaldate, now if item.savedate is None else item.savedate,
                             item.blob.size, blob_id, int(item.pop3_hidden),
                             item.pop3_retrieved, item.pop3_uidl))
                unseen += not bits & _SEEN_BIT
                deleted += bool(bits & _DELETED_BIT)
                size += item.blob.size
            try:
                cur.executemany(
                    "INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, "
                    "internaldate, savedate, size, blob_id, pop3_hidden, pop3_retrieved, "
                    "pop3_uidl) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            except sqlite3.IntegrityError:
                # Only the POP3 UIDL index can object: the UIDs are above every stored one.
                raise UserError(f"a POP3 UIDL of this batch is already used in {mb.name}") \
                    from None
            self._register_keywords(cur, mb.id, sorted(keywords_used))
            uidnext = items[-1].uid + 1
            modseq = max(mb.highestmodseq, max(i.modseq for i in items))
            self._adjust(cur, mb.id, mb.account_id, messages=len(items), unseen=unseen,
                         deleted=deleted, size=size, uidnext=uidnext, modseq=modseq)
            # Not \Recent: the mail is not new to its owner.
            cur.execute("UPDATE mailboxes SET first_recent_uid = ? WHERE id = ?",
                        (uidnext, mb.id))
            for blob_id in dict.fromkeys(r[8] for r in rows):
                self._thread_for_blob(cur, mb.account_id, blob_id, txn.known_blobs.get(blob_id))
            txn.events.append((mb.account_id, mb.id, modseq))
            return self._mailbox_row(cur, mb.id)
        return await self._write(op)

    async def expunge_records(self, mailbox_id: int) -> list[tuple[int, int]]:
        return await self._read(lambda c: [(r[0], r[1]) for r in c.execute(
            "SELECT uid, modseq FROM expunged WHERE mailbox_id = ? ORDER BY uid",
            (mailbox_id,))])

    async def pop3_uidls(self, mailbox_id: int) -> dict[int, str]:
        return await self._read(lambda c: dict(c.execute(
            "SELECT uid, pop3_uidl FROM messages WHERE mailbox_id = ? AND pop3_uidl IS NOT NULL",
            (mailbox_id,)).fetchall()))
