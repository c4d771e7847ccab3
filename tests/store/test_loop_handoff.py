"""The SQLite writer hands the statements of a light batch (small deliveries) to the event loop
thread of its jobs, and takes them back when that loop does not run them: exactly one of the two
runs them, errors reach the writer, and a delivery's answer is the same either way."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from casella.store.model import DeliveryTarget
from casella.store.sqlite import SQLiteStore
from casella.store.sqlite_base import _LIGHT_UIDS, _few_uids, _LoopHandoff


class Counter:
    def __init__(self, error: BaseException | None = None) -> None:
        self.threads: list[int] = []
        self.error = error

    def __call__(self) -> None:
        self.threads.append(threading.get_ident())
        if self.error is not None:
            raise self.error


def run_loop_in_thread() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    return loop, thread


def stop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    loop.close()


def test_a_running_loop_runs_the_batch_on_its_thread() -> None:
    loop, thread = run_loop_in_thread()
    try:
        work = Counter()
        _LoopHandoff(work).run(loop, timeout=30)
        assert work.threads == [thread.ident]
    finally:
        stop(loop, thread)


def test_an_error_on_the_loop_reaches_the_writer() -> None:
    loop, thread = run_loop_in_thread()
    try:
        work = Counter(ValueError("boom"))
        with pytest.raises(ValueError, match="boom"):
            _LoopHandoff(work).run(loop, timeout=30)
        assert work.threads == [thread.ident]
    finally:
        stop(loop, thread)


def test_a_loop_that_does_not_run_it_in_time_gets_it_taken_back(
        caplog: pytest.LogCaptureFixture) -> None:
    loop = asyncio.new_event_loop()      # never running while the writer waits
    try:
        work = Counter()
        with caplog.at_level("WARNING", logger="casella.store"):
            _LoopHandoff(work).run(loop, timeout=0.05)
        assert work.threads == [threading.get_ident()]
        assert "did not run a write batch" in caplog.text
        # The callback still queued on the loop must not run the batch a second time.
        loop.run_until_complete(asyncio.sleep(0))
        assert work.threads == [threading.get_ident()]
    finally:
        loop.close()


def test_a_closed_loop_gets_it_taken_back_at_once() -> None:
    loop = asyncio.new_event_loop()
    loop.close()
    work = Counter()
    _LoopHandoff(work).run(loop, timeout=30)
    assert work.threads == [threading.get_ident()]


async def test_small_deliveries_run_on_the_loop_and_big_ones_on_the_writer(
        tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "data")
    await store.open()
    try:
        here = threading.get_ident()
        seen: dict[str, int] = {}

        def job(name: str):
            def fn(txn) -> int:
                seen[name] = threading.get_ident()
                return txn.cur.execute("SELECT 1").fetchone()[0]
            return fn

        assert await store._write(job("light"), light=True) == 1
        assert await store._write(job("heavy")) == 1
        assert seen["light"] == here and seen["heavy"] != here

        # A real delivery through the light path, and one to more recipients than a light
        # job takes: the same kind of answer.
        await store.add_domain("example.test")
        accounts = [await store.add_account(f"u{i}@example.test", "x" * 20, 0)
                    for i in range(10)]
        for targets in (accounts[:1], accounts):
            staged = await store.blobs.stage(b"Subject: hi\r\n\r\nbody\r\n")
            try:
                outcomes = await store.deliver(staged, [DeliveryTarget(a.id) for a in targets])
            finally:
                staged.discard()
            assert [o.error for o in outcomes] == [None] * len(targets)
            assert all(o.uid >= 1 for o in outcomes)
    finally:
        await store.close()


async def test_a_stalled_loop_does_not_hold_the_writer(tmp_path: Path) -> None:
    """While this loop is blocked, the writer takes its light batch back after the timeout and
    commits it; the answer arrives when the loop runs again."""
    store = SQLiteStore(tmp_path / "data")
    await store.open()
    store.loop_handoff_timeout = 0.05
    try:
        ran_on: list[int] = []

        def fn(txn) -> str:
            ran_on.append(threading.get_ident())
            txn.cur.execute("INSERT INTO meta (key, value) VALUES ('handoff-test', 1)")
            return "done"

        pending = asyncio.ensure_future(store._write(fn, light=True))
        await asyncio.sleep(0)               # the job is queued for the writer
        threading.Event().wait(0.5)          # the loop stalls, far beyond the timeout
        assert await asyncio.wait_for(pending, 30) == "done"
        assert len(ran_on) == 1 and ran_on[0] != threading.get_ident()
    finally:
        await store.close()


def test_few_uids_counts_every_range_in_either_order() -> None:
    assert _few_uids([(1, 1)]) and _few_uids([])
    assert _few_uids([(1, _LIGHT_UIDS)]) and not _few_uids([(1, _LIGHT_UIDS + 1)])
    assert not _few_uids([(_LIGHT_UIDS + 1, 1)])                  # reversed, as "5:1" is
    assert not _few_uids([(1, _LIGHT_UIDS // 2), (100, 100 + _LIGHT_UIDS // 2)])
    assert not _few_uids([(1, 2**32 - 1)])                         # 1:*
