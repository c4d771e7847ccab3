"""Which schema version a SQLite database is at, and moving it to this casella's.

Lives here: the check made when the store opens (a new, empty database is created at the
current version with auto_vacuum=INCREMENTAL; an older or newer one is refused with one line
saying what to run), `casella migrate`'s steps with their record in the schema_migrations table
(beside PRAGMA user_version), and the status `casella migrate --status` shows. Must never: hold
a schema step itself (casella.store.sqlite_schema has them) or run a step outside
`casella migrate` on a database that already holds data.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

from casella import __version__
from casella.errors import SchemaMismatch
from casella.store.model import AppliedStep, SchemaStatus
from casella.store.sqlite_schema import MIGRATIONS, migrate

#: What each schema step brought, for `casella migrate` and its --status.
STEP_TITLES: dict[int, str] = {
    1: "domains, accounts, mailboxes, messages, the outbound queue",
    2: "failed-login counters",
    3: "outbound delivery notices and sending limits",
    4: "THREADID and quota warnings",
    5: "SEARCH header columns (filled from every stored header)",
    6: "small message bodies inside the database",
    7: "SEARCH address columns in normal form (worked out again)",
    8: "an account's own POP3 policy",
    9: "POP3 UIDLs brought from another store",
    10: "Sieve scripts, forwards and vacation replies",
    11: "admin API tokens",
    12: "the search index (texts and trigrams; bodies already stored are indexed afterwards)",
}

# Not a numbered step: a database made before casella kept this record gets the table at its
# next `casella migrate`, and nothing else reads it.
_HISTORY = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at INTEGER NOT NULL,
    casella_version TEXT NOT NULL
)"""


def known_version() -> int:
    """The schema version this casella works with."""
    return len(MIGRATIONS)


def step_title(version: int) -> str:
    return STEP_TITLES.get(version, f"schema version {version}")


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _is_empty(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchone() is None


def too_old(version: int) -> SchemaMismatch:
    return SchemaMismatch(f"the database schema is version {version}, this casella needs "
                          f"{known_version()}: run `casella migrate`")


def too_new(version: int) -> SchemaMismatch:
    return SchemaMismatch(f"the database schema is version {version}, newer than this casella "
                          f"(version {known_version()}); upgrade casella")


def check(conn: sqlite3.Connection) -> None:
    """At open: create a new database at the current version; refuse (SchemaMismatch) a
    database at another version."""
    version = _version(conn)
    if version == 0 and _is_empty(conn):
        apply_steps(conn)
        return
    if version < known_version():
        raise too_old(version)
    if version > known_version():
        raise too_new(version)


def apply_steps(conn: sqlite3.Connection,
                progress: Callable[[int, str], None] | None = None) -> list[int]:
    """`casella migrate`: apply every pending step in one transaction, each recorded in
    schema_migrations; `progress(version, title)` before each. Returns the versions applied.
    A new database gets auto_vacuum=INCREMENTAL first (SQLite takes it only before the first
    table, or with a VACUUM: the WAL header the connection wrote already counts as content,
    and on an empty file a VACUUM costs nothing); one that is newer is refused."""
    if _version(conn) == 0 and _is_empty(conn):
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
        conn.execute("VACUUM")
    if _version(conn) > known_version():
        raise too_new(_version(conn))
    applied: list[int] = []
    casella_version = __version__

    def step(version: int) -> None:
        if not applied:
            conn.execute(_HISTORY)
        if progress is not None:
            progress(version, step_title(version))
        conn.execute("INSERT OR REPLACE INTO schema_migrations (version, applied_at, "
                     "casella_version) VALUES (?, ?, ?)", (version, int(time.time()),
                                                            casella_version))
        applied.append(version)

    migrate(conn, step)
    return applied


def status(conn: sqlite3.Connection) -> SchemaStatus:
    """Where the database stands (version 0 and nothing applied: no database yet)."""
    conn.execute("BEGIN")
    try:
        version = _version(conn)
        has_history = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                                   "name = 'schema_migrations'").fetchone() is not None
        rows = conn.execute("SELECT version, applied_at, casella_version FROM "
                            "schema_migrations ORDER BY version").fetchall() \
            if has_history else []
    finally:
        conn.execute("COMMIT")
    pending = tuple((v, step_title(v)) for v in range(version + 1, known_version() + 1))
    return SchemaStatus(version, known_version(), pending,
                        tuple(AppliedStep(r[0], r[1], r[2]) for r in rows))
