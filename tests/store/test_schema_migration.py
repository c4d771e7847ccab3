"""Schema migrations on a database made by an older casella: version 5 fills in the SEARCH
header columns of the blobs stored before it, from their stored headers."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from casella.mail.text import search_values
from casella.store import sqlite_schema


def test_version_5_fills_the_search_columns_of_older_blobs(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "old.db", isolation_level=None)
    for step in sqlite_schema.MIGRATIONS[:4]:
        for statement in step.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("PRAGMA user_version=4")
    headers = [b"From: A <a@example.org>\r\nSubject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=\r\n\r\n",
               b"To: b@example.test\r\nCc: c@example.org\r\nCc: D <d@example.org>\r\n\r\n"]
    headers += [b"Subject: number %d\r\n\r\n" % n for n in range(2500)]   # several batches
    conn.executemany(
        "INSERT INTO blobs (digest, size, refcount, header, envelope, bodystructure, body, "
        "parts, preview) VALUES (?, 1, 1, ?, x'', x'', x'', '', '')",
        [(f"{n:064x}", h) for n, h in enumerate(headers)])

    assert sqlite_schema.migrate(conn) == len(sqlite_schema.MIGRATIONS) == 7
    rows = conn.execute(f"SELECT header, {', '.join(sqlite_schema.SEARCH_COLUMNS)} "
                        "FROM blobs ORDER BY id").fetchall()
    assert [tuple(r[1:]) for r in rows] == [search_values(bytes(r[0])) for r in rows]
    assert rows[0][1:] == ("a <a@example.org>", "", "", "", "grüsse")
    assert rows[1][1:] == ("", "b@example.test", "c@example.org\nd <d@example.org>", "", "")
    assert rows[-1][5] == "number 2499"
    conn.close()
