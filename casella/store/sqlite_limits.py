"""SQLite backend: sending-limit settings, send events and the defers-and-failures guard.

Lives here: per-account and per-domain limit settings, the timestamped send events the hourly
limits count (written by `enqueue` and `queue_record` in sqlite_queue, read and pruned here),
events recorded outside the queue (`add_send_events`: a submission refused as spam), the
admin hold on an account's sending, and the guard's "blocked until" per account. Must
never: decide whether a limit is reached (casella.limits.sendlimit does, from these facts).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence

from casella.errors import InvalidName, NotFound, UserError
from casella.mail.addresses import normalize_address, normalize_domain
from casella.store.sending import EVENT_KINDS, LIMIT_KEYS, SendEvent
from casella.store.sqlite_base import SQLiteBase, _Txn


class LimitOps(SQLiteBase):
    async def set_sending_held(self, address: str, held: bool) -> None:
        addr = normalize_address(address)

        def op(txn: _Txn) -> None:
            if txn.cur.execute("UPDATE accounts SET sending_held = ? WHERE address = ?",
                               (1 if held else 0, addr)).rowcount == 0:
                raise NotFound(f"user {addr} does not exist")
        await self._write(op)

    async def set_send_limits(self, name: str, values: Mapping[str, int | None]) -> None:
        for key, value in values.items():
            if key not in LIMIT_KEYS:
                raise UserError(f"unknown sending limit {key}")
            if value is not None and value < 0:
                raise UserError(f"{key.replace('_', ' ')} cannot be negative")
            if key == "defers_failures_percent" and value is not None and value > 100:
                raise UserError("the defers and failures percentage is at most 100")
        if not values:
            return
        if "@" in name:
            table, key_col, key_val = "accounts", "address", normalize_address(name)
            what = f"user {key_val}"
        else:
            try:
                key_val = normalize_domain(name)
            except InvalidName:
                raise UserError(f"{name!r} is neither an address nor a domain") from None
            table, key_col, what = "domains", "name", f"domain {key_val}"
        # Column names come from LIMIT_KEYS (checked above), never from the caller's text.
        sets = ", ".join(f"{k} = ?" for k in values)

        def op(txn: _Txn) -> None:
            if txn.cur.execute(f"UPDATE {table} SET {sets} WHERE {key_col} = ?",
                               tuple(values.values()) + (key_val,)).rowcount == 0:
                raise NotFound(f"{what} does not exist")
        await self._write(op)

    async def send_events(self, account_id: int, since: int) -> list[SendEvent]:
        def q(conn: sqlite3.Connection) -> list[SendEvent]:
            return [SendEvent(r[0], r[1], r[2], r[3]) for r in conn.execute(
                "SELECT at, kind, count, detail FROM send_events WHERE account_id = ? AND "
                "at > ? ORDER BY at, id", (account_id, since))]
        return await self._read(q)

    async def add_send_events(self, account_id: int, events: Sequence[SendEvent]) -> None:
        rows = [(account_id, int(e.at), e.kind, int(e.count), e.detail[:1000]) for e in events]
        for e in events:
            if e.kind not in EVENT_KINDS or e.count < 0:
                raise ValueError(f"not a send event: {e!r}")

        def op(txn: _Txn) -> None:
            if txn.cur.execute("SELECT 1 FROM accounts WHERE id = ?",
                               (account_id,)).fetchone() is None:
                raise NotFound(f"account {account_id} does not exist")
            txn.cur.executemany("INSERT INTO send_events (account_id, at, kind, count, detail) "
                                "VALUES (?, ?, ?, ?, ?)", rows)
        if rows:
            await self._write(op)

    async def reset_send_usage(self, account_ids: Sequence[int]) -> int:
        ids = list(account_ids)

        def op(txn: _Txn) -> int:
            n = 0
            for aid in ids:
                n += txn.cur.execute("DELETE FROM send_events WHERE account_id = ?",
                                     (aid,)).rowcount
                txn.cur.execute("DELETE FROM send_guard WHERE account_id = ?", (aid,))
            return n
        return await self._write(op) if ids else 0

    async def prune_send_events(self, before: int) -> int:
        def op(txn: _Txn) -> int:
            n = txn.cur.execute("DELETE FROM send_events WHERE at <= ?", (before,)).rowcount
            txn.cur.execute("DELETE FROM send_guard WHERE blocked_until <= ?", (before,))
            return int(n)
        return await self._write(op)

    async def get_send_guard(self, account_id: int) -> int | None:
        def q(conn: sqlite3.Connection) -> int | None:
            row = conn.execute("SELECT blocked_until FROM send_guard WHERE account_id = ?",
                               (account_id,)).fetchone()
            return int(row[0]) if row else None
        return await self._read(q)

    async def set_send_guard(self, account_id: int, blocked_until: int | None) -> None:
        def op(txn: _Txn) -> None:
            if blocked_until is None:
                txn.cur.execute("DELETE FROM send_guard WHERE account_id = ?", (account_id,))
            else:
                txn.cur.execute("INSERT INTO send_guard (account_id, blocked_until) VALUES "
                                "(?, ?) ON CONFLICT(account_id) DO UPDATE SET blocked_until "
                                "= excluded.blocked_until", (account_id, blocked_until))
        await self._write(op)
