"""What the three load clients share: opening a connection (optionally TLS, from a chosen
loopback source address) and a buffered reader that finds line ends and terminators with
bytes.find instead of a Python loop per line.

Must never: import casella (the clients must work against any server) or block the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
from collections.abc import Iterator

DEFAULT_TIMEOUT = 60.0
_CHUNK = 256 * 1024


class ProtocolError(Exception):
    """The server answered something the load client did not expect."""


def client_tls_context() -> ssl.SSLContext:
    """TLS for the optional --tls runs: the bench checks speed, not certificates."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def source_addresses(host: str, count: int = 250) -> Iterator[str | None]:
    """Source addresses to spread connections over: 127.0.1.1 … on loopback (the whole of
    127/8 reaches lo on Linux), so per-IP connection limits and the ephemeral port range of a
    single address do not distort the test. Elsewhere: the system's choice."""
    if not host.startswith("127."):
        return itertools.repeat(None)
    return itertools.cycle(f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(count))


class Stream:
    """A connection with a growable input buffer."""

    __slots__ = ("buf", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()

    @classmethod
    async def open(cls, host: str, port: int, *, tls: bool = False, source: str | None = None,
                   timeout: float = DEFAULT_TIMEOUT) -> Stream:
        kwargs: dict[str, object] = {"limit": _CHUNK}
        if tls:
            kwargs["ssl"] = client_tls_context()
            kwargs["server_hostname"] = host
        if source:
            kwargs["local_addr"] = (source, 0)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, **kwargs), timeout)  # type: ignore[arg-type]
        return cls(reader, writer)

    async def fill(self, timeout: float = DEFAULT_TIMEOUT) -> None:
        data = await asyncio.wait_for(self.reader.read(_CHUNK), timeout)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buf += data

    async def read_line(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        """One line without its CRLF."""
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            await self.fill(timeout)

    async def read_until(self, marker: bytes, start: int = 0,
                         timeout: float = DEFAULT_TIMEOUT) -> int:
        """Wait until `marker` is in the buffer at or after `start`; return the offset just
        past it (the caller removes what it consumed)."""
        pos = start
        while True:
            i = self.buf.find(marker, pos)
            if i >= 0:
                return i + len(marker)
            pos = max(start, len(self.buf) - len(marker) + 1)
            await self.fill(timeout)

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    def close(self) -> None:
        # Closing a connection the server already dropped may raise; there is nothing to do.
        with contextlib.suppress(Exception):
            self.writer.close()

    async def aclose(self) -> None:
        self.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 2.0)
