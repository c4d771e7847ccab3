"""Message data as it arrives: the DATA end-of-data scanner and the BDAT chunk checker.

Lives here: `DataScanner` (finds the one true end of DATA, `<CRLF>.<CRLF>`, undoes dot-stuffing
exactly, counts the message size, and notices bare CR or bare LF: the SMTP smuggling defence),
`BdatScanner` (size and bare CR/LF for CHUNKING), and `HeadCapture` (the first bytes of a
message, to read its header without holding the whole message). Everything works chunk-wise
with C-level bytes methods (find/count/replace): no Python loop over lines or bytes. Must never:
import asyncio, sockets, config or the store.
"""

from __future__ import annotations

_TERMINATOR = b"\r\n.\r\n"
# Proper prefixes of the terminator, longest first: the tail of a chunk that may be the start
# of an end-of-data split across two reads.
_PARTIAL = (b"\r\n.\r", b"\r\n.", b"\r\n", b"\r")


def has_bare_newline(data: bytes) -> bool:
    """True when `data` holds a CR not followed by LF or an LF not preceded by CR."""
    crlf = data.count(b"\r\n")
    return data.count(b"\n") != crlf or data.count(b"\r") != crlf


class DataScanner:
    """Feed the bytes that follow `354`; `feed` returns the message bytes to keep and, once the
    end is found, the bytes after it (pipelined commands to read next).

    RFC 5321 §4.1.1.4: only CRLF "." CRLF ends the data, and the first line may itself be ".".
    A virtual CRLF is placed before the first byte so that case and the dot-stuffing of the
    first line (§4.5.2) follow the same rule as every other line; it is stripped again from the
    output. A bare CR or LF anywhere (§2.3.8) sets `bare`; the scan then carries on to the real
    terminator so the session stays in step with the client (PROMISES M1/M2), but no more output
    is produced. Past `max_size` octets `too_big` is set and output stops the same way.
    """

    __slots__ = ("_carry", "_skip", "bare", "done", "max_size", "size", "too_big")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.size = 0            # octets of the unstuffed message seen so far
        self.bare = False
        self.too_big = False
        self.done = False
        self._carry = b"\r\n"
        self._skip = 2

    @property
    def refused(self) -> bool:
        return self.bare or self.too_big

    def feed(self, chunk: bytes) -> tuple[bytes, bytes | None]:
        """(message bytes to keep, None) until the end of data; then (last bytes, leftover)."""
        if self.done:
            raise RuntimeError("feed after the end of data")
        buf = self._carry + chunk if self._carry else chunk
        idx = buf.find(_TERMINATOR)
        leftover: bytes | None
        if idx >= 0:
            part = buf[: idx + 2]           # the CRLF ends the message's last line
            leftover = buf[idx + 5:]
            self._carry = b""
            self.done = True
        else:
            keep = 0
            for prefix in _PARTIAL:
                if buf.endswith(prefix):
                    keep = len(prefix)
                    break
            # The carried tail always starts with CR, so no CRLF "." and no CRLF pair is ever
            # cut in two between `part` and the next read; a CR at the end of `part` is one
            # followed by another CR, i.e. really bare.
            part = buf[: len(buf) - keep] if keep else buf
            self._carry = buf[len(buf) - keep:] if keep else b""
            leftover = None
        return self._process(part), leftover

    def _process(self, part: bytes) -> bytes:
        if not part:
            return b""
        if not self.bare and has_bare_newline(part):
            self.bare = True
        out = part.replace(b"\r\n.", b"\r\n")   # exact: one dot removed per stuffed line
        if self._skip:
            n = min(self._skip, len(out))
            out = out[n:]
            self._skip -= n
        self.size += len(out)
        if self.size > self.max_size:
            self.too_big = True
        return b"" if self.bare or self.too_big else out


class BdatScanner:
    """Checks BDAT chunks (RFC 3030): counts the size across chunks and looks for bare CR/LF,
    also where a CR ends one chunk and the LF starts the next."""

    __slots__ = ("_cr", "bare", "max_size", "size", "too_big")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.size = 0
        self.bare = False
        self.too_big = False
        self._cr = False

    @property
    def refused(self) -> bool:
        return self.bare or self.too_big

    def feed(self, data: bytes) -> bytes:
        """The bytes to keep (all of `data`, or nothing once refused)."""
        if not data:
            return b""
        self.size += len(data)
        if self.size > self.max_size:
            self.too_big = True
        if not self.bare:
            seg = b"\r" + data if self._cr else data
            self._cr = seg.endswith(b"\r")
            if self._cr:
                seg = seg[:-1]
            if has_bare_newline(seg):
                self.bare = True
        return b"" if self.refused else data

    def finish(self) -> None:
        """At BDAT LAST: a CR left hanging at the very end is bare."""
        if self._cr:
            self.bare = True
            self._cr = False


class HeadCapture:
    """Keeps the first `limit` octets of a message so its header can be read (sender checks,
    bounces) without holding the whole message in memory."""

    __slots__ = ("_len", "_parts", "limit", "total")

    def __init__(self, limit: int = 256 * 1024) -> None:
        self.limit = limit
        self._parts: list[bytes] = []
        self._len = 0
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        if self._len < self.limit and data:
            piece = data[: self.limit - self._len]
            self._parts.append(piece)
            self._len += len(piece)

    @property
    def prefix(self) -> bytes:
        if len(self._parts) > 1:
            self._parts = [b"".join(self._parts)]
        return self._parts[0] if self._parts else b""

    @property
    def complete(self) -> bool:
        """Whether `prefix` is the whole message."""
        return self.total == self._len

    @property
    def header(self) -> bytes | None:
        """The header block through its blank line (or the whole message when it has no body),
        None when it is longer than the capture."""
        data = self.prefix
        if data.startswith(b"\r\n"):
            return b"\r\n"
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            return data[: end + 4]
        return data if self.complete else None
