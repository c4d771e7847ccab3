"""IMAP login cost: N clients repeating connect, LOGIN, LOGOUT for a fixed time, once per
password hash cost (the load users' minimal argon2id, OWASP's minimum, casella's default).
Both servers verify the same argon2id string; neither can skip the verification on a repeated
login (Dovecot's auth cache keeps the hash, not a verified password). Reported: logins/s and
the LOGIN command's p50/p99.

Must never: fail a login on purpose (that would measure the failure delay instead).
"""

from __future__ import annotations

import asyncio
import math
import time

from bench.clients.base import source_addresses
from bench.clients.imap import ImapClient
from bench.endpoint import Context, Endpoint
from bench.scenarios import Case
from bench.seed import HASH_LABELS, Plan
from bench.stats import Latencies, Result, failed

NAME = "imap-login"
TITLE = "IMAP LOGIN with argon2id at three costs"
ROLES = ("imap",)
CLIENTS = 10


def needs(plan: Plan, ctx: Context) -> None:
    for kind in HASH_LABELS:
        plan.add(f"login-{kind}", 0, hash_kind=kind)


def cases(ctx: Context) -> list[Case]:
    kinds = ["load", "default"] if ctx.quick else list(HASH_LABELS)
    n = CLIENTS   # --clients is meant for the load scenarios; this one stays at 10
    return [Case(f"{HASH_LABELS[k]}, {n} clients", {"kind": k, "clients": n}) for k in kinds]


def rows(case: Case, ctx: Context) -> list[tuple[str, str, bool]]:
    return [(case.label, "logins/s", True)]


async def run(ep: Endpoint, case: Case, ctx: Context) -> list[Result]:
    if ep.imap_port is None:
        return [failed(NAME, case.label, ep.server("imap"), "logins/s", "no IMAP port")]
    user = ep.user(f"login-{case.params['kind']}")
    port = ep.imap_port
    lat = Latencies()
    errors: list[str] = []
    sources = source_addresses(ep.host)
    duration = ctx.dur(min(ctx.duration, 5.0))
    deadline = time.monotonic() + duration
    t0 = time.monotonic()

    async def loop() -> None:
        while time.monotonic() < deadline and len(errors) < 20:
            try:
                c = await ImapClient.connect(ep.host, port, tls=ep.tls, source=next(sources))
                t = time.monotonic()
                await c.login(user, ep.password)
                lat.add("LOGIN", time.monotonic() - t)
                await c.logout()
            except Exception as exc:  # noqa: BLE001 - any failure is counted, not fatal
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(0.1)

    await asyncio.gather(*(loop() for _ in range(case.params["clients"])))
    elapsed = time.monotonic() - t0
    n = lat.count()
    p50, p99 = lat.summary()
    res = Result(NAME, case.label, ep.server("imap"), "logins/s",
                 n / elapsed if n else math.nan, p50_ms=p50, p99_ms=p99,
                 detail={"logins": n, "errors": len(errors), "first_errors": errors[:3]})
    if errors:
        res.ok = False
        res.note = f"{len(errors)} failed logins, e.g. {errors[0][:150]}"
    return [res]
