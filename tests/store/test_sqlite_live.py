"""The SQLite backend's open-connection counts (casella/store/sqlite_live.py): machine-local
state in a file of their own, never fsynced, started from zero when the server starts (open
with repair) and kept when a worker opens the store; a file a crash left unreadable is made
anew; counted on the event loop thread unless another process holds a lock, which is waited
for on the store's thread."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from pathlib import Path

from casella.store.sqlite import SQLiteStore

KEY = "ip:192.0.2.1"


async def test_start_up_counts_from_zero_and_workers_keep_the_counts(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    await store.open()
    await store.connections_acquire("h/0", [(KEY, 5)])
    await store.close()
    worker = SQLiteStore(tmp_path)
    await worker.open(repair=False)
    assert await worker.connections_count([KEY]) == {KEY: 1}
    await worker.close()
    server = SQLiteStore(tmp_path)
    await server.open(repair=True)
    assert await server.connections_count([KEY]) == {}
    await server.close()


async def test_counts_are_not_synced_and_live_apart_from_the_mail(tmp_path: Path) -> None:
    """Counting a connection costs no fsync (synchronous=OFF) and no write to the mail
    store's database (whose writer lock and group commit it would otherwise wait for)."""
    store = SQLiteStore(tmp_path)
    await store.open()
    try:
        await store.connections_acquire("h/0", [(KEY, 5)])
        assert store._live_conn is not None
        assert store._live_conn.execute("PRAGMA synchronous").fetchone()[0] == 0
        with sqlite3.connect(tmp_path / "casella.db") as mail:
            tables = {r[0] for r in mail.execute("SELECT name FROM sqlite_master")}
        assert "connections" not in tables
    finally:
        await store.close()


async def test_an_unreadable_counts_file_is_made_anew(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    await store.open()
    await store.connections_acquire("h/0", [(KEY, 5)])
    await store.close()
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"casella-live.db{suffix}").unlink(missing_ok=True)
    (tmp_path / "casella-live.db").write_bytes(b"not a database at all" * 100)
    store = SQLiteStore(tmp_path)
    await store.open()
    try:
        assert await store.connections_count([KEY]) == {}
        assert await store.connections_acquire("h/0", [(KEY, 1)]) is None
        assert await store.connections_acquire("h/1", [(KEY, 1)]) == KEY
    finally:
        await store.close()


async def test_a_lock_another_process_holds_is_waited_for_off_the_event_loop(
        tmp_path: Path) -> None:
    """A count normally runs on the event loop thread (nothing to wait for); when another
    process holds the counts' flock, or SQLite's lock on the file, the count waits for it on
    the store's thread while the event loop goes on, and then counts."""
    store = SQLiteStore(tmp_path)
    await store.open()
    try:
        fd = os.open(tmp_path / "casella-live.db.lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            waiting = asyncio.create_task(store.connections_acquire("h/0", [(KEY, 5)]))
            for _ in range(20):
                await asyncio.sleep(0.01)           # the loop is not held up
            assert not waiting.done()
            fcntl.flock(fd, fcntl.LOCK_UN)
            assert await asyncio.wait_for(waiting, 30) is None
        finally:
            os.close(fd)

        other = sqlite3.connect(tmp_path / "casella-live.db", isolation_level=None,
                                check_same_thread=False)
        try:
            other.execute("BEGIN IMMEDIATE")
            waiting = asyncio.create_task(store.connections_acquire("h/0", [(KEY, 5)]))
            for _ in range(20):
                await asyncio.sleep(0.01)
            assert not waiting.done()
            other.execute("COMMIT")
            assert await asyncio.wait_for(waiting, 30) is None
        finally:
            other.close()
        assert await store.connections_count([KEY]) == {KEY: 2}
    finally:
        await store.close()
