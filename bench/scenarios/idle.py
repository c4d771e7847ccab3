"""IDLE fan-out: 1,000 and 10,000 connections in IDLE on one INBOX, then one message
delivered over SMTP; how much server memory each idle connection costs, and how long until
the EXISTS reached every client.

Steps: PSS of the server's processes; open the connections (LOGIN, SELECT, IDLE; 64 set-ups in
flight, spread over loopback source addresses; a ramp deadline bounds how long we wait for a
slow server, and the report says how many were reached); let them settle (Dovecot hibernates
idle clients after 5 s); PSS again -> memory per connection; then send one message to the
same user through the endpoint's SMTP port (Postfix for the peers, which delivers into the
Maildir Dovecot watches) and time, from the start of that SMTP session, the `* n EXISTS` on
every client.

PSS (proportional set size) rather than RSS: Dovecot runs many processes sharing libraries;
PSS counts each shared page once in total.

Must never: keep the connections after the case (they are aborted at the end).
"""

from __future__ import annotations

import asyncio
import math
import time

from bench import corpus, procmem
from bench.clients.base import source_addresses
from bench.clients.imap import ImapClient
from bench.clients.smtp import send_mail
from bench.endpoint import Context, Endpoint
from bench.scenarios import Case
from bench.seed import Plan
from bench.stats import Result, failed, percentile

NAME = "imap-idle"
TITLE = "IMAP IDLE fan-out"
ROLES = ("imap",)
FRESH_SERVER = True       # the runner restarts casella first: a clean memory baseline
SETUP_IN_FLIGHT = 64


def _counts(ctx: Context) -> list[int]:
    return ctx.clients or ([50] if ctx.quick else [1000, 10000])


def needs(plan: Plan, ctx: Context) -> None:
    plan.add("idle", 20)


def cases(ctx: Context) -> list[Case]:
    out = []
    for n in _counts(ctx):
        ramp = 20.0 if ctx.quick else max(60.0, min(240.0, n / 40))
        out.append(Case(f"{n:,} conns", {"conns": n, "ramp_s": ramp,
                                         "settle_s": 2.0 if ctx.quick else 8.0}))
    return out


def rows(case: Case, ctx: Context) -> list[tuple[str, str, bool]]:
    return [(f"{case.label}: memory per connection", "KiB/conn", False),
            (f"{case.label}: delivery to EXISTS on all", "ms", False)]


def _is_exists(line: bytes) -> bool:
    return line.startswith(b"* ") and line.endswith(b" EXISTS")


async def run(ep: Endpoint, case: Case, ctx: Context) -> list[Result]:
    n = case.params["conns"]
    label = case.label
    if ep.imap_port is None or ep.smtp_port is None:
        return [failed(NAME, label, ep.server("imap"), "KiB/conn", "needs IMAP and SMTP ports",
                       False)]
    user = ep.user("idle")
    port, smtp_port = ep.imap_port, ep.smtp_port
    roots = ep.pids(ROLES)
    pss0, _ = await asyncio.to_thread(procmem.pss_total, roots)
    rss0 = await asyncio.to_thread(procmem.rss_total, roots)
    sources = source_addresses(ep.host, 250)
    sem = asyncio.Semaphore(SETUP_IN_FLIGHT)
    clients: list[ImapClient] = []
    errors: list[str] = []
    t_start = time.monotonic()
    ramp_deadline = t_start + case.params["ramp_s"]

    async def open_one() -> None:
        async with sem:
            if time.monotonic() >= ramp_deadline or len(errors) > 100:
                return
            try:
                c = await ImapClient.connect(ep.host, port, tls=ep.tls,
                                             source=next(sources), timeout=60)
            except Exception as exc:  # noqa: BLE001 - any failure is counted, not fatal
                errors.append(f"connect: {type(exc).__name__}: {exc}"[:200])
                return
            try:
                await c.login(user, ep.password, timeout=120)
                await c.select()
                await c.idle_start()
                clients.append(c)
            except Exception as exc:  # noqa: BLE001 - any failure is counted, not fatal
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
                c.s.close()

    await asyncio.gather(*(open_one() for _ in range(n)))
    ramp_s = time.monotonic() - t_start
    held = len(clients)
    if not held:
        return [failed(NAME, label, ep.server("imap"), "KiB/conn",
                       f"no IDLE connection could be opened: {errors[:1]}", False)]
    try:
        await asyncio.sleep(case.params["settle_s"])
        pss1, procs = await asyncio.to_thread(procmem.pss_total, roots)
        rss1 = await asyncio.to_thread(procmem.rss_total, roots)
        per_conn = (pss1 - pss0) / held if held else math.nan
        waiters = [asyncio.ensure_future(c.idle_wait(_is_exists, 120)) for c in clients]
        msg = corpus.message(user, 5_000_000 + int(time.time()) % 100_000).data
        t0 = time.monotonic()
        try:
            t250 = await send_mail(ep.host, smtp_port, "news@example.net", [user], msg,
                                   tls=False)
        except Exception as exc:  # noqa: BLE001 - any failure is counted, not fatal
            for w in waiters:
                w.cancel()
            return [failed(NAME, label, ep.server("imap"), "ms", f"delivery failed: {exc}",
                           False)]
        done, pending = await asyncio.wait(waiters, timeout=60)
        for w in pending:
            w.cancel()
        arrivals = sorted(w.result() - t0 for w in done if not w.exception())
    finally:
        for c in clients:
            transport = c.s.writer.transport
            if transport is not None:
                transport.abort()
    reached = len(arrivals)
    note = (f"{held:,} of {n:,} connections in {ramp_s:.0f} s"
            + (f"; {len(errors)} set-up errors, e.g. {errors[0][:120]}" if errors else ""))
    detail = {"held": held, "wanted": n, "ramp_s": ramp_s,
              "logins_per_s": held / ramp_s if ramp_s else 0,
              "pss_before": pss0, "pss_after": pss1, "rss_before": rss0, "rss_after": rss1,
              "processes": procs, "errors": len(errors), "first_errors": errors[:3]}
    mem = Result(NAME, f"{label}: memory per connection", ep.server("imap"), "KiB/conn",
                 per_conn / 1024, higher_is_better=False, detail=detail,
                 note=note, ok=held == n)
    fan = Result(NAME, f"{label}: delivery to EXISTS on all", ep.server("imap"), "ms",
                 arrivals[-1] * 1000 if reached and reached == held else math.nan,
                 higher_is_better=False,
                 p50_ms=percentile(arrivals, 50) * 1000 if arrivals else math.nan,
                 p99_ms=percentile(arrivals, 99) * 1000 if arrivals else math.nan,
                 detail={"reached": reached, "held": held,
                         "smtp_250_ms": (t250 - t0) * 1000,
                         "first_ms": arrivals[0] * 1000 if arrivals else None},
                 ok=reached == held and held > 0,
                 note="" if reached == held else f"EXISTS reached {reached:,} of {held:,}")
    return [mem, fan]
