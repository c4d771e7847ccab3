"""Parse a message once, at delivery or APPEND, into everything IMAP FETCH needs.

What lives here: ``parse_message`` and its result ``ParsedMessage`` (header block, rendered
ENVELOPE, BODYSTRUCTURE and BODY, the part tree as JSON for BODY[section], the RFC 8970
preview, and the text the search index holds). The store keeps these so FETCH never parses a message again.

A delivery must never fail because MIME is broken: ``parse_message`` never raises on any
input and its work is bounded (see ``mime.py`` for the limits). It is CPU work: the caller
runs it off the event loop for big messages. This module must never import asyncio,
sockets, config or the store.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass

from casella.mail.envelope import render_body, render_envelope
from casella.mail.headers import parse_disposition
from casella.mail.mime import MESSAGE, MULTIPART, MimeNode, as_buffer, build_tree
from casella.mail.sections import Part, dump_parts
from casella.mail.text import index_texts, preview_text, search_values

__all__ = ["MAX_HEADER_BYTES", "ParsedMessage", "parse_message", "to_part"]

#: The stored top-level header block is cut at this many bytes.
MAX_HEADER_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class ParsedMessage:
    header: bytes  # top-level header block incl. the empty line, at most MAX_HEADER_BYTES
    envelope: bytes  # IMAP ENVELOPE, rendered (RFC 3501 §7.4.2)
    bodystructure: bytes  # IMAP BODYSTRUCTURE, extensible form
    body: bytes  # IMAP BODY, non-extensible form
    parts: str  # the part tree, compact JSON (sections.dump_parts / load_parts)
    preview: str  # RFC 8970 preview, "" when there is no text part
    search: tuple[str, ...]  # text.search_values of the stored header (SEARCH FROM ... SUBJECT)
    index: tuple[str, str] | None  # text.index_texts: (headers, body) casefolded; None: too big


def to_part(node: MimeNode) -> Part:
    """The stored form of a MIME tree node (recursion bounded by mime.MAX_DEPTH)."""
    charset = node.param(b"charset")
    if node.kind == MULTIPART:
        ctype, csub = "multipart", node.csubtype.decode("latin-1").lower()
    elif node.kind == MESSAGE:
        ctype, csub = "message", "rfc822"
    else:
        ctype = node.ctype.decode("latin-1").lower()
        csub = node.csubtype.decode("latin-1").lower()
    return Part(
        node.header_start,
        node.body_start,
        node.end,
        ctype,
        csub,
        node.encoding.decode("latin-1").lower(),
        charset.decode("latin-1").strip() if charset is not None else None,
        tuple(to_part(c) for c in node.children),
    )


def _attachments(node: MimeNode, out: set[int]) -> None:
    raw = node.fields.get(b"content-disposition")
    if raw is not None:
        parsed = parse_disposition(raw)
        if parsed is not None and parsed[0].lower() == b"attachment":
            out.add(node.header_start)
    for child in node.children:
        _attachments(child, out)


def parse_message(data: bytes | bytearray | memoryview | mmap.mmap,
                  with_index: bool = True) -> ParsedMessage:
    """Parse ``data`` (the message exactly as stored) into a ``ParsedMessage``; without
    ``with_index`` its ``index`` is None (decoding every text part is the dearest step, and
    only the search index reads it).

    Never raises on malformed input; see ``mime.build_tree`` for how broken MIME is read.
    Offsets, sizes and line counts refer to the bytes as given.
    """
    buf = as_buffer(data)
    root = build_tree(buf)
    header_end = min(root.body_start, MAX_HEADER_BYTES)
    part = to_part(root)
    skip: set[int] = set()
    _attachments(root, skip)
    header = bytes(buf[0:header_end])
    return ParsedMessage(
        header=header,
        envelope=render_envelope(root.fields),
        bodystructure=render_body(root, True),
        body=render_body(root, False),
        parts=dump_parts(part),
        preview=preview_text(buf, part, frozenset(skip)),
        search=search_values(header),
        index=index_texts(buf, part, header) if with_index else None,
    )
