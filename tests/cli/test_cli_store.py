"""`casella migrate [--status]` (issue 19) and `casella store stats|compact` (issue 21) through
the real console script: a schema at another version stops `serve` and the other commands
with one line saying what to run; migrate reports each step; the space figures add up."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from casella.store import sqlite_versions
from tests.cli.test_cli import fails, ok
from tests.store.test_schema_migration import _old_database

CASELLA = [str(Path(sys.executable).parent / "casella")]
KNOWN = sqlite_versions.known_version()
TOO_OLD = f"casella: the database schema is version 9, this casella needs {KNOWN}: run " \
          "`casella migrate`"


@pytest.fixture
def cli(tmp_path: Path):
    def run(*args: str, workers: int = 1) -> subprocess.CompletedProcess[str]:
        cfg = tmp_path / "casella.toml"
        cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n[server]\nallow_root = true\n'
                       f'workers = {workers}\n[listen]\nimap = "127.0.0.1:0"\n')
        return subprocess.run(CASELLA + ["--config", str(cfg), *args], check=False,
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "CASELLA_CONFIG": ""})
    return run


def old_data_dir(tmp_path: Path, version: int = 9) -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    _old_database(data_dir / "casella.db", version).close()
    return data_dir


def refused(result: subprocess.CompletedProcess[str]) -> str:
    """The last line on stderr of a command that exited 1 (serve may log before it)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr.strip().splitlines()[-1]


def test_a_fresh_data_dir_needs_no_migrate(cli) -> None:
    assert "no database yet" in ok(cli("migrate", "--status"))
    ok(cli("domain", "add", "example.test"))
    assert "nothing to do" in ok(cli("migrate"))
    status = ok(cli("migrate", "--status"))
    assert f"database schema version {KNOWN}; this casella knows version {KNOWN}" in status
    assert "nothing pending" in status
    assert f"\n  {KNOWN:>4}  " in status and "\n     1  " in status


def test_an_old_schema_stops_serve_and_commands_until_migrated(cli, tmp_path: Path) -> None:
    old_data_dir(tmp_path)
    assert refused(cli("serve")) == TOO_OLD
    assert refused(cli("serve", workers=2)) == TOO_OLD     # the supervisor checks it too
    assert fails(cli("domain", "list")).strip() == TOO_OLD
    status = ok(cli("migrate", "--status"))
    assert f"database schema version 9; this casella knows version {KNOWN}" in status
    assert f"{KNOWN - 9} steps pending; run `casella migrate`" in status
    assert "   10  Sieve scripts, forwards and vacation replies" in status
    assert "no steps recorded" in status

    out = ok(cli("migrate"))
    lines = out.splitlines()
    assert lines[0].startswith(f"the database schema is version 9, this casella needs {KNOWN}")
    assert lines[1:-1] == [f"  step {v} of {KNOWN}: {sqlite_versions.step_title(v)}"
                           for v in range(10, KNOWN + 1)]
    assert lines[-1].startswith(f"the database schema is now version {KNOWN} "
                                f"({KNOWN - 9} steps applied in ")
    status = ok(cli("migrate", "--status"))
    assert "nothing pending" in status and "\n    10  " in status and "\n     9  " not in status
    ok(cli("domain", "add", "example.test"))


def test_a_newer_schema_stops_serve_and_migrate(cli, tmp_path: Path) -> None:
    ok(cli("domain", "add", "example.test"))
    with sqlite3.connect(tmp_path / "data" / "casella.db") as conn:
        conn.execute(f"PRAGMA user_version={KNOWN + 1}")
    line = (f"casella: the database schema is version {KNOWN + 1}, newer than this casella "
            f"(version {KNOWN}); upgrade casella")
    assert refused(cli("serve")) == line
    assert fails(cli("migrate")).strip() == line
    assert fails(cli("user", "list")).strip() == line
    assert "newer than this casella: upgrade casella" in ok(cli("migrate", "--status"))


def test_store_stats_and_compact(cli, tmp_path: Path) -> None:
    """A database made before auto_vacuum: stats say so, compact switches it (and says what
    it costs), stats after it agree with the file."""
    data_dir = old_data_dir(tmp_path)
    ok(cli("migrate"))
    with sqlite3.connect(data_dir / "casella.db") as conn:   # free pages to give back
        conn.execute("CREATE TABLE filler (x BLOB)")
        conn.executemany("INSERT INTO filler VALUES (zeroblob(3000))", [()] * 500)
        conn.execute("DROP TABLE filler")
    before = json.loads(ok(cli("store", "stats", "--json")))
    assert before["auto_vacuum"] == "none" and before["schema_version"] == KNOWN
    assert before["free_bytes"] > 1_000_000
    assert before["used_bytes"] + before["free_bytes"] == before["database_bytes"]
    assert before["reclaimable_bytes"] >= before["free_bytes"]
    assert before["messages"] == before["blob_files"] == before["blob_bytes"] == 0
    text = ok(cli("store", "stats"))
    assert "auto_vacuum   none: free pages are reused, but only `casella store compact` " \
           "gives them back" in text
    assert f"({before['database_bytes']} bytes, pages of {before['page_size']})" in text

    out = ok(cli("store", "compact"))
    assert "needs about that much free disk" in out and "every write" in out
    assert out.rstrip().endswith("auto_vacuum is now incremental")
    after = json.loads(ok(cli("store", "stats", "--json")))
    assert after["auto_vacuum"] == "incremental" and after["free_bytes"] == 0
    # Incremental mode keeps a pointer-map page per few hundred pages.
    assert after["database_bytes"] <= before["used_bytes"] + 2 * before["page_size"]
    assert after["database_bytes"] == os.path.getsize(data_dir / "casella.db")
    assert "the server gives free pages back by itself" in ok(cli("store", "stats"))
