"""Fault test (issue 7, PROMISES D1/D3/D5): SIGKILL the server during a burst of SMTP
deliveries, restart it, several times: every message that got its 250 is there, intact,
exactly once; nothing partial is visible; quota usage and counters match the messages."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from casella.auth.passwords import hash_password
from casella.store.sqlite import SQLiteStore

CASELLA = str(Path(sys.executable).parent / "casella")


def message(tag: str) -> bytes:
    # Both sides of blobs.INLINE_MAX: bodies kept in the database and bodies in files.
    size = 300 + zlib.crc32(tag.encode()) % 120_000
    line = f"{tag} payload line\r\n".encode()
    body = (line * (size // len(line) + 1))[:size]
    return (f"From: sender@example.org\r\nTo: kill@example.test\r\nSubject: {tag}\r\n"
            f"Message-ID: <{tag}@faults>\r\n\r\n").encode() + body + b"\r\n"


def start(cfg: Path, need: tuple[str, ...] = ("smtp",)
          ) -> tuple[subprocess.Popen[str], dict[str, int]]:
    proc = subprocess.Popen([CASELLA, "--config", str(cfg), "serve"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    assert proc.stdout is not None
    ports: dict[str, int] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        m = re.match(r"\s+(\w+)\s+127\.0\.0\.1:(\d+)$", line.rstrip())
        if m:
            ports[m.group(1)] = int(m.group(2))
        if line.startswith("Stop with"):
            break
    if not set(need) <= set(ports):
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError(f"the server did not start: {ports}")
    # The sockets are bound before the workers run: wait until they answer, so the burst
    # really runs against a serving server however loaded the machine is.
    for name in need:
        with socket.create_connection(("127.0.0.1", ports[name]), timeout=60) as probe:
            probe.settimeout(60)
            assert probe.recv(100), f"{name} did not greet"
    return proc, ports


def burst(port: int, prefix: str, acked: list[str], stop: threading.Event) -> None:
    n = 0
    while not stop.is_set():
        tag = f"{prefix}-{n}"
        n += 1
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=20) as s:
                s.sendmail("sender@example.org", ["kill@example.test"], message(tag))
            acked.append(tag)
        except (OSError, smtplib.SMTPException):
            return


async def seed(data_dir: Path) -> None:
    store = SQLiteStore(data_dir)
    await store.open()
    try:
        await store.add_domain("example.test")
        await store.add_account("kill@example.test", hash_password("pw"), 0)
    finally:
        await store.close()


def delivered_intact(tag: str, data: bytes) -> bool:
    """An SMTP delivery: message(tag) after the trace headers casella added."""
    return data.endswith(message(tag))


async def check(data_dir: Path, acked: list[str],
                intact: Callable[[str, bytes], bool] = delivered_intact) -> int:
    """Every acknowledged tag exactly once and `intact`; quota counters equal the messages; the
    blob store holds exactly the blobs the messages use. Returns how many messages there are."""
    store = SQLiteStore(data_dir)
    await store.open()
    try:
        acct = await store.get_account("kill@example.test")
        inbox = await store.get_mailbox(acct.id, "INBOX")
        metas = await store.fetch_meta(inbox.id, [(1, 2**31)])
        statics = await store.fetch_static([m.blob_id for m in metas])
        found: dict[str, int] = {}
        for m in metas:
            data = await store.read_blob(statics[m.blob_id].digest)
            assert len(data) == m.size
            match = re.search(rb"Subject: (\S+)\r\n", data)
            assert match is not None, data[:200]
            tag = match.group(1).decode()
            assert intact(tag, data), f"{tag} is not intact"
            found[tag] = found.get(tag, 0) + 1
        for tag in acked:
            assert found.get(tag) == 1, f"acknowledged {tag} found {found.get(tag, 0)} times"
        acct = await store.get_account_by_id(acct.id)
        assert acct.used_bytes == sum(m.size for m in metas)
        assert acct.used_messages == len(metas)
        assert set(await store.stored_bodies()) == {s.digest for s in statics.values()}
        return len(metas)
    finally:
        await store.close()


def test_sigkill_during_smtp_burst(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    cfg = tmp_path / "casella.toml"
    cfg.write_text(f'hostname = "mail.example.test"\ndata_dir = "{data_dir}"\n'
                   '[server]\nallow_root = true\n[listen]\nsmtp = "127.0.0.1:0"\n')
    asyncio.run(seed(data_dir))
    rng = random.Random(7)
    acked: list[str] = []
    for cycle in range(3):
        proc, ports = start(cfg)
        port = ports["smtp"]
        stop = threading.Event()
        threads = [threading.Thread(target=burst, args=(port, f"c{cycle}t{i}", acked, stop))
                   for i in range(6)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(1.0, 2.5))
        os.killpg(proc.pid, signal.SIGKILL)  # the whole server: supervisor and workers
        proc.wait(timeout=30)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert len(acked) > 10, "too few deliveries to mean anything"
    stored = asyncio.run(check(data_dir, acked))
    assert stored >= len(acked)
