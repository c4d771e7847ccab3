"""The SQLite backend's open-connection counts (casella/store/livecounts.py, sqlite_live.py):
machine-local state in a file of their own that every process maps, never fsynced and never
in the mail database, started from zero when the server starts (open with repair) and kept
when a worker opens the store; a file a crash left damaged is made anew; the table grows and
sheds its tombstones; counted on the event loop thread unless another process holds the lock,
which is then waited for on the store's thread."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from pathlib import Path

from casella.store.livecounts import INITIAL_CAPACITY, LiveCounts
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


async def test_counts_live_apart_from_the_mail(tmp_path: Path) -> None:
    """Counting a connection writes nothing to the mail store's database (whose writer lock,
    group commit and fsync it would otherwise wait for)."""
    store = SQLiteStore(tmp_path)
    await store.open()
    try:
        with sqlite3.connect(tmp_path / "casella.db") as mail:
            before = mail.execute("PRAGMA data_version").fetchone()[0]
            await store.connections_acquire("h/0", [(KEY, 5)])
            await store.connections_release("h/0", [KEY])
            assert mail.execute("PRAGMA data_version").fetchone()[0] == before
        assert (tmp_path / "casella-live.counts").exists()
    finally:
        await store.close()


async def test_a_damaged_counts_file_is_made_anew(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    await store.open()
    await store.connections_acquire("h/0", [(KEY, 5)])
    await store.close()
    (tmp_path / "casella-live.counts").write_bytes(b"not a table at all" * 100)
    store = SQLiteStore(tmp_path)
    await store.open(repair=False)
    try:
        assert await store.connections_count([KEY]) == {}
        assert await store.connections_acquire("h/0", [(KEY, 1)]) is None
        assert await store.connections_acquire("h/1", [(KEY, 1)]) == KEY
    finally:
        await store.close()


def test_the_table_grows_and_sheds_tombstones(tmp_path: Path) -> None:
    """Many more keys than the first capacity: all counted, seen by another process's mapping
    (which maps the grown file again); keys coming and going for ever do not fill it."""
    path = tmp_path / "counts"
    one, two = LiveCounts(path), LiveCounts(path)
    one.open(reset=True)
    two.open(reset=False)
    try:
        keys = [f"ip:10.{i // 256}.{i % 256}.1" for i in range(3 * INITIAL_CAPACITY)]
        for i, key in enumerate(keys):
            assert (one if i % 2 else two).acquire(f"h/{i % 2}", [(key, 1)]) is None
        assert two.acquire("h/0", [(keys[-1], 1)]) == keys[-1]
        assert one.count(keys) == dict.fromkeys(keys, 1)
        size = path.stat().st_size
        assert two.forget("h/0") == len(keys) // 2
        assert one.count(keys) == {k: 1 for i, k in enumerate(keys) if i % 2}
        for round_ in range(4):
            for i in range(2 * INITIAL_CAPACITY):
                key = f"imap-user-ip:u{round_}-{i}@example.test 192.0.2.1"
                one.acquire("h/1", [(key, 10)])
                one.release("h/1", [key])
        assert path.stat().st_size == size
        assert two.count(keys) == {k: 1 for i, k in enumerate(keys) if i % 2}
    finally:
        one.close()
        two.close()


async def test_a_lock_another_process_holds_is_waited_for_off_the_event_loop(
        tmp_path: Path) -> None:
    """A count normally runs on the event loop thread (nothing to wait for); while another
    process holds the table's flock the count waits for it on the store's thread, the event
    loop going on meanwhile, and then counts."""
    store = SQLiteStore(tmp_path)
    await store.open()
    try:
        fd = os.open(tmp_path / "casella-live.counts", os.O_RDWR)
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
        assert await store.connections_count([KEY]) == {KEY: 1}
    finally:
        await store.close()


def test_start_up_empties_the_table_in_place(tmp_path: Path) -> None:
    """Emptying (start-up) or making anew (a damaged header) never makes the file shorter: a
    process still mapping a grown table keeps working (a mapping past the end of its file
    faults with SIGBUS), and sees the table empty."""
    path = tmp_path / "counts"
    grown, other = LiveCounts(path), LiveCounts(path)
    grown.open(reset=True)
    other.open(reset=False)
    try:
        keys = [f"ip:10.0.{i // 256}.{i % 256}" for i in range(2 * INITIAL_CAPACITY)]
        for key in keys:
            grown.acquire("h/0", [(key, 5)])
        size = path.stat().st_size
        assert other.count(keys[-3:]) == dict.fromkeys(keys[-3:], 1)
        restart = LiveCounts(path)
        restart.open(reset=True)
        restart.close()
        assert path.stat().st_size == size
        assert other.count(keys) == {} and grown.count(keys[:5]) == {}
        assert grown.acquire("h/0", [(keys[-1], 1)]) is None
        assert other.acquire("h/1", [(keys[-1], 1)]) == keys[-1]
    finally:
        grown.close()
        other.close()
