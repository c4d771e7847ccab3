"""Where casella spends its time during one scenario: `py-spy record` on the casella process
and its workers (`--profile SCENARIO`), and a plain-text summary of the hottest frames.

Must never: profile anything but the casella processes the runner started.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path


class Profiler:
    def __init__(self, scenarios: str, pids: Callable[[], list[int]], out_dir: Path) -> None:
        self.scenarios = {s.strip() for s in scenarios.split(",") if s.strip()}
        self.pids = pids
        self.out_dir = out_dir
        self.proc: subprocess.Popen[bytes] | None = None
        self.files: list[Path] = []
        self.exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))

    def start(self, scenario: str, case: str) -> None:
        pids = self.pids()
        if scenario not in self.scenarios or not pids or not os.path.exists(self.exe):
            return
        out = self.out_dir / f"py-spy-{scenario}-{len(self.files)}.txt"
        self.files.append(out)
        self.proc = subprocess.Popen(
            [self.exe, "record", "--pid", str(pids[0]), "--subprocesses", "--format", "raw",
             "--rate", "100", "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
            self.proc = None


# Leaf frames where a thread waits rather than works (py-spy samples idle threads too).
_IDLE_LEAVES = ("Selector.select (selectors.py", "_worker (concurrent/futures/thread.py:81)",
                "wait (threading.py", "_writer_main (casella/store/sqlite_base.py:199)",
                "get (queue.py", "poll (selectors.py", "accept (socket.py")
# Frames every busy sample runs under: they say nothing about where the time goes.
_TRIVIAL = ("process ", "<module>", "main (", "cmd_serve (", "serve (casella/workers.py",
            "Supervisor.", "_worker (casella/workers.py", "run (asyncio/", "_run_once",
            "run_forever", "run_until_complete", "Thread.", "_bootstrap", "_run (asyncio/events",
            "_run_code", "_run_module")


def summarize(path: Path, top: int = 15) -> str:
    """The busiest frames from py-spy's raw (collapsed stack) output: samples whose innermost
    frame is an idle wait are left out; 'self' is the innermost frame, 'inclusive' counts
    casella's frames with everything they called."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = busy = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        if any(idle in frames[-1] for idle in _IDLE_LEAVES):
            continue
        busy += n
        own[frames[-1]] += n
        for f in set(frames):
            if "casella/" in f and not f.startswith(_TRIVIAL):
                incl[f] += n
    if not busy:
        return "  (no busy samples)"
    out = [f"  {busy} busy samples of {total} (the rest: threads waiting); self time:"]
    out += [f"  {n / busy * 100:5.1f}%  {f[:140]}" for f, n in own.most_common(top)]
    out.append("  inclusive, casella frames:")
    out += [f"  {n / busy * 100:5.1f}%  {f[:140]}" for f, n in incl.most_common(top)]
    return "\n".join(out)


if __name__ == "__main__":
    print(summarize(Path(sys.argv[1])))
