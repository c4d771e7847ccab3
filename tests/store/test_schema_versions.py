"""Schema versions (issue 19): a new database is created at the current version; a database at
an older or newer version is refused at open with one sentence saying what to run; `migrate`
applies the pending steps in one transaction and records each in schema_migrations."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from casella import __version__
from casella.errors import SchemaMismatch, StorageError
from casella.store import sqlite_versions
from casella.store.sqlite import SQLiteStore
from tests.store.test_schema_migration import _old_database

KNOWN = sqlite_versions.known_version()


def recorded(data_dir: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(data_dir / "casella.db") as conn:
        return conn.execute("SELECT version, casella_version FROM schema_migrations "
                            "ORDER BY version").fetchall()


async def test_a_new_database_is_created_at_the_current_version(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    status = await SQLiteStore(data_dir).schema_status()
    assert (status.version, status.known, status.applied) == (0, KNOWN, ())
    assert [v for v, _ in status.pending] == list(range(1, KNOWN + 1))
    store = SQLiteStore(data_dir)
    await store.open()
    await store.close()
    status = await store.schema_status()
    assert (status.version, status.pending) == (KNOWN, ())
    assert [(s.version, s.casella_version) for s in status.applied] == [
        (v, __version__) for v in range(1, KNOWN + 1)]
    assert all(abs(s.applied_at - time.time()) < 600 for s in status.applied)
    with sqlite3.connect(data_dir / "casella.db") as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone() == (2,)    # incremental
        assert conn.execute("PRAGMA user_version").fetchone() == (KNOWN,)


async def test_an_older_schema_is_refused_until_migrated(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    conn = _old_database(data_dir / "casella.db", 9)
    conn.execute("INSERT INTO domains (name, created) VALUES ('kept.test', 1)")
    conn.close()
    store = SQLiteStore(data_dir)
    with pytest.raises(SchemaMismatch) as refused:
        await store.open()
    assert str(refused.value) == (f"the database schema is version 9, this casella needs "
                                  f"{KNOWN}: run `casella migrate`")
    status = await store.schema_status()
    assert status.version == 9 and status.applied == ()
    assert [v for v, _ in status.pending] == list(range(10, KNOWN + 1))
    assert status.pending[0] == (10, "Sieve scripts, forwards and vacation replies")

    seen: list[tuple[int, str]] = []
    assert await store.migrate(lambda v, title: seen.append((v, title))) == list(
        range(10, KNOWN + 1))
    assert seen == list(status.pending)
    assert recorded(data_dir) == [(v, __version__) for v in range(10, KNOWN + 1)]
    assert await store.migrate() == []            # nothing left: nothing recorded again
    assert recorded(data_dir) == [(v, __version__) for v in range(10, KNOWN + 1)]

    store = SQLiteStore(data_dir)
    await store.open()
    try:
        assert [d.name for d in await store.list_domains()] == ["kept.test"]
    finally:
        await store.close()


async def test_a_failed_step_changes_nothing(tmp_path: Path) -> None:
    """All steps run in one transaction: a step that fails leaves the old version, its data
    and no record."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    conn = _old_database(data_dir / "casella.db", 9)
    conn.execute("CREATE TABLE api_tokens (x)")     # step 11 cannot create it now
    conn.close()
    with pytest.raises(StorageError, match="api_tokens"):
        await SQLiteStore(data_dir).migrate()
    with sqlite3.connect(data_dir / "casella.db") as conn:
        assert conn.execute("PRAGMA user_version").fetchone() == (9,)
        assert conn.execute("SELECT name FROM sqlite_master WHERE name IN "
                            "('sieve_scripts', 'schema_migrations')").fetchall() == []


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store = SQLiteStore(data_dir)
    await store.open()
    await store.close()
    with sqlite3.connect(data_dir / "casella.db") as conn:
        conn.execute(f"PRAGMA user_version={KNOWN + 1}")
    line = (f"the database schema is version {KNOWN + 1}, newer than this casella (version "
            f"{KNOWN}); upgrade casella")
    with pytest.raises(SchemaMismatch) as refused:
        await SQLiteStore(data_dir).open()
    assert str(refused.value) == line
    with pytest.raises(SchemaMismatch) as refused:
        await SQLiteStore(data_dir).migrate()
    assert str(refused.value) == line
    status = await SQLiteStore(data_dir).schema_status()
    assert (status.version, status.pending) == (KNOWN + 1, ())
