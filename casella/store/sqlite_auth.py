"""SQLite backend: failed-login counters and blocks (the brute-force defence's memory).

Lives here: the authentication-defence part of the store contract. Must never: store a
password or anything derived from one.
"""

from __future__ import annotations

import sqlite3
from typing import Sequence

from casella.store.sqlite_base import SQLiteBase, _Txn


class AuthOps(SQLiteBase):
    async def auth_record_failure(self, keys: Sequence[str], now: int, window: int,
                                  block_after: int, block_for: int) -> dict[str, int]:
        def op(txn: _Txn) -> dict[str, int]:
            out: dict[str, int] = {}
            for key in keys:
                row = txn.cur.execute("SELECT failures, first_failure, blocked_until FROM "
                                      "auth_failures WHERE key = ?", (key,)).fetchone()
                if row is None or row[1] < now - window:
                    failures, first, blocked = 1, now, row[2] if row else 0
                else:
                    failures, first, blocked = row[0] + 1, row[1], row[2]
                if block_after and failures >= block_after and key.startswith("ip:"):
                    blocked = max(blocked, now + block_for)
                txn.cur.execute(
                    "INSERT INTO auth_failures (key, failures, first_failure, last_failure, "
                    "blocked_until) VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                    "failures = excluded.failures, first_failure = excluded.first_failure, "
                    "last_failure = excluded.last_failure, "
                    "blocked_until = excluded.blocked_until",
                    (key, failures, first, now, blocked))
                out[key] = failures
            # Old records are worthless; keep the table small.
            txn.cur.execute("DELETE FROM auth_failures WHERE last_failure < ? AND "
                            "blocked_until < ?", (now - window, now))
            return out
        return await self._write(op)

    async def auth_status(self, keys: Sequence[str], now: int) -> dict[str, tuple[int, int]]:
        def q(conn: sqlite3.Connection) -> dict[str, tuple[int, int]]:
            out: dict[str, tuple[int, int]] = {}
            for key in keys:
                row = conn.execute("SELECT failures, blocked_until FROM auth_failures "
                                   "WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    out[key] = (row[0], row[1])
            return out
        return await self._read(q)

    async def auth_clear(self, keys: Sequence[str]) -> int:
        def op(txn: _Txn) -> int:
            return sum(txn.cur.execute("DELETE FROM auth_failures WHERE key = ?",
                                       (k,)).rowcount for k in keys)
        return await self._write(op)
