"""Scaling with mailbox size: INBOXes of 1k, 10k and 100k messages; per size the time of
STATUS, SELECT, FETCH 1:* (UID FLAGS), UID SEARCH UNSEEN, SEARCH TEXT and POP3 STAT+UIDL.

Each repetition is a fresh session (STATUS is asked before SELECT, in authenticated state).
One untimed pass first opens each mailbox, as a live server's would have been (Dovecot builds
its index then). The value is the median over the repetitions; p99 shows the slowest.
The report derives how each operation grows from 1k to 100k messages. Against casella the
SEARCH TEXT rows also say how big the search index is (for every seeded mailbox together: the
trigram index and the stored text, `casella index status`).

Must never: change the mailboxes (they are shared with the header-sync and download scenarios).
"""

from __future__ import annotations

import time

from bench import corpus
from bench.clients.imap import ImapClient
from bench.clients.pop3 import Pop3Client
from bench.endpoint import Context, Endpoint
from bench.scenarios import Case
from bench.seed import Plan
from bench.stats import Latencies, Result, failed, percentile

NAME = "scaling"
TITLE = "Scaling with mailbox size"
ROLES = ("imap", "pop3")
OPS = ("STATUS", "SELECT", "FETCH 1:* (UID FLAGS)", "UID SEARCH UNSEEN", "SEARCH TEXT",
       "POP3 STAT+UIDL")
SIZES = {"box1k": 1000, "box10k": 10000, "box100k": 100000}


def _sizes(ctx: Context) -> list[tuple[str, int]]:
    if ctx.quick:
        return [("box1k", 1000)]
    return list(SIZES.items())


def needs(plan: Plan, ctx: Context) -> None:
    for local, count in _sizes(ctx):
        plan.add(local, count)


def cases(ctx: Context) -> list[Case]:
    out = []
    for local, count in _sizes(ctx):
        reps = 2 if ctx.quick else (3 if count >= 100000 else 5)
        # As many as the other operations: with the search index SEARCH TEXT is no longer
        # the one that takes tens of seconds (it was measured once or twice before).
        text_reps = reps
        out.append(Case(f"{count // 1000}k msgs", {"user": local, "count": count, "reps": reps,
                                                   "text_reps": text_reps}))
    return out


def rows(case: Case, ctx: Context) -> list[tuple[str, str, bool]]:
    return [(f"{case.label}: {op}", "ms", False) for op in OPS]


async def _imap_pass(ep: Endpoint, user: str, lat: Latencies | None, text: bool) -> None:
    assert ep.imap_port is not None
    c = await ImapClient.connect(ep.host, ep.imap_port, tls=ep.tls)
    try:
        await c.login(user, ep.password)
        steps = [("STATUS", b"STATUS INBOX (MESSAGES UIDNEXT UNSEEN)"),
                 ("SELECT", b"SELECT INBOX"),
                 ("FETCH 1:* (UID FLAGS)", b"FETCH 1:* (UID FLAGS)"),
                 ("UID SEARCH UNSEEN", b"UID SEARCH UNSEEN")]
        if text:
            steps.append(("SEARCH TEXT", b'SEARCH TEXT "' + corpus.NEEDLE.encode() + b'"'))
        for name, command in steps:
            t = time.monotonic()
            r = await c.command(command, timeout=900)
            dt = time.monotonic() - t
            if not r.ok:
                raise RuntimeError(f"{name}: {r.status.decode()} "
                                   f"{r.text[:150].decode(errors='replace')}")
            if lat is not None:
                lat.add(name, dt)
    finally:
        await c.logout()


async def _pop3_pass(ep: Endpoint, user: str, lat: Latencies | None) -> int:
    assert ep.pop3_port is not None
    c = await Pop3Client.connect(ep.host, ep.pop3_port, tls=ep.tls)
    try:
        await c.login(user, ep.password)
        t = time.monotonic()
        count, _size = await c.stat()
        listing = await c.uidl()
        if lat is not None:
            lat.add("POP3 STAT+UIDL", time.monotonic() - t)
        if len(listing) != count:
            raise RuntimeError(f"UIDL listed {len(listing)} of {count} messages")
        return count
    finally:
        await c.quit()


async def run(ep: Endpoint, case: Case, ctx: Context) -> list[Result]:
    user = ep.user(case.params["user"])
    label = case.label
    if ep.imap_port is None:
        return [failed(NAME, label, ep.server("imap"), "ms", "no IMAP port", False)]
    t = time.monotonic()
    await _imap_pass(ep, user, None, False)
    warm = time.monotonic() - t
    lat = Latencies()
    for i in range(case.params["reps"]):
        await _imap_pass(ep, user, lat, i < case.params["text_reps"])
    pop_count = -1
    if ep.pop3_port is not None:
        await _pop3_pass(ep, user, None)
        for _ in range(case.params["reps"]):
            pop_count = await _pop3_pass(ep, user, lat)
    out = []
    for op in OPS:
        values = sorted(lat.samples.get(op, []))
        role = "pop3" if op.startswith("POP3") else "imap"
        if not values:
            continue
        med = percentile(values, 50) * 1000
        out.append(Result(NAME, f"{label}: {op}", ep.server(role), "ms", med,
                          higher_is_better=False, p50_ms=med, p99_ms=values[-1] * 1000,
                          detail={"reps": len(values), "first_open_s": warm}))
    if ep.index_status is not None:
        status = await ep.index_status()
        for result in out:
            if status and result.case.endswith("SEARCH TEXT"):
                result.detail.update({f"index_{k}": v for k, v in status.items()})
                result.note = (f"search index (all seeded mailboxes): {status['indexed']:,} "
                               f"bodies, trigrams {status['index_bytes'] / 2**20:,.0f} MiB + "
                               f"text {status['text_bytes'] / 2**20:,.0f} MiB; "
                               f"{status['pending']:,} not indexed yet")
    if pop_count not in (-1, case.params["count"]) and out:
        out[-1].note = f"POP3 STAT says {pop_count} messages, {case.params['count']} seeded"
    if not out:
        out.append(failed(NAME, label, ep.server("imap"), "ms", "nothing measured", False))
    return out
