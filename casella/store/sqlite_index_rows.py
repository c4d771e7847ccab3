"""SQLite backend: the rows of the search index (schema version 12), written and removed
inside the write transaction that stores or collects a blob.

Lives here: how a message's index text is stored (`encode_text`), `write_index` (a batch's new
blobs: their text and trigrams, or a row saying they are not indexed), `forget_index` (a
collected blob's rows) and the SQL the reads share. Must never: commit, or run anywhere but
inside a write transaction (the writer thread, or a light batch's loop thread for nothing
here: the trigram writes are left to the writer thread, where SQLite lets go of the GIL).
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from casella.store.blobs import ParsedData

# NUL stops FTS5's trigram tokenizer, so it is stored as U+DFFF (a lone surrogate, passed
# through as UTF-8): a needle never holds a surrogate, so a needle without NUL is in the
# stored text exactly when it is in the text. (A needle with NUL is not looked up here.)
_NUL_STORED = "\udfff".encode("utf-8", "surrogatepass")

_INSERT_TEXT = "INSERT INTO search_text (blob_id, headers, body, fields) VALUES (?, ?, ?, ?)"
_INSERT_FTS = "INSERT INTO search_fts (rowid, headers, body, fields) VALUES (?, ?, ?, ?)"
_MARK = "INSERT OR REPLACE INTO search_unindexed (blob_id, pending) VALUES (?, ?)"

IndexRow = tuple[int, bytes, bytes, bytes]
# zlib's fastest level: the bench corpus's text takes 2.4 times fewer pages, for some tens
# of microseconds a message.
_LEVEL = 1


def encode_text(text: str) -> bytes:
    """A casefolded text as the index reads it: UTF-8, lone surrogates passed through, NUL as
    U+DFFF. Byte substrings of well-formed UTF-8 starting at a lead byte are exactly character
    substrings, so a needle's UTF-8 is in these bytes exactly when the needle is in the
    text."""
    return text.encode("utf-8", "surrogatepass").replace(b"\x00", _NUL_STORED)


def unpack(stored: bytes) -> bytes:
    """A search_text column (zlib) as `encode_text` gave it."""
    return zlib.decompress(stored)


def index_row(blob_id: int, index: tuple[str, str], search: Sequence[str]) -> IndexRow:
    """The search_text row of a blob: its index texts and its header-key values (the
    SCHEMA_V5 columns, joined with LF, for narrowing FROM/TO/CC/BCC/SUBJECT and HEADER)."""
    return (blob_id, encode_text(index[0]), encode_text(index[1]),
            encode_text("\n".join(search)))


def insert_rows(cur: sqlite3.Connection, rows: Sequence[IndexRow]) -> None:
    """The texts compressed into search_text, their trigrams into search_fts under the new
    row's fts_rowid."""
    fts_rows = []
    for blob_id, headers, body, fields in rows:
        c = cur.execute(_INSERT_TEXT, (blob_id, zlib.compress(headers, _LEVEL),
                                       zlib.compress(body, _LEVEL),
                                       zlib.compress(fields, _LEVEL)))
        fts_rows.append((int(c.lastrowid or 0), headers, body, fields))
    if fts_rows:
        cur.executemany(_INSERT_FTS, fts_rows)


def write_index(cur: sqlite3.Connection, new: Sequence[tuple[int, ParsedData, bool]],
                known: Sequence[tuple[int, ParsedData]]) -> None:
    """Index the blobs a batch stored: `new` holds (blob id, parsed data, whether a mailbox
    message references it); a body only queued for sending is marked unindexed (pending 0),
    as is one too big to index. `known`: blobs that mailbox messages of the batch reference
    without having stored them: one stored by the batch for the queue, or earlier and not
    indexed yet (queued, or stored before version 12), is indexed now."""
    stored = {blob_id: parsed for blob_id, parsed, _ in new}
    for_messages = {blob_id for blob_id, _, for_message in new if for_message}
    wanted: dict[int, ParsedData] = {}
    for blob_id, parsed in known:
        if blob_id in stored:
            for_messages.add(blob_id)
        elif parsed.index is not None:
            wanted[blob_id] = parsed
    rows: list[IndexRow] = []
    marks: list[tuple[int, int]] = []
    for blob_id, parsed in stored.items():
        if blob_id in for_messages and parsed.index is not None:
            rows.append(index_row(blob_id, parsed.index, parsed.search))
        else:
            marks.append((blob_id, 0))
    ids = list(wanted)
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        found = [r[0] for r in cur.execute(
            "SELECT blob_id FROM search_unindexed WHERE blob_id IN "
            f"({','.join('?' * len(chunk))})", chunk)]
        for blob_id in found:
            index = wanted[blob_id].index
            assert index is not None
            rows.append(index_row(blob_id, index, wanted[blob_id].search))
        cur.executemany("DELETE FROM search_unindexed WHERE blob_id = ?", [(b,) for b in found])
    insert_rows(cur, rows)
    if marks:
        cur.executemany(_MARK, marks)


def forget_index(cur: sqlite3.Connection, blob_id: int) -> None:
    """Remove a blob's index rows (its own row is being deleted in this transaction): its
    text moves to search_dead, whose trigrams `purge_dead` removes later (a contentless FTS5
    table forgets a row's trigrams only when told its exact text, as dear as indexing it)."""
    cur.execute("INSERT INTO search_dead (fts_rowid, headers, body, fields) "
                "SELECT fts_rowid, headers, body, fields FROM search_text WHERE blob_id = ?",
                (blob_id,))
    cur.execute("DELETE FROM search_text WHERE blob_id = ?", (blob_id,))
    cur.execute("DELETE FROM search_unindexed WHERE blob_id = ?", (blob_id,))


def purge_dead(cur: sqlite3.Connection, rows: Sequence[tuple[int, bytes, bytes, bytes]]) -> int:
    """Remove the trigrams of these search_dead rows (fts_rowid and the decompressed texts)
    and the rows themselves; how many went."""
    for fts_rowid, headers, body, fields in rows:
        cur.execute("INSERT INTO search_fts (search_fts, rowid, headers, body, fields) "
                    "VALUES ('delete', ?, ?, ?, ?)", (fts_rowid, headers, body, fields))
        cur.execute("DELETE FROM search_dead WHERE fts_rowid = ?", (fts_rowid,))
    return len(rows)


def fts_query(needle: str, most: int = 8) -> str | None:
    """An FTS5 query finding every row that holds all of (up to `most`, spread over the
    needle, first and last included) the needle's trigrams: a superset of the rows holding
    the needle (detail=none keeps no positions, so no phrase query). None when the needle
    has fewer than 3 characters, or a character the index cannot look up (NUL, a
    surrogate)."""
    if len(needle) < 3 or "\x00" in needle:
        return None
    try:
        needle.encode("utf-8")
    except UnicodeEncodeError:
        return None
    grams = list(dict.fromkeys(needle[i:i + 3] for i in range(len(needle) - 2)))
    if len(grams) > most:
        step = (len(grams) - 1) / (most - 1)
        grams = list(dict.fromkeys(grams[round(k * step)] for k in range(most)))
    return " AND ".join('"' + g.replace('"', '""') + '"' for g in grams)
