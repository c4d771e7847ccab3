"""FETCH and UID FETCH (RFC 9051 §6.4.5, §7.5.2; RFC 3501 §6.4.5, §7.4.2) with the extension
items and modifiers: MODSEQ, CHANGEDSINCE and VANISHED (RFC 7162 §3.1.4, §3.2.6), BINARY[],
BINARY.SIZE[] (RFC 3516), EMAILID / THREADID (RFC 8474), SAVEDATE (RFC 8514), PREVIEW
(RFC 8970).

Lives here: resolving the message set in batches, one store round trip per batch for the
metadata together with the columns of the precomputed static data the items need (ENVELOPE,
BODYSTRUCTURE, BODY, the header block and the preview are stored rendered at delivery),
implicit \\Seen for BODY[...] / BINARY[...] / RFC822 / RFC822.TEXT, body sections cut from the
stored message with `casella.mail.sections` offsets and read ahead about a megabyte per hop to
a thread, and large sections streamed in pieces straight to the client. A stored message is never parsed
again here. Must never: touch SQL or files directly, send EXPUNGE (X1), or hold a whole large
body in memory (BINARY decodes one part, bounded by the message size limit).
"""

from __future__ import annotations

import bisect
import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from casella import errors as ce
from casella.imap import commands as c
from casella.imap import responses as r
from casella.imap import seqset
from casella.imap.errors import Bad, Bye, No
from casella.mail.sections import (
    Part,
    decode_transfer,
    filter_header_fields,
    load_parts,
    section_range,
)
from casella.store.model import SEEN, MessageIds, MessageMeta, MessageStatic

if TYPE_CHECKING:
    from casella.imap.selected import SelectedView
    from casella.imap.session import Done, Session

log = logging.getLogger("casella.imap")

BATCH = 1000                     # messages per store round trip (with static data)
META_BATCH = 5000                # ... metadata only
PREFETCH = 1024 * 1024           # message octets read ahead per hop to a thread
STREAM_THRESHOLD = 256 * 1024    # sections above this are written in pieces
OUTPUT_CHUNK = 128 * 1024        # responses are written to the connection in runs this big


class _Slice:
    """A byte range of a stored message, read when written (or before, with others)."""
    __slots__ = ("data", "digest", "length", "start")

    def __init__(self, digest: str, start: int, length: int) -> None:
        self.digest = digest
        self.start = start
        self.length = length
        self.data: bytes | None = None      # read ahead (_emit_all)

    async def read(self, s: Session) -> bytes:
        data, self.data = self.data, None       # read ahead: held only until written
        if data is not None:
            return data
        return await s.store.read_blob(self.digest, self.start, self.length)


Piece = bytes | _Slice


async def fetch(s: Session, tag: str, cmd: c.Fetch) -> Done:
    from casella.imap.session import Done

    view = s.selected
    assert view is not None
    if cmd.vanished and not s.qresync:
        raise Bad("VANISHED needs ENABLE QRESYNC first")       # RFC 7162 §3.2.6
    if cmd.changedsince is not None or any(i.name == "MODSEQ" for i in cmd.items):
        s.enable_condstore()         # RFC 7162 §3.1: a CONDSTORE enabling command
    uids = view.resolve(cmd.messages, cmd.uid, s.saved_search)
    if cmd.vanished:
        assert cmd.changedsince is not None
        s.write(await vanished_earlier(s, view, uids, cmd.messages, cmd.changedsince))
    missing = await render(s, view, uids, cmd.items, cmd.changedsince)
    if missing and not cmd.uid:
        # RFC 2180 §4.1.2: messages expunged by another session (the view still numbers them
        # until it may say EXPUNGE) get no FETCH response; the others were answered.
        raise No("Some of the requested messages no longer exist", "EXPUNGEISSUED")
    return Done("FETCH completed")


async def vanished_earlier(s: Session, view: SelectedView, uids: list[int],
                           messages: seqset.SeqSet, modseq: int) -> bytes:
    """`* VANISHED (EARLIER) set` for UIDs of the command's set expunged after `modseq`
    (RFC 7162 §3.2.6), before any FETCH response. The set may name UIDs the view no longer
    has, so it is resolved against the UIDs ever given out, not the ones present."""
    largest = max(view.uidnext - 1, 0)
    ranges = messages.resolve(largest) if not messages.saved else seqset.ranges_of(uids)
    gone = [u for u in await s.store.vanished_since(view.mailbox_id, modseq)
            if view.seq_of(u) is None and any(lo <= u <= hi for lo, hi in ranges)]
    if not gone:
        return b""
    return b"* VANISHED (EARLIER) " + seqset.compress(gone) + b"\r\n"


def _live_chunks(view: SelectedView, uids: list[int], batch: int
                 ) -> Iterator[tuple[list[int], int]]:
    """The UIDs in batches of up to `batch`, without those the view holds as expunged but not
    yet announced, each with how many UIDs were left out since the last batch; the last may
    be empty, to carry that count alone."""
    skipped = 0
    for start in range(0, len(uids), batch):
        chunk = uids[start:start + batch]
        if view.pending_expunge:
            live = [u for u in chunk if u not in view.pending_expunge]
            skipped += len(chunk) - len(live)
            chunk = live
        if chunk:
            yield chunk, skipped
            skipped = 0
    if skipped:
        yield [], skipped


async def render(s: Session, view: SelectedView, uids: list[int],
                 items: tuple[c.FetchAtt, ...], changedsince: int | None = None) -> int:
    """Write the FETCH responses for these UIDs (ascending); returns how many were missing."""
    need_static = any(i.needs_static for i in items)
    need_ids = any(i.name in ("EMAILID", "THREADID") for i in items)
    sets_seen = not view.readonly and any(i.sets_seen for i in items)
    wants_flags = any(i.name == "FLAGS" for i in items)
    wants_modseq = any(i.name == "MODSEQ" for i in items)
    names = tuple(i.name for i in items)
    simple = all(name in _SIMPLE for name in names)
    binary = [i for i in items if i.name in ("BINARY[]", "BINARY.SIZE") and i.section and
              i.section.part]
    if simple and _META_ONLY.issuperset(names):
        return await _render_meta_only(s, view, uids, names, changedsince)
    missing = 0
    fields = static_fields(items)
    for chunk, skipped in _live_chunks(view, uids, BATCH if need_static else META_BATCH):
        missing += skipped
        if not chunk:
            continue
        # The static data by UID; metadata and static data come in one store round trip.
        statics: dict[int, MessageStatic | None] = {}
        if need_static:
            pairs = await s.store.fetch_messages(view.mailbox_id, seqset.ranges_of(chunk),
                                                 fields)
            metas = [p[0] for p in pairs]
            statics = {p[0].uid: p[1] for p in pairs}
        else:
            metas = await s.store.fetch_meta(view.mailbox_id, seqset.ranges_of(chunk))
        missing += len(chunk) - len(metas)
        if changedsince is not None:
            metas = [m for m in metas if m.modseq > changedsince]
            if not metas:
                continue
        if binary:
            # RFC 3516 §4.3: refuse before anything changes (no \Seen for a failed FETCH).
            for meta in metas:
                _check_binary(statics.get(meta.uid), binary)
        seen_changed: set[int] = set()
        if sets_seen:
            unseen = [m.uid for m in metas if not m.has(SEEN)]
            if unseen:
                try:
                    res = await s.store.store_flags(view.mailbox_id, seqset.ranges_of(unseen),
                                                    "add", [SEEN])
                except ce.StorageError as exc:
                    # Issue 7 §6: reading goes on when the disk is full; only \Seen is lost.
                    log.warning("Seen flag not set: %s", exc, extra=s.log_extra())
                else:
                    view.note_own(res.changed)
                    if res.changed:
                        view.own_change(res.highestmodseq)
                    updated = {m.uid: m for m in res.changed}
                    seen_changed = set(updated)
                    metas = [updated.get(m.uid, m) for m in metas]
        ids: dict[int, MessageIds] = {}
        if need_ids:
            ids = {m.uid: m for m in await s.store.fetch_ids(
                view.mailbox_id, seqset.ranges_of([m.uid for m in metas]))}
        out = bytearray()
        view_uids = view.uids
        n = len(view_uids)
        # Sequence numbers by walking the view beside the ascending UIDs (no search each).
        idx = bisect.bisect_left(view_uids, metas[0].uid) if metas else 0
        responses: list[tuple[bytes, list[Piece]]] = []
        for meta in metas:
            while idx < n and view_uids[idx] < meta.uid:
                idx += 1
            if idx >= n or view_uids[idx] != meta.uid:
                continue
            static = statics.get(meta.uid)
            add_flags = meta.uid in seen_changed and not wants_flags
            add_modseq = meta.uid in seen_changed and view.condstore and not wants_modseq
            if simple and not add_flags and not add_modseq:
                out += b"* %d FETCH (%s)\r\n" % (
                    idx + 1, _simple(view, meta, static, names, ids.get(meta.uid)))
                continue
            pieces = _render(view, meta, static, items, add_flags, ids.get(meta.uid))
            if add_modseq:
                # RFC 7162 §3.1.4: a FETCH that set \Seen reports the new MODSEQ.
                pieces.append(b" MODSEQ (%d)" % meta.modseq)
            responses.append((b"* %d FETCH (" % (idx + 1), pieces))
        missing += await _emit_all(s, out, responses)
        s.write(bytes(out))
        await s.flush()
    return missing


_META_ONLY = frozenset({"UID", "FLAGS", "MODSEQ"})
FlagRow = tuple[int, int, tuple[str, ...]]


async def _render_meta_only(s: Session, view: SelectedView, uids: list[int],
                            names: tuple[str, ...], changedsince: int | None) -> int:
    """`render` for UID, FLAGS and MODSEQ only (a client's flag resync of a whole mailbox,
    FETCH 1:* (UID FLAGS)): plain rows from the store (Store.fetch_flags), each response
    formatted at once, each distinct flag list once."""
    item = _flags_formatter(view, names)
    missing = 0
    for chunk, skipped in _live_chunks(view, uids, META_BATCH):
        missing += skipped
        if not chunk:
            continue
        rows = await s.store.fetch_flags(view.mailbox_id, seqset.ranges_of(chunk))
        missing += len(chunk) - len(rows)
        if changedsince is not None:
            rows = [row for row in rows if row[1] > changedsince]
        out: list[bytes] = []
        view_uids = view.uids
        n = len(view_uids)
        idx = bisect.bisect_left(view_uids, rows[0][0]) if rows else 0
        for row in rows:
            uid = row[0]
            while idx < n and view_uids[idx] < uid:
                idx += 1
            if idx >= n or view_uids[idx] != uid:
                continue
            out.append(b"* %d FETCH (%s)\r\n" % (idx + 1, item(row)))
        s.write(b"".join(out))
        await s.flush()
    return missing


def _flags_formatter(view: SelectedView, names: tuple[str, ...]) -> Callable[[FlagRow], bytes]:
    """What `_meta_item` makes of these names, for one row of Store.fetch_flags."""
    flag_lists: dict[tuple[tuple[str, ...], bool], bytes] = {}
    has_recent = not view.rev2 and bool(view.recent_ranges or view.recent_from is not None)

    def flags(row: FlagRow) -> bytes:
        key = (row[2], has_recent and view.is_recent(row[0]))
        found = flag_lists.get(key)
        if found is None:
            listed = row[2] + ("\\Recent",) if key[1] else row[2]
            found = flag_lists[key] = b"FLAGS " + r.flag_list(listed)
        return found

    if names == ("UID", "FLAGS"):
        return lambda row: b"UID %d %s" % (row[0], flags(row))
    makers: dict[str, Callable[[FlagRow], bytes]] = {
        "UID": lambda row: b"UID %d" % row[0],
        "FLAGS": flags,
        "MODSEQ": lambda row: b"MODSEQ (%d)" % row[1],
    }
    chosen = [makers[name] for name in names]
    return lambda row: b" ".join([m(row) for m in chosen])


async def _emit_all(s: Session, out: bytearray,
                    responses: list[tuple[bytes, list[Piece]]]) -> int:
    """Write the responses in order. The message pieces they need (up to STREAM_THRESHOLD
    each) are read ahead, PREFETCH octets at a time, each window in one hop to a thread
    instead of one per piece. A message whose body went after its metadata was read (another
    session expunged it, BodyGone) is left out, as if it had gone before: returns how many."""
    gone = 0
    i = 0
    while i < len(responses):
        wanted: list[_Slice] = []
        total = 0
        j = i
        while j < len(responses) and (total < PREFETCH or j == i):
            for piece in responses[j][1]:
                if isinstance(piece, _Slice) and piece.length <= STREAM_THRESHOLD:
                    wanted.append(piece)
                    total += piece.length
            j += 1
        if len(wanted) > 1:
            try:
                data = await s.store.read_blobs([(p.digest, p.start, p.length)
                                                 for p in wanted])
            except ce.BodyGone:
                data = []       # each piece is read on its own, so only its message drops out
            for piece, got in zip(wanted, data):
                piece.data = got
        for head, pieces in responses[i:j]:
            mark = len(out)
            try:
                await _emit(s, out, head, pieces)
            except ce.BodyGone:
                # Nothing of this response was written yet (_emit reads before it writes).
                del out[mark:]
                gone += 1
            if len(out) >= OUTPUT_CHUNK:
                s.write(bytes(out))
                out.clear()
                await s.flush()
        i = j
    return gone


async def _emit(s: Session, out: bytearray, head: bytes, pieces: Sequence[Piece]) -> None:
    """Append one FETCH response to `out`; a large section is streamed to the client in
    pieces instead (after what `out` holds so far, once its first piece is read). A failed
    read (BodyGone included) before any of the response is on the wire propagates, `out` to
    be cut back by the caller; after that, half a response is out and the only way back to
    sync is to hang up."""
    sent = [False]
    try:
        await _emit_pieces(s, out, head, pieces, sent)
    except ce.StorageError as exc:
        if sent[0]:
            raise Bye(f"{exc}; try again", "UNAVAILABLE") from None
        raise


async def _emit_pieces(s: Session, out: bytearray, head: bytes, pieces: Sequence[Piece],
                       sent: list[bool]) -> None:
    out += head
    for piece in pieces:
        if isinstance(piece, bytes):
            out += piece
            continue
        if isinstance(piece, _HeaderFilter):
            header = await piece.read(s)
            out += _partial_bytes(filter_header_fields(header, piece.fields, piece.exclude),
                                  piece.partial)
            continue
        if isinstance(piece, _Binary):
            raw = await piece.read(s)
            data = decode_transfer(raw, piece.encoding)
            if piece.size_only:
                out += b"%d" % len(data)
            else:
                out += _binary_bytes(data, piece.partial)
            continue
        if piece.length <= STREAM_THRESHOLD:
            out += await piece.read(s)
            continue
        done = 0
        while done < piece.length:
            n = min(STREAM_THRESHOLD, piece.length - done)
            data = await s.store.read_blob(piece.digest, piece.start + done, n)
            if not data:
                raise Bye("The stored message is shorter than recorded", "SERVERBUG")
            if out:
                s.write(bytes(out))
                out.clear()
            sent[0] = True
            s.write(data)
            done += len(data)
            await s.flush()
    out += b")\r\n"


_FIELDS_OF = {"ENVELOPE": ("envelope",), "BODYSTRUCTURE": ("bodystructure",),
              "BODY": ("body",), "PREVIEW": ("preview",)}


def static_fields(items: Sequence[c.FetchAtt]) -> frozenset[str]:
    """The MessageStatic fields these items are made of (Store.fetch_messages; digest and size
    always come): the whole message needs no more, the top-level header only the header,
    other sections, RFC822.TEXT and BINARY the header and the part tree."""
    out: set[str] = set()
    for item in items:
        if not item.needs_static or item.name == "RFC822":
            continue
        if item.name == "RFC822.HEADER":
            out.add("header")
        elif item.name == "BODY[]" and item.section is not None and not item.section.part:
            if item.section.text in ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT"):
                out.add("header")
            elif item.section.text:
                out.update(("header", "parts"))
        else:
            out.update(_FIELDS_OF.get(item.name, ("header", "parts")))
    return frozenset(out)


_SIMPLE = frozenset({"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE",
                     "BODYSTRUCTURE", "BODY", "MODSEQ", "SAVEDATE", "EMAILID", "THREADID",
                     "PREVIEW"})


def email_id(digest: str) -> str:
    """EMAILID (RFC 8474 §5.1): from the content's digest, so copies of one stored message
    share it and different messages never do."""
    return "M" + digest[:24]


def thread_id(thread: int) -> str | None:
    return f"T{thread:x}" if thread else None


def _meta_item(view: SelectedView, meta: MessageMeta, name: str,
               ids: MessageIds | None) -> bytes | None:
    """The items that come from metadata alone (None for the others)."""
    if name == "UID":
        return b"UID %d" % meta.uid
    if name == "FLAGS":
        return b"FLAGS " + r.flag_list(view.flags_of(meta))
    if name == "RFC822.SIZE":
        return b"RFC822.SIZE %d" % meta.size
    if name == "INTERNALDATE":
        return b"INTERNALDATE " + r.internaldate(meta.internaldate)
    if name == "MODSEQ":
        return b"MODSEQ (%d)" % meta.modseq
    if name == "SAVEDATE":
        return b"SAVEDATE " + r.internaldate(meta.savedate)      # RFC 8514 §4.1
    if name == "EMAILID":
        return (b"EMAILID (" + email_id(ids.digest).encode("ascii") + b")") if ids else \
            b"EMAILID NIL"
    if name == "THREADID":
        tid = thread_id(ids.thread_id) if ids else None
        return b"THREADID (" + tid.encode("ascii") + b")" if tid else b"THREADID NIL"
    return None


def _simple(view: SelectedView, meta: MessageMeta, static: MessageStatic | None,
            names: Sequence[str], ids: MessageIds | None = None) -> bytes:
    """The items that come from metadata and the stored static data only (the whole-mailbox
    fetches clients do when they open a folder), rendered straight to bytes."""
    parts: list[bytes] = []
    for name in names:
        item = _meta_item(view, meta, name, ids)
        if item is not None:
            parts.append(item)
        elif static is None:
            parts.append(name.encode() + b" NIL")
        elif name == "ENVELOPE":
            parts.append(b"ENVELOPE " + static.envelope)
        elif name == "BODYSTRUCTURE":
            parts.append(b"BODYSTRUCTURE " + static.bodystructure)
        elif name == "PREVIEW":
            parts.append(_preview(static))
        else:
            parts.append(b"BODY " + static.body)
    return b" ".join(parts)


def _preview(static: MessageStatic) -> bytes:
    """RFC 8970 §3: computed at delivery, so LAZY never has to answer NIL; a message without
    text has an empty preview."""
    return b"PREVIEW " + r.string(static.preview.encode("utf-8"))


def _render(view: SelectedView, meta: MessageMeta, static: MessageStatic | None,
            items: Sequence[c.FetchAtt], add_flags: bool,
            ids: MessageIds | None = None) -> list[Piece]:
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
        simple = _meta_item(view, meta, name, ids)
        if simple is not None:
            out.append(simple)
        elif static is None:
            out.append(name.encode() + b" NIL")
        elif name == "ENVELOPE":
            out.append(b"ENVELOPE " + static.envelope)
        elif name == "BODYSTRUCTURE":
            out.append(b"BODYSTRUCTURE " + static.bodystructure)
        elif name == "BODY":
            out.append(b"BODY " + static.body)
        elif name == "PREVIEW":
            out.append(_preview(static))
        elif name in ("BINARY[]", "BINARY.SIZE"):
            out += _binary(static, item, tree)
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
    name = _section_label(item)
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


@functools.lru_cache(maxsize=256)
def _section_label(item: c.FetchAtt) -> bytes:
    """`BODY[section]<origin> ` as the response names the item (the same for every message)."""
    assert item.section is not None
    name = b"BODY[" + item.section.spec() + b"]"
    if item.partial is not None:
        name += b"<%d>" % item.partial[0]
    return name + b" "


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


def _binary_bytes(data: bytes, partial: tuple[int, int] | None) -> bytes:
    """RFC 3516 §4.2: the decoded content, as a literal8 when it holds NUL."""
    if partial is not None:
        origin, length = partial
        data = data[origin:origin + length]
    if b"\x00" in data:
        return b"~{%d}\r\n" % len(data) + data
    return r.literal(data) if data else b'""'


class _Binary(_Slice):
    """BINARY[part] / BINARY.SIZE[part]: read the part's body, undo its transfer encoding."""
    __slots__ = ("encoding", "partial", "size_only")

    def __init__(self, digest: str, start: int, length: int, encoding: str,
                 partial: tuple[int, int] | None, size_only: bool) -> None:
        super().__init__(digest, start, length)
        self.encoding = encoding
        self.partial = partial
        self.size_only = size_only


_KNOWN_CTE = ("", "7bit", "8bit", "binary", "base64", "quoted-printable")


def _binary(static: MessageStatic, item: c.FetchAtt,
            tree: Callable[[], Part | None]) -> list[Piece]:
    assert item.section is not None
    path = item.section.part
    size_only = item.name == "BINARY.SIZE"
    label = b"BINARY.SIZE[" if size_only else b"BINARY["
    label += ".".join(str(p) for p in path).encode("ascii") + b"]"
    if item.partial is not None and not size_only:
        label += b"<%d>" % item.partial[0]
    label += b" "
    if not path:
        # BINARY[] is the whole message as stored; its header is never encoded.
        return [label, _Binary(static.digest, 0, static.size, "binary", item.partial,
                               size_only)]
    root = tree()
    part = _part_at(root, path) if root is not None else None
    rng = section_range(root, path, "") if root is not None else None
    if part is None or rng is None:
        return [label, b'""' if not size_only else b"0"]
    encoding = part.encoding.strip().lower() if not (part.is_multipart or part.is_message) \
        else "7bit"
    if encoding not in _KNOWN_CTE:
        # RFC 3516 §4.3: a transfer encoding the server cannot undo.
        raise No(f"Unknown Content-Transfer-Encoding {encoding[:30]}", "UNKNOWN-CTE")
    start, end = rng
    return [label, _Binary(static.digest, start, max(0, end - start), encoding,
                           item.partial, size_only)]


def _check_binary(static: MessageStatic | None, items: list[c.FetchAtt]) -> None:
    """NO [UNKNOWN-CTE] when a BINARY section's transfer encoding cannot be undone."""
    if static is None:
        return
    try:
        root = load_parts(static.parts)
    except ValueError:
        return
    for item in items:
        assert item.section is not None
        part = _part_at(root, item.section.part)
        if part is None or part.is_multipart or part.is_message:
            continue
        encoding = part.encoding.strip().lower()
        if encoding not in _KNOWN_CTE:
            raise No(f"Unknown Content-Transfer-Encoding {encoding[:30]}", "UNKNOWN-CTE")


def _part_at(root: Part, path: tuple[int, ...]) -> Part | None:
    """The part a numeric section path names (RFC 3501 §6.4.5 numbering; the message for ())."""
    context: Part | None = root
    part: Part | None = root
    for n in path:
        if context is None:
            return None
        if context.is_multipart:
            part = context.children[n - 1] if 1 <= n <= len(context.children) else None
        else:
            part = context if n == 1 else None
        if part is None:
            return None
        context = part.children[0] if part.is_message else (part if part.is_multipart
                                                              else None)
    return part
