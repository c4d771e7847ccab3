"""Helpers for the POP3 scenario tests: delivering mail through the store, logging in with
poplib, and a raw line client for exact-bytes checks (pipelining, STLS injection, limits)."""

from __future__ import annotations

import asyncio
import poplib
import socket
import ssl
from collections.abc import Sequence
from typing import Any

from argon2 import PasswordHasher

from casella.store.model import Account, DeliveryTarget, Mailbox

TIMEOUT = 15.0


def message(subject: str, body: bytes = b"Hello.\r\n", extra: bytes = b"") -> bytes:
    return (b"From: Sender <sender@example.org>\r\nTo: User <user@example.test>\r\n"
            b"Subject: " + subject.encode() + b"\r\nMessage-ID: <" +
            subject.replace(" ", "-").encode() + b"@example.org>\r\n" + extra + b"\r\n" + body)


# Tests create accounts with a cheap argon2id hash: the authenticator verifies whatever hash is
# stored, and the default parameters (64 MiB, 3 passes) would cost most of this suite's time.
_cheap_hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def add_user(server: Any, address: str, password: str = "secret", quota: int = 1 << 30
             ) -> Account:
    async def go() -> Account:
        domain = address.rsplit("@", 1)[1]
        if await server.store.get_domain(domain) is None:
            await server.store.add_domain(domain)
        return await server.store.add_account(address, _cheap_hasher.hash(password), quota)
    return server.run(go())


def deliver(server: Any, account: Account, data: bytes, count: int = 1) -> list[int]:
    """Put `data` into the account's INBOX `count` times (one transaction) as SMTP would."""
    async def go() -> list[int]:
        staged = await server.store.blobs.stage(data)
        try:
            outcomes = await server.store.deliver(staged, [DeliveryTarget(account.id)] * count)
        finally:
            staged.discard()
        for o in outcomes:
            assert o.error is None, o.error
        return [o.uid for o in outcomes]
    return server.run(go())


def deliver_all(server: Any, account: Account, datas: Sequence[bytes]) -> list[int]:
    return [deliver(server, account, d)[0] for d in datas]


def mailbox(server: Any, account: Account, name: str = "INBOX") -> Mailbox:
    mb = server.run(server.store.get_mailbox(account.id, name))
    assert mb is not None
    return mb


def inbox_uids(server: Any, account: Account) -> list[int]:
    return list(server.run(server.store.select(mailbox(server, account).id)).uids)


def account(server: Any, address: str) -> Account:
    acct = server.run(server.store.get_account(address))
    assert acct is not None
    return acct


def login(server: Any, user: str, password: str = "secret", *, tls: str = "none"
          ) -> poplib.POP3:
    """poplib logged in: tls = "none" (plain port), "stls" or "implicit" (pop3s)."""
    if tls == "implicit":
        client: poplib.POP3 = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"),
                                              context=server.ssl_context(), timeout=TIMEOUT)
    else:
        client = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=TIMEOUT)
        if tls == "stls":
            client.stls(server.ssl_context())
    client.user(user)
    client.pass_(password)
    return client


def lines(resp: tuple[bytes, list[bytes], int]) -> list[bytes]:
    return resp[1]


def uidl_map(client: poplib.POP3) -> dict[bytes, int]:
    out = {}
    for line in client.uidl()[1]:
        num, uid = line.split()
        out[uid] = int(num)
    return out


class Raw:
    """A line-oriented POP3 client over a plain or TLS socket, for exact replies."""

    def __init__(self, port: int, context: ssl.SSLContext | None = None) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock: socket.socket = context.wrap_socket(sock) if context else sock
        self.buf = b""
        self.greeting = self.line()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; buffered {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def cmd(self, line: bytes) -> bytes:
        self.send(line + b"\r\n")
        return self.line()

    def multi(self) -> list[bytes]:
        """The lines of a multi-line body, up to the terminator, still dot-stuffed."""
        out = []
        while True:
            line = self.line()
            if line == b".":
                return out
            out.append(line)

    def raw_until_terminator(self) -> bytes:
        while b"\r\n.\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        data, self.buf = self.buf.split(b"\r\n.\r\n", 1)
        return data + b"\r\n.\r\n"

    def closed(self) -> bool:
        """True once the server closed the connection (nothing more to read)."""
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, ssl.SSLError):
            return True

    def starttls(self, context: ssl.SSLContext) -> None:
        self.sock = context.wrap_socket(self.sock)

    def login(self, user: str, password: str = "secret") -> bytes:
        assert self.cmd(b"USER " + user.encode()).startswith(b"+OK")
        return self.cmd(b"PASS " + password.encode())

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def run_soon(server: Any, coro: Any) -> Any:
    return asyncio.run_coroutine_threadsafe(coro, server.loop)
