"""SQLite backend: the open-connection counts the connection limits share across processes.

Lives here: the `connections_*` part of the store contract. The counts are live state of this
machine, not data: they sit in a database file of their own beside the mail store
(casella-live.db, WAL, synchronous=OFF), so counting a connection costs no fsync and never
waits for the mail store's write lock or group commit. Every process that serves connections
on this data_dir counts in the same file; each transaction runs under an flock(2) of
casella-live.db.lock, which the kernel hands to the next process the moment it is released
(SQLite's busy handler would sleep in steps of milliseconds). Start-up (open with repair)
starts the counts from zero; a file a crash left unreadable is made anew.

A transaction is three short statements (about 15 µs of CPU); the hop to a thread and back
costs three times that, on every connect, login, logout and disconnect. So it runs on the
event loop thread when it can start at once: the flock taken without waiting and SQLite's
lock too (a connection of its own with no busy timeout). Only when another process holds
either does it go to the thread, which waits for them.

Must never: touch the mail store's database, fsync, or wait for a lock on the event loop
thread.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from casella.errors import StorageError
from casella.store.sqlite_base import SQLiteBase, _is_busy, _storage_error

log = logging.getLogger("casella.store")

T = TypeVar("T")

_LIVE_SCHEMA = """
CREATE TABLE IF NOT EXISTS connections (
    key TEXT NOT NULL,
    owner TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (key, owner)
) WITHOUT ROWID;
"""


_ACQUIRE_ONE = ("INSERT INTO connections (key, owner, n) SELECT ?, ?, 1 WHERE (SELECT "
                "coalesce(sum(n), 0) FROM connections WHERE key = ?) < ? "
                "ON CONFLICT (key, owner) DO UPDATE SET n = n + 1")


class _Contended(Exception):
    """Another process holds the lock: the transaction goes to the live thread."""


class LiveOps(SQLiteBase):
    _live_exec: ThreadPoolExecutor | None = None
    _live_conn: sqlite3.Connection | None = None        # the live thread's
    _live_lock_fd: int | None = None
    _fast_conn: sqlite3.Connection | None = None        # the event loop thread's
    _fast_lock_fd: int | None = None                    # another open file: flock excludes

    # --- plumbing --------------------------------------------------------------------------

    @property
    def live_path(self) -> str:
        return str(self.data_dir / "casella-live.db")

    def _live_connect(self) -> sqlite3.Connection:
        """On the live thread: the connection, made (and the schema created) on first use."""
        if self._live_conn is None:
            conn = sqlite3.connect(self.live_path, isolation_level=None,
                                   check_same_thread=False, timeout=self.busy_timeout_ms / 1000)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=OFF")
                conn.execute(_LIVE_SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._live_conn = conn
            try:
                self._live_lock_fd = os.open(self.live_path + ".lock",
                                             os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                log.warning("no lock file for the connection counts, SQLite's busy handler "
                            "serialises them: %s", exc)
        return self._live_conn

    def _live_txn(self, fn: Callable[[sqlite3.Connection], T], single: bool = False) -> T:
        """On the live thread: `fn` in one write transaction under the cross-process flock."""
        conn = self._live_connect()
        fd = self._live_lock_fd
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            return self._retry_busy(conn, lambda: self._live_run(conn, fn, single),
                                    "counted (connections)")
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)

    @staticmethod
    def _live_run(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T],
                  single: bool = False) -> T:
        """`fn` in one transaction; `single`: `fn` is one statement that changes anything, in
        a transaction of its own (autocommit), or statements that change nothing before it."""
        if single:
            return fn(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    async def _live(self, fn: Callable[[sqlite3.Connection], T], single: bool = False) -> T:
        if self._live_exec is None:
            raise StorageError("the store is closed")
        if self._fast_conn is not None:
            try:
                return self._live_fast(self._fast_conn, fn, single)
            except _Contended:
                pass
        return await asyncio.get_running_loop().run_in_executor(
            self._live_exec, self._live_txn, fn, single)

    def _live_fast(self, conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T],
                   single: bool) -> T:
        """On the event loop thread: the transaction if no lock has to be waited for, else
        _Contended with nothing done."""
        fd = self._fast_lock_fd
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise _Contended() from None
        try:
            return self._live_run(conn, fn, single)
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if _is_busy(exc):
                raise _Contended() from None
            raise _storage_error(exc, "counted (connections)") from exc
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _fast_open(self) -> None:
        """On the live thread, at open: the event loop thread's connection and lock file."""
        self._live_connect()
        conn = sqlite3.connect(self.live_path, isolation_level=None, check_same_thread=False,
                               timeout=0)
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA busy_timeout=0")
        self._fast_conn = conn
        if self._live_lock_fd is not None:
            self._fast_lock_fd = os.open(self.live_path + ".lock", os.O_RDWR)

    def _live_reset(self) -> None:
        """Start-up: no connection is open yet, whatever the file says. A file left unreadable
        (synchronous=OFF and a power cut) is replaced: it holds nothing worth keeping."""
        try:
            self._live_txn(lambda c: c.execute("DELETE FROM connections"))
            return
        except (sqlite3.DatabaseError, StorageError) as exc:
            log.warning("the connection counts file was unreadable; made anew: %s", exc)
        self._live_close_conn()
        for suffix in ("", "-wal", "-shm"):
            try:
                os.unlink(self.live_path + suffix)
            except FileNotFoundError:
                pass
        self._live_txn(lambda c: c.execute("DELETE FROM connections"))

    def _live_close_conn(self) -> None:
        if self._fast_conn is not None:
            self._fast_conn.close()
            self._fast_conn = None
        if self._fast_lock_fd is not None:
            os.close(self._fast_lock_fd)
            self._fast_lock_fd = None
        if self._live_conn is not None:
            self._live_conn.close()
            self._live_conn = None
        if self._live_lock_fd is not None:
            os.close(self._live_lock_fd)
            self._live_lock_fd = None

    # --- life cycle ------------------------------------------------------------------------

    async def open(self, repair: bool = True) -> None:
        if self._opened:
            return
        await super().open(repair)
        self._live_exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-live")
        loop = asyncio.get_running_loop()
        if repair:
            await loop.run_in_executor(self._live_exec, self._live_reset)
        try:
            await loop.run_in_executor(self._live_exec, self._fast_open)
        except (sqlite3.Error, OSError, StorageError) as exc:
            # Counting still works, on the live thread only (which says what is wrong).
            log.warning("connection counts: no event-loop connection: %s", exc)

    async def close(self) -> None:
        live, self._live_exec = self._live_exec, None
        if live is not None:
            await asyncio.get_running_loop().run_in_executor(live, self._live_close_conn)
            live.shutdown(wait=True)
        await super().close()

    # --- the contract ----------------------------------------------------------------------

    async def connections_acquire(self, owner: str,
                                  keys: Sequence[tuple[str, int]]) -> str | None:
        if len(keys) == 1:
            # The common case in one statement: counted if the key is below its limit.
            key, limit = keys[0]

            def one(conn: sqlite3.Connection) -> str | None:
                counted = conn.execute(_ACQUIRE_ONE, (key, owner, key, limit)).rowcount
                return None if counted else key
            return await self._live(one, single=True)
        names = [k for k, _ in keys]

        def op(conn: sqlite3.Connection) -> str | None:
            counts = dict(conn.execute(
                "SELECT key, sum(n) FROM connections WHERE key IN "
                f"({','.join('?' * len(names))}) GROUP BY key", names).fetchall())
            for key, limit in keys:
                if counts.get(key, 0) >= limit:
                    return key
            conn.executemany("INSERT INTO connections (key, owner, n) VALUES (?, ?, 1) "
                             "ON CONFLICT (key, owner) DO UPDATE SET n = n + 1",
                             [(k, owner) for k in names])
            return None
        if not keys:
            return None
        return await self._live(op)

    async def connections_release(self, owner: str, keys: Sequence[str]) -> None:
        def op(conn: sqlite3.Connection) -> None:
            for key in keys:
                # Mostly the owner's last connection of the key: its row goes, one statement.
                if not conn.execute("DELETE FROM connections WHERE key = ? AND owner = ? "
                                    "AND n <= 1", (key, owner)).rowcount:
                    conn.execute("UPDATE connections SET n = n - 1 WHERE key = ? AND "
                                 "owner = ?", (key, owner))
        if keys:
            await self._live(op, single=len(keys) == 1)

    async def connections_count(self, keys: Sequence[str]) -> dict[str, int]:
        names = list(keys)

        def op(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT key, sum(n) FROM connections WHERE key IN "
                f"({','.join('?' * len(names))}) GROUP BY key", names).fetchall()
            return {k: int(n) for k, n in rows if n > 0}
        if not names:
            return {}
        return await self._live(op)

    async def connections_forget(self, owner: str) -> int:
        def op(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT coalesce(sum(n), 0) FROM connections WHERE owner = ? "
                               "OR substr(owner, 1, ?) = ?",
                               (owner, len(owner) + 1, owner + "/")).fetchone()
            conn.execute("DELETE FROM connections WHERE owner = ? OR substr(owner, 1, ?) = ?",
                         (owner, len(owner) + 1, owner + "/"))
            return int(row[0])
        return await self._live(op)
