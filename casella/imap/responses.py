"""IMAP response serializers: typed values in, wire bytes out (RFC 9051 §7, §9).

Lives here: strings (atom / quoted / literal chosen by content), mailbox names in modified UTF-7,
flag lists, dates, status lines with response codes, and the sanitising of human text so it
can never carry CR, LF or bytes a 7-bit client cannot read. Everything is built with bytes joins.
Must never: import asyncio, config or the store.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable

from casella.imap import utf7

CRLF = b"\r\n"
_ATOM_SAFE = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
_QUOTE_SAFE = re.compile(rb"[\x20-\x7e]*")
_TEXT_UNSAFE = re.compile(r"[^\x20-\x7e]")
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct",
           b"Nov", b"Dec")


def literal(value: bytes) -> bytes:
    return b"{%d}\r\n" % len(value) + value


def string(value: bytes) -> bytes:
    """A quoted string when every byte is printable ASCII, else a literal."""
    if _QUOTE_SAFE.fullmatch(value):
        return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(value)


def astring(value: bytes) -> bytes:
    """An atom when possible (and not NIL, which would read as nil), else a string."""
    if value and _ATOM_SAFE.fullmatch(value) and value.upper() != b"NIL":
        return value
    return string(value)


def nstring(value: bytes | None) -> bytes:
    return b"NIL" if value is None else string(value)


def mailbox(name: str) -> bytes:
    """A Unicode mailbox name on the wire: modified UTF-7 (RFC 3501 §5.1.3)."""
    return astring(utf7.encode(name).encode("ascii"))


def flag_list(flags: Iterable[str]) -> bytes:
    return b"(" + " ".join(flags).encode("ascii", "replace") + b")"


def internaldate(epoch: int) -> bytes:
    """`"17-Jul-1996 02:44:25 +0000"`: casella keeps INTERNALDATE in UTC."""
    t = time.gmtime(epoch)
    return b'"%02d-%s-%04d %02d:%02d:%02d +0000"' % (t.tm_mday, _MONTHS[t.tm_mon - 1],
                                                     t.tm_year, t.tm_hour, t.tm_min, t.tm_sec)


def text(sentence: str) -> bytes:
    """Human text for a status line: printable ASCII only (RFC 3501 `text`)."""
    return _TEXT_UNSAFE.sub("?", sentence).encode("ascii")


def status(tag: str, kind: str, sentence: str, code: str | None = None) -> bytes:
    """`tag OK [CODE] text` (tag "*" for untagged)."""
    head = f"{tag} {kind} "
    if code:
        head += f"[{code}] "
    return head.encode("ascii", "replace") + text(sentence or kind) + CRLF


def untagged(*parts: bytes) -> bytes:
    return b"* " + b" ".join(parts) + CRLF


def continuation(sentence: bytes = b"OK") -> bytes:
    return b"+ " + sentence + CRLF
