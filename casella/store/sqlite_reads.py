"""SQLite backend: the bulk reads IMAP's FETCH and SEARCH are made of (issue 8).

Lives here: `search_uids` (a SEARCH made only of flags, internal dates, sizes and the header
fields FROM/TO/CC/BCC/SUBJECT, answered by one query, the search index narrowing the header
fields; \\Seen absent is written as the messages_unseen index's own condition),
`fetch_messages` (metadata and the requested columns of the static data in one joined query,
one thread hop per batch), `fetch_flags` (UID,
MODSEQ and flags as plain tuples), `read_blob`/`read_blobs` (message pieces, from the
database or the file, in one hop to a thread).
Must never: run SQL or file reads on the event loop thread, or write.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Collection, Sequence

from casella.errors import BodyGone, StorageError
from casella.mail.text import SEARCH_FIELDS
from casella.store.base import UidRanges
from casella.store.model import MessageMeta, MessageStatic, split_flags
from casella.store.sqlite_base import _SEEN_BIT, SQLiteBase, _flags, _in_ranges, _meta
from casella.store.sqlite_index_rows import fts_query
from casella.store.sqlite_schema import SEARCH_COLUMNS

# MessageStatic fields that are columns of `blobs` besides id, digest and size, in order, and
# what stands for one that is not read.
STATIC_FIELDS = ("header", "envelope", "bodystructure", "body", "parts", "preview")
_EMPTY = {"header": "x''", "envelope": "x''", "bodystructure": "x''", "body": "x''",
          "parts": "''", "preview": "''"}
_SEARCH_COLUMN = dict(zip(SEARCH_FIELDS, SEARCH_COLUMNS))
_MSG_COLS = ("m.uid, m.modseq, m.flags, m.keywords, m.internaldate, m.size, m.blob_id, "
             "m.savedate, b.digest, b.size")


class ReadOps(SQLiteBase):
    async def search_uids(self, mailbox_id: int, max_uid: int, *,
                          with_flags: Sequence[str] = (), without_flags: Sequence[str] = (),
                          since: int | None = None, before: int | None = None,
                          larger: int | None = None, smaller: int | None = None,
                          header_contains: Sequence[tuple[str, str]] = ()) -> list[int]:
        sql, args = _search_sql(mailbox_id, max_uid, with_flags, without_flags, since, before,
                                larger, smaller, header_contains, self.search_index_on)
        return await self._read(lambda c: [r[0] for r in c.execute(sql, args)])

    async def fetch_messages(self, mailbox_id: int, uids: UidRanges,
                             static_fields: Collection[str]
                             ) -> list[tuple[MessageMeta, MessageStatic | None]]:
        unknown = set(static_fields) - set(STATIC_FIELDS)
        if unknown:
            raise ValueError(f"not static data fields: {sorted(unknown)}")
        # Every field in MessageStatic's order, unread ones as empty constants: each row then
        # makes its MessageStatic positionally.
        cols = _MSG_COLS + "".join(
            f", b.{f}" if f in static_fields else f", {_EMPTY[f]}" for f in STATIC_FIELDS)
        sql = (f"SELECT {cols} FROM messages m LEFT JOIN blobs b ON b.id = m.blob_id "
               "WHERE m.mailbox_id = ? AND m.uid BETWEEN ? AND ? ORDER BY m.uid")
        ranges = _in_ranges(uids)

        def q(conn: sqlite3.Connection) -> list[tuple[MessageMeta, MessageStatic | None]]:
            out: list[tuple[MessageMeta, MessageStatic | None]] = []
            for lo, hi in ranges:
                for r in conn.execute(sql, (mailbox_id, lo, hi)):
                    # No blob row: the static items are NIL, as with fetch_static.
                    out.append((_meta(r), MessageStatic(r[6], *r[8:]) if r[8] is not None
                                else None))
            if len(ranges) > 1:
                # Overlapping ranges must not address a message twice.
                out = sorted({m.uid: (m, s) for m, s in out}.values(), key=lambda p: p[0].uid)
            return out
        return await self._read_snapshot(q)

    async def fetch_flags(self, mailbox_id: int, uids: UidRanges
                          ) -> list[tuple[int, int, tuple[str, ...]]]:
        ranges = _in_ranges(uids)
        sql = ("SELECT uid, modseq, flags, keywords FROM messages "
               "WHERE mailbox_id = ? AND uid BETWEEN ? AND ? ORDER BY uid")

        def q(conn: sqlite3.Connection) -> list[tuple[int, int, tuple[str, ...]]]:
            out = []
            for lo, hi in ranges:
                out.extend([(r[0], r[1], _flags(r[2], r[3]))
                            for r in conn.execute(sql, (mailbox_id, lo, hi))])
            if len(ranges) > 1:
                out = sorted({r[0]: r for r in out}.values())
            return out
        return await self._read_snapshot(q)

    async def read_blobs(self, pieces: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """One query finds every inline body among the pieces' (a FETCH window holds up to a
        megabyte of them); the others are read from their files. A piece must be whole."""
        root = str(self.blobs.root)

        def q(conn: sqlite3.Connection) -> list[bytes]:
            digests = list({d for d, _, _ in pieces})
            inline: dict[str, bytes] = {}
            for i in range(0, len(digests), 500):
                chunk = digests[i:i + 500]
                inline.update(conn.execute(
                    f"{_INLINE_WHOLE} ({','.join('?' * len(chunk))})", chunk).fetchall())
            out = []
            for digest, offset, length in pieces:
                data = inline.get(digest)
                if data is None:
                    try:
                        out.append(_read_file_piece(root, digest, offset, length, exact=True))
                    except _NoFile:
                        out.append(_read_piece(conn, root, digest, offset, length, exact=True))
                    continue
                piece = data[offset:offset + length]
                if len(piece) < length:
                    raise StorageError("a stored message is shorter than recorded")
                out.append(piece)
            return out
        return await self._read(q)

    async def read_blob(self, digest: str, offset: int = 0, length: int = -1) -> bytes:
        root = str(self.blobs.root)
        return await self._read(lambda conn: _read_piece(conn, root, digest, offset, length))

    async def stored_bodies(self) -> list[str]:
        def q(conn: sqlite3.Connection) -> list[str]:
            inline = [r[0] for r in conn.execute(
                "SELECT b.digest FROM blobs b JOIN blob_bodies d ON d.blob_id = b.id")]
            return sorted(inline + list(self.blobs.iter_digests()))
        return await self._read(q)


_INLINE_WHOLE = ("SELECT b.digest, d.data FROM blobs b JOIN blob_bodies d "
                 "ON d.blob_id = b.id WHERE b.digest IN")
_INLINE_PIECE = ("SELECT substr(d.data, ?, ?) FROM blobs b JOIN blob_bodies d "
                 "ON d.blob_id = b.id WHERE b.digest = ?")
_INLINE_REST = ("SELECT substr(d.data, ?) FROM blobs b JOIN blob_bodies d "
                "ON d.blob_id = b.id WHERE b.digest = ?")


class _NoFile(Exception):
    """The body's file is not there (see _read_piece for what that means)."""


def _read_piece(conn: sqlite3.Connection, root: str, digest: str, offset: int,
                length: int, exact: bool = False) -> bytes:
    """Up to `length` bytes (-1: all the rest) of a body from `offset`: from blob_bodies when
    it is stored inline, else from its file. Neither being there means the body was collected
    after the caller read the metadata of a message holding it (BodyGone), unless a message
    still holds it: then the lookup runs once more (the same content may have been stored
    again meanwhile, its file published before its row committed), and a body still missing
    is a broken store (StorageError)."""
    for _ in range(2):
        if length < 0:
            row = conn.execute(_INLINE_REST, (offset + 1, digest)).fetchone()
        else:
            row = conn.execute(_INLINE_PIECE, (offset + 1, length, digest)).fetchone()
        if row is not None:
            data = row[0] or b""     # substr() of an empty blob is NULL
            if exact and len(data) < length:
                raise StorageError("a stored message is shorter than recorded")
            return data
        try:
            return _read_file_piece(root, digest, offset, length, exact)
        except _NoFile:
            pass
        held = conn.execute("SELECT refcount FROM blobs WHERE digest = ?", (digest,)).fetchone()
        if held is None or held[0] <= 0:
            raise BodyGone("the message was expunged meanwhile; its body is no longer stored")
    raise StorageError("a stored message is missing from the blob store")


def _read_file_piece(root: str, digest: str, offset: int, length: int, exact: bool) -> bytes:
    """A piece of a body kept as a file, by plain string path (blobs.py:
    root/<2 hex>/<digest>) and pread: many small reads in a row are dominated by pathlib
    otherwise. With `exact` a piece shorter than asked is an error: its length is already on
    the wire as a literal's. _NoFile when there is no such file."""
    try:
        fd = os.open(f"{root}/{digest[:2]}/{digest}", os.O_RDONLY)
    except FileNotFoundError:
        raise _NoFile() from None
    except OSError as exc:
        raise StorageError(f"could not read the message: {exc.strerror or exc}") from exc
    try:
        if length < 0:
            length = max(os.fstat(fd).st_size - offset, 0)
        data = os.pread(fd, length, offset)
        while len(data) < length:
            more = os.pread(fd, length - len(data), offset + len(data))
            if not more:
                if exact:
                    raise StorageError("a stored message is shorter than recorded")
                break
            data += more
        return data
    except OSError as exc:
        raise StorageError(f"could not read the message: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)


def _search_sql(mailbox_id: int, max_uid: int, with_flags: Sequence[str],
                without_flags: Sequence[str], since: int | None, before: int | None,
                larger: int | None, smaller: int | None,
                header_contains: Sequence[tuple[str, str]] = (),
                use_index: bool = True) -> tuple[str, list[object]]:
    # With header keys the blob's row is joined, and the messages' columns are named
    # through their table (blobs has a size of its own).
    m = "m." if header_contains else ""
    set_bits, set_kw = split_flags(with_flags)
    clear_bits, clear_kw = split_flags(without_flags)
    where = [f"{m}mailbox_id = ?", f"{m}uid <= ?"]
    args: list[object] = [mailbox_id, max_uid]
    if clear_bits & _SEEN_BIT:
        where.append(f"({m}flags & 1) = 0")
        clear_bits &= ~_SEEN_BIT
    if set_bits or clear_bits:
        where.append(f"({m}flags & ?) = ?")
        args += [set_bits | clear_bits, set_bits]
    for kw, present in [(k, True) for k in set_kw] + [(k, False) for k in clear_kw]:
        # Keywords are stored space-separated; atoms hold no space (RFC 9051 §9).
        where.append(f"instr(' ' || lower({m}keywords) || ' ', ?) {'>' if present else '='} 0")
        args.append(f" {kw.lower()} ")
    for cond, value in ((f"{m}internaldate >= ?", since), (f"{m}internaldate < ?", before),
                        (f"{m}size > ?", larger), (f"{m}size < ?", smaller)):
        if value is not None:
            where.append(cond)
            args.append(value)
    if not header_contains:
        return "SELECT uid FROM messages WHERE " + " AND ".join(where) + " ORDER BY uid", args
    for field, needle in header_contains:
        if field not in _SEARCH_COLUMN or not needle or "\n" in needle:
            raise ValueError(f"not a header search this store answers: {field!r} {needle!r}")
        match = fts_query(needle) if use_index else None
        if match is not None:
            # The search index narrows (its `fields` hold these values, sqlite_schema
            # SCHEMA_V12); the bodies it does not hold stay candidates; instr() decides.
            where.append("(m.blob_id IN (SELECT s.blob_id FROM search_text s WHERE s.fts_rowid "
                         "IN (SELECT rowid FROM search_fts WHERE search_fts MATCH ?))"
                         " OR m.blob_id IN (SELECT blob_id FROM search_unindexed))")
            args.append(match)
        where.append(f"instr(b.{_SEARCH_COLUMN[field]}, ?) > 0")
        args.append(needle)
    return ("SELECT m.uid FROM messages m JOIN blobs b ON b.id = m.blob_id WHERE "
            + " AND ".join(where) + " ORDER BY m.uid", args)
