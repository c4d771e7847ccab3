"""SMTP MX ingest: 1 KB, 10 KB and 100 KB messages at concurrency 1, 20 and 100, each
delivered durably into one INBOX, counted there afterwards.

Two load generators per case, both one message per connection as MX traffic arrives:
  - the bench's asyncio client (realistic message, MAIL/RCPT/DATA pipelined), which gives the
    per-message latency (connect to the 250 after the data) and runs for a fixed time;
  - Postfix's smtp-source (when installed) with as many messages as the asyncio client got
    through, which is the established tool for this measurement.
The rate is messages per second *until the last one is in the INBOX*: for casella the 250
already means that; Postfix queues first, so its Maildir is polled until every message has
been written by virtual(8). The accepted-only rate is kept in the details.

Must never: count a message that did not reach the INBOX.
"""

from __future__ import annotations

import asyncio
import math
import time

from bench import corpus
from bench.clients.base import source_addresses
from bench.clients.smtp import dot_stuff, send_mail
from bench.endpoint import Context, Endpoint
from bench.scenarios import Case
from bench.seed import Plan
from bench.stats import Latencies, Result, failed

NAME = "smtp-ingest"
TITLE = "SMTP MX ingest into INBOX"
ROLES = ("smtp",)
SENDER = "sender@example.net"


def needs(plan: Plan, ctx: Context) -> None:
    plan.add("ingest", 0)


def cases(ctx: Context) -> list[Case]:
    sizes = ctx.sizes or ([10240] if ctx.quick else [1024, 10240, 102400])
    concs = ctx.clients or ([20] if ctx.quick else [1, 20, 100])
    return [Case(f"{s // 1024} KB, {c} conn", {"size": s, "conc": c})
            for s in sizes for c in concs]


def rows(case: Case, ctx: Context) -> list[tuple[str, str, bool]]:
    out = [(case.label + " (bench client)", "msgs/s", True)]
    if ctx.smtp_source:
        out.append((case.label + " (smtp-source)", "msgs/s", True))
    return out


async def _wait_delivered(ep: Endpoint, rcpt: str, target: int,
                          timeout: float) -> tuple[int, float]:
    """Poll the INBOX until it holds `target` messages; (count, time it got there)."""
    deadline = time.monotonic() + timeout
    while True:
        n = await ep.inbox_count(rcpt)
        now = time.monotonic()
        if n >= target or now >= deadline:
            return n, now
        await asyncio.sleep(0.02)


async def _bench_client(ep: Endpoint, case: Case, ctx: Context) -> Result:
    size, conc = case.params["size"], case.params["conc"]
    rcpt = ep.user("ingest")
    port = ep.smtp_port
    assert port is not None
    before = await ep.inbox_count(rcpt)
    lat = Latencies()
    sent = 0
    errors: list[str] = []
    sources = source_addresses(ep.host)
    serial = int(time.time() * 1000) % 10_000_000 * 1000
    duration = ctx.dur(ctx.duration)
    t0 = time.monotonic()
    deadline = t0 + duration

    async def worker(w: int) -> None:
        nonlocal sent, serial
        while time.monotonic() < deadline and len(errors) < 20:
            serial += 1
            data = dot_stuff(corpus.sized_message(SENDER, rcpt, size, serial))
            start = time.monotonic()
            try:
                accepted = await send_mail(ep.host, port, SENDER, [rcpt], b"", tls=ep.tls,
                                           source=next(sources), stuffed=data)
            except Exception as exc:  # noqa: BLE001 - a failed session is counted, not fatal
                errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(0.05)
                continue
            lat.add("message", accepted - start)
            sent += 1

    await asyncio.gather(*(worker(i) for i in range(conc)))
    t_accepted = time.monotonic()
    count, t_delivered = await _wait_delivered(ep, rcpt, before + sent,
                                               0 if ep.synchronous_delivery else 120)
    delivered = count - before
    p50, p99 = lat.summary()
    rate = sent / (t_delivered - t0) if sent and delivered >= sent else math.nan
    res = Result(NAME, case.label + " (bench client)", ep.server("smtp"), "msgs/s", rate,
                 p50_ms=p50, p99_ms=p99,
                 detail={"sent": sent, "delivered": delivered,
                         "accepted_per_s": sent / (t_accepted - t0) if sent else 0,
                         "errors": len(errors), "first_errors": errors[:3]})
    if delivered < sent:
        res.ok = False
        res.note = f"only {delivered} of {sent} accepted messages reached the INBOX"
    elif errors:
        res.note = f"{len(errors)} failed sessions, e.g. {errors[0][:120]}"
    return res


async def _smtp_source(ep: Endpoint, case: Case, ctx: Context, count: int) -> Result:
    size, conc = case.params["size"], case.params["conc"]
    label = case.label + " (smtp-source)"
    rcpt = ep.user("ingest")
    assert ctx.smtp_source is not None and ep.smtp_port is not None
    before = await ep.inbox_count(rcpt)
    t0 = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        ctx.smtp_source, "-s", str(conc), "-m", str(count), "-l", str(size), "-f", SENDER,
        "-t", rcpt, "-M", "bench-client.example.net", f"{ep.host}:{ep.smtp_port}",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 600)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return failed(NAME, label, ep.server("smtp"), "msgs/s", "smtp-source timed out")
    t_sent = time.monotonic()
    count_now, t_delivered = await _wait_delivered(ep, rcpt, before + count,
                                                   0 if ep.synchronous_delivery else 120)
    delivered = count_now - before
    res = Result(NAME, label, ep.server("smtp"), "msgs/s",
                 count / (t_delivered - t0) if delivered >= count else math.nan,
                 detail={"sent": count, "delivered": delivered,
                         "accepted_per_s": count / (t_sent - t0),
                         "exit": proc.returncode})
    if proc.returncode != 0:
        res.ok = False
        res.note = f"smtp-source exit {proc.returncode}: {(err or out).decode()[-200:]}"
    elif delivered < count:
        res.ok = False
        res.note = f"only {delivered} of {count} messages reached the INBOX"
    return res


async def run(ep: Endpoint, case: Case, ctx: Context) -> list[Result]:
    if ep.smtp_port is None:
        return [failed(NAME, case.label, ep.server("smtp"), "msgs/s", "no SMTP port")]
    first = await _bench_client(ep, case, ctx)
    out = [first]
    if ctx.smtp_source:
        # As many messages as the asyncio client got through in its time, within bounds.
        n = int(first.detail.get("sent", 0)) or 10 * case.params["conc"]
        n = max(2 * case.params["conc"], min(n, 200 if ctx.quick else 6000))
        out.append(await _smtp_source(ep, case, ctx, n))
    return out
