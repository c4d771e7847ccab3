"""POP3 download: N clients, each repeating USER/PASS, UIDL, RETR of every message, QUIT on
its own maildrop for a fixed time ("leave a copy on the server": nothing is deleted, so every
round downloads the whole maildrop again). Reported: messages/s and MB/s (RETR octets).

Must never: DELE (the maildrops must stay the same for every round and both servers).
"""

from __future__ import annotations

import asyncio
import math
import time

from bench.clients.base import source_addresses
from bench.clients.pop3 import Pop3Client
from bench.endpoint import Context, Endpoint
from bench.scenarios import Case
from bench.seed import Plan
from bench.stats import Latencies, Result, failed

NAME = "pop3-download"
TITLE = "POP3 download (login, UIDL, RETR all, QUIT)"
ROLES = ("pop3",)
SEEDED = 60
SEEDED_QUICK = 20


def _client_counts(ctx: Context) -> list[int]:
    return ctx.clients or ([5] if ctx.quick else [50])


def needs(plan: Plan, ctx: Context) -> None:
    for n in range(max(_client_counts(ctx))):
        plan.add(f"pop{n:02d}", SEEDED_QUICK if ctx.quick else SEEDED)


def cases(ctx: Context) -> list[Case]:
    return [Case(f"{c} clients", {"clients": c}) for c in _client_counts(ctx)]


def rows(case: Case, ctx: Context) -> list[tuple[str, str, bool]]:
    return [(case.label, "msgs/s", True), (case.label, "MB/s", True)]


async def _session(ep: Endpoint, user: str, lat: Latencies, source: str | None) -> tuple[int, int]:
    assert ep.pop3_port is not None
    t = time.monotonic()
    c = await Pop3Client.connect(ep.host, ep.pop3_port, tls=ep.tls, source=source)
    try:
        await c.login(user, ep.password)
        t1 = time.monotonic()
        lat.add("login", t1 - t)
        listing = await c.uidl()
        t2 = time.monotonic()
        lat.add("UIDL", t2 - t1)
        octets = 0
        for n, _uid in listing:
            t = time.monotonic()
            octets += await c.retr(n)
            lat.add("RETR", time.monotonic() - t)
        t = time.monotonic()
        await c.quit()
        lat.add("QUIT", time.monotonic() - t)
        return len(listing), octets
    except BaseException:
        await c.s.aclose()
        raise


async def run(ep: Endpoint, case: Case, ctx: Context) -> list[Result]:
    n = case.params["clients"]
    if ep.pop3_port is None:
        return [failed(NAME, case.label, ep.server("pop3"), "msgs/s", "no POP3 port")]
    sources = source_addresses(ep.host)
    users = [ep.user("pop", i) for i in range(n)]
    # Untimed first pass: Dovecot builds its index and UIDL cache; both servers warm up.
    warm = Latencies()
    sem = asyncio.Semaphore(8)

    async def warm_one(u: str) -> None:
        async with sem:
            await _session(ep, u, warm, next(sources))

    await asyncio.gather(*(warm_one(u) for u in users))
    lat = Latencies()
    messages = octets = sessions = 0
    errors: list[str] = []
    duration = ctx.dur(ctx.duration)
    t0 = time.monotonic()
    deadline = t0 + duration

    async def loop(user: str) -> None:
        nonlocal messages, octets, sessions
        while time.monotonic() < deadline and len(errors) < 50:
            try:
                m, o = await _session(ep, user, lat, next(sources))
            except Exception as exc:  # noqa: BLE001 - any failure is counted, not fatal
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(0.1)
                continue
            messages += m
            octets += o
            sessions += 1

    await asyncio.gather(*(loop(u) for u in users))
    elapsed = time.monotonic() - t0
    by = lat.by_name()
    retr = by.get("RETR", {})
    detail = {"sessions": sessions, "messages": messages, "octets": octets,
              "seconds": elapsed, "by_command": by, "errors": len(errors),
              "first_errors": errors[:3]}
    out = [
        Result(NAME, case.label, ep.server("pop3"), "msgs/s",
               messages / elapsed if messages else math.nan,
               p50_ms=retr.get("p50_ms", math.nan), p99_ms=retr.get("p99_ms", math.nan),
               detail=detail),
        Result(NAME, case.label, ep.server("pop3"), "MB/s",
               octets / 1e6 / elapsed if octets else math.nan),
    ]
    if errors:
        out[0].note = f"{len(errors)} failed sessions, e.g. {errors[0][:150]}"
        out[0].ok = False
    return out
