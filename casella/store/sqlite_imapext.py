"""SQLite backend: the store operations the IMAP extensions need (issue 9).

Lives here: EMAILID / THREADID reads (RFC 8474), header-only reads for SORT and THREAD, the
expunge log read for QRESYNC, DELETED-STORAGE (RFC 9208), quota warnings, and
`_imapext_inserted`, which `_insert_messages` calls inside the writing transaction to give each
new content its thread in the account (blob_threads) and to record quota-warning thresholds
crossed upwards (it runs wherever its write batch runs: the writer thread, or the event loop
thread for a light batch, see sqlite_base._LoopHandoff). Must never: run its reads on the
event loop thread, parse more of a message than its stored header, or report a change before
COMMIT.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence

from casella.store.base import Store, UidRanges
from casella.store.model import Account, Mailbox, MessageIds
from casella.store.sqlite_base import SQLiteBase, _in_ranges, _now, _Txn

_MSGID = re.compile(rb"<([^<>\s]{1,250})>")
_FIELD = re.compile(rb"(?im)^(message-id|in-reply-to|references)[ \t]*:(.*(?:\r?\n[ \t].*)*)")
MAX_REFERENCES = 30            # the last ones of a long References chain are enough to link


def thread_keys(header: bytes) -> tuple[str | None, list[str]]:
    """(Message-ID, the ids it refers to: References then In-Reply-To), from a header block."""
    msgid: str | None = None
    refs: list[str] = []
    reply: list[str] = []
    for m in _FIELD.finditer(header):
        name = m.group(1).lower()
        ids = [i.decode("ascii", "replace").lower() for i in _MSGID.findall(m.group(2))]
        if name == b"message-id":
            if ids and msgid is None:
                msgid = ids[0]
        elif name == b"references":
            refs.extend(ids)
        elif ids and not reply:
            reply.append(ids[0])
    linked = [r for r in dict.fromkeys(refs[-MAX_REFERENCES:] + reply) if r != msgid]
    return msgid, linked


def _level(used_bytes: int, used_messages: int, quota_bytes: int, quota_messages: int) -> float:
    """Usage in percent of the tighter quota (0 when unlimited)."""
    level = 0.0
    if quota_bytes > 0:
        level = 100.0 * used_bytes / quota_bytes
    if quota_messages > 0:
        level = max(level, 100.0 * used_messages / quota_messages)
    return level


class ImapExtOps(SQLiteBase):
    # --- reads -----------------------------------------------------------------------------

    async def fetch_ids(self, mailbox_id: int, uids: UidRanges) -> list[MessageIds]:
        def q(conn: sqlite3.Connection) -> list[MessageIds]:
            out: list[MessageIds] = []
            row = conn.execute("SELECT account_id FROM mailboxes WHERE id = ?",
                               (mailbox_id,)).fetchone()
            if row is None:
                return out
            for lo, hi in _in_ranges(uids):
                out.extend(MessageIds(r[0], r[1], r[2] or 0) for r in conn.execute(
                    "SELECT m.uid, b.digest, t.thread_id FROM messages m JOIN blobs b "
                    "ON b.id = m.blob_id LEFT JOIN blob_threads t ON t.account_id = ? "
                    "AND t.digest = b.digest WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? "
                    "ORDER BY m.uid", (row[0], mailbox_id, lo, hi)))
            if len(uids) > 1:
                out = sorted({m.uid: m for m in out}.values(), key=lambda m: m.uid)
            return out
        return await self._read_snapshot(q)

    async def fetch_headers(self, blob_ids: Sequence[int]) -> dict[int, bytes]:
        ids = list(dict.fromkeys(blob_ids))

        def q(conn: sqlite3.Connection) -> dict[int, bytes]:
            out: dict[int, bytes] = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for blob_id, header in conn.execute(
                        f"SELECT id, header FROM blobs WHERE id IN ({marks})", chunk):
                    out[blob_id] = bytes(header)
            return out
        return await self._read(q)

    async def vanished_since(self, mailbox_id: int, modseq: int) -> list[int]:
        return await self._read(lambda c: [r[0] for r in c.execute(
            "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
            (mailbox_id, modseq))])

    async def deleted_storage(self, mailbox_id: int) -> int:
        return await self._read(lambda c: int(c.execute(
            "SELECT coalesce(sum(size), 0) FROM messages WHERE mailbox_id = ? "
            "AND (flags & 8) != 0", (mailbox_id,)).fetchone()[0]))

    # --- quota warnings --------------------------------------------------------------------

    async def take_quota_warnings(self, account_id: int) -> list[int]:
        def op(txn: _Txn) -> list[int]:
            cur = txn.cur
            pending = [r[0] for r in cur.execute(
                "SELECT threshold FROM quota_warnings WHERE account_id = ? ORDER BY threshold",
                (account_id,))]
            if not pending:
                return []
            cur.execute("DELETE FROM quota_warnings WHERE account_id = ?", (account_id,))
            row = cur.execute("SELECT used_bytes, used_messages, quota_bytes, quota_messages "
                              "FROM accounts WHERE id = ?", (account_id,)).fetchone()
            if row is None:
                return []
            level = _level(*row)
            # A crossing undone in the same transaction (a MOVE inside the account inserts
            # before it removes) or by an expunge since is not worth a warning any more.
            return [t for t in pending if level >= t]

        # Most calls find nothing: ask a reader first so the writer is not queued for nothing.
        if not await self._read(lambda c: self._warning_waits(c, account_id)):
            return []
        return await self._write(op)

    # --- the insert hook (inside a write batch) ----------------------------------------------

    def _imapext_inserted(self, txn: _Txn, mb: Mailbox, uids: Sequence[int],
                          rows: Sequence[tuple[int, str, int, int, int, int]],
                          acct: Account | None = None) -> None:
        """Called by `_insert_messages` for the rows it just inserted (flags, keywords,
        internaldate, savedate, size, blob_id): threads, then quota-warning crossings. Nothing
        is written per message: a thread belongs to a content (digest) in an account, so a copy
        or a message delivered to many folders costs one lookup. `acct`, when the caller read
        it, spares the quota lookup for an account without a quota."""
        for blob_id in dict.fromkeys(r[5] for r in rows):
            self._thread_for_blob(txn.cur, mb.account_id, blob_id, txn.known_blobs.get(blob_id))
        if acct is not None and not acct.has_quota:
            return
        if self._note_quota_crossing(txn.cur, mb.account_id, sum(r[4] for r in rows),
                                     len(rows), acct):
            txn.quota_crossed.add(mb.account_id)

    def _thread_for_blob(self, cur: sqlite3.Connection, account: int, blob_id: int,
                         known: tuple[str, bytes] | None = None) -> int:
        """The content's thread in the account, given one if it has none yet. `known` is the
        blob's (digest, header) when the caller has them (a delivery or an APPEND), which
        saves reading them back; the lookups are then one statement."""
        if known is None:
            row = cur.execute("SELECT b.digest, t.thread_id FROM blobs b LEFT JOIN blob_threads t "
                              "ON t.account_id = ? AND t.digest = b.digest WHERE b.id = ?",
                              (account, blob_id)).fetchone()
            if row is None:
                return 0
            if row[1] is not None:
                return int(row[1])
            digest = row[0]
            header = bytes(cur.execute("SELECT header FROM blobs WHERE id = ?",
                                       (blob_id,)).fetchone()[0])
        else:
            digest, header = known
        msgid, refs = thread_keys(header)
        # Without a Message-ID the content stands in, so copies still share a thread.
        keys = [msgid or f"blob:{digest}"] + refs
        marks = ",".join("?" * len(keys))
        existing, found, counter = cur.execute(
            "SELECT (SELECT thread_id FROM blob_threads WHERE account_id = ? AND digest = ?), "
            f"(SELECT min(thread_id) FROM thread_keys WHERE account_id = ? AND key IN ({marks})), "
            "(SELECT value FROM meta WHERE key = 'threadid')",
            (account, digest, account, *keys)).fetchone()
        if existing is not None:
            return int(existing)      # this content came to the account before
        if found:
            thread = int(found)
        else:
            thread = int(counter or 0) + 1
            cur.execute("INSERT INTO meta (key, value) VALUES ('threadid', ?) "
                        "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (thread,))
        cur.executemany("INSERT OR IGNORE INTO thread_keys (account_id, key, thread_id) "
                        "VALUES (?, ?, ?)", [(account, k, thread) for k in keys])
        cur.execute("INSERT OR REPLACE INTO blob_threads (account_id, digest, thread_id) "
                    "VALUES (?, ?, ?)", (account, digest, thread))
        return thread

    @staticmethod
    def _note_quota_crossing(cur: sqlite3.Connection, account_id: int, added_bytes: int,
                             added_messages: int, acct: Account | None = None) -> bool:
        """Record the warning thresholds this addition crossed upwards; whether it crossed
        any. `acct` is the account as read in this transaction *before* the addition, which
        spares reading it again."""
        if acct is not None:
            used_bytes = acct.used_bytes + added_bytes
            used_messages = acct.used_messages + added_messages
            quota_bytes, quota_messages = acct.quota_bytes, acct.quota_messages
        else:
            row = cur.execute("SELECT used_bytes, used_messages, quota_bytes, quota_messages "
                              "FROM accounts WHERE id = ?", (account_id,)).fetchone()
            if row is None:
                return False
            used_bytes, used_messages, quota_bytes, quota_messages = row
        if quota_bytes <= 0 and quota_messages <= 0:
            return False
        after = _level(used_bytes, used_messages, quota_bytes, quota_messages)
        before = _level(used_bytes - added_bytes, used_messages - added_messages, quota_bytes,
                        quota_messages)
        crossed = [t for t in Store.QUOTA_WARNING_THRESHOLDS if before < t <= after]
        if crossed:
            now = _now()
            cur.executemany("INSERT OR IGNORE INTO quota_warnings (account_id, threshold, at) "
                            "VALUES (?, ?, ?)", [(account_id, t, now) for t in crossed])
        return bool(crossed)
