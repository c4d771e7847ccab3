"""The stored MIME part tree and IMAP body sections (FETCH BODY[section], BINARY[section]).

What lives here: ``Part`` (the part tree with byte offsets, kept in the database as compact
JSON by ``dump_parts``/``load_parts``), ``section_range`` (RFC 3501 §6.4.5 / RFC 9051
§6.4.5 section numbering), ``filter_header_fields`` (HEADER.FIELDS[.NOT]) and
``decode_transfer`` (Content-Transfer-Encoding decoding for BINARY, RFC 3516).

Nothing here reads a message: FETCH slices the stored blob with the offsets found here. It
must never import asyncio, sockets, config or the store.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from casella.mail.headers import split_fields

__all__ = [
    "Part",
    "decode_transfer",
    "dump_parts",
    "filter_header_fields",
    "load_parts",
    "section_range",
]


@dataclass(frozen=True, slots=True)
class Part:
    """One MIME entity of a stored message.

    ``header_start``..``body_start`` is its header (for a part of a multipart: its MIME
    header; for the message or an embedded message: the RFC 5322 header), ``body_start``..
    ``end`` its body. A multipart's ``children`` are its parts; a message/rfc822 part has
    exactly one child, the embedded message, whose ``header_start == body_start`` of the
    part. Leaves (and multiparts without parts) have no children.
    """

    header_start: int
    body_start: int
    end: int
    ctype: str  # lower case
    csubtype: str  # lower case
    encoding: str  # lower case Content-Transfer-Encoding, "7bit" by default
    charset: str | None
    children: tuple[Part, ...] = ()

    @property
    def is_multipart(self) -> bool:
        return self.ctype == "multipart"

    @property
    def is_message(self) -> bool:
        return self.ctype == "message" and self.csubtype == "rfc822" and len(self.children) == 1


# JSON form of one part: [header_start, body_start, end, ctype, csubtype, encoding,
# charset-or-null, [children...]]. Compact and positional: this is stored for every message.
_PartJSON = list[object]


def _to_json(part: Part) -> _PartJSON:
    return [
        part.header_start,
        part.body_start,
        part.end,
        part.ctype,
        part.csubtype,
        part.encoding,
        part.charset,
        [_to_json(c) for c in part.children],
    ]


def dump_parts(root: Part) -> str:
    """Serialise a part tree to the compact JSON stored beside the message."""
    return json.dumps(_to_json(root), separators=(",", ":"), ensure_ascii=True)


def _from_json(obj: object) -> Part:
    if not isinstance(obj, list) or len(obj) != 8:
        raise ValueError("malformed part entry")
    hs, bs, end, ctype, csub, enc, charset, kids = obj
    well_formed = (
        isinstance(hs, int)
        and isinstance(bs, int)
        and isinstance(end, int)
        and isinstance(ctype, str)
        and isinstance(csub, str)
        and isinstance(enc, str)
        and (charset is None or isinstance(charset, str))
        and isinstance(kids, list)
    )
    if not well_formed:
        raise ValueError("malformed part entry")
    return Part(hs, bs, end, ctype, csub, enc, charset, tuple(_from_json(k) for k in kids))


def load_parts(parts_json: str) -> Part:
    """Load a part tree stored by ``dump_parts``; ``ValueError`` if it is not one."""
    return _from_json(json.loads(parts_json))


def _numbered(message: Part, n: int) -> Part | None:
    """Part ``n`` of a message (RFC 3501 §6.4.5): a multipart message's parts are its
    children; a non-multipart message has only part 1, which is its body."""
    if message.is_multipart:
        return message.children[n - 1] if 1 <= n <= len(message.children) else None
    return message if n == 1 else None


def _resolve(root: Part, path: tuple[int, ...]) -> Part | None:
    """Follow numeric part specifiers from the message ``root``.

    The numbering context starts as the message. After a multipart part, the next number
    picks one of its parts; after a message/rfc822 part, it picks a part of the embedded
    message; after any other part there is nothing deeper (RFC 3501 §6.4.5; Dovecot
    leniently lets ``2.1`` mean ``2`` for a leaf, we answer that the section is absent).
    """
    context: Part | None = root
    part: Part | None = None
    for n in path:
        if context is None:
            return None
        part = _numbered(context, n)
        if part is None:
            return None
        if part.is_message:
            context = part.children[0]
        elif part.is_multipart:
            context = part
        else:
            context = None
    return part


def section_range(root: Part, path: tuple[int, ...], spec: str) -> tuple[int, int] | None:
    """Byte range ``(start, end)`` of an IMAP body section (RFC 3501 §6.4.5, RFC 9051 §6.4.5).

    ``path`` holds the numeric part specifiers (``()`` for the message itself); ``spec`` is
    "", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT" or "MIME" (any case).

    - "" : the whole message for ``()``, else the body of the part (for a message/rfc822
      part: the embedded message, header included).
    - HEADER / HEADER.FIELDS[.NOT] / TEXT: the header / body of the message itself for
      ``()``, else of the message embedded in a message/rfc822 part. For HEADER.FIELDS the
      caller filters the fields with ``filter_header_fields``.
    - MIME: the MIME header of the part (needs a non-empty ``path``); for part 1 of a
      non-multipart message that is the message header.

    Returns ``None`` when the section does not exist: a part number beyond the structure,
    HEADER/TEXT of a part that is not message/rfc822, MIME without a part number. The RFC
    makes that no error; FETCH answers with an empty string ``""`` for it, as Dovecot does.
    """
    spec = spec.upper()
    if any(n < 1 for n in path):
        return None
    part = _resolve(root, path) if path else root
    if part is None:
        return None
    if spec == "":
        if not path:
            return (root.header_start, root.end)
        return (part.body_start, part.end)
    if spec == "MIME":
        if not path:
            return None
        return (part.header_start, part.body_start)
    if spec in ("HEADER", "TEXT", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        if path:
            # RFC 3501 §6.4.5: only for a part of type MESSAGE/RFC822
            if not part.is_message:
                return None
            message = part.children[0]
        else:
            message = root
        if spec == "TEXT":
            return (message.body_start, message.end)
        return (message.header_start, message.body_start)
    return None


def filter_header_fields(header: bytes, names: Sequence[str], exclude: bool) -> bytes:
    """HEADER.FIELDS / HEADER.FIELDS.NOT (RFC 3501 §6.4.5): the fields whose name matches
    (case-insensitively) one of ``names`` -- or, with ``exclude``, does not -- each with its
    folded continuation lines, in their original order, followed by the blank line CRLF
    (the RFC says the subset includes the delimiting blank line). A field missing its final
    line end (header at the very end of a message) gets a CRLF."""
    wanted = {n.lower().encode("latin-1", "replace") for n in names}
    out: list[bytes] = []
    for name, raw in split_fields(header):
        if (name.lower() in wanted) != exclude:
            out.append(raw if raw.endswith(b"\n") else raw + b"\r\n")
    out.append(b"\r\n")
    return b"".join(out)


# base64 alphabet and "="; everything else (line ends, junk) is dropped before decoding
_B64_JUNK = bytes(
    c for c in range(256) if not (chr(c).isascii() and (chr(c).isalnum() or chr(c) in "+/="))
)


def _b64_chunk(chunk: bytes) -> bytes:
    rem = len(chunk) % 4
    if rem == 1:
        chunk = chunk[:-1]  # a dangling character carries no whole byte
    elif rem:
        chunk += b"=" * (4 - rem)
    try:
        return binascii.a2b_base64(chunk)
    except (binascii.Error, ValueError):  # pragma: no cover - clean input cannot fail
        return b""


_QP_TRAILING_WS = re.compile(rb"[ \t]+(?=\r?\n)")


def decode_transfer(data: bytes, encoding: str) -> bytes:
    """Undo a Content-Transfer-Encoding (RFC 2045 §6).

    base64 is decoded leniently (RFC 2045 §6.8 says to ignore characters outside the
    alphabet; a dangling final character is dropped); quoted-printable per §6.7 (soft line
    breaks, ``=XX``; invalid escapes are kept as they are); 7bit, 8bit, binary and an empty
    encoding pass through. Any other encoding raises ``ValueError`` (IMAP BINARY answers
    ``NO [UNKNOWN-CTE]``, RFC 3516 §4.3).
    """
    enc = encoding.strip().lower()
    if enc in ("", "7bit", "8bit", "binary"):
        return bytes(data)
    if enc == "base64":
        # Padding ends a chunk: some senders concatenate separately padded chunks.
        chunks = bytes(data).translate(None, _B64_JUNK).split(b"=")
        return b"".join(_b64_chunk(c) for c in chunks if c)
    if enc == "quoted-printable":
        # §6.7 rule 3: trailing whitespace on a line is not part of the data
        return binascii.a2b_qp(_QP_TRAILING_WS.sub(b"", bytes(data)))
    raise ValueError(f"unknown content-transfer-encoding: {encoding[:40]!r}")
