"""IMAP hardening (issue 7) over real sockets: the [imap] timeouts (a slow-drip command line or
literal is cut off by line_timeout), the user+IP connection limit, the budgets (bad commands,
commands without progress), the bounds answered with the protocol's own error (sequence sets,
search programs, nesting, literals per command, keywords per message and per mailbox) and
storage errors (disk full: NO [LIMIT] with a sentence, nothing half-written, the session and
reads go on; other store failures: NO [UNAVAILABLE])."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from casella import errors as ce
from tests.conftest import RunningServer, build_test_config
from tests.imap.util import Raw, deliver, message, new_user, store_state


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory):
    """One server with tight limits for the tests of this module that cross them."""
    server = RunningServer(build_test_config(
        tmp_path_factory.mktemp("hardening") / "data",
        imap={"line_timeout": 1, "max_connections_per_user_ip": 2,
              "max_commands_without_progress": 6}))
    yield server
    server.stop()


def drip(raw: Raw, data: bytes, every: float, limit: float = 10.0) -> float:
    """Send `data` a byte at a time until the server hangs up; seconds until it did."""
    started = time.monotonic()
    raw.sock.settimeout(every)
    for i in range(len(data)):
        try:
            raw.sock.send(data[i:i + 1])
        except OSError:
            break
        try:
            got = raw.sock.recv(65536)
            raw.buf += got
            if not got:
                break
        except TimeoutError:
            pass
        if time.monotonic() - started > limit:
            break
    return time.monotonic() - started


def test_slow_drip_line_is_cut_off(strict) -> None:
    """A command line dribbled a byte every 0.4 s is cut off by imap.line_timeout (1 s here),
    long before the idle timeout; the answer is * BYE [LIMIT]."""
    raw = Raw(strict)
    took = drip(raw, b"a1 LOGIN someone@example.test with-a-long-password\r\n", 0.4)
    assert took < 5
    assert raw.closed()
    assert b"* BYE [LIMIT]" in raw.buf


def test_slow_drip_literal_is_cut_off(strict) -> None:
    """A literal that brings less than 512 octets per line_timeout is a slow drip too."""
    acct = new_user(strict)
    raw = Raw(strict)
    raw.login(acct)
    raw.send(b"a1 APPEND INBOX {100000+}\r\n")
    took = drip(raw, b"x" * 200, 0.3)
    assert took < 5 and raw.closed()
    assert store_state(strict, acct) == []


def test_user_ip_connection_limit(strict) -> None:
    """imap.max_connections_per_user_ip (2 here): the third login of one user from one
    address gets * BYE [LIMIT]; another user is not affected; a slot frees on LOGOUT, before
    its tagged OK."""
    acct = new_user(strict)
    first, second = Raw(strict), Raw(strict)
    first.login(acct)
    second.login(acct)
    third = Raw(strict)
    third.send(f'a1 LOGIN "{acct.address}" "secret"\r\n'.encode())
    line = third.line()
    assert line.startswith(b"* BYE [LIMIT]") and b"(the limit is 2)" in line
    assert third.closed()
    someone_else = Raw(strict)
    someone_else.login(new_user(strict))
    # The slot is free when LOGOUT's OK arrives: no wait for the connection to close.
    first.ok("LOGOUT")
    again = Raw(strict)
    again.login(acct)
    for raw in (first, second, someone_else, again):
        raw.close()


def test_commands_without_progress(strict) -> None:
    """imap.max_commands_without_progress (6 here): NOOPs while nothing changes end the
    session; a change (an update sent) or a real command starts the count again."""
    acct = new_user(strict)
    raw = Raw(strict)
    raw.login(acct)
    raw.ok("SELECT INBOX")
    for _ in range(4):
        raw.ok("NOOP")
    deliver(strict, acct, message("progress"))
    assert raw.ok("NOOP") == [b"* 1 EXISTS", b"* 1 RECENT"]
    for _ in range(3):
        raw.ok("NOOP")
    raw.ok("FETCH 1 FLAGS")
    for _ in range(5):
        raw.ok("NOOP")
    raw.send(b"z NOOP\r\n")
    assert raw.line() == b"z OK NOOP completed"
    assert raw.line().startswith(b"* BYE [LIMIT]")
    assert raw.closed()


def test_uid_ranges_over_the_whole_space(srv) -> None:
    """`1:4294967295` works as a range, never materialised (answered at once)."""
    acct = new_user(srv)
    for i in range(3):
        deliver(srv, acct, message(f"r{i}"))
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("SELECT INBOX")
    started = time.monotonic()
    assert len(raw.ok("UID FETCH 1:4294967295 (UID)")) == 3
    assert raw.ok("UID SEARCH UID 1:4294967295") == [b"* SEARCH 1 2 3"]
    raw.ok("UID STORE 4294967295:1 +FLAGS.SILENT (\\Seen)")
    assert time.monotonic() - started < 3
    _, tagged = raw.command("FETCH 1:4294967295 (UID)")
    assert b" BAD " in tagged and b"sequence number" in tagged   # only 3 messages exist
    raw.close()


def test_bounds_are_the_protocols_own_errors(srv) -> None:
    """Sequence sets of too many ranges, search programs of thousands of keys, deep nesting,
    too many literals: BAD [LIMIT] (or [TOOBIG] for a line over 64 KiB), and the session goes
    on."""
    acct = new_user(srv)
    deliver(srv, acct, message("bounds"))
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("SELECT INBOX")
    many = ",".join(str(n) for n in range(1, 20_004, 2))          # 10,002 single numbers
    _, tagged = raw.command(f"UID FETCH {many} (UID)")
    assert b"BAD [LIMIT]" in tagged
    huge = ",".join(str(n) for n in range(1, 200_000, 2))          # 100,000 numbers
    _, tagged = raw.command(f"UID FETCH {huge} (UID)")
    assert b"BAD [TOOBIG]" in tagged
    _, tagged = raw.command("SEARCH " + " ".join(["SEEN"] * 1500))
    assert b"BAD [LIMIT]" in tagged
    _, tagged = raw.command("SEARCH " + "(" * 500 + "ALL" + ")" * 500)
    assert b" BAD " in tagged
    _, tagged = raw.command("SEARCH " + "NOT " * 3000 + "ALL")
    assert b" BAD " in tagged
    literals = b"".join(b" SUBJECT {1+}\r\nx" for _ in range(1100))
    _, tagged = raw.command(b"SEARCH" + literals)
    assert b"BAD [LIMIT]" in tagged
    assert raw.ok("SEARCH SUBJECT bounds") == [b"* SEARCH 1"]
    raw.close()


def test_keyword_limits(srv) -> None:
    """At most 64 keywords per message and 256 per mailbox: NO [LIMIT], nothing stored."""
    acct = new_user(srv)
    deliver(srv, acct, message("k1"))
    deliver(srv, acct, message("k2"))
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("SELECT INBOX")
    _, tagged = raw.command("STORE 1 +FLAGS (" + " ".join(f"k{i}" for i in range(65)) + ")")
    assert b"NO [LIMIT]" in tagged
    raw.ok("STORE 1 +FLAGS (" + " ".join(f"a{i}" for i in range(60)) + ")")
    _, tagged = raw.command("STORE 1 +FLAGS (" + " ".join(f"b{i}" for i in range(10)) + ")")
    assert b"NO [LIMIT]" in tagged                     # 70 on one message
    for start in range(60, 210, 50):
        raw.ok("STORE 2 FLAGS (" + " ".join(f"a{i}" for i in range(start, start + 50)) + ")")
    _, tagged = raw.command("STORE 2 FLAGS (" + " ".join(f"z{i}" for i in range(50)) + ")")
    assert b"NO [LIMIT]" in tagged                     # 260 in the mailbox
    assert all(not any(f.startswith(("k", "b", "z")) for f in flags)
               for _, flags in store_state(srv, acct))
    data = message("kw")
    raw.send(b"a1 APPEND INBOX (" + b" ".join(b"n%d" % i for i in range(70)) +
             b") {%d+}\r\n" % len(data) + data + b"\r\n")
    assert raw.line().startswith(b"a1 NO [LIMIT]")
    raw.close()


def test_storage_error_is_no_unavailable(srv, monkeypatch) -> None:
    """A failing store (not a full disk) is NO [UNAVAILABLE] with a sentence, never an internal
    error; the session goes on and reads keep working."""
    acct = new_user(srv)
    deliver(srv, acct, message("readable"))
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("SELECT INBOX")

    async def broken(*args, **kwargs):
        raise ce.StorageError("the mail store could not be written: database is locked")
    monkeypatch.setattr(srv.store, "store_flags", broken)
    _, tagged = raw.command("STORE 1 +FLAGS (\\Flagged)")
    assert b"NO [UNAVAILABLE] The mail store is not available right now" in tagged
    assert b"locked" not in tagged
    monkeypatch.undo()
    assert raw.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject)])")
    raw.ok("STORE 1 +FLAGS (\\Flagged)")
    raw.close()


def test_disk_full_append_and_store(small_disk: Path) -> None:
    """Issue 7 §6: with the disk full, APPEND (small and streamed) is NO [LIMIT] "the
    server's disk is full, try again later"; nothing half-written is visible; the session goes
    on, reads keep working; once space returns APPEND works again."""
    server = RunningServer(build_test_config(small_disk / "var",
                                             listen={"imaps": "127.0.0.1:0"}))
    try:
        acct = new_user(server, quota=0)
        deliver(server, acct, message("before"))
        raw = Raw(server)
        raw.login(acct)
        raw.ok("SELECT INBOX")
        filler = small_disk / "filler"
        with open(filler, "wb") as f:
            free = os.statvfs(small_disk).f_bavail * os.statvfs(small_disk).f_frsize
            f.write(b"\0" * max(free - 64 * 1024, 0))
        big = message("big", body=b"y" * 2_000_000)
        refusals = []
        for data in (big, message("small", body=b"s" * 200_000), big):
            raw.send(b"a1 APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
            _, tagged = raw.read_until("a1")
            refusals.append(tagged)
        assert any(b"NO [LIMIT] The server's disk is full, try again later" in t
                   for t in refusals), refusals
        assert not any(b"SERVERBUG" in t for t in refusals)
        assert [s for s in store_state(server, acct)] == store_state(server, acct)
        (line,) = raw.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (Subject)])")
        assert b"Subject: before" in line
        assert b"Subject: before" in raw.ok("FETCH 1 BODY[]")[0]     # \Seen may not stick
        raw.ok("SELECT INBOX")                                       # claiming \Recent writes
        stored = len(store_state(server, acct))
        assert stored == 1 + sum(1 for t in refusals if b" OK " in t)
        filler.unlink()
        raw.send(b"a2 APPEND INBOX {%d+}\r\n" % len(big) + big + b"\r\n")
        assert raw.read_until("a2")[1].startswith(b"a2 OK")
        assert len(store_state(server, acct)) == stored + 1
        raw.close()
    finally:
        server.stop()
