"""CATENATE (RFC 4469): an APPENDed message built from TEXT literals and from IMAP URLs naming
a message, or a part of one, in the logged-in user's mailboxes (casella.imap.imapurl).

Lives here: `assemble`, which writes the parts in order into one staged blob: a TEXT literal
in its stored form (casella.mail.storeform.text_form, as for any APPEND), a URL's octets
copied unchanged (RFC 4469 §3), a megabyte at a time. A URL is resolved through the store
contract: its mailbox (or the selected one for a relative URL), UIDVALIDITY when given, UID,
then the section and partial range as FETCH BODY.PEEK[section]<partial> would cut them. NO
[BADURL url] when a URL is not one this server resolves or names nothing (§4.1), NO [TOOBIG]
when the message would pass the message size limit (§4.2); quota is the store's APPEND check
on the assembled size. Nothing is published here: APPEND commits every message of the command
in one store call, or none. Must never: touch SQL or files, or set \\Seen on a message a URL
names (RFC 4469 §3).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from casella.imap import commands as c
from casella.imap.errors import No
from casella.imap.imapurl import MessageUrl, UrlError, parse_message_url
from casella.mail.sections import filter_header_fields, load_parts, section_range
from casella.mail.storeform import text_form
from casella.store.blobs import StagedBlob
from casella.store.model import MessageStatic

if TYPE_CHECKING:
    from casella.imap.session import Session

PIECE = 1024 * 1024             # octets copied per read
_MAX_ECHO = 1000                # octets of a bad URL repeated in the BADURL code
_NOT_URL_TEXT = re.compile(rb"[^\x21-\x5c\x5e-\x7e]")   # `]` and what is not printable ASCII


def _badurl(raw: bytes, why: str) -> No:
    """RFC 4469 §4.1: `NO [BADURL url]`; the URL repeated as url-resp-text (no `]`, CR, LF),
    escaped where it is not printable ASCII."""
    echo = _NOT_URL_TEXT.sub(lambda m: b"%%%02X" % m.group()[0], raw[:_MAX_ECHO])
    return No(f"Bad URL: {why}", "BADURL " + echo.decode("ascii"))


async def assemble(s: Session, parts: Sequence[c.CatenatePart]) -> StagedBlob:
    """The message the parts make, staged (the caller publishes or discards it)."""
    limit = s.app.config.limits.max_message_size
    writer = s.store.blobs.writer()
    total = 0
    try:
        for part in parts:
            async for chunk in _octets(s, part):
                total += len(chunk)
                if total > limit:
                    raise No(f"The message would be larger than the limit of {limit} octets",
                             "TOOBIG")
                await writer.write(chunk)
        if total == 0:
            raise No("Cannot store an empty message", "CANNOT")
        return await writer.finish(publish_early=True)
    except BaseException:
        writer.abort()
        raise


async def _octets(s: Session, part: c.CatenatePart) -> AsyncIterator[bytes]:
    if isinstance(part, bytes):
        yield text_form(part)
        return
    if isinstance(part, c.ExternalLiteral):
        # A TEXT literal over 64 KiB, streamed (in its stored form) while it arrived.
        staged = part.handle
        assert isinstance(staged, StagedBlob)
        for offset in range(0, staged.size, PIECE):
            yield await staged.read(offset, PIECE)
        return
    source = await _resolve(s, part.url)
    if isinstance(source, bytes):
        if source:
            yield source
        return
    digest, start, end = source
    for offset in range(start, end, PIECE):
        data = await s.store.read_blob(digest, offset, min(PIECE, end - offset))
        if not data:
            raise No("The message the URL names is shorter than recorded", "SERVERBUG")
        yield data


async def _resolve(s: Session, raw: bytes) -> bytes | tuple[str, int, int]:
    """What a URL names: a small piece (a header, filtered or not) as bytes, anything else as
    (digest, start, end) of a stored message."""
    try:
        url = parse_message_url(raw)
    except UrlError as exc:
        raise _badurl(raw, str(exc)) from None
    if url.mailbox is None:
        view = s.selected
        if view is None:
            raise _badurl(raw, "a relative URL needs a selected mailbox")
        mailbox_id, uidvalidity = view.mailbox_id, view.uidvalidity
    else:
        assert s.account is not None
        mb = await s.store.get_mailbox(s.account.id, url.mailbox)
        if mb is None or not mb.selectable:
            raise _badurl(raw, "no such mailbox")
        mailbox_id, uidvalidity = mb.id, mb.uidvalidity
    if url.uidvalidity is not None and url.uidvalidity != uidvalidity:
        raise _badurl(raw, "the mailbox's UIDVALIDITY is not the URL's")
    found = await s.store.fetch_messages(mailbox_id, [(url.uid, url.uid)], ("header", "parts"))
    if not found or found[0][1] is None:
        raise _badurl(raw, "no message with that UID")
    return await _cut(s, raw, url, found[0][1])


async def _cut(s: Session, raw: bytes, url: MessageUrl,
               static: MessageStatic) -> bytes | tuple[str, int, int]:
    """The section and partial range of the message, as BODY.PEEK[section]<partial> would
    answer them (RFC 5092 §6: ;SECTION= is a FETCH section spec)."""
    sec = url.section or c.Section()
    spec = sec.text or ""
    piece: bytes | None = None
    start, end = 0, static.size
    if not sec.part and spec in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        piece = static.header
    elif sec.part or spec:
        try:
            root = load_parts(static.parts)
        except ValueError:
            raise _badurl(raw, "the message's structure is not known") from None
        rng = section_range(root, sec.part, spec)
        if rng is None:
            raise _badurl(raw, "the message has no such section")
        start, end = rng[0], min(rng[1], static.size)
        if spec.startswith("HEADER.FIELDS"):
            # The header of an embedded message: small, read whole to be filtered.
            piece = await s.store.read_blob(static.digest, start, end - start)
    if piece is not None and spec.startswith("HEADER.FIELDS"):
        piece = filter_header_fields(piece, sec.fields, spec == "HEADER.FIELDS.NOT")
    if url.partial is not None:
        offset, length = url.partial
        if piece is not None:
            piece = piece[offset:] if length is None else piece[offset:offset + length]
        else:
            start = min(start + offset, end)
            end = end if length is None else min(end, start + length)
    return piece if piece is not None else (static.digest, start, end)
