"""SQLite backend: the schema's version and upkeep of disk space.

Lives here: `schema_status` and `migrate` (on a store that is not open; the steps and their
record are casella.store.sqlite_versions'), `space_stats`, the online `vacuum_step` (a write
job that gives a bounded number of free pages back) and the offline-safe full `compact`.
Must never: run a schema step on open, or give pages back in one step for longer than
_STEP_MAX_SECONDS while sessions wait for the write lock.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from typing import TypeVar

from casella.errors import UserError
from casella.store import sqlite_versions
from casella.store.model import CompactResult, SchemaStatus, SpaceStats, VacuumStep
from casella.store.sqlite_base import SQLiteBase, _storage_error, _Txn

T = TypeVar("T")

# One step stops after this long even if it has not given back all the pages it may: every
# other writer of every worker waits for it.
_STEP_MAX_SECONDS = 0.005
_AUTO_VACUUM = {0: "none", 1: "full", 2: "incremental"}


def _pragma(conn: sqlite3.Connection, name: str) -> int:
    return int(conn.execute(f"PRAGMA {name}").fetchone()[0])


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


class MaintenanceOps(SQLiteBase):
    async def _offline(self, fn: Callable[[sqlite3.Connection], T], verb: str,
                       lock: bool = True) -> T:
        """`fn` on a connection of its own, for work on a store that is not open; with `lock`
        under the writer lock of every process on this data_dir (migrate, compact)."""
        def run() -> T:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            lock_fd = self._open_write_lock() if lock else None
            try:
                if lock_fd is not None:
                    # A live server's writers wait here (without a timeout) rather than fail.
                    fcntl.flock(lock_fd, fcntl.LOCK_EX)
                conn = self._connect(writer=True)
                try:
                    return fn(conn)
                except sqlite3.Error as exc:
                    raise _storage_error(exc, verb) from exc
                finally:
                    conn.close()
            finally:
                if lock_fd is not None:
                    os.close(lock_fd)     # and with it the lock
        return await asyncio.get_running_loop().run_in_executor(None, run)

    async def schema_status(self) -> SchemaStatus:
        if not self.db_path.exists():
            known = sqlite_versions.known_version()
            return SchemaStatus(0, known, tuple((v, sqlite_versions.step_title(v))
                                                for v in range(1, known + 1)), ())
        return await self._offline(sqlite_versions.status, "read", lock=False)

    async def migrate(self, progress: Callable[[int, str], None] | None = None) -> list[int]:
        applied = await self._offline(
            lambda conn: sqlite_versions.apply_steps(conn, progress), "upgraded")
        self.blobs.prepare()
        return applied

    async def space_stats(self) -> SpaceStats:
        def q(conn: sqlite3.Connection) -> SpaceStats:
            conn.execute("BEGIN")
            try:
                page_size = _pragma(conn, "page_size")
                pages = _pragma(conn, "page_count")
                free = _pragma(conn, "freelist_count")
                mode = _AUTO_VACUUM.get(_pragma(conn, "auto_vacuum"), "none")
                version = _pragma(conn, "user_version")
                messages = conn.execute(
                    "SELECT coalesce(sum(messages), 0) FROM mailboxes").fetchone()[0]
                try:
                    # The room left unused inside used pages, which a full rewrite packs away
                    # (each table and index still needs whole pages). dbstat reads every
                    # page: an admin's question, not a server's.
                    slack = sum(
                        total - -(-(total - unused) // page_size) * page_size
                        for total, unused in conn.execute(
                            "SELECT sum(pgsize), sum(unused) FROM dbstat GROUP BY name"))
                except sqlite3.OperationalError:   # SQLite built without dbstat
                    slack = 0
            finally:
                conn.execute("COMMIT")
            blob_files, blob_bytes = self.blobs.usage()
            return SpaceStats(
                database_bytes=pages * page_size, used_bytes=(pages - free) * page_size,
                free_bytes=free * page_size, reclaimable_bytes=free * page_size + int(slack),
                wal_bytes=_file_size(f"{self.db_path}-wal"), page_size=page_size,
                auto_vacuum=mode, blob_files=blob_files, blob_bytes=blob_bytes,
                messages=int(messages), schema_version=version)
        return await self._read(q)

    async def vacuum_step(self, max_pages: int) -> VacuumStep:
        def op(txn: _Txn) -> VacuumStep:
            cur = txn.cur
            page_size = _pragma(cur, "page_size")
            free = _pragma(cur, "freelist_count")
            if _pragma(cur, "auto_vacuum") != 2:
                return VacuumStep(0, free, page_size, online=False)
            deadline = time.perf_counter() + _STEP_MAX_SECONDS
            todo = min(max_pages, free)
            done = 0
            # One page per statement: Python's sqlite3 steps a PRAGMA that returns no rows
            # only once, so `incremental_vacuum(N)` would give back one page anyway; this way
            # the count and the deadline hold on any version.
            while done < todo and (done % 16 or time.perf_counter() < deadline):
                cur.execute("PRAGMA incremental_vacuum(1)").fetchall()
                done += 1
            left = _pragma(cur, "freelist_count")
            if done and not left:
                self._checkpoint_wanted = True      # the file shrinks at a checkpoint
            return VacuumStep(free - left, left, page_size, online=True)
        return await self._write(op)

    async def compact(self, starting: Callable[[int], None] | None = None) -> CompactResult:
        if not self.db_path.exists():
            raise UserError(f"there is no database in {self.data_dir} to compact")

        def run(conn: sqlite3.Connection) -> CompactResult:
            page_size = _pragma(conn, "page_size")
            before = _pragma(conn, "page_count") * page_size
            used = before - _pragma(conn, "freelist_count") * page_size
            room = shutil.disk_usage(self.data_dir).free
            if room < used:
                raise UserError(f"compacting needs about {used} bytes of free disk beside the "
                                f"database, and only {room} are free")
            if starting is not None:
                starting(before)
            # The copy VACUUM builds goes to a temporary file, not to memory (temp_store).
            conn.execute("PRAGMA temp_store=FILE")
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
            conn.execute("VACUUM")
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            after = _pragma(conn, "page_count") * _pragma(conn, "page_size")
            mode = _AUTO_VACUUM.get(_pragma(conn, "auto_vacuum"), "none")
            return CompactResult(before, after, mode)
        return await self._offline(run, "compacted")
