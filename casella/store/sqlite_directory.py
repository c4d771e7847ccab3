"""SQLite backend: domains, accounts and aliases.

Lives here: the directory part of the store contract. Must never: touch message data except
through the shared helpers when an account is removed.
"""

from __future__ import annotations

import sqlite3
from typing import (
    Any,
    Callable,
    Sequence,
)

from casella.errors import (
    AlreadyExists,
    InvalidName,
    NotFound,
    UserError,
)
from casella.mail.addresses import (
    normalize_address,
    normalize_alias_source,
    normalize_domain,
)
from casella.store.model import (
    DEFAULT_MAILBOXES,
    POP3_DELETE_POLICIES,
    POP3_MAX_EXPIRE_DAYS,
    Account,
    Alias,
    Domain,
)
from casella.store.sqlite_base import (
    _ACCOUNT_COLS,
    _DOMAIN_COLS,
    SQLiteBase,
    _account,
    _domain,
    _now,
    _Txn,
)


class DirectoryOps(SQLiteBase):
    # --- domains ---------------------------------------------------------------------------

    async def add_domain(self, name: str) -> Domain:
        domain = normalize_domain(name)

        def op(txn: _Txn) -> Domain:
            try:
                cur = txn.cur.execute("INSERT INTO domains (name, created) VALUES (?, ?)",
                                      (domain, _now()))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"domain {domain} already exists") from None
            return Domain(int(cur.lastrowid or 0), domain, _now())
        return await self._write(op)

    async def remove_domain(self, name: str, force: bool = False) -> None:
        domain = normalize_domain(name)

        def op(txn: _Txn) -> None:
            row = txn.cur.execute("SELECT id FROM domains WHERE name = ?", (domain,)).fetchone()
            if row is None:
                raise NotFound(f"domain {domain} does not exist")
            domain_id = row[0]
            accounts = [r[0] for r in txn.cur.execute(
                "SELECT id FROM accounts WHERE domain_id = ?", (domain_id,))]
            aliases = txn.cur.execute("SELECT count(*) FROM aliases WHERE domain_id = ?",
                                      (domain_id,)).fetchone()[0]
            if (accounts or aliases) and not force:
                raise UserError(f"domain {domain} still has {len(accounts)} users and "
                                f"{aliases} aliases; remove them first or use --force")
            for account_id in accounts:
                self._remove_account(txn, account_id)
            txn.cur.execute("DELETE FROM aliases WHERE domain_id = ?", (domain_id,))
            txn.cur.execute("DELETE FROM domains WHERE id = ?", (domain_id,))
        await self._write(op)

    async def get_domain(self, name: str) -> Domain | None:
        try:
            domain = normalize_domain(name)
        except InvalidName:
            return None

        def q(conn: sqlite3.Connection) -> Domain | None:
            row = conn.execute(f"SELECT {_DOMAIN_COLS} FROM domains WHERE name = ?",
                               (domain,)).fetchone()
            return _domain(row) if row else None
        return await self._read(q)

    async def list_domains(self) -> list[Domain]:
        return await self._read(lambda c: [_domain(r) for r in c.execute(
            f"SELECT {_DOMAIN_COLS} FROM domains ORDER BY name")])

    # --- accounts --------------------------------------------------------------------------

    async def add_account(self, address: str, password_hash: str, quota_bytes: int,
                          quota_messages: int = 0) -> Account:
        addr = normalize_address(address)
        domain = addr.rsplit("@", 1)[1]
        if quota_bytes < 0 or quota_messages < 0:
            raise UserError("a quota cannot be negative")

        def op(txn: _Txn) -> Account:
            cur = txn.cur
            row = cur.execute("SELECT id FROM domains WHERE name = ?", (domain,)).fetchone()
            if row is None:
                raise NotFound(f"domain {domain} is not hosted here; add it first")
            now = _now()
            try:
                c = cur.execute(
                    "INSERT INTO accounts (address, domain_id, password_hash, quota_bytes, "
                    "quota_messages, created) VALUES (?, ?, ?, ?, ?, ?)",
                    (addr, row[0], password_hash, quota_bytes, quota_messages, now))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"user {addr} already exists") from None
            account_id = int(c.lastrowid or 0)
            for name, special in DEFAULT_MAILBOXES:
                self._create_mailbox_row(cur, account_id, name, special)
                cur.execute("INSERT OR IGNORE INTO subscriptions (account_id, name) "
                            "VALUES (?, ?)", (account_id, name))
            return self._account_row(cur, account_id)
        return await self._write(op)

    async def get_account(self, address: str) -> Account | None:
        try:
            addr = normalize_address(address)
        except InvalidName:
            return None
        return await self._read(lambda c: (lambda r: _account(r) if r else None)(c.execute(
            f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE address = ?", (addr,)).fetchone()))

    async def get_account_by_id(self, account_id: int) -> Account | None:
        return await self._read(lambda c: (lambda r: _account(r) if r else None)(c.execute(
            f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE id = ?", (account_id,)).fetchone()))

    async def list_accounts(self, domain: str | None = None) -> list[Account]:
        if domain is None:
            return await self._read(lambda c: [_account(r) for r in c.execute(
                f"SELECT {_ACCOUNT_COLS} FROM accounts ORDER BY address")])
        dom = normalize_domain(domain)

        def q(conn: sqlite3.Connection) -> list[Account]:
            row = conn.execute("SELECT id FROM domains WHERE name = ?", (dom,)).fetchone()
            if row is None:
                raise NotFound(f"domain {dom} does not exist")
            return [_account(r) for r in conn.execute(
                f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE domain_id = ? ORDER BY address",
                (row[0],))]
        return await self._read(q)

    async def _update_account(self, address: str, sql: str, params: tuple[Any, ...]) -> None:
        addr = normalize_address(address)

        def op(txn: _Txn) -> None:
            if txn.cur.execute(sql + " WHERE address = ?", params + (addr,)).rowcount == 0:
                raise NotFound(f"user {addr} does not exist")
        await self._write(op)

    async def set_password(self, address: str, password_hash: str) -> None:
        await self._update_account(address, "UPDATE accounts SET password_hash = ?",
                                   (password_hash,))

    async def set_quota(self, address: str, quota_bytes: int,
                        quota_messages: int | None = None) -> None:
        if quota_bytes < 0 or (quota_messages or 0) < 0:
            raise UserError("a quota cannot be negative")
        await self._update_account(
            address, "UPDATE accounts SET quota_bytes = ?, "
                     "quota_messages = coalesce(?, quota_messages)",
            (quota_bytes, quota_messages))

    async def set_pop3_policy(self, address: str, delete: str | None,
                              expire_days: int | None) -> None:
        if delete is not None and delete not in POP3_DELETE_POLICIES:
            raise UserError(f"POP3 delete policy {delete!r}: expected "
                            + ", ".join(POP3_DELETE_POLICIES))
        if expire_days is not None and (isinstance(expire_days, bool) or not isinstance(
                expire_days, int) or not 0 <= expire_days <= POP3_MAX_EXPIRE_DAYS):
            raise UserError(f"POP3 expiry {expire_days!r}: expected 0 to "
                            f"{POP3_MAX_EXPIRE_DAYS} days")
        await self._update_account(
            address, "UPDATE accounts SET pop3_delete = ?, pop3_expire_days = ?",
            (delete, expire_days))

    async def remove_account(self, address: str) -> None:
        addr = normalize_address(address)

        def op(txn: _Txn) -> None:
            row = txn.cur.execute("SELECT id FROM accounts WHERE address = ?",
                                  (addr,)).fetchone()
            if row is None:
                raise NotFound(f"user {addr} does not exist")
            self._remove_account(txn, row[0])
        await self._write(op)

    def _remove_account(self, txn: _Txn, account_id: int) -> None:
        cur = txn.cur
        for (mailbox_id,) in cur.execute("SELECT id FROM mailboxes WHERE account_id = ?",
                                         (account_id,)).fetchall():
            self._drop_mailbox_contents(txn, mailbox_id)
            cur.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
        cur.execute("DELETE FROM subscriptions WHERE account_id = ?", (account_id,))
        cur.execute("UPDATE queue SET account_id = NULL WHERE account_id = ?", (account_id,))
        # Per-account rows of the sending limits and the IMAP extensions: account ids can be
        # reused, and a new account must not inherit threads, warnings or sending history.
        for table in ("send_events", "send_guard", "blob_threads", "thread_keys",
                      "quota_warnings"):
            cur.execute(f"DELETE FROM {table} WHERE account_id = ?", (account_id,))
        cur.execute("DELETE FROM accounts WHERE id = ?", (account_id,))

    # --- aliases ---------------------------------------------------------------------------

    async def add_alias(self, source: str, destinations: Sequence[str]) -> Alias:
        src = normalize_alias_source(source)
        if not destinations:
            raise UserError("an alias needs at least one destination")
        dests: list[str] = []
        for d in destinations:
            n = normalize_address(d)
            if n not in dests:
                dests.append(n)
        domain = src.rsplit("@", 1)[1]

        def op(txn: _Txn) -> Alias:
            row = txn.cur.execute("SELECT id FROM domains WHERE name = ?", (domain,)).fetchone()
            if row is None:
                raise NotFound(f"domain {domain} is not hosted here; add it first")
            try:
                txn.cur.execute("INSERT INTO aliases (source, domain_id, destinations) "
                                "VALUES (?, ?, ?)", (src, row[0], "\n".join(dests)))
            except sqlite3.IntegrityError:
                raise AlreadyExists(f"alias {src} already exists") from None
            return Alias(src, tuple(dests))
        return await self._write(op)

    async def get_alias(self, source: str) -> Alias | None:
        try:
            src = normalize_alias_source(source)
        except InvalidName:
            return None
        return await self._read(lambda c: (lambda r: Alias(r[0], tuple(r[1].split("\n")))
                                           if r else None)(c.execute(
            "SELECT source, destinations FROM aliases WHERE source = ?", (src,)).fetchone()))

    async def resolve_address(self, address: str) -> tuple[bool, Alias | None, Account | None]:
        def norm(f: Callable[[str], str], value: str) -> str | None:
            try:
                return f(value)
            except InvalidName:
                return None
        domain = norm(normalize_domain, address.rpartition("@")[2])
        src = norm(normalize_alias_source, address)
        addr = norm(normalize_address, address)

        def q(conn: sqlite3.Connection) -> tuple[bool, Alias | None, Account | None]:
            hosted = domain is not None and conn.execute(
                "SELECT 1 FROM domains WHERE name = ?", (domain,)).fetchone() is not None
            alias = account = None
            if src is not None:
                r = conn.execute("SELECT source, destinations FROM aliases WHERE source = ?",
                                 (src,)).fetchone()
                alias = Alias(r[0], tuple(r[1].split("\n"))) if r else None
            if addr is not None:
                r = conn.execute(f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE address = ?",
                                 (addr,)).fetchone()
                account = _account(r) if r else None
            return hosted, alias, account
        return await self._read(q)

    async def list_aliases(self, domain: str | None = None) -> list[Alias]:
        if domain is None:
            sql, params = "SELECT source, destinations FROM aliases ORDER BY source", ()
        else:
            sql = ("SELECT source, destinations FROM aliases WHERE domain_id = "
                   "(SELECT id FROM domains WHERE name = ?) ORDER BY source")
            params = (normalize_domain(domain),)
        return await self._read(lambda c: [Alias(r[0], tuple(r[1].split("\n")))
                                           for r in c.execute(sql, params)])

    async def remove_alias(self, source: str) -> None:
        src = normalize_alias_source(source)

        def op(txn: _Txn) -> None:
            if txn.cur.execute("DELETE FROM aliases WHERE source = ?", (src,)).rowcount == 0:
                raise NotFound(f"alias {src} does not exist")
        await self._write(op)
