"""Schema migrations on a database made by an older casella: version 5 fills in the SEARCH
header columns of the blobs stored before it, from their stored headers; version 7 works them
out again (addresses in normal form, RFC 9051 §6.4.4 FROM/TO/CC/BCC as Dovecot matches)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from casella.mail.text import search_values
from casella.store import sqlite_schema


def _old_database(path: Path, version: int) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    for step in sqlite_schema.MIGRATIONS[:version]:
        for statement in step.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute(f"PRAGMA user_version={version}")
    return conn


def _insert(conn: sqlite3.Connection, headers: list[bytes]) -> None:
    conn.executemany(
        "INSERT INTO blobs (digest, size, refcount, header, envelope, bodystructure, body, "
        "parts, preview) VALUES (?, 1, 1, ?, x'', x'', x'', '', '')",
        [(f"{n:064x}", h) for n, h in enumerate(headers)])


def test_version_5_fills_the_search_columns_of_older_blobs(tmp_path: Path) -> None:
    conn = _old_database(tmp_path / "old.db", 4)
    headers = [b"From: A <a@example.org>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n",
               b"To: b@example.test\r\nCc: c@example.org\r\nCc: D <d@example.org>\r\n\r\n"]
    headers += [b"Subject: number %d\r\n\r\n" % n for n in range(2500)]   # several batches
    _insert(conn, headers)

    assert sqlite_schema.migrate(conn) == len(sqlite_schema.MIGRATIONS) == 12
    rows = conn.execute(f"SELECT header, {', '.join(sqlite_schema.SEARCH_COLUMNS)} "
                        "FROM blobs ORDER BY id").fetchall()
    assert [tuple(r[1:]) for r in rows] == [search_values(bytes(r[0])) for r in rows]
    assert rows[0][1:] == ("a <a@example.org>", "", "", "", "grüsse")
    assert rows[1][1:] == ("", "<b@example.test>", "<c@example.org>\nd <d@example.org>", "",
                           "")
    assert rows[-1][5] == "number 2499"
    conn.close()


def test_version_7_refills_the_address_columns(tmp_path: Path) -> None:
    """A version 6 database holds the addresses as written; after the upgrade they are in
    normal form, so a comment inside an address no longer hides it from SEARCH FROM."""
    conn = _old_database(tmp_path / "v6.db", 6)
    header = b"From: <user (comment)@ (comment) domain.org>\r\nTo: g: x@y;\r\nSubject: s\r\n\r\n"
    _insert(conn, [header])
    conn.execute("UPDATE blobs SET search_from = 'old', search_to = 'old', search_cc = '', "
                 "search_bcc = '', search_subject = 's'")

    assert sqlite_schema.migrate(conn) == len(sqlite_schema.MIGRATIONS)
    row = conn.execute(f"SELECT {', '.join(sqlite_schema.SEARCH_COLUMNS)} FROM blobs").fetchone()
    assert row == ("<user@domain.org>", "g: <x@y>;", "", "", "s") == search_values(header)
    assert sqlite_schema.migrate(conn) == len(sqlite_schema.MIGRATIONS)  # a no-op now
    conn.close()
