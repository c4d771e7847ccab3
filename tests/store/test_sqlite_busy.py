"""The SQLite backend under another process's locks and broken bodies: a busy database is tried
again inside the store for a bounded time and never reaches a protocol as a failure unless it
stays busy longer than that bound (StorageError then); a body a message still holds but whose
file is missing is a StorageError, not BodyGone (only a body nobody holds any more is gone)."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from casella.errors import BodyGone, StorageError
from tests.store.test_inline_bodies import append_one, message, open_with_user


class BusyFor:
    """A reader connection whose first `times` statements fail as SQLite does when another
    process holds a lock the busy handler cannot wait for (SQLITE_BUSY_RECOVERY)."""

    def __init__(self, conn: sqlite3.Connection, times: int) -> None:
        self._conn = conn
        self.left = times
        self.failed = 0

    def execute(self, *args: Any) -> Any:
        if self.left:
            self.left -= 1
            self.failed += 1
            exc = sqlite3.OperationalError("database is locked")
            exc.sqlite_errorcode = 261      # type: ignore[attr-defined]  # BUSY_RECOVERY
            raise exc
        return self._conn.execute(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


async def test_busy_read_is_retried_inside_the_store(tmp_path: Path) -> None:
    store, acct_id, _ = await open_with_user(tmp_path / "data")
    try:
        real = store._reader
        busy: list[BusyFor] = []

        def reader() -> Any:
            if not busy:
                busy.append(BusyFor(real(), 3))
            return busy[0]
        store._reader = reader  # type: ignore[method-assign]
        acct = await store.get_account_by_id(acct_id)
        assert acct is not None and acct.address == "inline@example.test"
        assert busy[0].failed == 3
    finally:
        await store.close()


async def test_busy_read_beyond_the_bound_is_a_storage_error(tmp_path: Path) -> None:
    store, acct_id, _ = await open_with_user(tmp_path / "data")
    try:
        store.busy_retry_seconds = 0.3
        real = store._reader
        busy: list[BusyFor] = []

        def reader() -> Any:
            if not busy:
                busy.append(BusyFor(real(), 10**9))
            return busy[0]
        store._reader = reader  # type: ignore[method-assign]
        started = time.monotonic()
        with pytest.raises(StorageError) as info:
            await store.get_account_by_id(acct_id)
        assert not isinstance(info.value, BodyGone)
        assert 0.3 <= time.monotonic() - started < 10
    finally:
        await store.close()


async def test_write_waits_for_a_foreign_writer(tmp_path: Path) -> None:
    """Another process's write transaction (not casella's: it does not take the writer lock
    file) outlasts SQLite's busy handler, here cut to 50 ms: the write is tried again and
    commits once the other transaction is gone."""
    data_dir = tmp_path / "data"
    store, _, _ = await open_with_user(data_dir)
    await store.close()
    store.busy_timeout_ms = 50
    await store.open()
    foreign = sqlite3.connect(data_dir / "casella.db", isolation_level=None,
                              check_same_thread=False)
    try:
        foreign.execute("BEGIN IMMEDIATE")
        timer = threading.Timer(0.5, lambda: foreign.execute("COMMIT"))
        timer.start()
        started = time.monotonic()
        await store.add_domain("after-the-lock.test")
        assert time.monotonic() - started >= 0.4
        assert await store.get_domain("after-the-lock.test") is not None
        timer.join()
    finally:
        foreign.close()
        await store.close()


async def test_missing_file_of_a_held_body_is_not_body_gone(tmp_path: Path) -> None:
    store, _, box_id = await open_with_user(tmp_path / "data", inline_max=-1)
    try:
        digest = await append_one(store, box_id, message(1))
        store.blobs.path_for(digest).unlink()
        with pytest.raises(StorageError) as info:
            await store.read_blob(digest)
        assert not isinstance(info.value, BodyGone)
        with pytest.raises(StorageError) as info:
            await store.read_blobs([(digest, 0, 10)])
        assert not isinstance(info.value, BodyGone)
    finally:
        await store.close()
