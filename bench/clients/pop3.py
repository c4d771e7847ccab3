"""A raw asyncio POP3 load client (RFC 1939): USER/PASS, STAT, UIDL, RETR, QUIT.

Multi-line replies are found by searching the buffer for CRLF "." CRLF; the client never
un-stuffs or keeps message bodies (it only counts their octets).

Must never: import casella.
"""

from __future__ import annotations

from bench.clients.base import DEFAULT_TIMEOUT, ProtocolError, Stream


class Pop3Client:
    def __init__(self, stream: Stream) -> None:
        self.s = stream

    @classmethod
    async def connect(cls, host: str, port: int, *, tls: bool = False,
                      source: str | None = None,
                      timeout: float = DEFAULT_TIMEOUT) -> Pop3Client:
        stream = await Stream.open(host, port, tls=tls, source=source, timeout=timeout)
        client = cls(stream)
        try:
            line = await stream.read_line(timeout)
            if not line.startswith(b"+OK"):
                raise ProtocolError(f"POP3 greeting: {line[:100]!r}")
        except BaseException:
            stream.close()
            raise
        return client

    async def simple(self, command: bytes, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        await self.s.send(command + b"\r\n")
        line = await self.s.read_line(timeout)
        if not line.startswith(b"+OK"):
            raise ProtocolError(f"{command.split()[0]!r}: {line[:200]!r}")
        return line

    async def multi(self, command: bytes, timeout: float = DEFAULT_TIMEOUT) -> tuple[bytes, int]:
        """A multi-line reply: (the whole reply without the final ".", its octet count)."""
        await self.s.send(command + b"\r\n")
        return await self._read_multi(command, timeout)

    async def _read_multi(self, command: bytes, timeout: float) -> tuple[bytes, int]:
        s = self.s
        first = await s.read_until(b"\r\n", 0, timeout)
        if not s.buf.startswith(b"+OK"):
            line = bytes(s.buf[:first])
            del s.buf[:first]
            raise ProtocolError(f"{command.split()[0]!r}: {line[:200]!r}")
        # The terminator is CRLF "." CRLF; the first line's CRLF may be its first half.
        end = await s.read_until(b"\r\n.\r\n", first - 2, timeout)
        data = bytes(s.buf[:end - 3])
        del s.buf[:end]
        return data, end

    async def login(self, user: str, password: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        await self.s.send(b"USER " + user.encode() + b"\r\nPASS " + password.encode() + b"\r\n")
        for what in (b"USER", b"PASS"):
            line = await self.s.read_line(timeout)
            if not line.startswith(b"+OK"):
                raise ProtocolError(f"{what!r} {user}: {line[:200]!r}")

    async def stat(self) -> tuple[int, int]:
        line = await self.simple(b"STAT")
        parts = line.split()
        return int(parts[1]), int(parts[2])

    async def uidl(self) -> list[tuple[int, bytes]]:
        data, _ = await self.multi(b"UIDL")
        out = []
        for line in data.split(b"\r\n")[1:]:
            if line:
                n, _, uid = line.partition(b" ")
                out.append((int(n), uid))
        return out

    async def retr(self, n: int, timeout: float = DEFAULT_TIMEOUT) -> int:
        """RETR one message; returns the octets received (terminator included)."""
        await self.s.send(b"RETR %d\r\n" % n)
        s = self.s
        first = await s.read_until(b"\r\n", 0, timeout)
        if not s.buf.startswith(b"+OK"):
            line = bytes(s.buf[:first])
            del s.buf[:first]
            raise ProtocolError(f"RETR {n}: {line[:200]!r}")
        end = await s.read_until(b"\r\n.\r\n", first - 2, timeout)
        del s.buf[:end]
        return end

    async def quit(self) -> None:
        try:
            await self.simple(b"QUIT", timeout=10)
        finally:
            await self.s.aclose()
