"""The MIME tree of a message, with byte offsets, built once at delivery.

What lives here: ``build_tree`` turns a message (``bytes`` or ``mmap``) into a tree of
``MimeNode``: offsets of each entity's header and body, the header fields the ENVELOPE and
BODYSTRUCTURE need, the parsed Content-Type, and line counts. The IMAP renderers live in
``envelope.py``; the stored, reloadable form of the tree is ``sections.Part``.

Rules (RFC 2045, RFC 2046, and what Dovecot does with broken mail):
- Never raise. Broken MIME falls back to RFC 2045 §5.2 text/plain semantics.
- Work is bounded: nesting depth ``MAX_DEPTH``, ``MAX_PARTS`` entities, header fields parsed
  from at most ``MAX_HEADER_PARSE`` bytes per entity; the body is scanned with
  ``find``/``count`` (C speed), never byte by byte in Python.
- Both CRLF and bare LF line ends are understood.

It must never import asyncio, sockets, config or the store.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass, field

from casella.mail.headers import (
    Buffer,
    content_type_params,
    field_value,
    header_end,
    parse_content_type,
    split_fields,
    strip_comments,
)

__all__ = [
    "MAX_BOUNDARY",
    "MAX_DEPTH",
    "MAX_HEADER_PARSE",
    "MAX_PARTS",
    "MimeNode",
    "build_tree",
    "count_lines",
]

#: Entities nested deeper than this are not split: a multipart or message/rfc822 at this
#: depth (the message itself is depth 0) becomes an opaque text/plain leaf.
MAX_DEPTH = 50
#: At most this many entities per message; when a multipart reaches it, the rest of that
#: multipart becomes part of its last part, and later containers are not split.
MAX_PARTS = 5000
#: Header fields are parsed from at most this many bytes of each entity's header.
MAX_HEADER_PARSE = 256 * 1024
#: RFC 2046 §5.1.1 allows 70 characters; a boundary longer than this is not used.
MAX_BOUNDARY = 1024
#: A boundary delimiter line may carry this much trailing whitespace (RFC 2046 §5.1.1
#: transport-padding) before its line end.
_MAX_PADDING = 256

LEAF, MULTIPART, MESSAGE = 0, 1, 2

# Header fields kept per entity (first occurrence wins): the MIME ones for BODYSTRUCTURE
# and the RFC 5322 ones for ENVELOPE.
_WANTED = frozenset(
    {
        b"content-type",
        b"content-transfer-encoding",
        b"content-id",
        b"content-description",
        b"content-md5",
        b"content-disposition",
        b"content-language",
        b"content-location",
        b"date",
        b"subject",
        b"from",
        b"sender",
        b"reply-to",
        b"to",
        b"cc",
        b"bcc",
        b"in-reply-to",
        b"message-id",
    }
)


@dataclass(slots=True, eq=False)
class MimeNode:
    """One MIME entity. ``ctype``/``csubtype``/``params`` are as they will be rendered
    (as sent, or the defaults); ``kind`` says how the body was split."""

    header_start: int
    body_start: int
    end: int
    fields: dict[bytes, bytes]
    ctype: bytes
    csubtype: bytes
    params: list[tuple[bytes, bytes]]
    kind: int = LEAF
    lines: int = 0
    children: list[MimeNode] = field(default_factory=list)

    def param(self, name: bytes) -> bytes | None:
        low = name.lower()
        for k, v in self.params:
            if k.lower() == low:
                return v
        return None

    @property
    def is_text(self) -> bool:
        return self.ctype.lower() == b"text"

    @property
    def encoding(self) -> bytes:
        """Content-Transfer-Encoding as sent, "7bit" when absent (RFC 2045 §6.1)."""
        raw = self.fields.get(b"content-transfer-encoding")
        if raw:
            value = strip_comments(raw)
            if value:
                return value
        return b"7bit"


_DEFAULT_PARAMS: list[tuple[bytes, bytes]] = [(b"charset", b"us-ascii")]


def count_lines(data: Buffer, start: int, end: int) -> int:
    """Number of LF bytes in ``data[start:end]`` (Dovecot's line count: a last line without
    a line end is not counted). ``mmap`` has no ``count``, so it is read in chunks."""
    if start >= end:
        return 0
    if isinstance(data, (bytes, bytearray)):
        return data.count(b"\n", start, end)
    total = 0
    step = 1 << 20
    for pos in range(start, end, step):
        total += data[pos : min(pos + step, end)].count(b"\n")
    return total


class _Builder:
    def __init__(self, data: Buffer) -> None:
        self.data = data
        self.count = 0

    def entity(self, hs: int, end: int, depth: int, digest_child: bool) -> MimeNode:
        data = self.data
        self.count += 1
        bs = header_end(data, hs, end)
        block = data[hs : min(bs, hs + MAX_HEADER_PARSE)]
        fields: dict[bytes, bytes] = {}
        for name, raw in split_fields(block):
            low = name.lower()
            if low in _WANTED and low not in fields:
                fields[low] = field_value(raw)
        node = MimeNode(hs, bs, end, fields, b"text", b"plain", list(_DEFAULT_PARAMS))
        ct_raw = fields.get(b"content-type")
        parsed = parse_content_type(ct_raw) if ct_raw is not None else None
        if parsed is not None:
            node.ctype, node.csubtype, node.params = parsed
        elif ct_raw is not None:
            # RFC 2045 §5.2: an unusable Content-Type means text/plain; charset=us-ascii.
            # (Dovecot sends ("" "") here, which clients cannot display; we keep a charset
            # parameter if one could be salvaged, since it helps decoding.)
            params = content_type_params(ct_raw)
            if not any(k.lower() == b"charset" for k, _ in params):
                params.append((b"charset", b"us-ascii"))
            node.params = params
        elif digest_child:
            # RFC 2046 §5.1.5: in multipart/digest the default is message/rfc822
            node.ctype, node.csubtype, node.params = b"message", b"rfc822", []
        ctype = node.ctype.lower()
        container = ctype == b"multipart" or (
            ctype == b"message" and node.csubtype.lower() == b"rfc822"
        )
        if container and (depth >= MAX_DEPTH or self.count >= MAX_PARTS):
            # Limit reached: an opaque leaf, rendered and searched as text/plain.
            node.ctype, node.csubtype, node.params = b"text", b"plain", list(_DEFAULT_PARAMS)
            container = False
        if container and ctype == b"multipart":
            node.kind = MULTIPART
            boundary = node.param(b"boundary")
            if boundary and len(boundary) <= MAX_BOUNDARY:
                # RFC 2046 §5.1.7: unknown multipart subtypes are treated as mixed
                digest = node.csubtype.lower() == b"digest"
                self.split_multipart(node, boundary, depth, digest)
            # No (usable) boundary: a multipart with no parts (rendered like Dovecot, see
            # envelope.py)
        elif container:
            node.kind = MESSAGE
            node.children.append(self.entity(bs, end, depth + 1, False))
            node.lines = count_lines(data, bs, end)
        elif node.is_text:
            node.lines = count_lines(data, bs, end)
        return node

    def _delimiter(
        self, dash: bytes, pos: int, region_start: int, end: int
    ) -> tuple[int, int, bool] | None:
        """Find the next boundary delimiter line (RFC 2046 §5.1.1) at or after ``pos``;
        ``dash`` is ``--`` and the boundary.

        Returns (start of the delimiter including the line end before it, offset just past
        its own line end, is-close-delimiter). Matching is strict like RFC 2046 and Python's
        email package: after the boundary only ``--`` (close) or whitespace up to the line
        end may follow. Dovecot accepts any line that merely starts with the boundary;
        strict matching keeps an outer boundary that is a prefix of an inner one (``b`` vs
        ``b-1``) from cutting the inner parts. Candidates are found with ``find`` (C speed),
        so this stays linear, and no regular expression is compiled per boundary.
        """
        data = self.data
        if pos == region_start:
            # a delimiter right at the start of the body
            stop = pos + len(dash)
            if stop <= end and data[pos:stop] == dash:
                tail = self._delimiter_tail(stop, end)
                if tail is not None:
                    return (pos, tail[0], tail[1])
        needle = b"\n" + dash
        at = max(pos - 1, region_start)
        while True:
            p = data.find(needle, at, end)
            if p < 0:
                return None
            tail = self._delimiter_tail(p + len(needle), end)
            if tail is not None:
                dstart = p - 1 if p > region_start and data[p - 1 : p] == b"\r" else p
                return (dstart, tail[0], tail[1])
            at = p + 1

    def _delimiter_tail(self, pos: int, end: int) -> tuple[int, bool] | None:
        """What may follow ``--boundary`` at ``pos``: ``--`` (a close delimiter: returns the
        offset past its line), or up to ``_MAX_PADDING`` spaces and tabs and then a line end
        or the end of the entity (returns the offset past it). None when neither follows."""
        data = self.data
        if pos + 2 <= end and data[pos : pos + 2] == b"--":
            nl = data.find(b"\n", pos + 2, end)
            return (nl + 1 if nl >= 0 else end, True)
        limit = min(end, pos + _MAX_PADDING + 1)
        head = data[pos:limit]
        pad = len(head) - len(head.lstrip(b" \t"))
        if pad > _MAX_PADDING:
            return None
        k = pos + pad
        if k == end:
            return (k, False)
        c = data[k : k + 1]
        if c == b"\n":
            return (k + 1, False)
        if c == b"\r" and k + 2 <= end and data[k + 1 : k + 2] == b"\n":
            return (k + 2, False)
        return None

    def split_multipart(self, node: MimeNode, boundary: bytes, depth: int, digest: bool) -> None:
        """RFC 2046 §5.1.1: preamble, parts separated by delimiter lines, close delimiter,
        epilogue. The CRLF before a delimiter belongs to the delimiter, not to the part. A
        missing close delimiter ends the last part at the end of the enclosing entity."""
        dash = b"--" + boundary
        region, end = node.body_start, node.end
        delim = self._delimiter(dash, region, region, end)
        while delim is not None and not delim[2]:
            start = delim[1]
            delim = self._delimiter(dash, start, region, end) if start < end else None
            part_end = max(start, delim[0]) if delim is not None else end
            if self.count >= MAX_PARTS:
                # Part limit: the rest of this multipart becomes part of its last part.
                if node.children:
                    last = node.children[-1]
                    last.end = end
                    if last.kind != MULTIPART and (last.is_text or last.kind == MESSAGE):
                        last.lines = count_lines(self.data, last.body_start, end)
                return
            node.children.append(self.entity(start, part_end, depth + 1, digest))


def build_tree(data: Buffer) -> MimeNode:
    """Parse the whole message into its MIME tree (see module docstring for the rules)."""
    return _Builder(data).entity(0, len(data), 0, False)


def as_buffer(data: bytes | bytearray | memoryview | mmap.mmap) -> Buffer:
    """Normalise the accepted input types to something with ``find`` and byte slicing."""
    if isinstance(data, (bytes, mmap.mmap)):
        return data
    return bytes(data)
