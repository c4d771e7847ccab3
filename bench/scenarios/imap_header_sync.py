"""Header-only sync of a 10,000-message mailbox, as a client does on first start or after
losing its cache: LOGIN, SELECT, `FETCH 1:* (UID FLAGS ENVELOPE)`, LOGOUT.

Reported: messages per second of the FETCH (all repetitions together), the FETCH's p50 and p99
(one sample per repetition), and the time of the first, cold FETCH in the details (Dovecot
builds its cache then; casella stored ENVELOPE at delivery).

Must never: time the LOGIN or the SELECT into the FETCH.
"""

from __future__ import annotations

import math
import time

from bench.clients.imap import ImapClient
from bench.endpoint import Context, Endpoint
from bench.scenarios import Case
from bench.seed import Plan
from bench.stats import Latencies, Result, failed

NAME = "imap-header-sync"
TITLE = "IMAP header-only sync"
ROLES = ("imap",)
COMMAND = b"FETCH 1:* (UID FLAGS ENVELOPE)"


def box(ctx: Context) -> tuple[str, int]:
    return ("box1k", 1000) if ctx.quick else ("box10k", 10000)


def needs(plan: Plan, ctx: Context) -> None:
    plan.add(*box(ctx))


def cases(ctx: Context) -> list[Case]:
    local, count = box(ctx)
    return [Case(f"{count:,} msgs", {"user": local, "count": count,
                                     "reps": 2 if ctx.quick else 5})]


def rows(case: Case, ctx: Context) -> list[tuple[str, str, bool]]:
    return [(case.label, "msgs/s", True)]


async def timed_fetch(ep: Endpoint, user: str, command: bytes, reps: int,
                      keep_cold: bool = True) -> tuple[Latencies, list[int], list[int], float]:
    """Run `command` on INBOX in `reps` fresh sessions after one untimed (cold) one.
    Returns (latencies, untagged counts, octets, cold seconds)."""
    assert ep.imap_port is not None
    lat = Latencies()
    counts: list[int] = []
    octets: list[int] = []
    cold = math.nan
    for i in range(reps + (1 if keep_cold else 0)):
        c = await ImapClient.connect(ep.host, ep.imap_port, tls=ep.tls)
        try:
            await c.login(ep.user(user), ep.password)
            await c.select()
            t = time.monotonic()
            r = await c.command(command, timeout=900)
            dt = time.monotonic() - t
            if not r.ok:
                raise RuntimeError(f"{command.decode()}: {r.status.decode()} "
                                   f"{r.text[:150].decode(errors='replace')}")
            if keep_cold and i == 0:
                cold = dt
                continue
            lat.add("fetch", dt)
            counts.append(r.count)
            octets.append(r.octets)
        finally:
            await c.logout()
    return lat, counts, octets, cold


async def run(ep: Endpoint, case: Case, ctx: Context) -> list[Result]:
    if ep.imap_port is None:
        return [failed(NAME, case.label, ep.server("imap"), "msgs/s", "no IMAP port")]
    lat, counts, octets, cold = await timed_fetch(ep, case.params["user"], COMMAND,
                                                  case.params["reps"])
    total = sum(lat.samples["fetch"])
    p50, p99 = lat.summary()
    res = Result(NAME, case.label, ep.server("imap"), "msgs/s", sum(counts) / total,
                 p50_ms=p50, p99_ms=p99,
                 detail={"reps": len(counts), "messages": counts[0], "cold_s": cold,
                         "octets": octets[0]})
    if counts[0] != case.params["count"]:
        res.note = f"FETCH returned {counts[0]} messages, {case.params['count']} expected"
    return [res]
