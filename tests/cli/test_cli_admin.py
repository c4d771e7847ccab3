"""`casella token create|list|revoke` through the real console script (exit 0 / 1 with one
line on stderr / 2 for bad usage)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import RunningServer
from tests.http.conftest import AdminSite

CASELLA = [str(Path(sys.executable).parent / "casella")]


class Cli:
    def __init__(self, tmp_path: Path, data_dir: Path | None = None) -> None:
        self.tmp_path = tmp_path
        self.data_dir = data_dir or tmp_path / "data"
        self.extra = ""
        self.cfg = tmp_path / "casella.toml"

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.cfg.write_text(
            f'hostname = "mail.example.test"\ndata_dir = "{self.data_dir}"\n'
            '[listen]\nsmtp = "0.0.0.0:25"\nsubmissions = "0.0.0.0:465"\n'
            'submission = "0.0.0.0:587"\nimaps = "0.0.0.0:993"\npop3s = "0.0.0.0:995"\n'
            + self.extra)
        return subprocess.run(CASELLA + ["--config", str(self.cfg), *args],
                              capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, "CASELLA_CONFIG": ""})


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    return result.stderr


# --- tokens ----------------------------------------------------------------------------------

def test_token_commands(cli: Cli) -> None:
    ok(cli("domain", "add", "example.test"))
    result = cli("token", "create", "--name", "panel")
    token = ok(result).strip()
    assert re.fullmatch(r"casella_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token)
    assert "shown only this once" in result.stderr
    reseller = ok(cli("token", "create", "--name", "reseller", "--domain", "Example.TEST"))
    assert reseller.strip() != token
    listing = ok(cli("token", "list"))
    assert "panel" in listing and "(every domain)" in listing
    assert re.search(r"reseller\s+example\.test", listing)
    assert token not in listing and token.split("_")[2] not in listing
    assert "already exists" in fails(cli("token", "create", "--name", "panel"))
    assert "does not exist" in fails(cli("token", "create", "--name", "x",
                                         "--domain", "nowhere.test"))
    assert "bad token name" in fails(cli("token", "create", "--name", "has space"))
    fails(cli("token", "create"), 2)
    ok(cli("token", "revoke", "panel"))
    assert "panel" not in ok(cli("token", "list"))
    assert "no token" in fails(cli("token", "revoke", "panel"))
    # The secret is nowhere in the data directory: only its SHA-256.
    for path in cli.data_dir.rglob("*"):
        if path.is_file():
            assert token.split("_")[2].encode() not in path.read_bytes()


@pytest.fixture
def admin(make_server: Callable[..., RunningServer]) -> AdminSite:
    return AdminSite(make_server())


def test_a_token_from_the_cli_works_on_a_running_server(tmp_path: Path,
                                                        admin: AdminSite) -> None:
    cli = Cli(tmp_path, admin.server.data_dir)
    ok(cli("domain", "add", "example.test"))
    token = ok(cli("token", "create", "--name", "panel")).strip()
    with admin.client(token) as api:
        assert [d["name"] for d in api.get("/domains").json()] == ["example.test"]
    ok(cli("token", "revoke", "panel"))
    assert httpx.get(admin.url("/api/v1/domains"),
                     headers={"Authorization": f"Bearer {token}"}).status_code == 401
