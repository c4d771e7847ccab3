"""Decoded text of a message for IMAP SEARCH and for the RFC 8970 preview.

What lives here: RFC 2047 encoded-word decoding (``decode_words``), decoded header values
(``header_values``, ``decoded_headers``), what SEARCH compares a needle with in a header field
(``search_texts``, ``search_values``: addresses in one normal form), the text of the text/*
leaves of a message (``body_text``), what the search index holds of a message
(``index_texts``: exactly what SEARCH TEXT and BODY compare with) and the preview text
(``preview_text``).

Everything here is best effort and never raises on bad input: unknown charsets fall back to
UTF-8/Latin-1, broken encoded words are left as they are, broken transfer encodings are
decoded leniently. It must never import asyncio, sockets, config or the store.
"""

from __future__ import annotations

import base64
import binascii
import html
import mmap
import re

from casella.mail.address import format_addresses, parse_addresses
from casella.mail.headers import charset_decode, field_value, split_fields
from casella.mail.sections import Part, decode_transfer

__all__ = [
    "address_search_text",
    "body_text",
    "decode_words",
    "decoded_headers",
    "header_values",
    "html_to_text",
    "index_texts",
    "index_too_big",
    "part_text",
    "preview_text",
    "search_texts",
    "search_values",
]

# RFC 2047 §2: =?charset?encoding?encoded-text?= (RFC 2231 §5 allows charset*language).
_WORD = re.compile(rb"=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=")
_BETWEEN = re.compile(rb"[ \t\r\n]*")
_Q_HEX = re.compile(rb"=([0-9A-Fa-f]{2})")


_B_TEXT = re.compile(rb"[A-Za-z0-9+/]*=*")


def _decode_b(text: bytes) -> bytes:
    """RFC 2047 §4.1 "B" encoding; missing padding is tolerated, other junk is not."""
    if not _B_TEXT.fullmatch(text):
        raise ValueError("not base64")
    clean = text.rstrip(b"=")
    rem = len(clean) % 4
    if rem == 1:
        raise ValueError("truncated base64")
    return base64.b64decode(clean + b"=" * ((4 - rem) % 4))


def _decode_q(text: bytes) -> bytes:
    # RFC 2047 §4.2: "_" is a space, =XX a byte
    return _Q_HEX.sub(lambda m: bytes([int(m.group(1), 16)]), text.replace(b"_", b" "))


def _raw_text(chunk: bytes) -> str:
    try:
        return chunk.decode("utf-8")
    except UnicodeDecodeError:
        return chunk.decode("latin-1")


def decode_words(value: str | bytes) -> str:
    """Decode the RFC 2047 encoded words in one header value.

    Whitespace between two adjacent encoded words is dropped (§6.2); adjacent words in the
    same charset are joined before decoding, so a multi-byte character split across words
    survives. Words that do not decode are left as they are. Raw 8-bit text is read as
    UTF-8, else Latin-1."""
    raw = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)
    out: list[str] = []
    pending: list[bytes] = []
    pending_charset = ""

    def flush() -> None:
        nonlocal pending, pending_charset
        if pending:
            out.append(charset_decode(b"".join(pending), pending_charset))
        pending, pending_charset = [], ""

    pos = 0
    prev_word = False
    for m in _WORD.finditer(raw):
        between = raw[pos : m.start()]
        charset = m.group(1).split(b"*", 1)[0].decode("ascii", "replace")
        try:
            payload = _decode_b(m.group(3)) if m.group(2) in b"bB" else _decode_q(m.group(3))
        except (ValueError, binascii.Error):
            flush()
            out.append(_raw_text(between + m.group()))
            pos, prev_word = m.end(), False
            continue
        if prev_word and _BETWEEN.fullmatch(between):
            if charset.lower() != pending_charset.lower():
                flush()
        else:
            flush()
            out.append(_raw_text(between))
        pending.append(payload)
        pending_charset = charset
        pos, prev_word = m.end(), True
    flush()
    out.append(_raw_text(raw[pos:]))
    return "".join(out)


def _value_text(raw: bytes) -> str:
    """A field's value as SEARCH and the header readers see it: unfolded, RFC 2047 decoded,
    stripped."""
    return decode_words(field_value(raw)).strip()


def header_values(header: bytes, name: str) -> list[str]:
    """All values of the header field ``name`` (case-insensitive), unfolded, RFC 2047
    decoded, stripped, in order."""
    want = name.lower().encode("latin-1", "replace")
    return [_value_text(raw) for fname, raw in split_fields(header) if fname.lower() == want]


#: The header fields SEARCH names as keys of their own (RFC 9051 §6.4.4), in the order of
#: `search_values`.
SEARCH_FIELDS = ("from", "to", "cc", "bcc", "subject")
_SEARCH_NAMES = tuple(name.encode() for name in SEARCH_FIELDS)
#: The fields whose SEARCH text is the address list in normal form.
ADDRESS_FIELDS = frozenset({b"from", b"to", b"cc", b"bcc"})


_WSP = rb"[ \t\r\n]"
_SPEC = rb"[^ \t\r\n<>()\",;:@\\\[\]]+@[^ \t\r\n<>()\",;:@\\\[\]]+"
_BARE_SPEC = re.compile(rb"%s*(%s)%s*" % (_WSP, _SPEC, _WSP))
_NAMED_SPEC = re.compile(rb"([^<>()\",;:@\\\[\]]*)<(%s)>%s*" % (_SPEC, _WSP))
_NEEDS_PARSER = re.compile(rb'[()";:\\\[\]]')


def _simple_addresses(value: bytes) -> bytes | None:
    """`format_addresses(parse_addresses(value))` for the common lists made only of
    ``a@b`` and ``Name <a@b>`` (no comments, quotes, groups or routes), without the
    tokenizer; None for anything else."""
    if _NEEDS_PARSER.search(value):
        return None
    out: list[bytes] = []
    for piece in value.split(b","):
        m = _BARE_SPEC.fullmatch(piece)
        if m is not None:
            out.append(b"<" + m.group(1) + b">")
            continue
        m = _NAMED_SPEC.fullmatch(piece)
        if m is None:
            return None
        name = b" ".join(w for w in re.split(_WSP + b"+", m.group(1)) if w)
        out.append((name + b" <" if name else b"<") + m.group(2) + b">")
    return b", ".join(out)


def address_search_text(value: bytes) -> bytes:
    """An address-list value (unfolded) in `format_addresses`'s normal form."""
    simple = _simple_addresses(value)
    return simple if simple is not None else format_addresses(parse_addresses(value))


def _search_text(lname: bytes, raw: bytes) -> str:
    """One field's SEARCH text, casefolded. FROM/TO/CC/BCC: the address list parsed and
    written back by `format_addresses`, then RFC 2047 decoded, so that a needle is found in
    the display name or in the whole address however the header spelled it (comments,
    folding, quoting, groups), as Dovecot matches them. Other fields: `header_values`'s
    text."""
    if lname in ADDRESS_FIELDS:
        value = address_search_text(field_value(raw))
        return decode_words(value).strip().casefold()
    return _value_text(raw).casefold()


def search_texts(header: bytes, name: str) -> list[str]:
    """What SEARCH compares a needle with in each occurrence of the field ``name``
    (case-insensitive), casefolded, in order (see `_search_text`)."""
    want = name.lower().encode("latin-1", "replace")
    return [_search_text(want, raw) for fname, raw in split_fields(header)
            if fname.lower() == want]


def search_values(header: bytes) -> tuple[str, ...]:
    """For each of SEARCH_FIELDS, its `search_texts` joined with LF: what SEARCH
    FROM/TO/CC/BCC/SUBJECT compares a needle with, worked out once when the message is
    stored. A needle without LF is in the joined text exactly when it is in one of the
    values. "" when the field is absent."""
    found: dict[bytes, list[str]] = {}
    for fname, raw in split_fields(header):
        lname = fname.lower()
        if lname in _SEARCH_NAMES:
            found.setdefault(lname, []).append(_search_text(lname, raw))
    return tuple("\n".join(found.get(name, ())) for name in _SEARCH_NAMES)


def decoded_headers(header: bytes) -> str:
    """Every header field as ``"Name: value\\n"``, unfolded and RFC 2047 decoded."""
    lines = []
    for name, raw in split_fields(header):
        lines.append(f"{_raw_text(name)}: {decode_words(field_value(raw)).strip()}\n")
    return "".join(lines)


_SCRIPT_STYLE = re.compile(rb"<(script|style)\b.*?</\1\s*>", re.DOTALL | re.IGNORECASE)
_COMMENT = re.compile(rb"<!--.*?-->", re.DOTALL)
_TAG = re.compile(rb"<[^>]*>")


def html_to_text(data: bytes) -> bytes:
    """Crude HTML to text: drop comments, scripts, styles and tags (entities are
    unescaped after charset decoding, by the caller)."""
    data = _COMMENT.sub(b" ", data)
    data = _SCRIPT_STYLE.sub(b" ", data)
    return _TAG.sub(b" ", data)


def part_text(data: bytes | mmap.mmap, part: Part, max_bytes: int | None = None) -> str:
    """The decoded text of one text/* leaf: transfer-decoded, charset-decoded, HTML
    stripped. Only the first ``max_bytes`` of the encoded body are read when given."""
    end = part.end if max_bytes is None else min(part.end, part.body_start + max_bytes)
    raw = bytes(data[part.body_start : end])
    try:
        raw = decode_transfer(raw, part.encoding)
    except ValueError:
        pass  # unknown encoding: search the raw text
    is_html = part.csubtype == "html"
    if is_html:
        raw = html_to_text(raw)
    text = charset_decode(raw, part.charset)
    if is_html:
        text = html.unescape(text)
    return text


def _text_leaves(root: Part) -> list[Part]:
    leaves: list[Part] = []
    stack = [root]
    while stack:
        part = stack.pop()
        if part.children:
            stack.extend(reversed(part.children))
        elif part.ctype == "text":
            leaves.append(part)
    return leaves


def body_text(data: bytes | mmap.mmap, root: Part, limit: int = 8 * 1024 * 1024) -> str:
    """The text of all text/* leaf parts (including inside attached messages), in order,
    joined by newlines, at most ``limit`` characters: what IMAP SEARCH BODY/TEXT look at."""
    out: list[str] = []
    used = 0
    for part in _text_leaves(root):
        if used >= limit:
            break
        # a character takes at most 4 bytes in UTF-8, 4/3 as many in base64: read enough
        text = part_text(data, part, max_bytes=(limit - used) * 4 + 8)
        out.append(text[: limit - used])
        used += len(out[-1]) + 1
    return "\n".join(out)[:limit]


#: A message whose text/* parts hold more than this many encoded bytes is not put in the
#: search index (SEARCH reads it as before): the index's writes happen while the store's
#: write lock is held, and they cost about 0.15 µs per character.
INDEX_MAX_TEXT_BYTES = 256 * 1024


def index_too_big(root: Part) -> bool:
    """Whether the text/* parts hold more than INDEX_MAX_TEXT_BYTES encoded bytes."""
    return sum(p.end - p.body_start for p in _text_leaves(root)) > INDEX_MAX_TEXT_BYTES


def index_texts(data: bytes | mmap.mmap, root: Part, header: bytes) -> tuple[str, str] | None:
    """(every header decoded, the body text), each casefolded: exactly what SEARCH TEXT
    compares a casefolded needle with (BODY only the second). None when the text parts are
    bigger than INDEX_MAX_TEXT_BYTES. Decoding never yields more characters than it reads
    bytes (plus one newline per part), so the limit bounds the text too."""
    if index_too_big(root):
        return None
    return decoded_headers(header).casefold(), body_text(data, root).casefold()


PREVIEW_CHARS = 200
_PREVIEW_READ = 64 * 1024


def _preview_part(root: Part) -> Part | None:
    """The part a preview is made of: the first text/plain (else text/html) leaf met in
    depth-first order, not looking into attached messages; inside multipart/alternative a
    text/plain alternative is preferred."""
    if root.is_message:
        return None
    if root.is_multipart:
        candidates = [p for p in (_preview_part(c) for c in root.children) if p is not None]
        if root.csubtype == "alternative":
            for p in candidates:
                if p.csubtype == "plain":
                    return p
        return candidates[0] if candidates else None
    if root.ctype == "text" and root.csubtype in ("plain", "html"):
        return root
    return None


def preview_text(data: bytes | mmap.mmap, root: Part, attachments: frozenset[int]) -> str:
    """RFC 8970 §3 preview: up to 200 characters of the first text part, whitespace
    collapsed; "" when there is none. ``attachments`` holds the ``header_start`` of parts
    with ``Content-Disposition: attachment`` (they are never the preview)."""
    part = _preview_part(_without(root, attachments))
    if part is None:
        return ""
    text = part_text(data, part, max_bytes=_PREVIEW_READ)
    return collapse_prefix(text, PREVIEW_CHARS)


def collapse_prefix(text: str, chars: int) -> str:
    """Whitespace runs collapsed to one space, stripped, cut to ``chars`` characters and
    stripped again, worked out on a growing prefix of ``text`` rather than all of it (up to
    64 KiB of text for 200 characters). Collapsing a prefix gives a prefix of the collapsed
    whole, so once a prefix yields more than ``chars`` characters the answer is in it.
    ``str.split()`` splits at exactly the characters the regex ``\\s`` matches (both use
    Unicode's white space), at a fraction of a substitution's cost."""
    k = max(4 * chars, 64)
    while k < len(text):
        head = " ".join(text[:k].split())
        if len(head) > chars:
            return head[:chars].rstrip()
        k *= 8
    return " ".join(text.split())[:chars].rstrip()


def _without(root: Part, skip: frozenset[int]) -> Part:
    if not skip or not root.children:
        return root
    kids = tuple(_without(c, skip) for c in root.children if c.header_start not in skip)
    return Part(
        root.header_start,
        root.body_start,
        root.end,
        root.ctype,
        root.csubtype,
        root.encoding,
        root.charset,
        kids if kids or not root.is_multipart else (),
    )
