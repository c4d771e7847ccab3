"""`python -m bench.space`: how much space deleted mail gives back, and what a vacuum step costs.

Lives here: one measurement on a fresh store in a temporary directory: APPEND N messages,
delete them all, let the blob collector run, then run `vacuum_step` until nothing is free.
Prints the database file's size at each stage and the time per step: the time inside the
write transaction (what every other writer waits for, beside the COMMIT) and the whole step as
a caller awaits it (BEGIN, the steps, COMMIT with its fsync, and SQLite's automatic checkpoint
when the WAL passed 1000 pages). Must never: be run by the test suite as a timed test.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from casella.auth.passwords import hash_password
from casella.store.model import AppendItem
from casella.store.sqlite import SQLiteStore


def _message(n: int, size: int) -> bytes:
    head = f"From: a@example.org\r\nSubject: space {n}\r\n\r\n".encode()
    return head + b"x" * max(size - len(head) - 2, 0) + b"\r\n"


def _sizes(data_dir: Path) -> str:
    db = data_dir / "casella.db"
    wal = Path(f"{db}-wal")
    return (f"casella.db {os.path.getsize(db) / 2**20:.1f} MiB, WAL "
            f"{(os.path.getsize(wal) if wal.exists() else 0) / 2**20:.1f} MiB")


def _ms(values: list[float]) -> str:
    values = sorted(values)
    return (f"median {statistics.median(values) * 1000:.2f} ms, p90 "
            f"{values[int(len(values) * 0.9)] * 1000:.2f} ms, max {values[-1] * 1000:.2f} ms")


async def measure(messages: int, size: int, pages: int, root: Path) -> None:
    data_dir = root / "data"
    store = SQLiteStore(data_dir)
    await store.open()
    await store.add_domain("example.test")
    acct = await store.add_account("space@example.test", hash_password("x"), 0)
    box = await store.get_mailbox(acct.id, "INBOX")
    assert box is not None
    for start in range(0, messages, 100):
        items = [AppendItem(await store.blobs.stage(_message(n, size)))
                 for n in range(start, min(start + 100, messages))]
        await store.append(box.id, items)
        for item in items:
            item.blob.discard()
    print(f"{messages} messages of {size} bytes appended: {_sizes(data_dir)}")
    await store.remove_messages(box.id, [(1, messages)])
    while await store.stored_bodies():     # the collector runs after a later write
        await store.auth_clear(["ip:192.0.2.1"])
        await asyncio.sleep(0.05)
    stats = await store.space_stats()
    print(f"deleted and collected: {_sizes(data_dir)}, free {stats.free_bytes / 2**20:.1f} "
          f"MiB")

    inside: list[float] = []
    write = store._write

    async def timed_write(fn: Any, light: bool = False) -> Any:
        def timed(txn: Any) -> Any:
            started = time.perf_counter()
            try:
                return fn(txn)
            finally:
                inside.append(time.perf_counter() - started)
        return await write(timed, light)

    store._write = timed_write  # type: ignore[method-assign]
    awaited: list[float] = []
    given = 0
    while True:
        started = time.perf_counter()
        step = await store.vacuum_step(pages)
        awaited.append(time.perf_counter() - started)
        given += step.pages
        if not step.free_pages or not step.pages:
            break
    store._write = write  # type: ignore[method-assign]
    await store.auth_clear(["ip:192.0.2.1"])      # after the checkpoint that follows the last
    print(f"{len(awaited)} steps of at most {pages} pages gave back {given * 4096 / 2**20:.1f} "
          f"MiB: {_sizes(data_dir)}")
    print(f"  inside the write transaction: {_ms(inside)}")
    print(f"  awaited (BEGIN .. COMMIT, fsync, auto-checkpoints): {_ms(awaited)}")
    await store.close()
    print(f"after close: {_sizes(data_dir)}")


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m bench.space", description=__doc__)
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--size", type=int, default=10000, help="bytes per message")
    p.add_argument("--pages", type=int, default=256, help="pages per vacuum step")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="casella-space-") as root:
        asyncio.run(measure(args.messages, args.size, args.pages, Path(root)))


if __name__ == "__main__":
    main()
