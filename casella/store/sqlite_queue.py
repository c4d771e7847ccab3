"""SQLite backend: the outbound queue.

Lives here: queue entries and their per-recipient states. Must never: lose a queued message:
a blob stays referenced until every recipient reached a final state.
"""

from __future__ import annotations

import sqlite3
from typing import (
    Any,
    Sequence,
)

from casella.errors import UserError
from casella.store.blobs import StagedBlob
from casella.store.model import (
    QueueEntry,
    QueueRecipient,
)
from casella.store.sqlite_base import (
    SQLiteBase,
    _now,
    _Txn,
)


class QueueOps(SQLiteBase):
    # --- outbound queue --------------------------------------------------------------------

    async def enqueue(self, blob: StagedBlob, sender: str, recipients: Sequence[QueueRecipient],
                      account_id: int | None = None, envid: str | None = None,
                      ret: str | None = None) -> int:
        if not recipients:
            raise UserError("a queued message needs at least one recipient")

        def op(txn: _Txn) -> int:
            cur = txn.cur
            now = _now()
            blob_id = self._blob_ref(txn, blob)
            qid = int(cur.execute(
                "INSERT INTO queue (sender, account_id, blob_id, size, created, envid, ret) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sender, account_id, blob_id, blob.size, now, envid, ret)).lastrowid or 0)
            cur.executemany(
                "INSERT INTO queue_recipients (queue_id, address, orcpt, notify, state, "
                "next_attempt, updated) VALUES (?, ?, ?, ?, 'queued', ?, ?)",
                [(qid, r.address, r.orcpt, ",".join(r.notify), now, now) for r in recipients])
            return qid
        return await self._write(op)

    @staticmethod
    def _queue_entries(conn: sqlite3.Connection, where: str,
                       params: tuple[Any, ...]) -> list[QueueEntry]:
        entries = conn.execute(
            "SELECT id, sender, account_id, blob_id, size, created, envid, ret, held "
            f"FROM queue {where} ORDER BY id", params).fetchall()
        out = []
        for e in entries:
            rcpts = tuple(QueueRecipient(r[0], r[1], tuple(x for x in r[2].split(",") if x),
                                         r[3], r[4], r[5], r[6], r[7])
                          for r in conn.execute(
                              "SELECT address, orcpt, notify, state, attempts, next_attempt, "
                              "last_reply, id FROM queue_recipients WHERE queue_id = ? "
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
