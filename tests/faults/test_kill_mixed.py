"""Fault test (issue 7, PROMISES D1/D3/D4): SIGKILL the server — the supervisor and its worker
processes at once, as a crash, the OOM killer or systemd's KillMode=control-group would — while
SMTP deliveries and IMAP APPENDs (small, and large ones streamed to the blob store) run together
into one mailbox and an IMAP client sets flags; restart, several times. Every message that got
its 250 or its tagged OK [APPENDUID] is there exactly once and intact, nothing partial is
visible, no orphan blob is left, and quota usage matches the messages. (That workers never
outlive a supervisor killed alone is tests/test_workers.py's.)"""

from __future__ import annotations

import asyncio
import imaplib
import os
import random
import signal
import threading
import time
from pathlib import Path

from tests.faults.test_kill import burst, check, message, seed, start


def group_members(pgid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getpgid(int(entry)) == pgid:
                    out.append(int(entry))
            except ProcessLookupError:
                pass
    return out


def wait_gone(pgid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while group_members(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not group_members(pgid)


def imap_message(tag: str) -> bytes:
    """message(tag) as imaplib sends it: it rewrites any bare CR into CRLF."""
    return message(tag).replace(b"\r\r\n", b"\r\n")


def big_message(tag: str) -> bytes:
    """Over IMAP's 64 KiB literal buffer, so APPEND streams it to the blob store."""
    return imap_message(tag) + (f"{tag} filler ".encode() * 40 + b"\r\n") * 300


def imap_burst(port: int, prefix: str, acked: list[str], stop: threading.Event) -> None:
    try:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=20)
        imap.login("kill@example.test", "pw")
        n = 0
        while not stop.is_set():
            tag = f"{prefix}-{n}"
            data = big_message(tag) if n % 3 == 2 else imap_message(tag)
            n += 1
            typ, resp = imap.append("INBOX", None, None, data)
            if typ != "OK" or b"APPENDUID" not in resp[0]:
                return
            acked.append(tag)
    except (OSError, imaplib.IMAP4.error, EOFError):
        return


def imap_churn(port: int, stop: threading.Event) -> None:
    """Flags and expunges going on at the same time (a client cleaning up)."""
    try:
        imap = imaplib.IMAP4("127.0.0.1", port, timeout=20)
        imap.login("kill@example.test", "pw")
        imap.select("INBOX")
        while not stop.is_set():
            imap.store("1:*", "+FLAGS.SILENT", r"(\Seen)")
            imap.noop()
            time.sleep(0.05)
    except (OSError, imaplib.IMAP4.error, EOFError):
        return


def test_sigkill_during_smtp_and_imap_append(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    cfg = tmp_path / "casella.toml"
    cfg.write_text(f'hostname = "mail.example.test"\ndata_dir = "{data_dir}"\n'
                   '[server]\nallow_root = true\n[auth]\nallow_plaintext_without_tls = true\n'
                   '[listen]\nsmtp = "127.0.0.1:0"\nimap = "127.0.0.1:0"\n')
    asyncio.run(seed(data_dir))
    rng = random.Random(11)
    smtp_acked: list[str] = []
    imap_acked: list[str] = []
    for cycle in range(3):
        proc, ports = start(cfg, need=("smtp", "imap"))
        stop = threading.Event()
        threads = [threading.Thread(target=burst,
                                    args=(ports["smtp"], f"c{cycle}s{i}", smtp_acked, stop))
                   for i in range(3)]
        threads += [threading.Thread(target=imap_burst,
                                     args=(ports["imap"], f"c{cycle}i{i}", imap_acked, stop))
                    for i in range(3)]
        threads.append(threading.Thread(target=imap_churn, args=(ports["imap"], stop)))
        for t in threads:
            t.start()
        time.sleep(rng.uniform(1.5, 3.0))
        os.killpg(proc.pid, signal.SIGKILL)     # every process of the server at once
        proc.wait(timeout=30)
        wait_gone(proc.pid)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert len(smtp_acked) > 5 and len(imap_acked) > 5, (len(smtp_acked), len(imap_acked))
    stored = asyncio.run(check(data_dir, smtp_acked + imap_acked, sent_intact))
    assert stored >= len(smtp_acked) + len(imap_acked)


def sent_intact(tag: str, data: bytes) -> bool:
    """An SMTP delivery (message(tag) after the trace headers), or an APPEND byte for byte."""
    return data.endswith(message(tag)) or data in (imap_message(tag), big_message(tag))
