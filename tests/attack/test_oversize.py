"""Oversize lines and literals on every protocol (issue 7 §3, PROMISES P1/P2): an over-long
command line is refused with the protocol's error and the session goes on in step (the rest of
the line is never read as a command); megabytes without any line end are consumed without
being buffered; an over-large literal is refused before `+`; a LITERAL+ body that cannot be
taken is read and dropped, never parsed as commands; messages over the size limit are refused
after their end, in step."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.attack.util import Imap, Pop3, Smtp, add_user, deliver, message

MEGA = 8 * 1024 * 1024


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.conftest import RunningServer, build_test_config
    server = RunningServer(build_test_config(
        tmp_path_factory.mktemp("oversize") / "var",
        auth={"allow_plaintext_without_tls": True},
        limits={"max_message_size": "256K"}))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def user(srv: Any) -> str:
    account = add_user(srv)
    deliver(srv, account, message("keep"))
    return account.address


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


# --- SMTP ----------------------------------------------------------------------------------

def test_smtp_long_line_then_in_step(srv: Any) -> None:
    """RFC 5321 §4.5.3.1.4: a command line over 1000 octets is 500 5.5.2; the rest of that
    line (here holding a smuggled command) is never executed."""
    with Smtp(srv.port("smtp")) as c:
        assert c.code("EHLO c") == 250
        c.send(b"NOOP " + b"x" * 5000 + b"\r\nRSET" + b"y" * 3000 + b"\r\nNOOP\r\n")
        assert [c.reply()[0] for _ in range(3)] == [500, 500, 250]


def test_smtp_megabytes_without_a_line_end(srv: Any) -> None:
    """8 MiB with no line end: consumed as it comes (memory stays flat), then one 500."""
    before = rss_kib()
    with Smtp(srv.port("smtp")) as c:
        chunk = b"A" * 65536
        for _ in range(MEGA // len(chunk)):
            c.send(chunk)
        c.send(b"\r\nNOOP\r\n")
        assert [c.reply()[0] for _ in range(2)] == [500, 250]
    assert rss_kib() - before < 64 * 1024


def test_smtp_auth_line_too_long(srv: Any) -> None:
    """RFC 4954 §4: an AUTH continuation over 12288 octets is refused, in step."""
    with Smtp(srv.port("submission")) as c:
        assert c.code("EHLO c") == 250
        assert c.code("AUTH LOGIN") == 334
        c.send(b"A" * 20000 + b"\r\nNOOP\r\n")
        code, _ = c.reply()
        assert code in (500, 501)
        assert c.code("NOOP") == 250


def test_smtp_message_over_the_size_limit(srv: Any, user: str) -> None:
    """RFC 1870: SIZE= over the limit is 552 5.3.4 at MAIL; a message over it without SIZE=
    is read to its end and refused with 552 5.3.4, and the session is in step."""
    with Smtp(srv.port("smtp")) as c:
        assert c.code("EHLO c") == 250
        code, text = c.cmd("MAIL FROM:<a@remote.example> SIZE=999999999")
        assert (code, text[:5]) == (552, "5.3.4")
        c.send(b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<" + user.encode() + b">\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        line = b"z" * 998 + b"\r\n"
        c.send(b"Subject: big\r\n\r\n" + line * 400 + b"MAIL FROM:<evil@x>\r\n" + line * 400)
        c.send(b".\r\nNOOP\r\n")
        code, text = c.reply()
        assert (code, text[:5]) == (552, "5.3.4")
        assert c.reply()[0] == 250


def test_smtp_huge_bdat(srv: Any, user: str) -> None:
    """A BDAT chunk announced far over the limit is refused; its bytes are read and dropped
    (RFC 3030 §2), so commands inside them are never run."""
    with Smtp(srv.port("smtp")) as c:
        assert c.code("EHLO c") == 250
        c.send(b"MAIL FROM:<a@remote.example>\r\nRCPT TO:<" + user.encode() + b">\r\n")
        assert [c.reply()[0] for _ in range(2)] == [250, 250]
        data = (b"RSET\r\nQUIT\r\n" * 30000)[:300 * 1024]
        c.send(f"BDAT {len(data)} LAST\r\n".encode() + data + b"NOOP\r\n")
        code, text = c.reply()
        assert (code, text[:5]) == (552, "5.3.4")
        assert c.reply()[0] == 250


# --- IMAP ----------------------------------------------------------------------------------

def test_imap_long_line_then_in_step(srv: Any, user: str) -> None:
    """A command line over 64 KiB: tagged BAD [TOOBIG], the session goes on."""
    with Imap(srv.port("imap")) as c:
        assert c.login(user).startswith(b"OK")
        c.send(b"a1 SEARCH SUBJECT " + b"x" * 200_000 + b"\r\n")
        _, tagged = c.tagged(b"a1")
        assert tagged.startswith(b"a1 BAD") and b"TOOBIG" in tagged
        assert c.status("NOOP").startswith(b"OK")


def test_imap_megabytes_without_a_line_end(srv: Any, user: str) -> None:
    before = rss_kib()
    with Imap(srv.port("imap")) as c:
        chunk = b"B" * 65536
        for _ in range(MEGA // len(chunk)):
            c.send(chunk)
        c.send(b"\r\n")
        line = c.line()      # the tag is whatever the line began with
        assert b" BAD [TOOBIG]" in line[:200] or line.startswith(b"* BYE"), line[:200]
        if b" BAD " in line[:200]:
            assert c.status("NOOP").startswith(b"OK")
    assert rss_kib() - before < 64 * 1024


def test_imap_oversized_literal_refused_before_continuation(srv: Any, user: str) -> None:
    """PROMISES P2: a synchronizing literal over the limit is refused before `+`."""
    with Imap(srv.port("imap")) as c:
        assert c.login(user).startswith(b"OK")
        c.send(b"a1 APPEND INBOX {999999999}\r\n")
        line = c.line()
        assert line.startswith(b"a1 NO") and b"TOOBIG" in line, line
        c.send(b"a2 SEARCH SUBJECT {99999999}\r\n")
        line = c.line()
        assert line.startswith(b"a2 BAD") and b"TOOBIG" in line, line
        assert c.status("NOOP").startswith(b"OK")


def test_imap_refused_literal_plus_is_never_parsed(srv: Any, user: str) -> None:
    """PROMISES P2: a LITERAL+ body that is refused is read and dropped; the commands it holds
    (a LOGOUT, a DELETE) are never run."""
    with Imap(srv.port("imap")) as c:
        assert c.login(user).startswith(b"OK")
        body = (b"x1 LOGOUT\r\nx2 DELETE INBOX\r\n" * 10000)[:200_000]
        c.send(b"a1 SEARCH SUBJECT {" + str(len(body)).encode() + b"+}\r\n" + body + b"\r\n")
        _, tagged = c.tagged(b"a1")
        assert tagged.startswith(b"a1 BAD") and b"TOOBIG" in tagged
        untagged, tagged = c.cmd("SELECT INBOX")
        assert tagged.split(b" ")[1] == b"OK" and b"* 1 EXISTS" in untagged


def test_imap_append_over_the_limit_with_literal_plus(srv: Any, user: str) -> None:
    """An APPEND LITERAL+ over the size limit: NO [TOOBIG] after the bytes are dropped (or
    BYE when far too big); nothing is stored."""
    with Imap(srv.port("imap")) as c:
        assert c.login(user).startswith(b"OK")
        data = message("big", b"y" * 400_000)
        c.send(b"a1 APPEND INBOX {" + str(len(data)).encode() + b"+}\r\n" + data + b"\r\n")
        _, tagged = c.tagged(b"a1")
        assert tagged.startswith(b"a1 NO") and b"TOOBIG" in tagged, tagged
        untagged, _ = c.cmd("SELECT INBOX")
        assert b"* 1 EXISTS" in untagged
    with Imap(srv.port("imap")) as c:
        assert c.login(user).startswith(b"OK")
        c.send(b"a1 APPEND INBOX {99999999999+}\r\nabc")
        _, tagged = c.tagged(b"*")
        assert tagged.startswith(b"* BYE") and b"TOOBIG" in tagged
        assert c.closed()


# --- POP3 ----------------------------------------------------------------------------------

def test_pop3_long_line_then_in_step(srv: Any, user: str) -> None:
    """RFC 2449 §4: command lines up to 255 octets; a longer one is -ERR, in step."""
    with Pop3(srv.port("pop3")) as c:
        c.send(b"USER " + b"u" * 5000 + b"\r\nPASS " + b"p" * 3000 + b"\r\n")
        assert c.line().startswith(b"-ERR")
        assert c.line().startswith(b"-ERR")
        assert c.login(user).startswith(b"+OK")
        assert c.cmd("STAT").startswith(b"+OK 1 ")


def test_pop3_megabytes_without_a_line_end(srv: Any, user: str) -> None:
    before = rss_kib()
    with Pop3(srv.port("pop3")) as c:
        chunk = b"C" * 65536
        for _ in range(MEGA // len(chunk)):
            c.send(chunk)
        c.send(b"\r\n")
        assert c.line().startswith(b"-ERR")
        assert c.login(user).startswith(b"+OK")
    assert rss_kib() - before < 64 * 1024


def test_pop3_auth_line_too_long(srv: Any, user: str) -> None:
    """RFC 5034 §4: an AUTH response line that is too long fails the exchange, in step."""
    with Pop3(srv.port("pop3")) as c:
        assert c.cmd("AUTH PLAIN").startswith(b"+")
        c.send(b"A" * 100_000 + b"\r\n")
        assert c.line().startswith(b"-ERR")
        token = base64.b64encode(f"\0{user}\0secret".encode()).decode()
        started = time.monotonic()
        assert c.cmd(f"AUTH PLAIN {token}").startswith(b"+OK")
        assert time.monotonic() - started < 5
