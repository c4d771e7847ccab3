"""Helpers for the attack suite: users with a cheap (but real) argon2id hash, raw clients that
send exactly the bytes an attacker would for IMAP, POP3 and SMTP, delivery through the store,
and a log watcher that fails a test when the server logs an internal error."""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
import time
from typing import Any

from argon2 import PasswordHasher

from casella.store.model import Account, DeliveryTarget

TIMEOUT = 15.0
PASSWORD = "secret"
# The production scheme (argon2id) at its smallest cost: the check stays real, tests stay fast.
CHEAP_HASH = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(PASSWORD)
_counter = itertools.count(1)


def add_user(server: Any, address: str | None = None, quota: int = 1 << 30) -> Account:
    address = address or f"victim{next(_counter)}@example.test"

    async def go() -> Account:
        domain = address.rsplit("@", 1)[1]
        if await server.store.get_domain(domain) is None:
            await server.store.add_domain(domain)
        return await server.store.add_account(address, CHEAP_HASH, quota)
    result: Account = server.run(go())
    return result


def deliver(server: Any, account: Account, data: bytes, count: int = 1) -> None:
    async def go() -> None:
        for _ in range(count):
            staged = await server.store.blobs.stage(data)
            try:
                (out,) = await server.store.deliver(staged, [DeliveryTarget(account.id)])
            finally:
                staged.discard()
            assert out.error is None, out.error
    server.run(go())


def message(subject: str = "hello", body: bytes = b"Hello.\r\n") -> bytes:
    return (f"From: a@example.org\r\nTo: b@example.test\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.org>\r\n\r\n").encode() + body


class LineClient:
    """A blocking socket client for one of the three protocols."""

    def __init__(self, port: int, ctx: ssl.SSLContext | None = None,
                 timeout: float = TIMEOUT) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock: socket.socket = ctx.wrap_socket(sock) if ctx is not None else sock
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"connection closed; unread: {self.buf[:200]!r}")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def closed(self, wait: float = 5.0) -> bool:
        """True when the server closes the connection within `wait` seconds (pending bytes go
        to `buf`)."""
        self.sock.settimeout(wait)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(TIMEOUT)

    def starttls(self, ctx: ssl.SSLContext) -> None:
        self.sock = ctx.wrap_socket(self.sock)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Imap(LineClient):
    def __init__(self, port: int, ctx: ssl.SSLContext | None = None,
                 timeout: float = TIMEOUT) -> None:
        super().__init__(port, ctx, timeout)
        self.greeting = self.line()
        self._tags = itertools.count(1)

    def tagged(self, tag: bytes) -> tuple[list[bytes], bytes]:
        """Lines up to and including the tagged reply to `tag`."""
        untagged = []
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                return untagged, line
            untagged.append(line)

    def cmd(self, text: bytes | str) -> tuple[list[bytes], bytes]:
        tag = f"t{next(self._tags)}".encode()
        self.send(tag + b" " + (text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.tagged(tag)

    def status(self, text: bytes | str) -> bytes:
        """The tagged reply's status and the rest: b"OK ...", b"NO [...] ...", b"BAD ..."."""
        return self.cmd(text)[1].split(b" ", 1)[1]

    def login(self, address: str, password: str = PASSWORD) -> bytes:
        return self.status(f"LOGIN {address} {password}")


class Pop3(LineClient):
    def __init__(self, port: int, ctx: ssl.SSLContext | None = None,
                 timeout: float = TIMEOUT) -> None:
        super().__init__(port, ctx, timeout)
        self.greeting = self.line()

    def cmd(self, text: bytes | str) -> bytes:
        self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.line()

    def multi(self) -> list[bytes]:
        out = []
        while (line := self.line()) != b".":
            out.append(line)
        return out

    def login(self, address: str, password: str = PASSWORD) -> bytes:
        self.cmd(f"USER {address}")
        return self.cmd(f"PASS {password}")


class Smtp(LineClient):
    def __init__(self, port: int, ctx: ssl.SSLContext | None = None,
                 timeout: float = TIMEOUT) -> None:
        super().__init__(port, ctx, timeout)
        self.greeting = self.reply()

    def reply(self) -> tuple[int, str]:
        lines = []
        while True:
            line = self.line()
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return int(line[:3]), "\n".join(lines)

    def cmd(self, text: bytes | str) -> tuple[int, str]:
        self.send((text.encode() if isinstance(text, str) else text) + b"\r\n")
        return self.reply()

    def code(self, text: bytes | str) -> int:
        return self.cmd(text)[0]


class ErrorLog(logging.Handler):
    """Collects ERROR records of casella's loggers (a crashed session, an internal error)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    @property
    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]


def wait_for(predicate: Any, timeout: float = 10.0, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return bool(predicate())
