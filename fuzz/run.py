"""Run every atheris fuzz target in this folder for a bounded time (`make fuzz`).

Usage: python fuzz/run.py [SECONDS_PER_TARGET] [--work DIR] [TARGET ...]

Each target starts from its seed corpus (fuzz/corpus/<name>) copied into a work folder (default
var/fuzz/<name>, kept between runs so the corpus grows); inputs that crash a target are saved
as var/fuzz/artifacts/<target>-crash-*. Exits 1 if any target found a failure. Must never:
write into fuzz/corpus (seeds change only by hand).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def targets(names: list[str]) -> list[Path]:
    found = sorted(HERE.glob("fuzz_*.py"))
    if names:
        found = [p for p in found
                 if {p.stem, p.stem.removeprefix("fuzz_"), corpus_name(p)} & set(names)]
    return found


def corpus_name(target: Path) -> str:
    return target.stem.removeprefix("fuzz_").removesuffix("_parser")


def run_target(target: Path, seconds: int, work: Path) -> tuple[bool, str]:
    name = corpus_name(target)
    corpus = work / name
    corpus.mkdir(parents=True, exist_ok=True)
    for seed in (HERE / "corpus" / name).iterdir():
        if not (corpus / seed.name).exists():
            shutil.copy(seed, corpus / seed.name)
    artifacts = work / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, str(target), f"-max_total_time={seconds}", "-timeout=20",
           "-rss_limit_mb=3072", "-max_len=65536", f"-artifact_prefix={artifacts}/{target.stem}-",
           "-print_final_stats=1", str(corpus)]
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120,
                          check=False)
    elapsed = time.monotonic() - started
    tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
    summary = f"{target.stem}: exit {done.returncode} after {elapsed:.1f}s"
    return done.returncode == 0, summary if done.returncode == 0 else summary + "\n" + tail


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seconds", nargs="?", type=int, default=60)
    parser.add_argument("--work", type=Path, default=ROOT / "var" / "fuzz")
    parser.add_argument("names", nargs="*")
    args = parser.parse_intermixed_args(argv)
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("atheris is not installed: pip install atheris (make fuzz does it)",
              file=sys.stderr)
        return 2
    ok = True
    for target in targets(args.names):
        passed, summary = run_target(target, args.seconds, args.work)
        print(summary, flush=True)
        ok = ok and passed
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
