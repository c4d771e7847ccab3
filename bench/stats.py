"""Measurements: latency samples with percentiles, and the result of one scenario case.

Lives here: `Latencies` (samples per operation name, p50/p99), `Result` (one row of the table
for one server) and a few formatting helpers. Must never: do I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values (NaN when empty)."""
    if not sorted_values:
        return math.nan
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100.0 * len(sorted_values)) - 1))
    return sorted_values[k]


class Latencies:
    """Seconds per operation, by operation name."""

    def __init__(self) -> None:
        self.samples: dict[str, list[float]] = {}

    def add(self, name: str, seconds: float) -> None:
        self.samples.setdefault(name, []).append(seconds)

    def merge(self, other: Latencies) -> None:
        for name, values in other.samples.items():
            self.samples.setdefault(name, []).extend(values)

    def all(self) -> list[float]:
        out: list[float] = []
        for values in self.samples.values():
            out.extend(values)
        out.sort()
        return out

    def count(self) -> int:
        return sum(len(v) for v in self.samples.values())

    def summary(self) -> tuple[float, float]:
        """(p50, p99) in milliseconds over every operation."""
        values = self.all()
        return percentile(values, 50) * 1000, percentile(values, 99) * 1000

    def by_name(self) -> dict[str, dict[str, float]]:
        out = {}
        for name, values in sorted(self.samples.items()):
            v = sorted(values)
            out[name] = {"n": len(v), "p50_ms": percentile(v, 50) * 1000,
                         "p99_ms": percentile(v, 99) * 1000, "max_ms": v[-1] * 1000}
        return out


@dataclass
class Result:
    """One scenario case measured on one server."""

    scenario: str
    case: str                          # e.g. "10 KB, 20 clients"
    server: str                        # "casella", "dovecot", "postfix"
    metric: str                        # unit of `value`, e.g. "msgs/s", "ops/s", "ms"
    value: float                       # the headline number (NaN when not measured)
    higher_is_better: bool = True
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    peak_pss: int = 0                  # bytes: peak PSS summed over the server's processes
    ok: bool = True
    note: str = ""
    detail: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario, "case": self.case, "server": self.server,
            "metric": self.metric, "value": _num(self.value),
            "higher_is_better": self.higher_is_better, "p50_ms": _num(self.p50_ms),
            "p99_ms": _num(self.p99_ms), "peak_pss": self.peak_pss, "ok": self.ok,
            "note": self.note, "detail": self.detail,
        }


def _num(x: float) -> float | None:
    return None if isinstance(x, float) and math.isnan(x) else x


def failed(scenario: str, case: str, server: str, metric: str, why: str,
           higher_is_better: bool = True) -> Result:
    return Result(scenario, case, server, metric, math.nan, higher_is_better, ok=False,
                  note=why[:300])


def fmt_value(x: float) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "-"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_ms(x: float) -> str:
    if isinstance(x, float) and math.isnan(x):
        return "-"
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def fmt_bytes(n: int) -> str:
    if not n:
        return "-"
    if n >= 1024 ** 3:
        return f"{n / 1024 ** 3:.2f} GiB"
    if n >= 1024 ** 2:
        return f"{n / 1024 ** 2:.0f} MiB"
    return f"{n / 1024:.0f} KiB"
