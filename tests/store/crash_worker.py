"""Appends messages to one mailbox for ever, printing `ACK <uid> <n>` after each append
returned (i.e. is durable). Used by test_crash.py, which kills it with SIGKILL."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from casella.store.model import AppendItem
from casella.store.sqlite import SQLiteStore


def body(n: int) -> bytes:
    size = 200 + (n * 7919) % 300_000  # some large enough to be spilled and slow to write
    line = f"line of message {n} ".encode() * 4 + b"\r\n"
    text = (line * (size // len(line) + 1))[:size]
    return (f"From: crash@example.test\r\nSubject: crash test {n}\r\n"
            f"Message-ID: <{n}@crash>\r\n\r\n").encode() + text + b"\r\n"


async def main(data_dir: Path, start: int) -> None:
    store = SQLiteStore(data_dir)
    await store.open()
    acct = await store.get_account("crash@example.test")
    if acct is None:
        await store.add_domain("example.test")
        acct = await store.add_account("crash@example.test", "x", 0)
    inbox = await store.get_mailbox(acct.id, "INBOX")
    assert inbox is not None
    print("READY", flush=True)
    n = start
    while True:
        batch = []
        for _ in range(3):  # several appends in flight exercise group commit
            data = body(n)
            batch.append((n, asyncio.create_task(store.blobs.stage(data))))
            n += 1
        for i, task in batch:
            staged = await task

            async def one(i: int = i, staged=staged) -> None:
                try:
                    result = await store.append(inbox.id, [AppendItem(staged)])
                finally:
                    staged.discard()
                print(f"ACK {result.uids[0]} {i}", flush=True)
            asyncio.ensure_future(one())
        await asyncio.sleep(0)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
