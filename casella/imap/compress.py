"""COMPRESS=DEFLATE (RFC 4978): the raw DEFLATE codec placed under an IMAP connection.

Lives here: `DeflateTransform`, a `casella.net.streams.StreamTransform`: raw deflate (RFC 1951,
no zlib header, RFC 4978 §3), every write flushed with Z_SYNC_FLUSH so the client can decode
each response as soon as it arrives (RFC 4978 §4). Inflation hands out at most OUT_CHUNK octets
per call and holds the rest back (`pending`); the connection keeps the transport paused and
asks for more as the session reads, so a deflate bomb costs no more memory than plain input.
Garbage from the client makes `decode` raise, and the connection ends. Must never: import
asyncio, config or the store.
"""

from __future__ import annotations

import zlib

OUT_CHUNK = 256 * 1024      # inflated octets handed out per call (the connection's high water)


class CompressionError(Exception):
    """The client's compressed stream is corrupt."""


class DeflateTransform:
    def __init__(self, level: int = 6) -> None:
        self._out = zlib.compressobj(level, zlib.DEFLATED, -15)
        self._in = zlib.decompressobj(-15)
        self._held = b""            # compressed input not inflated yet

    @property
    def pending(self) -> bool:
        """Inflated output is being held back (call `decode(b"")` for more)."""
        return bool(self._held)

    def encode(self, data: bytes) -> bytes:
        return self._out.compress(data) + self._out.flush(zlib.Z_SYNC_FLUSH)

    def decode(self, data: bytes) -> bytes:
        try:
            out = self._in.decompress(self._held + data, OUT_CHUNK)
        except zlib.error as exc:
            raise CompressionError(f"corrupt compressed data: {exc}") from None
        self._held = self._in.unconsumed_tail
        if self._in.eof:
            # RFC 4978 has no end of stream: after one, the client sent garbage.
            raise CompressionError("the compressed stream ended")
        return out
