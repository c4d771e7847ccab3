"""A raw asyncio IMAP4rev1 load client: tagged commands, literals both ways, IDLE.

Lives here: `ImapClient` (connect, login, command with a synchronizing literal, IDLE with a
callback per untagged line) and `Response`. Responses are scanned with bytes.find: a FETCH of
100,000 messages costs a few passes over the buffer, not a Python call per line, so the client
stays cheap beside the server it measures on the same two cores.

Must never: import casella (it runs against Dovecot too) or interpret more of IMAP than the
scenarios need.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.clients.base import DEFAULT_TIMEOUT, ProtocolError, Stream

_LITERAL_RE = re.compile(rb"\{(\d+)\+?\}$")
_COMPACT_AT = 1 << 20


def quote(s: str) -> bytes:
    return b'"' + s.encode().replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


@dataclass(slots=True)
class Response:
    status: bytes                     # OK / NO / BAD
    text: bytes                       # the tagged line after the status
    untagged: list[bytes] = field(default_factory=list)  # kept only when asked
    count: int = 0                    # untagged responses seen
    octets: int = 0                   # bytes of the whole response

    @property
    def ok(self) -> bool:
        return self.status == b"OK"


class ImapClient:
    def __init__(self, stream: Stream) -> None:
        self.s = stream
        self._tags = 0
        self.capabilities: set[bytes] = set()

    @classmethod
    async def connect(cls, host: str, port: int, *, tls: bool = False,
                      source: str | None = None,
                      timeout: float = DEFAULT_TIMEOUT) -> ImapClient:
        stream = await Stream.open(host, port, tls=tls, source=source, timeout=timeout)
        client = cls(stream)
        try:
            greeting = await stream.read_line(timeout)
            if not greeting.startswith(b"* OK"):
                raise ProtocolError(f"IMAP greeting: {greeting[:100]!r}")
        except BaseException:
            stream.close()
            raise
        return client

    def _tag(self) -> bytes:
        self._tags += 1
        return b"b%d" % self._tags

    async def _read_response(self, tag: bytes, keep: bool,
                             timeout: float = DEFAULT_TIMEOUT) -> Response:
        """Read up to and including the tagged reply, skipping over literals."""
        s = self.s
        buf = s.buf
        tag_sp = tag + b" "
        start = 0          # start of the current response in buf
        pos = 0            # where to look for the next CRLF
        count = 0
        octets = 0
        untagged: list[bytes] = []
        while True:
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                if start > _COMPACT_AT:
                    octets += start
                    del buf[:start]
                    pos -= start
                    start = 0
                pos = max(pos, len(buf) - 1)
                await s.fill(timeout)
                continue
            if nl > start and buf[nl - 1] == 0x7D:  # a line ending in {n}: a literal follows
                # From the line's start: `pos` may already be past the "{" when the
                # line arrived in pieces.
                m = _LITERAL_RE.search(buf, max(start, nl - 24), nl)
                if m is not None:
                    end = nl + 2 + int(m.group(1))
                    while len(buf) < end:
                        await s.fill(timeout)
                    pos = end
                    continue
            end = nl + 2
            if buf.startswith(tag_sp, start):
                line = bytes(buf[start + len(tag_sp):nl])
                octets += end
                del buf[:end]
                status, _, text = line.partition(b" ")
                return Response(status.upper(), text, untagged, count, octets)
            if buf.startswith(b"* ", start):
                count += 1
                if keep:
                    untagged.append(bytes(buf[start:end]))
            elif buf.startswith(b"+", start):
                raise ProtocolError("unexpected continuation request")
            start = pos = end

    async def command(self, text: bytes, *, keep: bool = False,
                      timeout: float = DEFAULT_TIMEOUT) -> Response:
        tag = self._tag()
        await self.s.send(tag + b" " + text + b"\r\n")
        return await self._read_response(tag, keep, timeout)

    async def command_literal(self, head: bytes, literal: bytes, *,
                              timeout: float = DEFAULT_TIMEOUT) -> Response:
        """`tag head {n}` then, after the server's `+`, the literal (RFC 3501 §4.3)."""
        tag = self._tag()
        await self.s.send(tag + b" " + head + b" {%d}\r\n" % len(literal))
        line = await self.s.read_line(timeout)
        if not line.startswith(b"+"):
            if line.startswith(tag + b" "):
                status, _, text = line[len(tag) + 1:].partition(b" ")
                return Response(status.upper(), text)
            raise ProtocolError(f"expected a continuation, got {line[:100]!r}")
        await self.s.send(literal + b"\r\n")
        return await self._read_response(tag, False, timeout)

    async def login(self, user: str, password: str,
                    timeout: float = DEFAULT_TIMEOUT) -> Response:
        r = await self.command(b"LOGIN " + quote(user) + b" " + quote(password), timeout=timeout)
        if not r.ok:
            raise ProtocolError(f"LOGIN {user}: {r.status!r} {r.text[:200]!r}")
        return r

    async def select(self, mailbox: str = "INBOX", *, examine: bool = False) -> tuple[int, int]:
        """(EXISTS, UIDNEXT) of the selected mailbox."""
        r = await self.command((b"EXAMINE " if examine else b"SELECT ") + quote(mailbox),
                               keep=True)
        if not r.ok:
            raise ProtocolError(f"SELECT {mailbox}: {r.status!r} {r.text[:200]!r}")
        exists = uidnext = 0
        for line in r.untagged:
            m = re.match(rb"\* (\d+) EXISTS", line)
            if m:
                exists = int(m.group(1))
            m2 = re.search(rb"\[UIDNEXT (\d+)\]", line)
            if m2:
                uidnext = int(m2.group(1))
        return exists, uidnext

    async def logout(self) -> None:
        try:
            await self.command(b"LOGOUT", timeout=10)
        except (TimeoutError, ConnectionError, ProtocolError):
            pass
        await self.s.aclose()

    # --- IDLE (RFC 2177) -------------------------------------------------------------------

    async def idle_start(self, timeout: float = DEFAULT_TIMEOUT) -> bytes:
        tag = self._tag()
        await self.s.send(tag + b" IDLE\r\n")
        while True:
            line = await self.s.read_line(timeout)
            if line.startswith(b"+"):
                return tag
            if line.startswith(tag + b" "):
                raise ProtocolError(f"IDLE refused: {line[:200]!r}")

    async def idle_wait(self, until: Callable[[bytes], bool], timeout: float) -> float:
        """Read untagged lines during IDLE until `until(line)` is true; return the
        time.monotonic() at which that line arrived."""
        while True:
            line = await self.s.read_line(timeout)
            if until(line):
                return time.monotonic()

    async def idle_done(self, tag: bytes, timeout: float = DEFAULT_TIMEOUT) -> Response:
        await self.s.send(b"DONE\r\n")
        return await self._read_response(tag, False, timeout)
