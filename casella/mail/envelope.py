"""IMAP renderers for the MIME tree: ENVELOPE, BODYSTRUCTURE and BODY.

What lives here: turning ``mime.MimeNode`` trees into the exact IMAP syntax of RFC 3501
§7.4.2 (= RFC 9051 §7.5.2), once at delivery; the bytes are stored and FETCH copies them.

String rule (PROMISES P3): NIL for absent; a quoted string when every byte is printable
ASCII (0x20-0x7E), with ``\\`` and ``"`` escaped; otherwise a literal ``{n}\\r\\n`` + bytes.
CR, LF and NUL are dropped from every value first, so the only CR/LF in the output are the
ones that introduce literals.

It must never import asyncio, sockets, config or the store, and must never raise.
"""

from __future__ import annotations

import re

from casella.mail.address import Address, parse_addresses
from casella.mail.headers import parse_disposition, strip_comments
from casella.mail.mime import MESSAGE, MULTIPART, MimeNode

__all__ = ["astring_list", "nstring", "render_addresses", "render_body", "render_envelope"]

_NOT_PRINTABLE = re.compile(rb"[^\x20-\x7e]")
_DROP = b"\r\n\x00"

# Dovecot's rendering of a multipart that has no parts (no boundary parameter, or no
# delimiter found): one empty text/plain part. A multipart needs at least one body
# (RFC 3501 §9 body-type-mpart = 1*body), so this keeps the syntax valid.
_EMPTY_BODY = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0'
_EMPTY_EXT = b" NIL NIL NIL NIL"


def nstring(value: bytes | None) -> bytes:
    """Render an IMAP nstring following the string rule in the module docstring."""
    if value is None:
        return b"NIL"
    value = value.translate(None, _DROP)
    if _NOT_PRINTABLE.search(value) is None:
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(value) + value


def _address_list(value: bytes | None) -> list[Address]:
    return parse_addresses(value) if value is not None else []


def render_addresses(addrs: list[Address]) -> bytes:
    if not addrs:
        return b"NIL"
    return b"(" + b"".join(b"(" + b" ".join(nstring(x) for x in a) + b")" for a in addrs) + b")"


def render_envelope(fields: dict[bytes, bytes]) -> bytes:
    """RFC 3501 §7.4.2 ENVELOPE: date, subject, from, sender, reply-to, to, cc, bcc,
    in-reply-to, message-id. ``fields`` maps lower-case names to unfolded raw values (first
    occurrence; Dovecot uses the last one, but RFC 5322 §3.6 allows one and the first is
    what most parsers read). Sender and reply-to default to from when absent or empty
    (RFC 3501 §7.4.2)."""
    from_ = _address_list(fields.get(b"from"))
    sender = _address_list(fields.get(b"sender")) or from_
    reply_to = _address_list(fields.get(b"reply-to")) or from_
    items = [
        nstring(fields.get(b"date")),
        nstring(fields.get(b"subject")),
        render_addresses(from_),
        render_addresses(sender),
        render_addresses(reply_to),
        render_addresses(_address_list(fields.get(b"to"))),
        render_addresses(_address_list(fields.get(b"cc"))),
        render_addresses(_address_list(fields.get(b"bcc"))),
        nstring(fields.get(b"in-reply-to")),
        nstring(fields.get(b"message-id")),
    ]
    return b"(" + b" ".join(items) + b")"


def _params(params: list[tuple[bytes, bytes]]) -> bytes:
    if not params:
        return b"NIL"
    return b"(" + b" ".join(nstring(k) + b" " + nstring(v) for k, v in params) + b")"


def _content_params(node: MimeNode) -> bytes:
    params = node.params
    if node.is_text and node.kind not in (MULTIPART, MESSAGE) and node.param(b"charset") is None:
        # RFC 2045 §5.2 default charset, appended like Dovecot does
        params = [*params, (b"charset", b"us-ascii")]
    return _params(params)


def _disposition(node: MimeNode) -> bytes:
    raw = node.fields.get(b"content-disposition")
    parsed = parse_disposition(raw) if raw is not None else None
    if parsed is None:
        return b"NIL"
    dtype, params = parsed
    return b"(" + nstring(dtype) + b" " + _params(params) + b")"


def astring_list(values: list[bytes]) -> bytes:
    """A parenthesised list of strings, or NIL when empty."""
    if not values:
        return b"NIL"
    return b"(" + b" ".join(nstring(v) for v in values) + b")"


def _language(node: MimeNode) -> bytes:
    """RFC 3066 tags from Content-Language (RFC 3282), always as a list like Dovecot."""
    raw = node.fields.get(b"content-language")
    if raw is None:
        return b"NIL"
    tags = [t.strip(b" \t") for t in strip_comments(raw).split(b",")]
    return astring_list([t for t in tags if t])


def _location(node: MimeNode) -> bytes:
    raw = node.fields.get(b"content-location")
    return nstring(raw.strip(b" \t") if raw is not None else None)


def _optional(node: MimeNode, name: bytes) -> bytes:
    return nstring(node.fields.get(name))


def render_body(node: MimeNode, extensible: bool) -> bytes:
    """RFC 3501 §7.4.2 BODYSTRUCTURE (``extensible``) or BODY of ``node``.

    Recursion depth is bounded by ``mime.MAX_DEPTH``.
    """
    if node.kind == MULTIPART:
        if node.children:
            kids = b"".join(render_body(c, extensible) for c in node.children)
        else:
            kids = _EMPTY_BODY + (_EMPTY_EXT if extensible else b"") + b")"
        out = [kids, nstring(node.csubtype)]
        if extensible:
            out += [_params(node.params), _disposition(node), _language(node), _location(node)]
        return b"(" + b" ".join(out) + b")"
    out = [
        nstring(node.ctype),
        nstring(node.csubtype),
        _content_params(node),
        _optional(node, b"content-id"),
        _optional(node, b"content-description"),
        nstring(node.encoding),
        b"%d" % (node.end - node.body_start),
    ]
    if node.kind == MESSAGE:
        child = node.children[0]
        out += [render_envelope(child.fields), render_body(child, extensible), b"%d" % node.lines]
    elif node.is_text:
        out.append(b"%d" % node.lines)
    if extensible:
        out += [
            _optional(node, b"content-md5"),
            _disposition(node),
            _language(node),
            _location(node),
        ]
    return b"(" + b" ".join(out) + b")"
