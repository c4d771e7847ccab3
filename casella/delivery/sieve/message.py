"""What a Sieve script sees of a message: its header fields decoded, its addresses, its body
parts, its size, and the envelope of one recipient.

Lives here: `MessageView` (built once per message from its bytes and shared by every recipient's
script) and `Envelope` (one recipient's envelope). Header values are unfolded and their RFC 2047
encoded words decoded (RFC 5228 §2.7.2); body parts are decoded from their transfer encoding and
charset for the body test (RFC 5173 §5), looking at no more than `max_body` bytes. Must never:
do I/O or raise on a malformed message (what cannot be decoded is read as well as it can be).
"""

from __future__ import annotations

import email.parser
import email.policy
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses

from casella.mail.headers import split_fields

_MAX_PARTS = 100


def _decode(raw: str) -> str:
    """Unfold and decode RFC 2047 words; undecodable text stays as it was."""
    value = raw.replace("\r\n", "").replace("\n", "").strip()
    if "=?" not in value:
        return value
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError, UnicodeError):
        return value


@dataclass(frozen=True, slots=True)
class Envelope:
    """RFC 5228 §5.4: the envelope of one delivery."""

    sender: str          # "" for the null reverse path
    recipient: str       # the address as the client gave it (with any +detail)


class MessageView:
    def __init__(self, data: bytes, max_body: int = 1 << 20) -> None:
        head_end = data.find(b"\r\n\r\n")
        sep = 4
        if head_end < 0:
            head_end, sep = data.find(b"\n\n"), 2
        if head_end < 0:
            head_end, sep = len(data), 0
        self.size = len(data)
        self._header = data[:head_end + 2] if sep else data
        self._body = data[head_end + sep:head_end + sep + max_body] if sep else b""
        self._data = data[:head_end + sep + max_body]
        self.fields: list[tuple[str, str]] = []
        for name, raw in split_fields(self._header):
            value = raw.split(b":", 1)[1] if b":" in raw else b""
            self.fields.append((name.decode("ascii", "replace").lower(),
                                _decode(value.decode("utf-8", "replace"))))
        self._parts: list[tuple[str, str]] | None = None

    def header(self, name: str) -> list[str]:
        """Every value of the named field, in message order."""
        lname = name.lower()
        return [v for n, v in self.fields if n == lname]

    def addresses(self, name: str) -> list[list[str]]:
        """The addresses of each occurrence of an address field (groups flattened)."""
        out = []
        for value in self.header(name):
            out.append([addr for _, addr in getaddresses([value]) if addr or value.strip()])
        return out

    @property
    def raw_body(self) -> str:
        return self._body.decode("utf-8", "replace")

    def parts(self) -> list[tuple[str, str]]:
        """(content type, decoded text) of each leaf part, in order."""
        if self._parts is None:
            msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(self._data)
            self._parts = []
            for part in msg.walk():
                if part.is_multipart():
                    continue
                if len(self._parts) >= _MAX_PARTS:
                    break
                self._parts.append((part.get_content_type().lower(), _part_text(part)))
        return self._parts


def _part_text(part: Message) -> str:
    try:
        payload = part.get_payload(decode=True)
    except (ValueError, AssertionError):
        payload = None
    if not isinstance(payload, bytes):
        raw = part.get_payload()
        return raw if isinstance(raw, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, "replace")
    except LookupError:
        return payload.decode("utf-8", "replace")
