"""Modified UTF-7 for IMAP mailbox names (RFC 3501 §5.1.3, RFC 9051 §5.1.3 / Appendix A).

Lives here: `encode` (Unicode name -> mUTF-7 text) and `decode` (mUTF-7 bytes -> Unicode), which
refuses anything that is not the one canonical encoding of a name, so two spellings can never
reach the same mailbox (PROMISES N2). Must never: import asyncio, config or the store, or
silently repair a name.
"""

from __future__ import annotations

import base64
import binascii
import re


class Utf7Error(ValueError):
    """The bytes are not valid (canonical) modified UTF-7."""


# Printable US-ASCII except "&" stands for itself (RFC 3501 §5.1.3).
_DIRECT = re.compile(r"[\x20-\x25\x27-\x7e]+")
_SHIFTED = re.compile(r"[^\x20-\x7e]+")
# "&" then modified BASE64 ("," instead of "/", no padding) then "-".
_TOKEN = re.compile(rb"&([A-Za-z0-9+,]*)-")


def _b64(units: bytes) -> str:
    return base64.b64encode(units).rstrip(b"=").replace(b"/", b",").decode("ascii")


def encode(name: str) -> str:
    """The mUTF-7 form of a Unicode mailbox name."""
    if _DIRECT.fullmatch(name) and "&" not in name:
        return name
    out: list[str] = []
    pos = 0
    for m in _SHIFTED.finditer(name):
        out.append(name[pos:m.start()].replace("&", "&-"))
        chunk = m.group()
        out.append("&" + _b64(chunk.encode("utf-16-be", "surrogatepass")) + "-")
        pos = m.end()
    out.append(name[pos:].replace("&", "&-"))
    return "".join(out)


def decode(raw: bytes) -> str:
    """The Unicode name for mUTF-7 bytes; Utf7Error unless `raw` is the canonical encoding."""
    if b"&" not in raw:
        if not _all_printable(raw):
            raise Utf7Error("mailbox name has characters that must be encoded")
        return raw.decode("ascii")
    out: list[str] = []
    pos = 0
    while pos < len(raw):
        amp = raw.find(b"&", pos)
        if amp < 0:
            amp = len(raw)
        direct = raw[pos:amp]
        if not _all_printable(direct):
            raise Utf7Error("mailbox name has characters that must be encoded")
        out.append(direct.decode("ascii"))
        if amp == len(raw):
            break
        m = _TOKEN.match(raw, amp)
        if m is None:
            raise Utf7Error("unterminated or invalid modified UTF-7 sequence")
        b64 = m.group(1)
        if not b64:
            out.append("&")
        else:
            out.append(_decode_shifted(b64))
        pos = m.end()
    name = "".join(out)
    # Canonical form only: no encoded printable ASCII, no adjacent shifted runs, no stray bits.
    if encode(name).encode("ascii") != raw:
        raise Utf7Error("mailbox name is not in canonical modified UTF-7")
    return name


def _all_printable(data: bytes) -> bool:
    return not data or data.translate(None, _PRINTABLE) == b""


_PRINTABLE = bytes(range(0x20, 0x7F))


def _decode_shifted(b64: bytes) -> str:
    padded = b64.replace(b",", b"/") + b"=" * (-len(b64) % 4)
    try:
        units = base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise Utf7Error("invalid base64 in modified UTF-7") from None
    if len(units) % 2:
        raise Utf7Error("modified UTF-7 sequence ends inside a character")
    try:
        text = units.decode("utf-16-be")
    except UnicodeDecodeError:
        raise Utf7Error("modified UTF-7 sequence is not valid UTF-16") from None
    return text
