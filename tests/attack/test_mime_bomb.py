"""MIME bombs over the wire (issue 7 §3, PROMISES P3): messages built to exhaust a MIME parser
— multipart nesting 5,000 deep, message/rfc822 nesting 5,000 deep, 60,000 parts, 20,000
header fields, 10,000 addresses in To: — are taken by SMTP, stored, and their BODYSTRUCTURE
and ENVELOPE over IMAP come back quickly, truncated sensibly (casella/mail/mime.py: depth 50,
5000 parts) and syntactically valid (balanced parentheses, no raw CR/LF/NUL in strings)."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.attack.util import Imap, Smtp, add_user


def nested_multipart(depth: int) -> bytes:
    head = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                    for i in range(depth))
    tail = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    return head + b"Content-Type: text/plain\r\n\r\nbottom" + tail


def nested_rfc822(depth: int) -> bytes:
    return (b"Content-Type: message/rfc822\r\n\r\n" * depth +
            b"Subject: bottom\r\n\r\nbottom\r\n")


def many_parts(n: int) -> bytes:
    return (b"Content-Type: multipart/mixed; boundary=p\r\n\r\n" +
            b"".join(b"--p\r\nContent-Type: text/plain\r\n\r\n%d\r\n" % i for i in range(n)) +
            b"--p--\r\n")


def many_fields(n: int) -> bytes:
    return b"".join(b"X-Field-%d: value\r\n" % i for i in range(n)) + b"\r\nbody\r\n"


def many_addresses(n: int) -> bytes:
    # Display names folded inside the quotes and holding a NUL: ENVELOPE must clean them.
    to = b",\r\n ".join(b"\"R\x00\r\n %d\" <r%d@example.org>" % (i, i) for i in range(n))
    return b"To: " + to + b"\r\nContent-Type: text/plain\r\n\r\nbody\r\n"


BOMBS = {
    "multipart-depth-5000": lambda: nested_multipart(5000),
    "rfc822-depth-5000": lambda: nested_rfc822(5000),
    "parts-60000": lambda: many_parts(60000),
    "fields-20000": lambda: many_fields(20000),
    "addresses-10000": lambda: many_addresses(10000),
}


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.conftest import RunningServer, build_test_config
    server = RunningServer(build_test_config(tmp_path_factory.mktemp("bomb") / "var",
                                             auth={"allow_plaintext_without_tls": True},
                                             inbound={"checks": False}))
    try:
        yield server
    finally:
        server.stop()


def balanced(data: bytes) -> bool:
    """Parentheses outside quoted strings and literals balance, and quoted strings hold no
    CR, LF or NUL (PROMISES P3)."""
    depth = 0
    i = 0
    while i < len(data):
        ch = data[i:i + 1]
        if ch == b'"':
            j = i + 1
            while data[j:j + 1] != b'"':
                if data[j:j + 1] == b"\\":
                    j += 1
                if data[j:j + 1] in (b"\r", b"\n", b"\x00"):
                    return False
                j += 1
            i = j
        elif ch == b"{":
            m = re.match(rb"\{(\d+)\}\r\n", data[i:])
            assert m, data[i:i + 20]
            i += m.end() + int(m.group(1)) - 1
        elif ch == b"(":
            depth += 1
        elif ch == b")":
            depth -= 1
            if depth < 0:
                return False
        i += 1
    return depth == 0


def fetch_raw(c: Imap, command: str) -> bytes:
    """Everything the server answers to one command, literals included."""
    tag = b"f1"
    c.send(tag + b" " + command.encode() + b"\r\n")
    out = b""
    while True:
        while b"\r\n" not in c.buf:
            data = c.sock.recv(1 << 20)
            assert data, "connection closed"
            c.buf += data
        line, _, c.buf = c.buf.partition(b"\r\n")
        out += line + b"\r\n"
        m = re.search(rb"\{(\d+)\}$", line)
        if m:
            n = int(m.group(1))
            while len(c.buf) < n:
                c.buf += c.sock.recv(1 << 20)
            out += c.buf[:n]
            c.buf = c.buf[n:]
            continue
        if line.startswith(tag + b" "):
            return out


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_mime_bomb(srv: Any, name: str) -> None:
    user = add_user(srv).address
    data = b"From: bomber@elsewhere.example\r\nSubject: " + name.encode() + b"\r\n" + \
        b"MIME-Version: 1.0\r\n" + BOMBS[name]()
    started = time.monotonic()
    with Smtp(srv.port("smtp"), timeout=60) as c:
        assert c.code("EHLO bomber.example") == 250
        c.send(f"MAIL FROM:<bomber@elsewhere.example>\r\nRCPT TO:<{user}>\r\nDATA\r\n"
               .encode())
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        c.send(data + b"\r\n.\r\n")
        code, text = c.reply()
        assert code == 250, text
    assert time.monotonic() - started < 30
    with Imap(srv.port("imap"), timeout=60) as c:
        assert c.login(user).startswith(b"OK")
        assert c.status("SELECT INBOX").startswith(b"OK")
        for item in ("BODYSTRUCTURE", "ENVELOPE", "BODY"):
            started = time.monotonic()
            answer = fetch_raw(c, f"FETCH 1 ({item})")
            assert time.monotonic() - started < 10, item
            assert answer.splitlines()[-1].startswith(b"f1 OK"), answer[-300:]
            assert balanced(answer), (item, answer[:500])
            assert len(answer) < 4 * 1024 * 1024, (item, len(answer))
        answer = fetch_raw(c, "FETCH 1 (BODY.PEEK[1.1.1] BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert answer.splitlines()[-1].startswith(b"f1 OK")
        answer = fetch_raw(c, "FETCH 1 (RFC822.SIZE BODY.PEEK[])")
        assert str(len(data) // 1000).encode() in answer[:200] or b"RFC822.SIZE" in answer
        assert c.status("NOOP").startswith(b"OK")
