"""The admin CLI through the real console script (DESIGN.md "Admin CLI": exit 0 / 1 with one
line on stderr / 2 for bad usage; nothing changed on error)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.util import fails, ok

CASELLA = [str(Path(sys.executable).parent / "casella")]


@pytest.fixture
def cli(tmp_path: Path):
    cfg = tmp_path / "casella.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n[listen]\nimap = "127.0.0.1:0"\n')

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(CASELLA + ["--config", str(cfg), *args], input=stdin,
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "CASELLA_CONFIG": ""})
    return run


def test_domain_user_alias_lifecycle(cli) -> None:
    ok(cli("domain", "add", "example.test"))
    assert "already exists" in fails(cli("domain", "add", "Example.test"))
    out = ok(cli("user", "add", "alice@example.test", "--password-stdin", "--quota", "512M",
                 stdin="s3cret pw\n"))
    assert "alice@example.test" in out and "s3cret" not in out
    show = ok(cli("user", "show", "alice@example.test"))
    for name in ("INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"):
        assert name in show
    assert "512.0 MB" in show and "0 bytes of" in show
    assert "s3cret" not in show
    assert "alice@example.test" in ok(cli("user", "list"))
    assert "alice@example.test" in ok(cli("user", "list", "example.test"))
    ok(cli("user", "quota", "alice@example.test", "1G"))
    assert "1.0 GB" in ok(cli("user", "show", "alice@example.test"))
    ok(cli("user", "passwd", "alice@example.test", "--password", "other"))
    ok(cli("alias", "add", "info@example.test", "alice@example.test", "x@remote.org"))
    ok(cli("alias", "add", "@example.test", "alice@example.test"))
    aliases = ok(cli("alias", "list"))
    assert "info@example.test\talice@example.test, x@remote.org" in aliases
    assert "@example.test\talice@example.test" in aliases
    ok(cli("alias", "remove", "info@example.test"))
    assert "info@" not in ok(cli("alias", "list"))
    assert "example.test" in ok(cli("domain", "list"))
    assert "the queue is empty" in ok(cli("queue", "list"))
    ok(cli("user", "remove", "alice@example.test"))
    assert "does not exist" in fails(cli("user", "show", "alice@example.test"))


def test_user_errors_exit_1_and_change_nothing(cli) -> None:
    ok(cli("domain", "add", "example.test"))
    ok(cli("user", "add", "bob@example.test", "--password", "pw"))
    assert "not hosted" in fails(cli("user", "add", "x@other.test", "--password", "pw"))
    assert "already exists" in fails(cli("user", "add", "BOB@example.test", "--password", "pw"))
    fails(cli("user", "add", "not an address", "--password", "pw"))
    fails(cli("user", "add", "carol@example.test", "--quota", "10Q", "--password", "pw"))
    fails(cli("user", "add", "dave@example.test", "--password-stdin", stdin=""))
    fails(cli("user", "quota", "bob@example.test", "lots"))
    fails(cli("domain", "add", "nodot"))
    fails(cli("alias", "add", "a@unhosted.test", "bob@example.test"))
    users = ok(cli("user", "list"))
    assert users.strip().splitlines() == [users.strip().splitlines()[0]]
    assert "bob@example.test" in users
    err = fails(cli("domain", "remove", "example.test"))
    assert "--force" in err
    assert "bob@example.test" in ok(cli("user", "list"))
    ok(cli("domain", "remove", "example.test", "--force"))
    assert ok(cli("user", "list")).strip() == ""


def test_bad_usage_exits_2(cli) -> None:
    fails(cli("frobnicate"), code=2)
    fails(cli("user"), code=2)
    fails(cli("user", "add"), code=2)
    fails(cli("user", "add", "a@b.test", "--password", "x", "--password-stdin"), code=2)


def test_bad_config_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[limits]\nmax_message_size = "10Q"\n')
    r = subprocess.run(CASELLA + ["--config", str(cfg), "domain", "list"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1
    assert r.stderr.strip() == ("casella: limits.max_message_size = '10Q': expected a size "
                                "such as 512K, 50M, 1G or bytes")


def test_python_dash_m(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "casella", "--help"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "serve" in r.stdout


def test_auth_unblock(cli, tmp_path: Path) -> None:
    import asyncio

    from casella.store.sqlite import SQLiteStore

    async def block() -> None:
        store = SQLiteStore(tmp_path / "data")
        await store.open()
        try:
            await store.auth_record_failure(["ip:192.0.2.7", "user:a@example.test"], 1000, 600,
                                            1, 900)
        finally:
            await store.close()
    asyncio.run(block())
    assert "block lifted" in ok(cli("auth", "unblock", "192.0.2.7"))
    assert "nothing to unblock" in ok(cli("auth", "unblock", "192.0.2.7"))
    assert "block lifted" in ok(cli("auth", "unblock", "A@example.test"))
    fails(cli("auth", "unblock", "not-an-ip-or-address"))
