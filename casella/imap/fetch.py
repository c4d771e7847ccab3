"""FETCH and UID FETCH (RFC 9051 §6.4.5, §7.5.2; RFC 3501 §6.4.5, §7.4.2).

Lives here: resolving the message set in batches, one store round trip per batch for metadata
and one for the precomputed static data (ENVELOPE, BODYSTRUCTURE, BODY and the header block are
stored rendered at delivery), implicit \\Seen for BODY[...] / RFC822 / RFC822.TEXT, body
sections cut from the stored message with `casella.mail.sections` offsets, and large sections
streamed in pieces straight to the client. A stored message is never parsed again here.
Must never: touch SQL or files directly, send EXPUNGE (X1), or hold a whole large body in memory.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from casella import errors as ce
from casella.imap import commands as c
from casella.imap import responses as r
from casella.imap import seqset
from casella.imap.errors import Bye, No
from casella.mail.sections import Part, filter_header_fields, load_parts, section_range
from casella.store.model import SEEN, MessageMeta, MessageStatic

if TYPE_CHECKING:
    from casella.imap.selected import SelectedView
    from casella.imap.session import Done, Session

BATCH = 1000                     # messages per store round trip
STREAM_THRESHOLD = 256 * 1024    # sections above this are written in pieces
OUTPUT_CHUNK = 128 * 1024        # responses are written to the connection in runs this big


class _Slice:
    """A byte range of a stored message, read when written."""
    __slots__ = ("digest", "length", "start")

    def __init__(self, digest: str, start: int, length: int) -> None:
        self.digest = digest
        self.start = start
        self.length = length


Piece = bytes | _Slice


async def fetch(s: Session, tag: str, cmd: c.Fetch) -> Done:
    from casella.imap.session import Done

    view = s.selected
    assert view is not None
    uids = view.resolve(cmd.messages, cmd.uid, s.saved_search)
    items = cmd.items
    need_static = any(i.needs_static for i in items)
    sets_seen = not view.readonly and any(i.sets_seen for i in items)
    wants_flags = any(i.name == "FLAGS" for i in items)
    names = tuple(i.name for i in items)
    simple = all(name in _SIMPLE for name in names)
    missing = 0
    for start in range(0, len(uids), BATCH):
        chunk = uids[start:start + BATCH]
        if view.pending_expunge:
            chunk = [u for u in chunk if u not in view.pending_expunge]
        missing += min(BATCH, len(uids) - start) - len(chunk)
        if not chunk:
            continue
        metas = await s.store.fetch_meta(view.mailbox_id, seqset.ranges_of(chunk))
        missing += len(chunk) - len(metas)
        seen_changed: set[int] = set()
        if sets_seen:
            unseen = [m.uid for m in metas if not m.has(SEEN)]
            if unseen:
                res = await s.store.store_flags(view.mailbox_id, seqset.ranges_of(unseen),
                                                "add", [SEEN])
                view.note_own(res.changed)
                updated = {m.uid: m for m in res.changed}
                seen_changed = set(updated)
                metas = [updated.get(m.uid, m) for m in metas]
        statics: dict[int, MessageStatic] = {}
        if need_static:
            statics = await s.store.fetch_static([m.blob_id for m in metas])
        out = bytearray()
        view_uids = view.uids
        n = len(view_uids)
        # Sequence numbers by walking the view beside the ascending UIDs (no search each).
        idx = bisect.bisect_left(view_uids, metas[0].uid) if metas else 0
        for meta in metas:
            while idx < n and view_uids[idx] < meta.uid:
                idx += 1
            if idx >= n or view_uids[idx] != meta.uid:
                continue
            static = statics.get(meta.blob_id)
            add_flags = meta.uid in seen_changed and not wants_flags
            if simple and not add_flags:
                out += b"* %d FETCH (%s)\r\n" % (idx + 1, _simple(view, meta, static, names))
                continue
            pieces = _render(view, meta, static, items, add_flags)
            await _emit(s, out, b"* %d FETCH (" % (idx + 1), pieces)
            if len(out) >= OUTPUT_CHUNK:
                s.write(bytes(out))
                out.clear()
                await s.flush()
        s.write(bytes(out))
        await s.flush()
    if missing and not cmd.uid:
        # RFC 2180 §4.1.3, as Dovecot does: the others were answered.
        raise No("Some of the requested messages no longer exist", "EXPUNGEISSUED")
    return Done("FETCH completed")


async def _emit(s: Session, out: bytearray, head: bytes, pieces: Sequence[Piece]) -> None:
    """Append one FETCH response to `out`; a large section is streamed to the client in
    pieces instead (after what `out` holds so far)."""
    out += head
    for piece in pieces:
        if isinstance(piece, bytes):
            out += piece
            continue
        if isinstance(piece, _HeaderFilter):
            header = await s.store.read_blob(piece.digest, piece.start, piece.length)
            out += _partial_bytes(filter_header_fields(header, piece.fields, piece.exclude),
                                  piece.partial)
            continue
        if piece.length <= STREAM_THRESHOLD:
            out += await s.store.read_blob(piece.digest, piece.start, piece.length)
            continue
        s.write(bytes(out))
        out.clear()
        done = 0
        while done < piece.length:
            n = min(STREAM_THRESHOLD, piece.length - done)
            try:
                data = await s.store.read_blob(piece.digest, piece.start + done, n)
            except ce.StorageError as exc:
                # Half a literal is on the wire: the only way back to sync is to hang up.
                raise Bye(f"{exc}; try again", "UNAVAILABLE") from None
            if not data:
                raise Bye("The stored message is shorter than recorded", "SERVERBUG")
            s.write(data)
            done += len(data)
            await s.flush()
    out += b")\r\n"


_SIMPLE = frozenset({"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE",
                     "BODYSTRUCTURE", "BODY"})


def _simple(view: SelectedView, meta: MessageMeta, static: MessageStatic | None,
            names: Sequence[str]) -> bytes:
    """The items that come from metadata and the stored static data only (the whole-mailbox
    fetches clients do when they open a folder), rendered straight to bytes."""
    parts: list[bytes] = []
    for name in names:
        if name == "UID":
            parts.append(b"UID %d" % meta.uid)
        elif name == "FLAGS":
            parts.append(b"FLAGS " + r.flag_list(view.flags_of(meta)))
        elif name == "RFC822.SIZE":
            parts.append(b"RFC822.SIZE %d" % meta.size)
        elif name == "INTERNALDATE":
            parts.append(b"INTERNALDATE " + r.internaldate(meta.internaldate))
        elif static is None:
            parts.append(name.encode() + b" NIL")
        elif name == "ENVELOPE":
            parts.append(b"ENVELOPE " + static.envelope)
        elif name == "BODYSTRUCTURE":
            parts.append(b"BODYSTRUCTURE " + static.bodystructure)
        else:
            parts.append(b"BODY " + static.body)
    return b" ".join(parts)


def _render(view: SelectedView, meta: MessageMeta, static: MessageStatic | None,
            items: Sequence[c.FetchAtt], add_flags: bool) -> list[Piece]:
    out: list[Piece] = []
    parts_tree: list[Part | None] = []

    def tree() -> Part | None:
        if not parts_tree:
            try:
                parts_tree.append(load_parts(static.parts) if static else None)
            except ValueError:
                parts_tree.append(None)
        return parts_tree[0]

    first = True
    for item in items:
        if not first:
            out.append(b" ")
        first = False
        name = item.name
        if name == "UID":
            out.append(b"UID %d" % meta.uid)
        elif name == "FLAGS":
            out.append(b"FLAGS " + r.flag_list(view.flags_of(meta)))
        elif name == "INTERNALDATE":
            out.append(b"INTERNALDATE " + r.internaldate(meta.internaldate))
        elif name == "RFC822.SIZE":
            out.append(b"RFC822.SIZE %d" % meta.size)
        elif static is None:
            out.append(name.encode() + b" NIL")
        elif name == "ENVELOPE":
            out.append(b"ENVELOPE " + static.envelope)
        elif name == "BODYSTRUCTURE":
            out.append(b"BODYSTRUCTURE " + static.bodystructure)
        elif name == "BODY":
            out.append(b"BODY " + static.body)
        elif name == "RFC822":
            out += [b"RFC822 ", *_range(static, 0, static.size)]
        elif name == "RFC822.HEADER":
            out += [b"RFC822.HEADER ", r.literal(static.header)]
        elif name == "RFC822.TEXT":
            rng = _text_range(static, tree())
            out += [b"RFC822.TEXT ", *_range(static, *rng)]
        else:
            out += _section(static, item, tree)
    if add_flags:
        # RFC 9051 §6.4.5: \Seen was set by this FETCH, so report the new flags.
        out.append(b" FLAGS " + r.flag_list(view.flags_of(meta)))
    return out


def _text_range(static: MessageStatic, root: Part | None) -> tuple[int, int]:
    if root is None:
        return len(static.header), static.size
    rng = section_range(root, (), "TEXT")
    return rng if rng is not None else (len(static.header), static.size)


def _range(static: MessageStatic, start: int, end: int) -> list[Piece]:
    length = max(0, min(end, static.size) - start)
    return [b"{%d}\r\n" % length, _Slice(static.digest, start, length)] if length else [b'""']


def _section(static: MessageStatic, item: c.FetchAtt,
             tree: Callable[[], Part | None]) -> list[Piece]:
    assert item.section is not None
    sec = item.section
    name = b"BODY[" + sec.spec() + b"]"
    if item.partial is not None:
        name += b"<%d>" % item.partial[0]
    name += b" "
    spec = sec.text or ""
    # The top-level header and its fields come from the stored header: no blob read.
    if not sec.part and spec in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        data = static.header
        if spec != "HEADER":
            data = filter_header_fields(data, sec.fields, spec == "HEADER.FIELDS.NOT")
        return [name, _partial_bytes(data, item.partial)]
    if not sec.part and spec == "":
        return [name, *_partial_range(static, 0, static.size, item.partial)]
    root = tree()
    if root is None:
        return [name, b'""']
    rng = section_range(root, sec.part, spec)
    if rng is None:
        return [name, b'""']
    start, end = rng
    if spec.startswith("HEADER.FIELDS"):
        # Small: a header block of an embedded message, read and filtered.
        return [name, _HeaderFilter(static.digest, start, end - start, sec.fields,
                                    spec == "HEADER.FIELDS.NOT", item.partial)]
    return [name, *_partial_range(static, start, end, item.partial)]


def _partial_bytes(data: bytes, partial: tuple[int, int] | None) -> bytes:
    if partial is not None:
        origin, length = partial
        data = data[origin:origin + length]
    return r.literal(data) if data else b'""'


def _partial_range(static: MessageStatic, start: int, end: int,
                   partial: tuple[int, int] | None) -> list[Piece]:
    end = min(end, static.size)
    if partial is not None:
        origin, length = partial
        start = min(start + origin, end)
        end = min(end, start + length)
    return _range(static, start, end)


class _HeaderFilter(_Slice):
    """HEADER.FIELDS of an embedded message: read the header, filter, then write."""
    __slots__ = ("exclude", "fields", "partial")

    def __init__(self, digest: str, start: int, length: int, fields: tuple[str, ...],
                 exclude: bool, partial: tuple[int, int] | None) -> None:
        super().__init__(digest, start, length)
        self.fields = fields
        self.exclude = exclude
        self.partial = partial
