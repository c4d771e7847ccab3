"""Space comes back (issue 21): after deletions the database gives its free pages back to the
file system in short online steps (auto_vacuum=INCREMENTAL, which every new database gets), a
database made without it is switched by a full compact, and the space figures add up."""

from __future__ import annotations

import asyncio
import hashlib
import os
import sqlite3
import time
from pathlib import Path

import pytest

from casella.store import sqlite_base
from casella.store.blobs import INLINE_MAX
from casella.store.model import AppendItem
from casella.store.sqlite import SQLiteStore
from casella.store.vacuum import VacuumRunner
from tests.store.test_inline_bodies import message, open_with_user
from tests.store.test_schema_migration import _old_database


async def append_many(store: SQLiteStore, box_id: int, first: int, count: int,
                      size: int = 20_000) -> list[str]:
    """APPEND messages first..first+count-1 in batches; their digests."""
    digests = []
    for start in range(first, first + count, 50):
        items = [AppendItem(await store.blobs.stage(message(n, size)))
                 for n in range(start, min(start + 50, first + count))]
        try:
            await store.append(box_id, items)
        finally:
            for item in items:
                item.blob.discard()
        digests += [item.blob.digest for item in items]
    return digests


async def collected(store: SQLiteStore, kept: int = 0) -> None:
    """Wait until the blob collector (it runs after a write once a release has waited) has
    taken every body nobody holds: `kept` bodies are left."""
    for _ in range(200):
        await store.add_domain(f"flush-{os.urandom(6).hex()}.test")
        if len(await store.stored_bodies()) == kept:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the blob collector did not run")


def file_size(data_dir: Path) -> int:
    return os.path.getsize(data_dir / "casella.db")


async def test_deleted_mail_goes_back_to_the_file_system_in_steps(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store, _, box_id = await open_with_user(data_dir)
    try:
        await append_many(store, box_id, 1, 400)
        big = message(0, INLINE_MAX + 10_000)
        await append_many(store, box_id, 401, 1, size=len(big))   # a body file
        full = await store.space_stats()
        assert full.auto_vacuum == "incremental" and full.messages == 401
        assert full.blob_files == 1 and full.blob_bytes > INLINE_MAX
        assert full.used_bytes + full.free_bytes == full.database_bytes > 8_000_000
        assert full.free_bytes < 100_000

        await store.remove_messages(box_id, [(1, 401)])
        await collected(store)
        emptied = await store.space_stats()
        assert emptied.messages == 0
        assert emptied.blob_files == 0 and emptied.blob_bytes == 0   # the file went too
        assert emptied.free_bytes > 8_000_000
        assert emptied.reclaimable_bytes >= emptied.free_bytes
        assert emptied.database_bytes == full.database_bytes   # free, not given back yet

        steps = 0
        while True:
            step = await store.vacuum_step(128)
            assert step.online and step.pages <= 128
            steps += 1
            if not step.free_pages:
                break
            assert step.pages > 0
        assert steps >= emptied.free_bytes // (128 * 4096)
        # The writer checkpoints after the last step, before it takes the next write.
        await store.add_domain("after.test")
        after = await store.space_stats()
        assert after.free_bytes == 0 and after.used_bytes == after.database_bytes
        assert file_size(data_dir) <= after.database_bytes < full.database_bytes // 10
        assert (await store.vacuum_step(128)).pages == 0        # nothing left to give
    finally:
        await store.close()
    with sqlite3.connect(data_dir / "casella.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_vacuum_steps_between_writes_lose_nothing(tmp_path: Path) -> None:
    """Steps run as write jobs beside APPENDs, flag changes and deletions: every message kept
    is there with its bytes and flags, the counters agree, the database is sound."""
    data_dir = tmp_path / "data"
    store, acct_id, box_id = await open_with_user(data_dir)
    try:
        await append_many(store, box_id, 1, 200)
        await store.remove_messages(box_id, [(1, 150)])
        await collected(store, kept=50)
        assert (await store.space_stats()).free_bytes > 1_000_000

        stop = asyncio.Event()
        given = 0

        async def vacuum() -> None:
            nonlocal given
            while not stop.is_set():
                given += (await store.vacuum_step(8)).pages
                await asyncio.sleep(0)

        async def write() -> list[str]:
            digests = []
            for n in range(10):
                digests += await append_many(store, box_id, 1000 + 10 * n, 10, size=5_000)
                await store.store_flags(box_id, [(151, 10_000)], "add", ["\\Flagged"])
                await store.remove_messages(box_id, [(151 + n, 151 + n)])
            return digests

        runner = asyncio.create_task(vacuum())
        try:
            new = await write()
        finally:
            stop.set()
            await runner
        assert given > 0
    finally:
        await store.close()

    store = SQLiteStore(data_dir)
    await store.open()          # start-up repair: counters checked against the messages
    try:
        box = await store.select(box_id)
        metas = await store.fetch_meta(box_id, [(1, 10_000)])
        assert [m.uid for m in metas] == list(range(161, 201)) + list(range(201, 301))
        assert box.mailbox.messages == len(metas) == 140
        assert all("\\Flagged" in m.flags for m in metas)
        statics = await store.fetch_static([m.blob_id for m in metas])
        expected = {hashlib.sha256(message(n, 20_000)).hexdigest()
                    for n in range(161, 201)} | set(new)
        assert {s.digest for s in statics.values()} == expected
        for s in statics.values():
            assert hashlib.sha256(await store.read_blob(s.digest)).hexdigest() == s.digest
        acct = await store.get_account_by_id(acct_id)
        assert acct is not None and acct.used_messages == 140
    finally:
        await store.close()
    with sqlite3.connect(data_dir / "casella.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)


async def test_the_runner_starts_above_its_threshold_and_empties_the_free_list(
        tmp_path: Path) -> None:
    store, _, box_id = await open_with_user(tmp_path / "data")
    try:
        await append_many(store, box_id, 1, 100)
        await store.remove_messages(box_id, [(1, 100)])
        await collected(store)
        free = (await store.space_stats()).free_bytes
        idle = VacuumRunner(store, threshold=free + 1, step_pages=64, interval=0.01,
                            check_interval=60)
        assert await idle.run_once() == 0                       # below its threshold
        runner = VacuumRunner(store, threshold=free, step_pages=64, interval=0.01,
                              check_interval=60)
        assert await runner.run_once() * 4096 == free
        assert (await store.space_stats()).free_bytes == 0
    finally:
        await store.close()


async def test_an_old_database_gives_nothing_back_online_until_compacted(
        tmp_path: Path) -> None:
    """A database made before casella set auto_vacuum (mode none) keeps its free pages; the
    full compact gives them back and switches it, after which steps work online."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _old_database(data_dir / "casella.db", 9).close()
    old = SQLiteStore(data_dir)
    await old.migrate()
    store, _, box_id = await open_with_user(data_dir)
    try:
        await append_many(store, box_id, 1, 200)
        await store.remove_messages(box_id, [(1, 200)])
        await collected(store)
        stats = await store.space_stats()
        assert stats.auto_vacuum == "none" and stats.free_bytes > 3_000_000
        step = await store.vacuum_step(64)
        assert not step.online and step.pages == 0
        runner = VacuumRunner(store, threshold=0, step_pages=64, interval=0.01,
                              check_interval=60)
        assert await runner.run_once() == 0
    finally:
        await store.close()
    before = file_size(data_dir)
    sizes: list[int] = []
    result = await SQLiteStore(data_dir).compact(sizes.append)
    assert sizes == [before] == [result.before_bytes]
    assert result.auto_vacuum == "incremental"
    assert result.after_bytes == file_size(data_dir) < before - stats.free_bytes + 100_000
    store, _, box_id = await open_with_user(data_dir)
    try:
        assert (await store.space_stats()).auto_vacuum == "incremental"
        await append_many(store, box_id, 1, 50)
        await store.remove_messages(box_id, [(201, 250)])
        await collected(store)
        assert (await store.vacuum_step(64)).pages > 0
    finally:
        await store.close()


async def test_bodies_beyond_one_collection_batch_all_go(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """The collector takes _GC_BATCH blobs per transaction; more go in the next ones, both
    while running and at start-up."""
    monkeypatch.setattr(sqlite_base, "_GC_BATCH", 5)
    data_dir = tmp_path / "data"
    store, _, box_id = await open_with_user(data_dir)
    try:
        await append_many(store, box_id, 1, 12, size=1_000)
        await store.remove_messages(box_id, [(1, 12)])
        await collected(store)
        await append_many(store, box_id, 100, 12, size=1_000)
        await store.remove_messages(box_id, [(13, 24)])
    finally:
        await store.close()
    store = SQLiteStore(data_dir)
    await store.open()
    try:
        assert await store.stored_bodies() == []
    finally:
        await store.close()


def test_the_server_gives_space_back_by_itself(make_server) -> None:
    """[store] vacuum_*: the server's background runner empties the free list once the
    threshold is crossed (polled with a generous deadline, not timed)."""
    srv = make_server(store={"vacuum_threshold": "1M", "vacuum_check_interval": 1,
                             "vacuum_interval": 0.01, "vacuum_step_pages": 64})
    acct = srv.add_user("space@example.test")

    async def fill_and_delete() -> int:
        box = await srv.store.get_mailbox(acct.id, "INBOX")
        assert box is not None
        await append_many(srv.store, box.id, 1, 150)
        full = (await srv.store.space_stats()).database_bytes
        await srv.store.remove_messages(box.id, [(1, 150)])
        await collected(srv.store)
        return full

    full = srv.run(fill_and_delete())
    assert full > 3_000_000
    deadline = time.monotonic() + 30
    while srv.run(srv.store.space_stats()).free_bytes and time.monotonic() < deadline:
        time.sleep(0.1)
    after = srv.run(srv.store.space_stats())
    assert after.free_bytes == 0 and after.database_bytes < full // 4
