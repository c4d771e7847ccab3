"""`casella export` and `casella import` through the console script (DESIGN.md "Admin CLI":
exit 0, 1 with one line on stderr, 2 for bad usage; progress on stderr, results on stdout)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CASELLA = [str(Path(sys.executable).parent / "casella")]


def casella(cfg: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(CASELLA + ["--config", str(cfg), *args], input=stdin,
                          capture_output=True, text=True, timeout=120, check=False,
                          env={**os.environ, "CASELLA_CONFIG": ""})


@pytest.fixture
def configs(tmp_path: Path) -> tuple[Path, Path]:
    out = []
    for name in ("old", "new"):
        cfg = tmp_path / f"{name}.toml"
        cfg.write_text(f'data_dir = "{tmp_path / name}"\n[listen]\nimap = "127.0.0.1:0"\n')
        out.append(cfg)
    return out[0], out[1]


def test_export_then_import_from_the_command_line(configs: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    old, new = configs
    assert casella(old, "domain", "add", "example.test").returncode == 0
    assert casella(old, "user", "add", "alice@example.test", "--password-stdin",
                   stdin="pw\n").returncode == 0
    out = tmp_path / "export"
    done = casella(old, "export", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"exported 1 accounts, 0 messages to {out}\n"
    assert "exported 0 of 0 messages" in done.stderr           # not a terminal: plain lines
    assert "\r" not in done.stderr
    again = casella(old, "export", str(out))
    assert again.returncode == 1 and again.stderr.count("\n") == 1
    assert "not an empty directory" in again.stderr
    done = casella(new, "import", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"imported 1 accounts, 0 new messages from {out}\n"
    shown = casella(new, "user", "show", "alice@example.test")
    assert shown.returncode == 0 and "INBOX" in shown.stdout


@pytest.mark.parametrize("args, code, text", [
    (["import"], 2, "give DIR or --from-dovecot"),
    (["import", "somewhere", "--from-dovecot", "elsewhere"], 2, "give DIR or --from-dovecot"),
    (["import", "somewhere", "--map", "m.txt"], 1, "go with --from-dovecot"),
    (["import", "nowhere"], 1, "is missing"),
    (["import", "--from-dovecot", "nowhere"], 1, "is not a directory"),
    (["import", "--from-dovecot", ".", "--pop3-uidl-format", "%m"], 1, "pop3_uidl_format"),
    (["export", "x", "--account", "nobody@example.test"], 1, "no such user"),
    (["export", "old.toml/sub"], 1, "Not a directory"),
])
def test_mistakes_are_one_line(configs: tuple[Path, Path], tmp_path: Path, args: list[str],
                               code: int, text: str) -> None:
    old, _ = configs
    done = subprocess.run(CASELLA + ["--config", str(old), *args], capture_output=True, check=False,
                          text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "CASELLA_CONFIG": ""})
    assert done.returncode == code, (done.stdout, done.stderr)
    assert text in done.stderr and "Traceback" not in done.stderr
    if code == 1:
        assert done.stderr.count("\n") == 1, done.stderr
