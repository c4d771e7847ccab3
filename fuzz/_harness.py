"""Shared plumbing of the atheris fuzz targets in this folder.

Lives here: `instrumented()` (coverage instrumentation of casella's modules, only when a target
runs under atheris), `main()` (hand a target to libFuzzer), `corpus()` (the seed inputs a
target's run starts from, which the test suite also feeds through each target when atheris is
not installed). Must never: be imported by casella itself.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Running a target as a program (python fuzz/fuzz_x.py ...) is fuzzing; importing it from the
# test suite is not.
FUZZING = os.path.basename(sys.argv[0]).startswith("fuzz_")


def instrumented() -> contextlib.AbstractContextManager[object]:
    """Instrument the casella modules imported in this block, when fuzzing with atheris."""
    if FUZZING:
        try:
            import atheris
        except ImportError:
            return contextlib.nullcontext()
        return atheris.instrument_imports(include=["casella"])
    return contextlib.nullcontext()


def corpus(name: str) -> Iterator[bytes]:
    """The seed inputs of one target (fuzz/corpus/<name>/*), in a stable order."""
    for path in sorted((HERE / "corpus" / name).iterdir()):
        if path.is_file():
            yield path.read_bytes()


def main(test_one_input: Callable[[bytes], None]) -> None:
    import atheris

    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()
