"""Memory of server processes, read from /proc: RSS sampled while a scenario runs, PSS for
the per-connection figure.

Lives here: `process_tree(roots)` (a process and all its descendants), `rss_total`,
`pss_total` and `PeakSampler` (a thread that keeps the highest PSS and RSS sums seen, so
scanning /proc for thousands of Dovecot processes never stalls the load clients' event loop).
The table shows peak PSS.

RSS summed over several processes counts shared pages (libc, Dovecot's libs) once per
process; PSS divides them among the sharers. Must never: signal or otherwise touch the
processes it reads.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable

_PAGE = os.sysconf("SC_PAGE_SIZE")


def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        # The command name may hold spaces or parentheses: split after the last ")".
        rest = stat[stat.rfind(b")") + 2:].split()
        if len(rest) > 1:
            kids.setdefault(int(rest[1]), []).append(int(name))
    return kids


def process_tree(roots: Iterable[int]) -> list[int]:
    """The root processes that still exist and all their descendants."""
    roots = [p for p in roots if p and os.path.exists(f"/proc/{p}")]
    if not roots:
        return []
    kids = _children_map()
    out: list[int] = []
    todo = list(roots)
    seen: set[int] = set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def pss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return rss(pid)


def rss_total(roots: Iterable[int]) -> int:
    return sum(rss(p) for p in process_tree(roots))


def pss_total(roots: Iterable[int]) -> tuple[int, int]:
    """(PSS summed over the tree, number of processes)."""
    pids = process_tree(roots)
    return sum(pss(p) for p in pids), len(pids)


class PeakSampler:
    """Samples the memory of the process trees of `roots()` in a thread between start() and
    stop(): the highest PSS sum (`peak`, what the table shows) and the highest RSS sum
    (`peak_rss`). A scan of thousands of processes takes a while; the sampler then waits at
    least as long as the scan took, so it never uses more than half a core."""

    def __init__(self, roots: Callable[[], list[int]], interval: float = 0.5) -> None:
        self.roots = roots
        self.interval = interval
        self.peak = 0
        self.peak_rss = 0
        self.processes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> float:
        t = time.monotonic()
        pids = process_tree(self.roots())
        total_pss = total_rss = 0
        for p in pids:
            total_pss += pss(p)
            total_rss += rss(p)
        self.peak = max(self.peak, total_pss)
        self.peak_rss = max(self.peak_rss, total_rss)
        self.processes = max(self.processes, len(pids))
        return time.monotonic() - t

    def _run(self) -> None:
        while not self._stop.is_set():
            took = self.sample()
            self._stop.wait(max(self.interval, took))

    def start(self) -> PeakSampler:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="mem-sampler", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30)
        self.sample()
        return self.peak
