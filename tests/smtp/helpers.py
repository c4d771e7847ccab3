"""Helpers for the SMTP scenario tests: a raw-socket SMTP client (for what smtplib cannot send:
pipelined packets, BDAT bytes, smuggling vectors) and read-back of stored mail and the queue."""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path
from typing import Any

from casella.store.model import QueueEntry

MESSAGE = (b"From: Sender <sender@remote.example>\r\nTo: alice@example.test\r\n"
           b"Subject: test\r\nMessage-ID: <t1@remote.example>\r\n\r\nHello.\r\n")


class Raw:
    """A blocking SMTP client that sends exactly the bytes it is given."""

    def __init__(self, port: int, ctx: ssl.SSLContext | None = None,
                 implicit_tls: bool = False, timeout: float = 10.0) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if implicit_tls:
            assert ctx is not None
            sock = ctx.wrap_socket(sock)
        self.sock: socket.socket = sock
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("connection closed")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def reply(self) -> tuple[int, str]:
        """One (possibly multi-line) reply: (code, text lines joined by newlines)."""
        lines = []
        while True:
            line = self._line()
            code = int(line[:3])
            lines.append(line[4:].decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return code, "\n".join(lines)

    def cmd(self, line: str | bytes) -> tuple[int, str]:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def code(self, line: str | bytes) -> int:
        return self.cmd(line)[0]

    def ehlo(self, name: str = "client.example") -> tuple[int, str]:
        return self.cmd(f"EHLO {name}")

    def starttls(self, ctx: ssl.SSLContext) -> None:
        code, text = self.cmd("STARTTLS")
        assert code == 220, text
        assert self.buf == b""
        self.sock = ctx.wrap_socket(self.sock)

    def closed(self) -> bool:
        """True when the server closed the connection (EOF) after any pending bytes."""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (ConnectionResetError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Raw:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def messages(server: Any, address: str, mailbox: str = "INBOX") -> list[bytes]:
    """Every message of one mailbox, read back through the store contract."""
    store = server.store

    async def go() -> list[bytes]:
        account = await store.get_account(address)
        assert account is not None, address
        mb = await store.get_mailbox(account.id, mailbox)
        assert mb is not None, mailbox
        snap = await store.select(mb.id)
        if not snap.uids:
            return []
        metas = await store.fetch_meta(mb.id, [(min(snap.uids), max(snap.uids))])
        statics = await store.fetch_static([m.blob_id for m in metas])
        return [await store.read_blob(statics[m.blob_id].digest) for m in metas]
    result: list[bytes] = server.run(go())
    return result


def queue(server: Any) -> list[QueueEntry]:
    result: list[QueueEntry] = server.run(server.store.list_queue())
    return result


def stored_bodies(server: Any) -> list[str]:
    """The digest of every stored message body, once per copy (Store.stored_bodies)."""
    result: list[str] = server.run(server.store.stored_bodies())
    return result


def tmp_files(server: Any, settle: float = 5.0) -> list[Path]:
    """The blob store's temporary files, once they are gone or `settle` seconds have passed:
    a staged file's name is removed by an I/O thread just after its session is done."""
    tmp = Path(server.data_dir) / "blobs" / "tmp"
    deadline = time.monotonic() + settle
    while True:
        found = list(tmp.glob("*"))
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.02)


def body_of(stored: bytes) -> bytes:
    """A stored message without the trace header block casella prepends (Return-Path, the
    MX's Authentication-Results and one Received field, with their continuation lines)."""
    lines = stored.split(b"\r\n")
    i = 0
    if lines[i].startswith(b"Return-Path:"):
        i += 1
    if lines[i].startswith(b"Authentication-Results:"):
        i += 1
        while lines[i].startswith((b"\t", b" ")):
            i += 1
    assert lines[i].startswith(b"Received:"), stored[:200]
    i += 1
    while lines[i].startswith(b"\t"):
        i += 1
    return b"\r\n".join(lines[i:])


def add_alias(server: Any, source: str, *destinations: str) -> None:
    async def go() -> None:
        domain = source.rsplit("@", 1)[1]
        if await server.store.get_domain(domain) is None:
            await server.store.add_domain(domain)
        await server.store.add_alias(source, list(destinations))
    server.run(go())


def add_domain(server: Any, name: str) -> None:
    server.run(server.store.add_domain(name))


def create_mailbox(server: Any, address: str, name: str) -> None:
    async def go() -> None:
        account = await server.store.get_account(address)
        await server.store.create_mailbox(account.id, name)
    server.run(go())


_HASH: dict[str, str] = {}


def add_users(server: Any, *addresses: str, password: str = "secret",
              quota: int = 1024**3) -> None:
    """Create accounts with one password hash computed once (argon2 is slow on purpose)."""
    from casella.auth.passwords import hash_password
    if password not in _HASH:
        _HASH[password] = hash_password(password)

    async def go() -> None:
        for address in addresses:
            domain = address.rsplit("@", 1)[1]
            if await server.store.get_domain(domain) is None:
                await server.store.add_domain(domain)
            await server.store.add_account(address, _HASH[password], quota)
    server.run(go())
