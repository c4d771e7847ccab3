"""The atheris fuzz targets in fuzz/ (issue 7: "a fuzz target for each parser, runnable with
`make fuzz`, run for a bounded time in CI"). Every target's seed corpus always goes through its
entry point here (so the targets cannot rot even where atheris is missing); when atheris is
installed each target also fuzzes for a couple of seconds (about 10 s in all)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
TARGETS = sorted(FUZZ.glob("fuzz_*.py"))
SECONDS_EACH = 2


def load(path: Path) -> ModuleType:
    if str(FUZZ) not in sys.path:
        sys.path.insert(0, str(FUZZ))
    spec = importlib.util.spec_from_file_location(f"casella_fuzz_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_parser_has_a_target() -> None:
    assert {p.stem for p in TARGETS} >= {"fuzz_imap_parser", "fuzz_pop3_parser",
                                         "fuzz_smtp_parser", "fuzz_mime_parser"}


@pytest.mark.parametrize("path", TARGETS, ids=lambda p: p.stem)
def test_seed_corpus_through_the_target(path: Path) -> None:
    module = load(path)
    seeds = list(module._harness.corpus(module.NAME))
    assert len(seeds) >= 4
    for data in seeds:
        module.TestOneInput(data)
        # Truncations and a byte flip of each seed reach the error paths too.
        for cut in range(0, len(data), max(1, len(data) // 16)):
            module.TestOneInput(data[:cut])
            module.TestOneInput(data[:cut] + bytes([data[cut] ^ 0x41]) + data[cut + 1:])


def test_fuzz_briefly_with_atheris(tmp_path: Path) -> None:
    pytest.importorskip("atheris")
    runner = load(FUZZ / "run.py")
    failures = []
    for path in TARGETS:
        passed, summary = runner.run_target(path, SECONDS_EACH, tmp_path)
        if not passed:
            failures.append(summary)
    assert not failures, "\n\n".join(failures)
