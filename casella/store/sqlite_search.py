"""SQLite backend: the search index's reads, its backfill and its rebuild (issue 21).

Lives here: `search_index` (which messages of a mailbox hold a needle: trigrams narrow, the
stored text confirms, one snapshot for every query and for the list of messages
the index does not hold), `search_index_backfill` (the bodies stored before schema version 12,
or handed back by a rebuild: read and decoded on a reader thread, written in one short write
job), `search_index_reset` and `search_index_status`. The rows themselves are written by
sqlite_index_rows. Must never: write outside a write job, or hold the write lock for more than
one bounded batch.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from casella.errors import BodyGone, StorageError
from casella.mail.sections import load_parts
from casella.mail.text import decoded_headers, index_texts, index_too_big
from casella.store.model import IndexAnswer, IndexStatus
from casella.store.sqlite_base import SQLiteBase, _Txn
from casella.store.sqlite_index_rows import (
    IndexRow,
    forget_index,
    fts_query,
    index_row,
    purge_dead,
    unpack,
)
from casella.store.sqlite_index_rows import insert_rows as _insert_rows
from casella.store.sqlite_reads import _read_piece
from casella.store.sqlite_schema import SEARCH_COLUMNS

# One scan of the mailbox's rows (messages has no index by blob) finds the candidates by
# trigrams and the messages whose body the index does not hold (no search_text row: the
# subqueries are evaluated once each); only the candidates' stored text is read: for TEXT the
# headers and the body, for BODY the body, for the header keys nothing (the caller checks).
_CANDIDATES = ("FROM messages m LEFT JOIN search_text t ON t.blob_id = m.blob_id "
               "WHERE m.mailbox_id = ? AND m.uid <= ? "
               "AND (m.blob_id IN (SELECT s.blob_id FROM search_text s WHERE s.fts_rowid IN "
               "(SELECT rowid FROM search_fts WHERE search_fts MATCH ?)) "
               "OR m.blob_id IN (SELECT blob_id FROM search_unindexed))")
_COLUMNS = {"text": "t.headers, t.body", "body": "t.body", "any": "NULL"}
# Bodies handed to a rebuild per write job: forgetting a body's trigrams costs about as much
# as indexing it.
_RESET_BATCH = 200


class SearchOps(SQLiteBase):
    async def search_index(self, mailbox_id: int, max_uid: int,
                           queries: Sequence[tuple[str, str]]) -> IndexAnswer:
        plans: list[tuple[str, str, bytes] | None] = []
        for scope, needle in queries:
            if scope not in _COLUMNS:
                raise ValueError(f"not a search index scope: {scope!r}")
            match = fts_query(needle)
            plans.append(None if match is None else (scope, match, needle.encode("utf-8")))
        if not self.search_index_on:
            return IndexAnswer(tuple(None for _ in plans), frozenset())

        def q(conn: sqlite3.Connection) -> IndexAnswer:
            unindexed: set[int] = set()
            found: list[frozenset[int] | None] = []
            for plan in plans:
                if plan is None:
                    found.append(None)
                    continue
                scope, match, key = plan
                hits = []
                # Every query's scan finds the same unindexed messages (one snapshot).
                unindexed.clear()
                for uid, indexed, *texts in conn.execute(
                        f"SELECT m.uid, t.blob_id IS NOT NULL, {_COLUMNS[scope]} {_CANDIDATES}",
                        (mailbox_id, max_uid, match)):
                    if not indexed:
                        unindexed.add(uid)
                    # The confirmation: the needle's UTF-8 in the stored UTF-8 is the needle
                    # in the text (sqlite_index_rows.encode_text).
                    elif scope == "any" or any(key in unpack(t) for t in texts):
                        hits.append(uid)
                found.append(frozenset(hits))
            # With no query looked up, nothing is answered and every message is checked.
            return IndexAnswer(tuple(found), frozenset(unindexed))
        return await self._read_snapshot(q)

    async def search_index_backfill(self, max_chars: int = 64 * 1024,
                                    max_bodies: int = 100) -> tuple[int, int]:
        root = str(self.blobs.root)
        cols = ", ".join(f"coalesce(b.{c}, '')" for c in SEARCH_COLUMNS)

        waiting = 0

        def read(conn: sqlite3.Connection) -> list[tuple[int, str, IndexRow | None]]:
            nonlocal waiting
            rows = conn.execute(
                f"SELECT b.id, b.digest, b.header, b.parts, {cols} FROM search_unindexed u "
                "JOIN blobs b ON b.id = u.blob_id WHERE u.pending = 1 ORDER BY u.blob_id "
                "LIMIT ?", (max_bodies,)).fetchall()
            out: list[tuple[int, str, IndexRow | None]] = []
            chars = 0
            for blob_id, digest, header, parts, *search in rows:
                if chars >= max_chars:
                    break
                try:
                    texts = _texts_of(conn, root, digest, bytes(header), parts)
                except BodyGone:
                    continue          # being collected: its rows go with it
                except StorageError:
                    texts = None      # unreadable: SEARCH reads it (and says so) as before
                row = None if texts is None else index_row(blob_id, texts, search)
                chars += 0 if texts is None else len(texts[0]) + len(texts[1])
                out.append((blob_id, digest, row))
            if not out:
                waiting = len(rows)
            return out
        computed = await self._read(read)
        if not computed:
            return 0, waiting        # nothing to write: the write lock is not taken

        def write(txn: _Txn) -> tuple[int, int]:
            cur = txn.cur
            done = 0
            for blob_id, digest, row in computed:
                # Still waiting, and still that body (a collected blob's id can be reused).
                if cur.execute("SELECT 1 FROM search_unindexed u JOIN blobs b ON "
                               "b.id = u.blob_id WHERE u.blob_id = ? AND u.pending = 1 "
                               "AND b.digest = ?", (blob_id, digest)).fetchone() is None:
                    continue
                if row is None:
                    cur.execute("UPDATE search_unindexed SET pending = 0 WHERE blob_id = ?",
                                (blob_id,))
                else:
                    _insert_rows(cur, [row])
                    cur.execute("DELETE FROM search_unindexed WHERE blob_id = ?", (blob_id,))
                done += 1
            waiting = cur.execute(
                "SELECT count(*) FROM search_unindexed WHERE pending = 1").fetchone()[0]
            return done, int(waiting)
        return await self._write(write)

    async def search_index_purge(self, max_rows: int = 20) -> tuple[int, int]:
        def read(conn: sqlite3.Connection) -> list[tuple[int, bytes, bytes, bytes]]:
            return [(int(r[0]), unpack(r[1]), unpack(r[2]), unpack(r[3])) for r in conn.execute(
                "SELECT fts_rowid, headers, body, fields FROM search_dead ORDER BY fts_rowid "
                "LIMIT ?", (max_rows,))]
        rows = await self._read(read)
        if not rows:
            return 0, 0              # nothing to write: the write lock is not taken

        def write(txn: _Txn) -> tuple[int, int]:
            # Rows another purge (a second indexer, the CLI) took meanwhile are gone: skip.
            present = {r[0] for r in txn.cur.execute(
                f"SELECT fts_rowid FROM search_dead WHERE fts_rowid IN "
                f"({','.join('?' * len(rows))})", [r[0] for r in rows])}
            done = purge_dead(txn.cur, [r for r in rows if r[0] in present])
            left = txn.cur.execute("SELECT count(*) FROM search_dead").fetchone()[0]
            return done, int(left)
        return await self._write(write)

    async def search_index_reset(self, account_id: int | None = None) -> int:
        if account_id is None:
            def reset_all(txn: _Txn) -> int:
                cur = txn.cur
                cur.execute("DELETE FROM search_text")
                cur.execute("DELETE FROM search_dead")
                cur.execute("INSERT INTO search_fts (search_fts) VALUES ('delete-all')")
                cur.execute("DELETE FROM search_unindexed")
                return int(cur.execute("INSERT INTO search_unindexed (blob_id, pending) "
                                       "SELECT id, 1 FROM blobs").rowcount)
            return await self._write(reset_all)
        blob_ids = await self._read(lambda conn: [r[0] for r in conn.execute(
            "SELECT DISTINCT m.blob_id FROM messages m JOIN mailboxes x ON x.id = m.mailbox_id "
            "WHERE x.account_id = ? ORDER BY m.blob_id", (account_id,))])
        total = 0
        for i in range(0, len(blob_ids), _RESET_BATCH):
            chunk = blob_ids[i:i + _RESET_BATCH]

            def reset(txn: _Txn, chunk: list[int] = chunk) -> int:
                n = 0
                for blob_id in chunk:
                    if txn.cur.execute("SELECT 1 FROM blobs WHERE id = ?",
                                       (blob_id,)).fetchone() is None:
                        continue
                    forget_index(txn.cur, blob_id)
                    txn.cur.execute("INSERT INTO search_unindexed (blob_id, pending) "
                                    "VALUES (?, 1)", (blob_id,))
                    n += 1
                return n
            total += await self._write(reset)
        return total

    async def search_index_status(self) -> IndexStatus:
        def q(conn: sqlite3.Connection) -> IndexStatus:
            indexed = conn.execute("SELECT count(*) FROM search_text").fetchone()[0]
            pending, left_out = conn.execute(
                "SELECT coalesce(sum(pending = 1), 0), coalesce(sum(pending = 0), 0) "
                "FROM search_unindexed").fetchone()
            try:
                sizes = dict(conn.execute(
                    "SELECT name LIKE 'search_fts%', sum(pgsize) FROM dbstat "
                    "WHERE name LIKE 'search_fts%' OR name IN ('search_text', 'search_dead') "
                    "GROUP BY 1"))
            except sqlite3.OperationalError:
                sizes = {0: -1, 1: -1}     # an SQLite built without the dbstat table
            return IndexStatus(int(indexed), int(pending), int(left_out),
                               int(sizes.get(1) or 0), int(sizes.get(0) or 0))
        return await self._read_snapshot(q)


def _texts_of(conn: sqlite3.Connection, root: str, digest: str, header: bytes,
              parts: str) -> tuple[str, str] | None:
    """What `index_texts` gives for a stored body, read the way SEARCH reads it (a part
    tree that does not load: no body text, as SEARCH finds none)."""
    try:
        tree = load_parts(parts)
    except ValueError:
        return decoded_headers(header).casefold(), ""
    if index_too_big(tree):
        return None
    return index_texts(_read_piece(conn, root, digest, 0, -1), tree, header)
