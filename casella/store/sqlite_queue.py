"""SQLite backend: the outbound queue.

Lives here: queue entries and their per-recipient states, the runner's claim/record/recover
cycle, the DSNs still owed to senders, and the admin operations (hold, release, flush,
remove). Must never: lose a queued message: a blob stays referenced until every recipient
reached a final state and every DSN owed for it was sent.

Recipient states: queued → sending → delivered | deferred | failed; deferred → sending again
when due. "sending" survives only a crash or a stop in the middle of an attempt; `queue_recover`
turns it back into deferred at start-up (PROMISES D5: at least once).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import (
    Any,
)

from casella.errors import NotFound, UserError
from casella.store.blobs import StagedBlob
from casella.store.model import (
    QueueEntry,
    QueueRecipient,
)
from casella.store.sending import (
    DEFERRED,
    DELIVERED,
    EV_DEFERRED,
    EV_DELIVERED,
    EV_FAILED,
    EV_SUBMITTED,
    FAILED,
    QUEUED,
    SENDING,
    NoticeRecipient,
    PendingNotice,
    RecipientResult,
)
from casella.store.sqlite_base import (
    SQLiteBase,
    _now,
    _Txn,
)

_RCPT_COLS = ("address, orcpt, notify, state, attempts, next_attempt, last_reply, id, "
              "dsn_pending, remote_mta, updated")
_EVENT_OF_STATE = {DELIVERED: EV_DELIVERED, DEFERRED: EV_DEFERRED, FAILED: EV_FAILED}


def _recipient(r: Sequence[Any]) -> QueueRecipient:
    return QueueRecipient(r[0], r[1], tuple(x for x in r[2].split(",") if x), r[3], r[4], r[5],
                          r[6], r[7])


class QueueOps(SQLiteBase):
    # --- outbound queue --------------------------------------------------------------------

    async def enqueue(self, blob: StagedBlob, sender: str, recipients: Sequence[QueueRecipient],
                      account_id: int | None = None, envid: str | None = None,
                      ret: str | None = None, count: bool = False) -> int:
        if not recipients:
            raise UserError("a queued message needs at least one recipient")
        return await self._write(lambda txn: self._enqueue_txn(
            txn, blob, sender, recipients, account_id, envid, ret, count))

    def _enqueue_txn(self, txn: _Txn, blob: StagedBlob, sender: str,
                     recipients: Sequence[QueueRecipient], account_id: int | None,
                     envid: str | None, ret: str | None, count: bool = False) -> int:
        """The body of `enqueue` inside a write job (also for a combined deliver + enqueue
        transaction, request smtp-1)."""
        cur = txn.cur
        now = _now()
        blob_id = self._blob_ref(txn, blob, for_message=False)
        qid = int(cur.execute(
            "INSERT INTO queue (sender, account_id, blob_id, size, created, envid, ret) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sender, account_id, blob_id, blob.size, now, envid, ret)).lastrowid or 0)
        cur.executemany(
            "INSERT INTO queue_recipients (queue_id, address, orcpt, notify, state, "
            "next_attempt, updated) VALUES (?, ?, ?, ?, 'queued', ?, ?)",
            [(qid, r.address, r.orcpt, ",".join(r.notify), now, now) for r in recipients])
        if account_id is not None and (sender or count):
            # The hourly limit counts recipients handed to the queue, decided in the same
            # transaction that queues them (DESIGN.md: limits inside the writing txn).
            cur.execute("INSERT INTO send_events (account_id, at, kind, count) "
                        "VALUES (?, ?, ?, ?)", (account_id, now, EV_SUBMITTED,
                                                 len(recipients)))
        return qid

    @staticmethod
    def _queue_entries(conn: sqlite3.Connection, where: str, params: tuple[Any, ...],
                       rcpt_where: str = "", limit: int = -1) -> list[QueueEntry]:
        entries = conn.execute(
            "SELECT id, sender, account_id, blob_id, size, created, envid, ret, held "
            f"FROM queue {where} ORDER BY id LIMIT ?", params + (limit,)).fetchall()
        out = []
        for e in entries:
            rcpts = tuple(_recipient(r) for r in conn.execute(
                f"SELECT {_RCPT_COLS} FROM queue_recipients WHERE queue_id = ? {rcpt_where} "
                "ORDER BY id", (e[0],)))
            out.append(QueueEntry(e[0], e[1], e[2], e[3], e[4], e[5], e[6], e[7], rcpts,
                                  bool(e[8])))
        return out

    async def list_queue(self) -> list[QueueEntry]:
        return await self._read_snapshot(lambda c: self._queue_entries(c, "", ()))

    async def get_queue_entry(self, queue_id: int) -> QueueEntry | None:
        entries = await self._read_snapshot(
            lambda c: self._queue_entries(c, "WHERE id = ?", (queue_id,)))
        return entries[0] if entries else None

    # --- the runner's cycle ------------------------------------------------------------------

    async def queue_due(self, now: int, limit: int = 200) -> list[QueueEntry]:
        def q(conn: sqlite3.Connection) -> list[QueueEntry]:
            # A queued recipient is due at once (its first attempt); a deferred one when
            # its time has come.
            due = (f"(state = 'queued' OR (state = 'deferred' AND next_attempt <= "
                   f"{int(now)}))")
            where = (f"WHERE held = 0 AND id IN (SELECT queue_id FROM queue_recipients "
                     f"WHERE {due}) AND (account_id IS NULL OR account_id NOT IN "
                     "(SELECT id FROM accounts WHERE sending_held = 1))")
            return self._queue_entries(conn, where, (), "AND " + due, limit)
        return await self._read_snapshot(q)

    async def queue_claim(self, recipient_ids: Sequence[int]) -> list[int]:
        ids = list(recipient_ids)

        def op(txn: _Txn) -> list[int]:
            claimed = []
            for rid in ids:
                if txn.cur.execute("UPDATE queue_recipients SET state = ? WHERE id = ? AND "
                                   "state IN ('queued', 'deferred')",
                                   (SENDING, rid)).rowcount:
                    claimed.append(rid)
            return claimed
        return await self._write(op) if ids else []

    async def queue_record(self, results: Sequence[RecipientResult], now: int) -> None:
        items = list(results)
        if not items:
            return

        def op(txn: _Txn) -> None:
            cur = txn.cur
            touched: set[int] = set()
            events: list[tuple[int, int, str, int, str]] = []
            for res in items:
                row = cur.execute(
                    "SELECT r.queue_id, q.account_id, r.address, q.sender FROM "
                    "queue_recipients r JOIN queue q ON q.id = r.queue_id WHERE r.id = ?",
                    (res.recipient_id,)).fetchone()
                if row is None:
                    continue       # removed by an admin while the attempt was in flight
                queue_id, account_id, address, sender = row
                cur.execute(
                    "UPDATE queue_recipients SET state = ?, last_reply = ?, next_attempt = ?, "
                    "remote_mta = CASE WHEN ? != '' THEN ? ELSE remote_mta END, "
                    # One delay notice per recipient: a second "delayed" is ignored.
                    "dsn_pending = CASE WHEN ? = '' THEN dsn_pending WHEN ? = 'delayed' AND "
                    "(delay_notified = 1 OR dsn_pending != '') THEN dsn_pending ELSE ? END, "
                    "attempts = attempts + ?, updated = ? WHERE id = ?",
                    (res.state, res.reply[:1000], res.next_attempt, res.remote_mta,
                     res.remote_mta, res.dsn, res.dsn, res.dsn, 1 if res.attempted else 0, now,
                     res.recipient_id))
                touched.add(queue_id)
                kind = _EVENT_OF_STATE.get(res.state)
                if res.attempted and kind and account_id is not None and sender:
                    detail = address if kind != EV_DELIVERED else ""
                    events.append((account_id, now, kind, 1, detail))
            if events:
                cur.executemany("INSERT INTO send_events (account_id, at, kind, count, detail) "
                                "VALUES (?, ?, ?, ?, ?)", events)
            self._finish_entries(txn, touched)
        await self._write(op)

    def _finish_entries(self, txn: _Txn, queue_ids: set[int]) -> None:
        """Remove entries whose recipients are all final and owe no DSN."""
        cur = txn.cur
        blob_counts: dict[int, int] = {}
        for qid in queue_ids:
            open_rows = cur.execute(
                "SELECT count(*) FROM queue_recipients WHERE queue_id = ? AND "
                "(state NOT IN ('delivered', 'failed') OR dsn_pending != '')",
                (qid,)).fetchone()[0]
            if open_rows:
                continue
            row = cur.execute("SELECT blob_id FROM queue WHERE id = ?", (qid,)).fetchone()
            if row is None:
                continue
            cur.execute("DELETE FROM queue_recipients WHERE queue_id = ?", (qid,))
            cur.execute("DELETE FROM queue WHERE id = ?", (qid,))
            blob_counts[row[0]] = blob_counts.get(row[0], 0) + 1
        self._release_blobs(txn, blob_counts)

    async def queue_recover(self, now: int) -> int:
        def op(txn: _Txn) -> int:
            return int(txn.cur.execute(
                "UPDATE queue_recipients SET state = ?, next_attempt = ?, updated = ? "
                "WHERE state = ?", (DEFERRED, now, now, SENDING)).rowcount)
        return await self._write(op)

    async def queue_pending_notices(self, limit: int = 100) -> list[PendingNotice]:
        def q(conn: sqlite3.Connection) -> list[PendingNotice]:
            ids = [r[0] for r in conn.execute(
                "SELECT DISTINCT queue_id FROM queue_recipients WHERE dsn_pending != '' "
                "ORDER BY queue_id LIMIT ?", (limit,))]
            out = []
            for qid in ids:
                entries = self._queue_entries(conn, "WHERE id = ?", (qid,))
                if not entries:
                    continue
                rows = conn.execute(
                    f"SELECT {_RCPT_COLS} FROM queue_recipients WHERE queue_id = ? AND "
                    "dsn_pending != '' ORDER BY id", (qid,)).fetchall()
                out.append(PendingNotice(entries[0], tuple(
                    NoticeRecipient(_recipient(r), r[8], r[9], r[10]) for r in rows)))
            return out
        return await self._read_snapshot(q)

    async def queue_notices_sent(self, recipient_ids: Sequence[int]) -> None:
        ids = list(recipient_ids)

        def op(txn: _Txn) -> None:
            cur = txn.cur
            touched: set[int] = set()
            for rid in ids:
                row = cur.execute("SELECT queue_id FROM queue_recipients WHERE id = ?",
                                  (rid,)).fetchone()
                if row is None:
                    continue
                touched.add(row[0])
                # SET expressions see the old row: a sent "delayed" marks the one delay
                # notice as done.
                cur.execute("UPDATE queue_recipients SET dsn_pending = '', delay_notified = "
                            "CASE WHEN dsn_pending = 'delayed' THEN 1 ELSE delay_notified END "
                            "WHERE id = ?", (rid,))
            self._finish_entries(txn, touched)
        if ids:
            await self._write(op)

    # --- admin operations --------------------------------------------------------------------

    async def queue_set_held(self, queue_id: int, held: bool) -> None:
        def op(txn: _Txn) -> None:
            if txn.cur.execute("UPDATE queue SET held = ? WHERE id = ?",
                               (1 if held else 0, queue_id)).rowcount == 0:
                raise NotFound(f"queue entry {queue_id} does not exist")
        await self._write(op)

    async def queue_remove(self, queue_id: int) -> None:
        def op(txn: _Txn) -> None:
            row = txn.cur.execute("SELECT blob_id FROM queue WHERE id = ?",
                                  (queue_id,)).fetchone()
            if row is None:
                raise NotFound(f"queue entry {queue_id} does not exist")
            txn.cur.execute("DELETE FROM queue_recipients WHERE queue_id = ?", (queue_id,))
            txn.cur.execute("DELETE FROM queue WHERE id = ?", (queue_id,))
            self._release_blobs(txn, {row[0]: 1})
        await self._write(op)

    async def queue_flush(self, queue_id: int | None, now: int) -> int:
        def op(txn: _Txn) -> int:
            cur = txn.cur
            if queue_id is not None:
                if cur.execute("SELECT 1 FROM queue WHERE id = ?", (queue_id,)).fetchone() \
                        is None:
                    raise NotFound(f"queue entry {queue_id} does not exist")
                return int(cur.execute(
                    "UPDATE queue_recipients SET next_attempt = ? WHERE queue_id = ? AND "
                    "state IN (?, ?) AND next_attempt > ?",
                    (now, queue_id, QUEUED, DEFERRED, now)).rowcount)
            return int(cur.execute(
                "UPDATE queue_recipients SET next_attempt = ? WHERE state IN (?, ?) AND "
                "next_attempt > ?", (now, QUEUED, DEFERRED, now)).rowcount)
        return await self._write(op)
