"""The one table: casella and the peer side by side for every scenario case, as plain text
for the terminal and as Markdown for docs/performance.md, plus the machine description.

The ratio column "×peer" is how many times better casella is: casella/peer for rates,
peer/casella for times and memory. 1.00 or more meets "at least equal".

Must never: run anything but read-only commands (nproc-like facts, package versions).
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from typing import Any

from bench.stats import Result, fmt_bytes, fmt_ms, fmt_value


def machine() -> dict[str, str]:
    info: dict[str, str] = {"nproc": str(os.cpu_count() or "?")}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            kb = int(f.readline().split()[1])
            info["ram"] = f"{kb / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    info["kernel"] = platform.release()
    info["python"] = sys.version.split()[0]
    for pkg, key in (("dovecot-core", "dovecot"), ("postfix", "postfix")):
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True,
                           text=True, check=False) if _has("dpkg-query") else None
        if r is not None and r.returncode == 0 and r.stdout.strip():
            info[key] = r.stdout.strip()
    try:
        r = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, cwd=os.path.dirname(os.path.dirname(__file__)), check=False)
        if r.returncode == 0:
            info["casella_commit"] = r.stdout.strip()
            d = subprocess.run(["git", "status", "--porcelain", "--", "casella"],
                               capture_output=True, text=True,
                               cwd=os.path.dirname(os.path.dirname(__file__)), check=False)
            dirty = len([ln for ln in d.stdout.splitlines() if ln.strip()])
            if dirty:
                info["casella_commit"] += f" + {dirty} uncommitted files under casella/"
    except OSError:
        pass
    try:
        import uvloop  # type: ignore[import-not-found]  # noqa: F401
        info["uvloop"] = "installed"
    except ImportError:
        info["uvloop"] = "not installed"
    return info


def _has(tool: str) -> bool:
    from shutil import which
    return which(tool) is not None


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def ratio(c: Result | None, p: Result | None) -> float:
    if c is None or p is None or not c.value or not p.value:
        return math.nan
    if math.isnan(c.value) or math.isnan(p.value):
        return math.nan
    return c.value / p.value if c.higher_is_better else p.value / c.value


Row = tuple[str, str, str, dict[str, Result]]


def _pairs(results: list[Result], labels: list[str]) -> list[Row]:
    """Rows keyed by (scenario, case, metric) in first-seen order, one Result per column."""
    rows: dict[tuple[str, str, str], dict[str, Result]] = {}
    for r in results:
        column = r.detail.get("_column", r.server)
        rows.setdefault((r.scenario, r.case, r.metric), {})[column] = r
    return [(s, c, m, cols) for (s, c, m), cols in rows.items()]


def _lat(r: Result | None) -> str:
    if r is None or (math.isnan(r.p50_ms) and math.isnan(r.p99_ms)):
        return "-"
    return f"{fmt_ms(r.p50_ms)} / {fmt_ms(r.p99_ms)}"


def _val(r: Result | None) -> str:
    if r is None:
        return "-"
    v = fmt_value(r.value)
    return v if r.ok else f"{v} !"


def table_rows(results: list[Result], labels: list[str]) -> list[list[str]]:
    first, second = labels[0], labels[1] if len(labels) > 1 else None
    out = []
    for scenario, case, metric, cols in _pairs(results, labels):
        c = cols.get(first)
        p = cols.get(second) if second else None
        row = [scenario, case, metric, _val(c)]
        if second:
            row += [_val(p), p.server if p else "-", fmt_value(ratio(c, p))]
        row += [_lat(c)]
        if second:
            row += [_lat(p)]
        row += [fmt_bytes(c.peak_pss) if c else "-"]
        if second:
            row += [fmt_bytes(p.peak_pss) if p else "-"]
        out.append(row)
    return out


def headers(labels: list[str]) -> list[str]:
    first = labels[0]
    if len(labels) == 1:
        return ["scenario", "case", "unit", first, f"{first} p50 / p99 ms", f"{first} peak PSS"]
    return ["scenario", "case", "unit", first, "peer", "peer is", "×peer",
            f"{first} p50 / p99 ms", "peer p50 / p99 ms", f"{first} peak PSS", "peer peak PSS"]


def text_table(results: list[Result], labels: list[str]) -> str:
    rows = table_rows(results, labels)
    head = headers(labels)
    widths = [max(len(head[i]), *(len(r[i]) for r in rows)) if rows else len(head[i])
              for i in range(len(head))]
    numeric = {i for i, h in enumerate(head) if i >= 3 and h not in ("peer is",)}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(widths[i]) if i in numeric else c.ljust(widths[i])
                         for i, c in enumerate(cells)).rstrip()

    out = [line(head), line(["-" * w for w in widths])]
    last = None
    for r in rows:
        if r[0] != last and last is not None:
            out.append("")
        last = r[0]
        out.append(line(r))
    return "\n".join(out)


def markdown_table(results: list[Result], labels: list[str]) -> str:
    rows = table_rows(results, labels)
    head = headers(labels)
    out = ["| " + " | ".join(head) + " |",
           "|" + "|".join("---:" if i >= 3 and h != "peer is" else "---"
                          for i, h in enumerate(head)) + "|"]
    for r in rows:
        out.append("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |")
    return "\n".join(out)


def scaling_growth(results: list[Result], label: str) -> list[str]:
    """How each scaling operation grows from the smallest to the largest mailbox."""
    by_op: dict[str, dict[str, float]] = {}
    for r in results:
        if r.scenario != "scaling" or r.detail.get("_column", r.server) != label:
            continue
        size, _, op = r.case.partition(": ")
        by_op.setdefault(op, {})[size] = r.value
    lines = []
    for op, sizes in by_op.items():
        keys = list(sizes)
        if len(keys) < 2:
            continue
        lo, hi = sizes[keys[0]], sizes[keys[-1]]
        if lo and not math.isnan(lo) and not math.isnan(hi):
            lines.append(f"{op}: {fmt_ms(lo)} ms at {keys[0]} -> {fmt_ms(hi)} ms at {keys[-1]}"
                         f" (x{hi / lo:.1f} for x{_size(keys[-1]) / _size(keys[0]):.0f} "
                         "messages)")
    return lines


def _size(label: str) -> float:
    return float(label.split("k")[0]) * 1000 if "k" in label else 1.0


def markdown_report(results: list[Result], labels: list[str], meta: dict[str, Any]) -> str:
    m = meta["machine"]
    lines = [
        f"Run {meta['started']} ({meta['mode']}), {meta['wall_s'] / 60:.1f} min wall time.",
        "",
        f"Command: `{meta['command']}`",
        "",
        (f"Machine: {m.get('nproc')} cores ({m.get('cpu', '?')}), {m.get('ram', '?')} RAM, "
         f"Linux {m.get('kernel')}, Python {m.get('python')} (uvloop {m.get('uvloop')}); "
         f"Dovecot {m.get('dovecot', '-')}, Postfix {m.get('postfix', '-')}; "
         f"casella commit {m.get('casella_commit', '?')}. Load average at start "
         f"{meta.get('load_start')}, at end {meta.get('load_end')}."),
        "",
        markdown_table(results, labels),
        "",
    ]
    for label in labels:
        growth = scaling_growth(results, label)
        if growth:
            lines.append(f"Scaling of {label} from the smallest to the largest mailbox:")
            lines += [f"- {g}" for g in growth]
            lines.append("")
    notes = notes_of(results, meta)
    if notes:
        lines.append("Notes:")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def notes_of(results: list[Result], meta: dict[str, Any]) -> list[str]:
    out = list(meta.get("notes", []))
    seen: dict[tuple[str, str, str], int] = {}
    for r in results:
        if not r.note:
            continue
        key = (r.scenario, r.server, r.note)
        if key in seen:   # one failure often fails every row of a case: say it once
            continue
        seen[key] = len(out)
        out.append(f"{r.scenario} / {r.case} / {r.server}: {r.note}")
    return out


def now_utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
