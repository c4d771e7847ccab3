"""Low-level RFC 5322 / RFC 2045 header handling shared by the MIME layer.

What lives here: finding where a header block ends, splitting a header block into fields
(with their folded continuation lines), unfolding values, a small lexer for structured
fields (RFC 5322 §3.2), and Content-Type / Content-Disposition parameter parsing including
RFC 2231 continuations and charsets.

This module is pure: it must never import asyncio, sockets, config or the store, and it must
never raise on malformed input. Every loop here is bounded by the size of the header text it
was given; callers cap that size (see ``MAX_HEADER_PARSE`` in ``mime.py``).
"""

from __future__ import annotations

import base64
import mmap
import re

__all__ = [
    "Buffer",
    "charset_decode",
    "content_type_params",
    "encode_word",
    "field_value",
    "header_end",
    "parse_content_type",
    "parse_disposition",
    "parse_params",
    "skip_comment",
    "split_fields",
    "strip_comments",
    "unquote",
]


#: What the parser reads: stored messages are ``bytes`` or, when big, an ``mmap``. Both have
#: ``find``, byte slicing and ``len``; ``mmap`` has no ``count``.
Buffer = bytes | mmap.mmap


def header_end(data: Buffer, start: int, end: int) -> int:
    """Return the offset where the body of the entity starting at ``start`` begins.

    The header ends at the first empty line (RFC 5322 §2.1); both CRLF and bare LF line ends
    are accepted. The returned offset is just past that empty line. When there is no empty
    line at all, the whole range is header and the body is empty (Dovecot does the same), so
    ``end`` is returned.
    """
    first = data[start : min(start + 2, end)]
    if first == b"\r\n":
        return start + 2
    if first[:1] == b"\n":
        return start + 1
    lf = data.find(b"\n\n", start, end)
    crlf = data.find(b"\n\r\n", start, lf + 2 if lf >= 0 else end)
    if crlf >= 0 and (lf < 0 or crlf < lf):
        return crlf + 3
    if lf >= 0:
        return lf + 2
    return end


def split_fields(block: bytes) -> list[tuple[bytes, bytes]]:
    """Split a header block into ``(name, raw)`` pairs, in order.

    ``raw`` is the whole field as stored: first line, folded continuation lines, line ends.
    Splitting stops at the first empty line. A line without a colon becomes a field whose
    name is the whole line (it matches nothing useful); continuation lines before the first
    field are ignored.
    """
    fields: list[tuple[bytes, bytes]] = []
    name: bytes | None = None
    raw: list[bytes] = []
    lines = block.split(b"\n")
    last = len(lines) - 1
    for i, line in enumerate(lines):
        if i == last:
            if not line:
                break
            full = line
        else:
            full = line + b"\n"
        if line == b"" or line == b"\r":
            break  # RFC 5322 §2.1: the empty line ends the header section
        if line[:1] in (b" ", b"\t"):
            # RFC 5322 §2.2.3: a line starting with WSP continues the previous field
            if name is not None:
                raw.append(full)
            continue
        if name is not None:
            fields.append((name, b"".join(raw)))
        colon = line.find(b":")
        name = (line[:colon] if colon >= 0 else line).strip(b" \t\r")
        raw = [full]
    if name is not None:
        fields.append((name, b"".join(raw)))
    return fields


def field_value(raw: bytes) -> bytes:
    """The unfolded value of a raw field: text after the colon, line ends removed (RFC 5322
    §2.2.3: unfolding removes CRLF only, the WSP that follows stays), leading WSP dropped."""
    colon = raw.find(b":")
    if colon < 0:
        return b""
    value = raw[colon + 1 :].replace(b"\r\n", b"").replace(b"\n", b"")
    return value.lstrip(b" \t")


_COMMENT_CHARS = re.compile(rb"[()\\]")


def skip_comment(value: bytes, pos: int) -> int:
    """``value[pos-1]`` is ``(``: return the offset just past the matching ``)`` (RFC 5322
    §3.2.2 comments nest and may contain quoted-pairs), or ``len(value)`` if unterminated."""
    depth = 1
    n = len(value)
    while depth and pos < n:
        m = _COMMENT_CHARS.search(value, pos)
        if m is None:
            return n
        c = m.group()
        pos = m.end()
        if c == b"\\":
            pos += 1
        elif c == b"(":
            depth += 1
        else:
            depth -= 1
    return min(pos, n)


_QUOTED_OR_COMMENT = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\Z)|\(', re.DOTALL)


def strip_comments(value: bytes) -> bytes:
    """Remove RFC 5322 comments (outside quoted strings) and surrounding whitespace."""
    if b"(" not in value:
        return value.strip(b" \t\r\n")
    out: list[bytes] = []
    pos = 0
    while True:
        m = _QUOTED_OR_COMMENT.search(value, pos)
        if m is None:
            out.append(value[pos:])
            break
        if m.group() == b"(":
            out.append(value[pos : m.start()] + b" ")
            pos = skip_comment(value, m.end())
        else:
            out.append(value[pos : m.end()])
            pos = m.end()
    return b"".join(out).strip(b" \t\r\n")


def unquote(value: bytes) -> bytes:
    """Content of a quoted string (with or without its closing quote), quoted-pairs undone."""
    inner = value[1:]
    if inner.endswith(b'"') and not _ends_in_escape(inner[:-1]):
        inner = inner[:-1]
    return re.sub(rb"\\(.)", rb"\1", inner, flags=re.DOTALL)


def _ends_in_escape(s: bytes) -> bool:
    return (len(s) - len(s.rstrip(b"\\"))) % 2 == 1


# A segment of a parameter list: a quoted string, a run of other bytes, or a separator.
_PARAM_SEGMENTS = re.compile(rb'"(?:[^"\\]|\\.)*(?:"|\Z)|[^";]+|;', re.DOTALL)
#: Parameters beyond this many in one Content-Type/Content-Disposition field are ignored.
MAX_PARAMS = 256
_TOKEN = re.compile(rb"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")


def _split_semicolons(value: bytes) -> list[bytes]:
    """Split on ``;`` outside quoted strings (comments are not special here: a ``;`` inside a
    comment in a parameter list is vanishingly rare and splitting there is harmless)."""
    parts: list[bytes] = []
    cur: list[bytes] = []
    for m in _PARAM_SEGMENTS.finditer(value):
        seg = m.group()
        if seg == b";":
            parts.append(b"".join(cur))
            cur = []
        else:
            cur.append(seg)
    parts.append(b"".join(cur))
    return parts


def parse_params(segments: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Parse ``attribute=value`` segments (RFC 2045 §5.1) leniently and merge RFC 2231
    continuations and charset/language-tagged values.

    Leniency: a value is a quoted string, or else everything up to the next ``;`` with
    comments and surrounding whitespace removed, so the common broken forms
    ``boundary=----=_Part_1`` and ``name=my file.pdf`` keep their whole value. Segments
    without ``=`` or with a name that is not a token are skipped; only the first
    ``MAX_PARAMS`` segments are read (PROMISES P1).

    RFC 2231 (§3 continuations, §4 charset and language): ``name*0*=utf-8''%E2%82%AC`` and
    ``name*1=...`` become one parameter ``name`` whose value is decoded to Unicode; if that
    value is pure ASCII it is returned as is, else as one RFC 2047 encoded-word in UTF-8
    (``=?utf-8?b?...?=``), which IMAP4rev1 clients decode in parameter values. Dovecot
    instead passes ``name*`` through still percent-encoded; we decode, so clients that do
    not implement RFC 2231 still show the right file name. A plain ``name`` and an RFC 2231
    ``name*`` for the same parameter: the RFC 2231 one wins, at the plain one's position.
    """
    plain: list[tuple[bytes, bytes]] = []
    # base name (lower) -> {index: (extended, raw value)}, plus the name as sent
    ext: dict[bytes, dict[int, tuple[bool, bytes]]] = {}
    ext_name: dict[bytes, bytes] = {}
    order: dict[bytes, None] = {}  # lower names in first-seen order
    for seg in segments[:MAX_PARAMS]:
        eq = seg.find(b"=")
        if eq < 0:
            continue
        name = strip_comments(seg[:eq])
        if not name or not _TOKEN.fullmatch(name):
            continue
        raw = seg[eq + 1 :].lstrip(b" \t\r\n")
        if raw.startswith(b'"'):
            m = re.match(rb'"(?:[^"\\]|\\.)*(?:"|\Z)', raw, re.DOTALL)
            value = unquote(m.group() if m else raw)
        else:
            value = strip_comments(raw)
        star = name.find(b"*")
        if star > 0:
            base, rest = name[:star], name[star + 1 :]
            idx: int | None
            if rest == b"":
                idx, extended = 0, True
            elif rest.isdigit() and len(rest) <= 3:
                idx, extended = int(rest), False
            elif rest.endswith(b"*") and rest[:-1].isdigit() and len(rest) <= 4:
                idx, extended = int(rest[:-1]), True
            else:
                idx, extended = None, False
            if idx is not None:
                key = base.lower()
                if key not in ext:
                    ext[key] = {}
                    ext_name[key] = base
                    order.setdefault(key)
                ext[key].setdefault(idx, (extended, value))
                continue
        key = name.lower()
        order.setdefault(key)
        plain.append((name, value))
    out: list[tuple[bytes, bytes]] = []
    seen_plain: set[bytes] = set()
    plain_by_key: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for name, value in plain:
        plain_by_key.setdefault(name.lower(), []).append((name, value))
    for key in order:
        if key in ext:
            out.append((ext_name[key], _rfc2231_value(ext[key])))
        elif key not in seen_plain:
            out.extend(plain_by_key.get(key, []))
        seen_plain.add(key)
    return out


def _rfc2231_value(segments: dict[int, tuple[bool, bytes]]) -> bytes:
    """RFC 2231 §3-4: join continuations in index order (stopping at the first gap) and
    decode the charset-tagged ones."""
    charset = ""
    chunks: list[bytes] = []
    i = 0
    while i in segments:
        extended, value = segments[i]
        if extended:
            if i == 0:
                parts = value.split(b"'", 2)
                if len(parts) == 3:
                    charset = parts[0].decode("ascii", "replace")
                    value = parts[2]
            value = _percent_decode(value)
        chunks.append(value)
        i += 1
    data = b"".join(chunks)
    if not charset:
        return data  # continuations only: a plain value split across lines
    text = charset_decode(data, charset)
    return encode_word(text)


_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")


def _percent_decode(value: bytes) -> bytes:
    return _PCT.sub(lambda m: bytes([int(m.group(1), 16)]), value)


def encode_word(text: str) -> bytes:
    """Printable ASCII text as bytes; anything else as one RFC 2047 ``=?utf-8?b?...?=``."""
    if text.isascii() and text.isprintable():
        return text.encode("ascii")
    return b"=?utf-8?b?" + base64.b64encode(text.encode("utf-8", "replace")) + b"?="


_BAD_CODECS = frozenset({"", "us-ascii", "ascii", "unknown-8bit", "x-unknown", "default"})


def charset_decode(data: bytes, charset: str | None) -> str:
    """Decode ``data`` in ``charset`` without ever raising.

    US-ASCII and unknown/absent charsets are tried as UTF-8 first (mail that lies about its
    charset is common), then Windows-1252-compatible Latin-1. Codecs that are not text
    encodings (``base64``, ``zlib``, ...) are refused by Python and fall back the same way.
    """
    cs = (charset or "").strip().strip('"').lower()
    if cs not in _BAD_CODECS:
        try:
            return data.decode(cs, "replace")
        except Exception:  # noqa: BLE001 - LookupError, a non-text codec, a codec bug: fall back
            cs = ""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_content_type(value: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]] | None:
    """Parse a Content-Type value (RFC 2045 §5.1) into (type, subtype, params).

    Type and subtype are returned as sent (Dovecot does the same). Returns ``None`` when the
    type/subtype is unusable (no ``/``, empty or non-token parts); the caller then applies
    the RFC 2045 §5.2 default. Parameters of an unusable Content-Type are returned anyway
    by ``content_type_params`` so a ``charset`` still helps decoding.
    """
    segments = _split_semicolons(value)
    head = strip_comments(segments[0])
    slash = head.find(b"/")
    if slash <= 0:
        return None
    ctype = head[:slash].strip(b" \t")
    csub = head[slash + 1 :].strip(b" \t")
    if not _TOKEN.fullmatch(ctype) or not _TOKEN.fullmatch(csub):
        return None
    return ctype, csub, parse_params(segments[1:])


def content_type_params(value: bytes) -> list[tuple[bytes, bytes]]:
    """The parameters of a (possibly broken) Content-Type value."""
    return parse_params(_split_semicolons(value)[1:])


def parse_disposition(value: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]] | None:
    """Parse Content-Disposition (RFC 2183 §2) into (type as sent, params), or None."""
    segments = _split_semicolons(value)
    dtype = strip_comments(segments[0])
    if not dtype or not _TOKEN.fullmatch(dtype):
        return None
    return dtype, parse_params(segments[1:])
