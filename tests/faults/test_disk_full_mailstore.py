"""Disk full for every protocol (issue 7 §6, PROMISES D2/D7/D10), on a small tmpfs data_dir
like test_disk_full.py: SMTP answers exactly 452 4.3.1 after the client's end of data and
stays in step on the same connection; IMAP APPEND (small literals and large ones
streamed to the blob store) answers a tagged NO with a sentence — never BAD, BYE or a dropped
connection — keeps the session and reads working, stores nothing half-written, and works again
once space is freed; POP3 QUIT whose deletions cannot be written answers `-ERR [SYS/TEMP]` and
deletes nothing (RFC 1939 §6, RFC 3206 §4), and a later session deletes normally."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from casella.errors import DiskFull
from tests.attack.util import Imap, Pop3, Smtp, add_user, deliver, message
from tests.conftest import RunningServer, build_test_config


def fill(mount: Path, leave: int) -> Path:
    """Fill the file system but `leave` bytes (0: to the last block)."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        st = os.statvfs(mount)
        want = max(st.f_bavail * st.f_frsize - leave, 0)
        block = b"\0" * (1 << 20)
        while want > 0:
            try:
                want -= os.write(fd, block[:min(want, len(block))])
            except OSError:
                break
        if leave == 0:
            try:
                while os.write(fd, b"\0" * 512):
                    pass
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def serve(mount: Path) -> RunningServer:
    return RunningServer(build_test_config(
        mount / "var", listen={"imap": "127.0.0.1:0", "pop3": "127.0.0.1:0",
                               "smtp": "127.0.0.1:0"},
        auth={"allow_plaintext_without_tls": True}))


def appended(c: Imap, data: bytes) -> bytes:
    """APPEND with a synchronizing literal; the tagged status line."""
    c.send(b"a1 APPEND INBOX {" + str(len(data)).encode() + b"}\r\n")
    line = c.line()
    if not line.startswith(b"+"):
        return line
    c.send(data + b"\r\n")
    return c.tagged(b"a1")[1]


def inbox_count(c: Imap) -> int:
    untagged, tagged = c.cmd("SELECT INBOX")
    assert b" OK " in tagged, tagged
    [exists] = [int(u.split()[1]) for u in untagged if u.endswith(b" EXISTS")]
    return exists


def test_imap_append_on_a_full_disk(small_disk: Path) -> None:
    srv = serve(small_disk)
    try:
        account = add_user(srv, quota=0)
        filler = fill(small_disk, 1_500_000)
        ok = refused = 0
        with Imap(srv.port("imap"), timeout=30) as c:
            assert c.login(account.address).startswith(b"OK")
            for n in range(40):
                # Alternate literals kept in memory (< 64 KiB) and streamed ones.
                body = b"x" * 70 + b"\r\n"
                data = message(f"fill{n}", body * (300 if n % 2 else 4000))
                status = appended(c, data)
                assert re.match(rb"a1 (OK|NO) ", status), status      # never BAD or BYE
                if status.startswith(b"a1 OK"):
                    ok += 1
                else:
                    refused += 1
                    assert re.search(rb"a1 NO (\[\w+\] )?\w", status)   # a sentence
                    assert c.status("NOOP").startswith(b"OK")          # the session goes on
                    if refused >= 3:
                        break
            assert refused, "the disk never filled up"
            assert inbox_count(c) == ok                                # nothing half-written
            _, tagged = c.cmd("FETCH 1:* (RFC822.SIZE BODY.PEEK[HEADER])")
            assert b" OK " in tagged                                   # reads keep working
            filler.unlink()
            assert appended(c, message("after", b"space again\r\n")).startswith(b"a1 OK")
            assert inbox_count(c) == ok + 1
        acct = srv.run(srv.store.get_account_by_id(account.id))
        assert acct.used_messages == ok + 1
    finally:
        srv.stop()


def test_pop3_quit_on_a_full_disk(small_disk: Path) -> None:
    srv = serve(small_disk)
    try:
        account = add_user(srv, quota=0)
        deliver(srv, account, message("pop", b"y" * 2000 + b"\r\n"), count=20)
        filler = fill(small_disk, 0)
        with Pop3(srv.port("pop3")) as c:
            assert c.login(account.address).startswith(b"+OK")
            assert c.cmd("STAT").startswith(b"+OK 20 ")
            for n in range(1, 21):
                assert c.cmd(f"DELE {n}").startswith(b"+OK")
            reply = c.cmd("QUIT")
        left = srv.run(srv.store.get_mailbox(account.id, "INBOX")).messages
        if reply.startswith(b"-ERR"):
            # SQLite could not write: a temporary error and nothing deleted (D2, D7).
            assert reply.startswith(b"-ERR [SYS/TEMP] "), reply
            assert left == 20
        else:
            assert reply.startswith(b"+OK") and left == 0      # the write fit after all
        filler.unlink()
        with Pop3(srv.port("pop3")) as c:
            assert c.login(account.address).startswith(b"+OK")
            count = int(c.cmd("STAT").split()[1])
            for n in range(1, count + 1):
                assert c.cmd(f"DELE {n}").startswith(b"+OK")
            assert c.cmd("QUIT").startswith(b"+OK")
        assert srv.run(srv.store.get_mailbox(account.id, "INBOX")).messages == 0
    finally:
        srv.stop()


@pytest.mark.parametrize("policy", ["expunge", "move-to-trash", "hide"])
def test_pop3_quit_when_the_store_reports_disk_full(make_server: Any, policy: str) -> None:
    """The same without a tmpfs (any machine): the store call of the UPDATE state fails with
    DiskFull → `-ERR [SYS/TEMP]` with a sentence, nothing deleted, the next QUIT works."""
    srv = make_server(auth={"allow_plaintext_without_tls": True}, pop3={"delete": policy})
    account = add_user(srv)
    deliver(srv, account, message("pop"), count=3)
    method = {"expunge": "remove_messages", "move-to-trash": "move", "hide": "pop3_hide"}[policy]

    async def full(*args: Any, **kwargs: Any) -> Any:
        raise DiskFull("no space left to change the mailbox")
    setattr(srv.store, method, full)
    try:
        with Pop3(srv.port("pop3")) as c:
            assert c.login(account.address).startswith(b"+OK")
            for n in (1, 2):
                assert c.cmd(f"DELE {n}").startswith(b"+OK")
            reply = c.cmd("QUIT")
            assert reply.startswith(b"-ERR [SYS/TEMP] ") and len(reply) > 25, reply
    finally:
        delattr(srv.store, method)
    with Pop3(srv.port("pop3")) as c:
        assert c.login(account.address).startswith(b"+OK")
        assert c.cmd("STAT").startswith(b"+OK 3 ")
        assert c.cmd("DELE 1").startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")
    with Pop3(srv.port("pop3")) as c:
        assert c.login(account.address).startswith(b"+OK")
        assert c.cmd("STAT").startswith(b"+OK 2 ")


def test_smtp_data_on_a_full_disk_is_452_and_in_step(small_disk: Path) -> None:
    """Issue 7 §6: 452 4.3.1 (RFC 3463 X.3.1 "mail system full"), answered after the end of
    data (the disk may fill in the middle of a large message), on a connection that goes on."""
    srv = serve(small_disk)
    try:
        account = add_user(srv, quota=0)
        filler = fill(small_disk, 1_500_000)
        accepted = refused = 0
        line = b"z" * 78 + b"\r\n"
        with Smtp(srv.port("smtp"), timeout=30) as c:
            assert c.code("EHLO filler.example") == 250
            for n in range(40):
                c.send(f"MAIL FROM:<a@remote.example>\r\nRCPT TO:<{account.address}>\r\n"
                       "DATA\r\n".encode())
                first = [c.reply() for _ in range(2)]
                if first[1][0] != 250:              # RCPT refused (4.3.1 at RCPT is fine too)
                    assert first[1][0] == 452, first
                    assert c.code("RSET") == 250
                    refused += 1
                    continue
                assert c.reply()[0] == 354
                c.send(message(f"fill{n}", line * 4000) + b".\r\n")
                code, text = c.reply()
                if code == 250:
                    accepted += 1
                    continue
                assert (code, text[:5]) == (452, "4.3.1"), (code, text)
                refused += 1
                assert c.code("NOOP") == 250 and c.buf == b""      # in step
                if refused >= 3:
                    break
        assert refused, "the disk never filled up"
        assert srv.run(srv.store.get_mailbox(account.id, "INBOX")).messages == accepted
        filler.unlink()
        with Smtp(srv.port("smtp")) as c:
            assert c.code("EHLO filler.example") == 250
            c.send(f"MAIL FROM:<a@remote.example>\r\nRCPT TO:<{account.address}>\r\n"
                   "DATA\r\n".encode())
            assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
            assert c.code(message("after") + b".") == 250
    finally:
        srv.stop()
