"""SQLite backend: the admin API's tokens and the counts /metrics reads.

Lives here: the api_tokens table (schema version 7) and `stats`. Must never: see a token's
secret (only its SHA-256 arrives here) or decide whether a token may do something
(casella.auth.tokens and casella.http.api do).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from casella.errors import AlreadyExists, NotFound
from casella.mail.addresses import normalize_domain
from casella.store.model import ApiToken, StoreStats
from casella.store.sending import DEFERRED, QUEUED, SENDING
from casella.store.sqlite_base import SQLiteBase, _now, _Txn

_TOKEN_COLS = "id, name, domain, secret_hash, created"
_WAITING = (QUEUED, DEFERRED, SENDING)


def _token(row: Sequence[Any]) -> ApiToken:
    return ApiToken(row[0], row[1], row[2], row[3], row[4])


class AdminOps(SQLiteBase):
    async def add_api_token(self, token_id: str, name: str, domain: str | None,
                            secret_hash: str) -> ApiToken:
        dom = normalize_domain(domain) if domain is not None else None

        def op(txn: _Txn) -> ApiToken:
            cur = txn.cur
            if dom is not None and cur.execute("SELECT 1 FROM domains WHERE name = ?",
                                               (dom,)).fetchone() is None:
                raise NotFound(f"domain {dom} does not exist")
            if cur.execute("SELECT 1 FROM api_tokens WHERE name = ? OR id = ?",
                           (name, token_id)).fetchone() is not None:
                raise AlreadyExists(f"a token named {name} already exists")
            created = _now()
            cur.execute(f"INSERT INTO api_tokens ({_TOKEN_COLS}) VALUES (?, ?, ?, ?, ?)",
                        (token_id, name, dom, secret_hash, created))
            return ApiToken(token_id, name, dom, secret_hash, created)
        return await self._write(op)

    async def get_api_token(self, token_id: str) -> ApiToken | None:
        def q(conn: sqlite3.Connection) -> ApiToken | None:
            row = conn.execute(f"SELECT {_TOKEN_COLS} FROM api_tokens WHERE id = ?",
                               (token_id,)).fetchone()
            return _token(row) if row else None
        return await self._read(q)

    async def list_api_tokens(self) -> list[ApiToken]:
        return await self._read(lambda c: [_token(r) for r in c.execute(
            f"SELECT {_TOKEN_COLS} FROM api_tokens ORDER BY name")])

    async def remove_api_token(self, name: str) -> None:
        def op(txn: _Txn) -> None:
            if txn.cur.execute("DELETE FROM api_tokens WHERE name = ? OR id = ?",
                               (name, name)).rowcount == 0:
                raise NotFound(f"there is no token named {name}")
        await self._write(op)

    async def stats(self) -> StoreStats:
        marks = ", ".join("?" * len(_WAITING))

        def q(conn: sqlite3.Connection) -> StoreStats:
            domains = conn.execute("SELECT count(*) FROM domains").fetchone()[0]
            accounts, held = conn.execute(
                "SELECT count(*), coalesce(sum(sending_held != 0), 0) FROM accounts").fetchone()
            entries, recipients, oldest = conn.execute(
                "SELECT count(DISTINCT q.id), count(r.id), min(q.created) FROM queue q "
                f"JOIN queue_recipients r ON r.queue_id = q.id WHERE r.state IN ({marks})",
                _WAITING).fetchone()
            return StoreStats(domains, accounts, held, entries, recipients, oldest)
        return await self._read_snapshot(q)
