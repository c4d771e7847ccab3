"""IMAP URLs (RFC 5092) naming a message or a part of one, as CATENATE takes them (RFC 4469 §3).

Lives here: `parse_message_url`, bytes in, a `MessageUrl` or a `UrlError` out. RFC 4469 §3
only describes URLs relative to the current session, so two forms are accepted:

- an absolute path naming a mailbox of the logged-in user:
  `/INBOX;UIDVALIDITY=385759045/;UID=20/;SECTION=1.MIME/;PARTIAL=0.1024`;
- a path relative to the selected mailbox: `;UID=20/;SECTION=HEADER` (RFC 4469 §3: in the
  selected state the base URL names the selected mailbox).

`;UID=` is required (a URL must name one message, RFC 5092 §11 `imessagepart`); `;SECTION=`
(percent-decoded, then the FETCH section grammar, RFC 5092 §6) and `;PARTIAL=offset[.length]`
are optional, in that order. A scheme or server (`imap://...`, `//host/...`), a mailbox
relative to something else, URLAUTH (RFC 4467: not offered) and anything else are UrlError:
the handler answers NO [BADURL]. Mailbox names are UTF-8, percent-encoded (RFC 5092 §11
`enc-mailbox`; RFC 3986 §2.1).

Must never: import asyncio, socket, config or the store; raise anything but UrlError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from casella.imap import commands as c
from casella.imap.lexer import ParseError
from casella.imap.parse_fetch import parse_section

__all__ = ["MAX_URL", "MessageUrl", "UrlError", "parse_message_url"]

MAX_URL = 4096          # octets in one URL (PROMISES P1)
_NUMBER = re.compile(rb"[0-9]{1,10}\Z")
_URL_CHARS = re.compile(rb"[\x21-\x7e]+\Z")
_PCT = re.compile(rb"%([0-9A-Fa-f]{2})")


class UrlError(ValueError):
    """Not a URL this server can resolve (RFC 4469 §4.1: BADURL)."""


@dataclass(frozen=True, slots=True)
class MessageUrl:
    mailbox: str | None             # None: the selected mailbox
    uidvalidity: int | None
    uid: int
    section: c.Section | None       # None: the whole message
    partial: tuple[int, int | None] | None     # (offset, length or None for the rest)


def _number(raw: bytes, what: str, nonzero: bool) -> int:
    if not _NUMBER.match(raw) or int(raw) > 0xFFFFFFFF or (nonzero and int(raw) == 0):
        raise UrlError(f"invalid {what}")
    return int(raw)


def _unescape(raw: bytes) -> bytes:
    """Percent-decoding (RFC 3986 §2.1); a `%` not followed by two hex digits is an error."""
    if raw.count(b"%") != len(_PCT.findall(raw)):
        raise UrlError("invalid percent-encoding")
    return _PCT.sub(lambda m: bytes([int(m.group(1), 16)]), raw)


def _mailbox(raw: bytes) -> tuple[str, int | None]:
    """`enc-mailbox [";UIDVALIDITY=" nz-number]` (RFC 5092 §11): `;` cannot occur unescaped
    in a mailbox name, so the first one starts the UIDVALIDITY."""
    name_raw, _, rest = raw.partition(b";")
    uidvalidity = None
    if rest:
        key, _, value = rest.partition(b"=")
        if key.upper() != b"UIDVALIDITY":
            raise UrlError("unexpected parameter after the mailbox name")
        uidvalidity = _number(value, "UIDVALIDITY", nonzero=True)
    try:
        name = _unescape(name_raw).decode("utf-8")
    except UnicodeDecodeError:
        raise UrlError("the mailbox name is not UTF-8") from None
    if not name:
        raise UrlError("no mailbox name")
    return name, uidvalidity


def parse_message_url(url: bytes) -> MessageUrl:
    if len(url) > MAX_URL:
        raise UrlError("URL too long")
    if not _URL_CHARS.match(url):
        raise UrlError("a URL is printable ASCII")
    mailbox: str | None = None
    uidvalidity: int | None = None
    if url.startswith(b"/;"):
        raise UrlError("no mailbox name")
    if url.startswith(b"/") and not url.startswith(b"//"):
        ref, sep, params = url[1:].partition(b"/;")
        if not sep:
            raise UrlError("the URL names no message (;UID= is missing)")
        mailbox, uidvalidity = _mailbox(ref)
        params = b";" + params
    elif url.startswith(b";"):
        params = url
    else:
        # RFC 4469 §3: only URLs relative to this session (no scheme, no server).
        raise UrlError("only URLs of a message of this account are accepted")
    uid: int | None = None
    section: c.Section | None = None
    partial: tuple[int, int | None] | None = None
    order = 0
    for component in params[1:].split(b"/;"):
        key, eq, value = component.partition(b"=")
        key = key.upper()
        rank = {b"UID": 1, b"SECTION": 2, b"PARTIAL": 3}.get(key)
        name = key.decode("ascii")[:20]
        if not eq:
            raise UrlError(f"invalid URL parameter {name}")
        if rank is None:
            raise UrlError(f"unsupported URL parameter {name}")
        if rank <= order:
            raise UrlError("URL parameters out of order")
        order = rank
        if key == b"UID":
            uid = _number(value, "UID", nonzero=True)
        elif key == b"SECTION":
            if not value:
                raise UrlError("empty SECTION")
            try:
                section = parse_section(_unescape(value))
            except ParseError:
                raise UrlError("invalid SECTION") from None
        else:
            offset_raw, dot, length_raw = value.partition(b".")
            offset = _number(offset_raw, "PARTIAL", nonzero=False)
            length = _number(length_raw, "PARTIAL", nonzero=True) if dot else None
            partial = (offset, length)
    if uid is None:
        raise UrlError("the URL names no message (;UID= is missing)")
    return MessageUrl(mailbox, uidvalidity, uid, section, partial)
