"""Helpers for the IMAP scenario tests: users with a cheap password hash (so logins do not
spend argon2's full cost hundreds of times), logged-in imaplib / imapclient sessions, a raw
socket client for exact-bytes checks (literals, pipelining, STARTTLS injection), message
builders, and reading a mailbox's true state from the store."""

from __future__ import annotations

import imaplib
import itertools
import re
import socket
import ssl
from typing import Any

from argon2 import PasswordHasher
from imapclient import IMAPClient

from casella.store.model import Account, DeliveryTarget, Mailbox

TIMEOUT = 15.0
PASSWORD = "secret"
# The same argon2id scheme as production, with the smallest cost: verification stays real.
CHEAP_HASH = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
_counter = itertools.count(1)


def new_user(server: Any, quota: int = 1 << 30, prefix: str = "user") -> Account:
    address = f"{prefix}{next(_counter)}@example.test"

    async def go() -> Account:
        if await server.store.get_domain("example.test") is None:
            await server.store.add_domain("example.test")
        return await server.store.add_account(address, CHEAP_HASH, quota)
    return server.run(go())


def message(subject: str = "Hello", body: bytes = b"Hello there.\r\n", *,
            sender: str = "Alice <alice@example.org>", to: str = "Bob <bob@example.test>",
            extra: bytes = b"") -> bytes:
    return (b"From: " + sender.encode() + b"\r\nTo: " + to.encode() + b"\r\nSubject: " +
            subject.encode() + b"\r\nDate: Mon, 7 Feb 1994 21:52:25 -0800\r\nMessage-ID: <" +
            re.sub(r"\W", "-", subject).encode() + b"@example.org>\r\n" + extra + b"\r\n" + body)


MULTIPART = (b"From: Carol <carol@example.org>\r\nTo: bob@example.test\r\n"
             b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= with parts\r\n"
             b"Date: Tue, 1 Mar 2022 10:00:00 +0100\r\nMIME-Version: 1.0\r\n"
             b"Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n"
             b"preamble\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n"
             b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
             b"Sch=C3=B6ne Gr=C3=BC=C3=9Fe aus Z=C3=BCrich\r\n"
             b"--XX\r\nContent-Type: message/rfc822\r\n\r\n"
             b"From: dave@example.org\r\nSubject: inner\r\n\r\ninner body\r\n"
             b"--XX--\r\n")


def deliver(server: Any, account: Account, data: bytes, mailbox: str = "INBOX",
            flags: tuple[str, ...] = ()) -> int:
    async def go() -> int:
        staged = await server.store.blobs.stage(data)
        try:
            (out,) = await server.store.deliver(staged, [DeliveryTarget(account.id, mailbox,
                                                                        flags)])
        finally:
            staged.discard()
        assert out.error is None, out.error
        assert out.uid is not None
        return out.uid
    return server.run(go())


def get_mailbox(server: Any, account: Account, name: str = "INBOX") -> Mailbox:
    mb = server.run(server.store.get_mailbox(account.id, name))
    assert mb is not None, name
    return mb


def store_state(server: Any, account: Account, name: str = "INBOX"
                ) -> list[tuple[int, frozenset[str]]]:
    """(UID, flags) of every message, from the store: the truth sessions must agree with."""
    mb = get_mailbox(server, account, name)
    metas = server.run(server.store.fetch_meta(mb.id, [(1, 1 << 32)]))
    return [(m.uid, frozenset(m.flags)) for m in metas]


# --- real clients -----------------------------------------------------------------------------

def imaplib_login(server: Any, account: Account, *, tls: str = "implicit") -> imaplib.IMAP4:
    if tls == "implicit":
        m: imaplib.IMAP4 = imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"),
                                             ssl_context=server.ssl_context(), timeout=TIMEOUT)
    else:
        m = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=TIMEOUT)
        m.starttls(server.ssl_context())
    typ, _ = m.login(account.address, PASSWORD)
    assert typ == "OK"
    return m


def imapclient_login(server: Any, account: Account, *, tls: str = "implicit") -> IMAPClient:
    if tls == "implicit":
        c = IMAPClient("127.0.0.1", server.port("imaps"), ssl=True,
                       ssl_context=server.ssl_context(), timeout=TIMEOUT)
    else:
        c = IMAPClient("127.0.0.1", server.port("imap"), ssl=False, timeout=TIMEOUT)
        c.starttls(server.ssl_context())
    c.login(account.address, PASSWORD)
    return c


# --- raw client -----------------------------------------------------------------------------

class Raw:
    """Bytes in, bytes out. `command` returns (untagged and continuation lines, tagged line);
    a line that ends in a literal announcement carries the literal and the rest of the line."""

    def __init__(self, server: Any, *, tls: bool = True, port: str | None = None) -> None:
        name = port or ("imaps" if tls else "imap")
        sock = socket.create_connection(("127.0.0.1", server.port(name)), timeout=TIMEOUT)
        if tls and name == "imaps":
            sock = server.ssl_context().wrap_socket(sock)
        self.server = server
        self.sock: socket.socket = sock
        self.buf = b""
        self.greeting = self.line()
        self._tags = itertools.count(1)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("server closed the connection")
        self.buf += data

    def raw_line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def line(self) -> bytes:
        """One response line with any literals folded in."""
        line = self.raw_line()
        while (m := re.search(rb"\{(\d+)\}$", line)) is not None:
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            line += b"\r\n" + self.buf[:n]
            self.buf = self.buf[n:]
            line += self.raw_line()
        return line

    def read_until(self, tag: str) -> tuple[list[bytes], bytes]:
        lines = []
        while True:
            line = self.line()
            if line.startswith(tag.encode() + b" "):
                return lines, line
            lines.append(line)

    def command(self, text: str | bytes, tag: str | None = None) -> tuple[list[bytes], bytes]:
        tag = tag or f"t{next(self._tags)}"
        data = text.encode() if isinstance(text, str) else text
        self.send(tag.encode() + b" " + data + b"\r\n")
        return self.read_until(tag)

    def ok(self, text: str | bytes) -> list[bytes]:
        lines, tagged = self.command(text)
        assert tagged.split(b" ", 2)[1] == b"OK", (text, lines, tagged)
        return lines

    def login(self, account: Account) -> None:
        self.ok(f'LOGIN "{account.address}" "{PASSWORD}"')

    def starttls(self) -> None:
        self.ok("STARTTLS")
        self.sock = self.server.ssl_context().wrap_socket(self.sock)

    def closed(self) -> bool:
        """True when the server has closed the connection (after reading what is left)."""
        try:
            self.sock.settimeout(TIMEOUT)
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (ConnectionError, ssl.SSLError, OSError):
            return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def fetch_map(lines: list[bytes]) -> dict[int, bytes]:
    """`* n FETCH (...)` lines by sequence number."""
    out = {}
    for line in lines:
        m = re.match(rb"\* (\d+) FETCH \((.*)\)$", line, re.DOTALL)
        if m:
            out[int(m.group(1))] = m.group(2)
    return out
