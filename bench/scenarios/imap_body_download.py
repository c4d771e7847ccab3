"""Full body download of a mailbox: LOGIN, SELECT, `FETCH 1:* BODY.PEEK[]`, LOGOUT, as a
client that keeps offline copies does. Reported in MB/s (response octets) and messages/s.

Must never: time the LOGIN or the SELECT into the FETCH.
"""

from __future__ import annotations

from bench.endpoint import Context, Endpoint
from bench.scenarios import Case
from bench.scenarios.imap_header_sync import box, timed_fetch
from bench.seed import Plan
from bench.stats import Result, failed

NAME = "imap-body-download"
TITLE = "IMAP full body download"
ROLES = ("imap",)
COMMAND = b"FETCH 1:* BODY.PEEK[]"


def needs(plan: Plan, ctx: Context) -> None:
    plan.add(*box(ctx))


def cases(ctx: Context) -> list[Case]:
    local, count = box(ctx)
    return [Case(f"{count:,} msgs", {"user": local, "count": count,
                                     "reps": 1 if ctx.quick else 2})]


def rows(case: Case, ctx: Context) -> list[tuple[str, str, bool]]:
    return [(case.label, "MB/s", True), (case.label, "msgs/s", True)]


async def run(ep: Endpoint, case: Case, ctx: Context) -> list[Result]:
    if ep.imap_port is None:
        return [failed(NAME, case.label, ep.server("imap"), "MB/s", "no IMAP port")]
    lat, counts, octets, cold = await timed_fetch(ep, case.params["user"], COMMAND,
                                                  case.params["reps"])
    total = sum(lat.samples["fetch"])
    p50, p99 = lat.summary()
    mb = sum(octets) / 1e6
    out = [
        Result(NAME, case.label, ep.server("imap"), "MB/s", mb / total, p50_ms=p50,
               p99_ms=p99, detail={"reps": len(counts), "octets": octets[0],
                                   "cold_s": cold}),
        Result(NAME, case.label, ep.server("imap"), "msgs/s", sum(counts) / total,
               p50_ms=p50, p99_ms=p99),
    ]
    if counts[0] != case.params["count"]:
        out[0].note = f"FETCH returned {counts[0]} messages, {case.params['count']} expected"
    return out
