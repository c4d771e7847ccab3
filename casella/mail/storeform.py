"""What an APPENDed message is stored as.

What lives here: ``text_form`` for a message sent as an ordinary literal and ``binary_form``
for one sent as a literal8 (RFC 3516 §4.4). Messages are stored with CRLF line ends, and no
stored message holds a NUL, so no FETCH of BODY[...] or RFC822 ever puts one on the wire:

- an ordinary literal cannot carry NUL (RFC 9051 §4.3, ``CHAR8``); one that does anyway has
  each NUL made 0x80, as Dovecot does;
- a literal8 may, and RFC 3516 §4.4 lets the server change a part's Content-Transfer-Encoding
  as long as no data is lost, while §6 wants BODY[...] and BODYSTRUCTURE to show such parts in
  an encoding the base protocol carries. So each leaf part declared ``binary``, or holding NUL
  as ``7bit`` or ``8bit``, is stored base64-encoded with its header saying so; BINARY[part]
  decodes it back to the octets sent. In quoted-printable a NUL is written ``=00`` (the same
  octet once decoded). A part in an encoding casella does not know keeps its name (BINARY
  still answers UNKNOWN-CTE, RFC 3516 §4.3): its NULs are made 0x80 like the rest. A
  container part declared ``binary`` is declared ``8bit`` instead (what is left inside it is
  text).

Everything outside such re-encoded bodies goes through ``text_form``. The work is in memory and
bounded by the message size limit (the caller's). It must never import asyncio, sockets,
config or the store.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator

from casella.mail.mime import LEAF, MimeNode, build_tree

__all__ = ["binary_form", "text_form"]

_CTE = b"content-transfer-encoding"
_IDENTITY = (b"7bit", b"8bit", b"binary")     # RFC 2045 §6.2: no transformation at all


def text_form(data: bytes) -> bytes:
    """Bare LF becomes CRLF (CRLF stays), NUL becomes 0x80."""
    if b"\x00" in data:
        data = data.replace(b"\x00", b"\x80")
    if b"\n" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    return data


def _entities(node: MimeNode) -> Iterator[MimeNode]:
    """Every entity in document order (iterative: the tree may be MAX_DEPTH deep)."""
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        stack.extend(reversed(n.children))


def _base64(body: bytes) -> bytes:
    """RFC 2045 §6.8: lines of 76 characters with CRLF between them; the line end before the
    next boundary belongs to the boundary (RFC 2046 §5.1.1), so there is none at the end."""
    lines = [binascii.b2a_base64(body[i:i + 57], newline=False)
             for i in range(0, len(body), 57)]
    return b"\r\n".join(lines)


def _with_encoding(header: bytes, value: bytes) -> bytes:
    """The header block with its Content-Transfer-Encoding fields, folded lines included,
    replaced by one saying `value`, then the empty line (added when the block had none)."""
    pieces = header.split(b"\n")
    lines = [p + b"\n" for p in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1] + b"\r\n")      # a header at the very end of the message
    blank = lines.pop() if lines and lines[-1] in (b"\n", b"\r\n") else b"\r\n"
    kept: list[bytes] = []
    dropping = False
    for line in lines:
        if line[:1] in (b" ", b"\t"):           # RFC 5322 §2.2.3: continues the field
            if not dropping:
                kept.append(line)
            continue
        dropping = line.split(b":", 1)[0].strip().lower() == _CTE
        if not dropping:
            kept.append(line)
    kept.append(b"Content-Transfer-Encoding: " + value + b"\r\n")
    kept.append(blank)
    return b"".join(kept)


def binary_form(data: bytes) -> bytes:
    """The message as stored when it came as a literal8 (see the module docstring)."""
    if not data:
        return data
    out: list[bytes] = []
    pos = 0
    for node in _entities(build_tree(data)):
        encoding = node.encoding.strip().lower()
        if node.kind != LEAF:
            if encoding == b"binary":
                out.append(text_form(data[pos:node.header_start]))
                out.append(text_form(_with_encoding(data[node.header_start:node.body_start],
                                                    b"8bit")))
                pos = node.body_start
            continue
        body = data[node.body_start:node.end]
        if not body and encoding != b"binary":
            continue
        if encoding == b"quoted-printable":
            if b"\x00" in body:
                # =00 is the NUL octet in quoted-printable (RFC 2045 §6.7 rule 1).
                out.append(text_form(data[pos:node.body_start]))
                out.append(text_form(body.replace(b"\x00", b"=00")))
                pos = node.end
            continue
        if encoding not in _IDENTITY or (encoding != b"binary" and b"\x00" not in body):
            # (base64 ignores a NUL, RFC 2045 §6.8: text_form's 0x80 is as good)
            continue
        out.append(text_form(data[pos:node.header_start]))
        out.append(text_form(_with_encoding(data[node.header_start:node.body_start],
                                            b"base64")))
        out.append(_base64(body))
        pos = node.end
    out.append(text_form(data[pos:]))
    return b"".join(out)
