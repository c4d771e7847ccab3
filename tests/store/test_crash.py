"""Crash safety (PROMISES D1, D3, D4): SIGKILL a process that appends in a loop, several times;
every acknowledged message is present and intact, nothing partial is visible, quota usage is
the sum of sizes, and no orphan blob remains."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from casella.store.sqlite import SQLiteStore
from tests.store.crash_worker import body

ROOT = Path(__file__).resolve().parents[2]


def run_and_kill(data_dir: Path, start: int, acks_before_kill: int) -> dict[int, int]:
    proc = subprocess.Popen([sys.executable, "-m", "tests.store.crash_worker", str(data_dir),
                             str(start)], stdout=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    acked: dict[int, int] = {}
    assert proc.stdout is not None
    deadline = time.monotonic() + 120
    try:
        line = proc.stdout.readline()
        assert line.strip() == b"READY", line
        while len(acked) < acks_before_kill and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            _, uid, n = line.split()
            acked[int(uid)] = int(n)
        proc.send_signal(signal.SIGKILL)
        # Acks already printed before the kill count too.
        for line in proc.stdout.read().splitlines():
            if line.startswith(b"ACK"):
                _, uid, n = line.split()
                acked[int(uid)] = int(n)
    finally:
        proc.kill()
        proc.wait()
    return acked


async def test_sigkill_during_appends_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    rng = random.Random(1234)
    acked: dict[int, int] = {}
    start = 0
    for _ in range(5):
        got = run_and_kill(data_dir, start, rng.randint(5, 40))
        assert got, "the worker acknowledged nothing"
        acked.update(got)
        start = max(acked.values()) + 100  # distinct bodies per run

    store = SQLiteStore(data_dir)
    await store.open()
    try:
        acct = await store.get_account("crash@example.test")
        inbox = await store.get_mailbox(acct.id, "INBOX")
        metas = await store.fetch_meta(inbox.id, [(1, 2**31)])
        by_uid = {m.uid: m for m in metas}
        statics = await store.fetch_static([m.blob_id for m in metas])
        for uid, n in acked.items():
            assert uid in by_uid, f"acknowledged UID {uid} is missing"
            data = await store.read_blob(statics[by_uid[uid].blob_id].digest)
            assert data == body(n), f"UID {uid} is not intact"
        expected_bodies = {}
        for m in metas:  # unacknowledged but committed messages must be whole too
            data = await store.read_blob(statics[m.blob_id].digest)
            n = int(data.split(b"Subject: crash test ", 1)[1].split(b"\r\n", 1)[0])
            assert data == body(n)
            assert m.size == len(data)
            expected_bodies[m.uid] = n
        assert len(set(expected_bodies.values())) == len(expected_bodies)
        acct = await store.get_account_by_id(acct.id)
        assert acct.used_bytes == sum(m.size for m in metas)
        assert acct.used_messages == len(metas)
        mb = await store.get_mailbox_by_id(inbox.id)
        assert mb.messages == len(metas) and mb.uidnext > max(by_uid)
        digests = {s.digest for s in statics.values()}
        assert set(await store.stored_bodies()) == digests
        assert not any(store.blobs.tmp_dir.iterdir())
    finally:
        await store.close()
