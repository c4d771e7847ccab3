"""Disk full (issue 7 §6, PROMISES D2/D10): deliveries into a full data_dir get a 4xx, nothing
half-written becomes visible, reads keep working, and service resumes once space is freed."""

from __future__ import annotations

import os
import smtplib
import uuid
from pathlib import Path

from tests.conftest import RunningServer, build_test_config


def big_message(n: int) -> bytes:
    return (f"From: a@example.org\r\nTo: full@example.test\r\nSubject: fill {n}\r\n"
            f"Message-ID: <{n}.{uuid.uuid4().hex}@fill>\r\n\r\n").encode() + \
        (f"{n:08d} ".encode() * 12 + b"\r\n") * 2500


def send(port: int, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        try:
            s.sendmail("a@example.org", ["full@example.test"], data)
        except smtplib.SMTPDataError as exc:
            return exc.smtp_code, exc.smtp_error
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = exc.recipients["full@example.test"]
            return code, text
    return 250, b""


def test_full_disk_answers_4xx_and_recovers(small_disk: Path) -> None:
    srv = RunningServer(build_test_config(small_disk / "var", listen={"smtp": "127.0.0.1:0"}))
    try:
        acct = srv.add_user("full@example.test", quota=0)
        port = srv.port("smtp")
        filler = small_disk / "filler"
        with open(filler, "wb") as f:  # leave a little room
            free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
            f.write(b"\0" * max(free - 1_500_000, 0))
        accepted = 0
        refusals = []
        for n in range(40):
            code, text = send(port, big_message(n))
            if code == 250:
                accepted += 1
            else:
                refusals.append((code, text))
                if len(refusals) >= 3:
                    break
        assert refusals, "the disk never filled up"
        for code, text in refusals:
            assert 400 <= code < 500, (code, text)
            assert b"4.3.1" in text or b"4.3.0" in text, text
        inbox = srv.run(srv.store.get_mailbox(acct.id, "INBOX"))
        assert inbox.messages == accepted
        metas = srv.run(srv.store.fetch_meta(inbox.id, [(1, 10**6)]))
        statics = srv.run(srv.store.fetch_static([m.blob_id for m in metas]))
        for m in metas:  # every stored message is whole and readable while the disk is full
            data = srv.run(srv.store.read_blob(statics[m.blob_id].digest))
            assert len(data) == m.size and data.endswith(b"\r\n")
        filler.unlink()
        code, text = send(port, big_message(99))
        assert code == 250, text
        assert srv.run(srv.store.get_mailbox(acct.id, "INBOX")).messages == accepted + 1
        account = srv.run(srv.store.get_account_by_id(acct.id))
        assert account.used_messages == accepted + 1
    finally:
        srv.stop()
