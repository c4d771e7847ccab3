"""What the CLI tests check of every `casella` run: success with its output, or a failure with
the expected exit status and, for status 1, exactly one line on stderr and no traceback."""

from __future__ import annotations

import subprocess


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, (result.stdout, result.stderr)
    if code == 1:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
    return result.stderr
