"""What the CLI tests share: `casella_runner` (the `casella` command on a config file of the
test's own), and what they check of every run: success with its output, or a failure with the
expected exit status and, for status 1, exactly one line on stderr and no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

CASELLA = [str(Path(sys.executable).parent / "casella")]

Runner = Callable[..., subprocess.CompletedProcess[str]]


def casella_runner(tmp_path: Path, extra_config: str = "") -> Runner:
    """`run(*args, stdin=None)`: casella with data in tmp_path/data, IMAP on a free port, and
    `extra_config` (TOML sections) after that; `run.data_dir` is the data directory."""
    cfg = tmp_path / "casella.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n[listen]\nimap = "127.0.0.1:0"\n'
                   + extra_config)

    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(CASELLA + ["--config", str(cfg), *args], input=stdin,
                              capture_output=True, text=True, timeout=60,
                              env={**os.environ, "CASELLA_CONFIG": ""})
    run.data_dir = tmp_path / "data"  # type: ignore[attr-defined]
    return run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    return result.stderr
