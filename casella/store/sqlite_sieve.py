"""SQLite backend: Sieve scripts, account forwards and the vacation-reply memory (issue 20).

Lives here: the Sieve/forwarding part of the store contract (tables sieve_scripts, forwards,
vacation_replies of schema version 9). Must never: parse or run a script (the delivery layer
does), or run SQL on the event loop thread.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from casella.errors import AlreadyExists, InvalidName, NotFound, QuotaExceeded, UserError
from casella.mail.addresses import normalize_address
from casella.store.sieverules import DeliveryRules, SieveScript, check_script_name
from casella.store.sqlite_base import SQLiteBase, _now, _Txn


def _account_exists(cur: sqlite3.Cursor | sqlite3.Connection, account_id: int) -> None:
    if cur.execute("SELECT 1 FROM accounts WHERE id = ?", (account_id,)).fetchone() is None:
        raise NotFound("the account does not exist")


class SieveOps(SQLiteBase):
    async def sieve_list(self, account_id: int) -> list[SieveScript]:
        def q(conn: sqlite3.Connection) -> list[SieveScript]:
            rows = conn.execute("SELECT name, active, size, updated FROM sieve_scripts "
                                "WHERE account_id = ? ORDER BY name", (account_id,)).fetchall()
            return [SieveScript(r[0], "", bool(r[1]), r[2], r[3]) for r in rows]
        return await self._read(q)

    async def sieve_get(self, account_id: int, name: str) -> SieveScript | None:
        key = check_script_name(name)

        def q(conn: sqlite3.Connection) -> SieveScript | None:
            r = conn.execute("SELECT name, content, active, size, updated FROM sieve_scripts "
                             "WHERE account_id = ? AND name = ?", (account_id, key)).fetchone()
            return SieveScript(r[0], r[1], bool(r[2]), r[3], r[4]) if r else None
        return await self._read(q)

    async def sieve_put(self, account_id: int, name: str, content: str,
                        max_scripts: int = 0) -> None:
        key = check_script_name(name)
        size = len(content.encode("utf-8"))

        def op(txn: _Txn) -> None:
            cur = txn.cur
            _account_exists(cur, account_id)
            exists = cur.execute("SELECT 1 FROM sieve_scripts WHERE account_id = ? AND "
                                 "name = ?", (account_id, key)).fetchone()
            if exists is None and max_scripts > 0:
                (count,) = cur.execute("SELECT COUNT(*) FROM sieve_scripts WHERE "
                                       "account_id = ?", (account_id,)).fetchone()
                if count >= max_scripts:
                    raise QuotaExceeded(f"at most {max_scripts} scripts per account")
            cur.execute(
                "INSERT INTO sieve_scripts (account_id, name, content, active, size, updated) "
                "VALUES (?, ?, ?, 0, ?, ?) ON CONFLICT(account_id, name) DO UPDATE SET "
                "content = excluded.content, size = excluded.size, updated = excluded.updated",
                (account_id, key, content, size, _now()))
        await self._write(op)

    async def sieve_set_active(self, account_id: int, name: str | None) -> None:
        key = check_script_name(name) if name is not None else None

        def op(txn: _Txn) -> None:
            cur = txn.cur
            if key is not None and cur.execute(
                    "SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?",
                    (account_id, key)).fetchone() is None:
                raise NotFound(f"there is no script {key!r}")
            cur.execute("UPDATE sieve_scripts SET active = 0 WHERE account_id = ? AND "
                        "active = 1", (account_id,))
            if key is not None:
                cur.execute("UPDATE sieve_scripts SET active = 1, updated = ? WHERE "
                            "account_id = ? AND name = ?", (_now(), account_id, key))
        await self._write(op)

    async def sieve_delete(self, account_id: int, name: str) -> None:
        key = check_script_name(name)

        def op(txn: _Txn) -> None:
            row = txn.cur.execute("SELECT active FROM sieve_scripts WHERE account_id = ? AND "
                                  "name = ?", (account_id, key)).fetchone()
            if row is None:
                raise NotFound(f"there is no script {key!r}")
            if row[0]:
                raise UserError(f"the script {key!r} is active; deactivate it first")
            txn.cur.execute("DELETE FROM sieve_scripts WHERE account_id = ? AND name = ?",
                            (account_id, key))
        await self._write(op)

    async def sieve_rename(self, account_id: int, old: str, new: str) -> None:
        src, dst = check_script_name(old), check_script_name(new)

        def op(txn: _Txn) -> None:
            cur = txn.cur
            if cur.execute("SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?",
                           (account_id, src)).fetchone() is None:
                raise NotFound(f"there is no script {src!r}")
            if src == dst:
                return
            if cur.execute("SELECT 1 FROM sieve_scripts WHERE account_id = ? AND name = ?",
                           (account_id, dst)).fetchone() is not None:
                raise AlreadyExists(f"a script {dst!r} exists already")
            cur.execute("UPDATE sieve_scripts SET name = ?, updated = ? WHERE account_id = ? "
                        "AND name = ?", (dst, _now(), account_id, src))
        await self._write(op)

    async def set_forward(self, address: str, destinations: Sequence[str],
                          keep: bool) -> None:
        addr = normalize_address(address)
        dests: list[str] = []
        for d in destinations:
            try:
                canonical = normalize_address(d)
            except InvalidName:
                raise InvalidName(f"bad forwarding address {d!r}") from None
            if canonical not in dests:
                dests.append(canonical)

        def op(txn: _Txn) -> None:
            cur = txn.cur
            row = cur.execute("SELECT id FROM accounts WHERE address = ?", (addr,)).fetchone()
            if row is None:
                raise NotFound(f"user {addr} does not exist")
            if not dests:
                cur.execute("DELETE FROM forwards WHERE account_id = ?", (row[0],))
                return
            cur.execute("INSERT INTO forwards (account_id, destinations, keep) VALUES (?, ?, ?) "
                        "ON CONFLICT(account_id) DO UPDATE SET destinations = "
                        "excluded.destinations, keep = excluded.keep",
                        (row[0], "\n".join(dests), int(keep)))
        await self._write(op)

    async def delivery_rules(self, account_ids: Sequence[int]) -> dict[int, DeliveryRules]:
        ids = sorted(set(account_ids))
        if not ids:
            return {}

        def q(conn: sqlite3.Connection) -> dict[int, DeliveryRules]:
            marks = ",".join("?" * len(ids))
            found: dict[int, dict[str, object]] = {}
            for aid, name, content, updated in conn.execute(
                    f"SELECT account_id, name, content, updated FROM sieve_scripts WHERE "
                    f"active = 1 AND account_id IN ({marks})", ids):
                found.setdefault(aid, {}).update(script_name=name, script=content,
                                                 script_updated=updated)
            for aid, dests, keep in conn.execute(
                    f"SELECT account_id, destinations, keep FROM forwards WHERE account_id "
                    f"IN ({marks})", ids):
                found.setdefault(aid, {}).update(forward_to=tuple(dests.split("\n")),
                                                 forward_keep=bool(keep))
            return {aid: DeliveryRules(aid, **kw) for aid, kw in found.items()}  # type: ignore[arg-type]
        return await self._read(q)

    async def vacation_note(self, account_id: int, key: str, now: int, period: int) -> bool:
        def op(txn: _Txn) -> bool:
            cur = txn.cur
            cur.execute("DELETE FROM vacation_replies WHERE account_id = ? AND at <= ?",
                        (account_id, now - period))
            if cur.execute("SELECT 1 FROM vacation_replies WHERE account_id = ? AND key = ?",
                           (account_id, key)).fetchone() is not None:
                return False
            cur.execute("INSERT INTO vacation_replies (account_id, key, at) VALUES (?, ?, ?)",
                        (account_id, key, now))
            return True
        return await self._write(op)
