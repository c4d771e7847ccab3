"""IMAP mixed workload: N clients, each repeating a whole session on its own mailbox for a
fixed time. One session is ten commands, each counted as one operation:

    LOGIN, SELECT INBOX, UID FETCH <new mail> (headers: FLAGS, size, date, six header fields),
    FETCH two random messages BODY.PEEK[], STORE +FLAGS (\\Seen), a SEARCH (UNSEEN, or a
    SUBJECT or FROM+SINCE header search), APPEND (a realistic message), STORE +FLAGS.SILENT
    (\\Deleted) on the oldest message, EXPUNGE, LOGOUT.

The APPEND and the EXPUNGE keep each mailbox at its seeded size, and the message appended in
one session is the "new mail" the next session fetches. Before timing, every mailbox is opened
once and fully fetched (untimed), so Dovecot's index and cache exist, as on a live server.
Memory per connection: the servers' PSS while the clients run (highest sample) less their PSS
before the first client connected, divided by the number of clients.

Must never: share a mailbox between clients (that would measure lock waits, not throughput).
"""

from __future__ import annotations

import asyncio
import math
import random
import time

from bench import corpus, procmem
from bench.clients.base import source_addresses
from bench.clients.imap import ImapClient, Response
from bench.endpoint import Context, Endpoint
from bench.scenarios import Case
from bench.seed import Plan
from bench.stats import Latencies, Result, failed

NAME = "imap-mixed"
TITLE = "IMAP mixed client workload"
ROLES = ("imap",)
SEEDED = 200
SEEDED_QUICK = 50

_SEARCHES = (b"UID SEARCH UNSEEN", b'SEARCH SUBJECT "meeting"',
             b'SEARCH FROM "anna" SINCE 1-Feb-2024')
_HEADERS = (b"UID FETCH %d:* (UID FLAGS RFC822.SIZE INTERNALDATE BODY.PEEK[HEADER.FIELDS "
            b"(DATE FROM TO CC SUBJECT MESSAGE-ID)])")


def _client_counts(ctx: Context) -> list[int]:
    return ctx.clients or ([10] if ctx.quick else [10, 50, 200])


def needs(plan: Plan, ctx: Context) -> None:
    for n in range(max(_client_counts(ctx))):
        plan.add(f"mixed{n:02d}", SEEDED_QUICK if ctx.quick else SEEDED)


def cases(ctx: Context) -> list[Case]:
    return [Case(f"{c} clients", {"clients": c}) for c in _client_counts(ctx)]


def rows(case: Case, ctx: Context) -> list[tuple[str, str, bool]]:
    return [(case.label, "ops/s", True)]


async def warm_up(ep: Endpoint, users: list[str], what: bytes = b"FETCH 1:* (UID FLAGS "
                  b"ENVELOPE BODYSTRUCTURE RFC822.SIZE INTERNALDATE)") -> None:
    """Open and read every mailbox once (untimed), as a live server's would have been."""
    port = ep.imap_port
    assert port is not None
    sem = asyncio.Semaphore(8)
    sources = source_addresses(ep.host)

    async def one(user: str) -> None:
        async with sem:
            c = await ImapClient.connect(ep.host, port, tls=ep.tls, source=next(sources))
            try:
                await c.login(user, ep.password)
                await c.select()
                await c.command(what, timeout=600)
            finally:
                await c.logout()

    await asyncio.gather(*(one(u) for u in users))


class _Client:
    def __init__(self, ep: Endpoint, n: int, lat: Latencies, seed: int) -> None:
        self.ep = ep
        self.user = ep.user("mixed", n)
        self.lat = lat
        self.rng = random.Random(seed)
        self.last_uidnext = 0
        self.ops = 0
        self.sessions = 0
        self.errors: list[str] = []
        self.appended = 0

    async def _op(self, name: str, coro: asyncio.Future[Response] | object) -> Response:
        t = time.monotonic()
        r = await coro  # type: ignore[misc]
        self.lat.add(name, time.monotonic() - t)
        self.ops += 1
        if isinstance(r, Response) and not r.ok:
            text = r.text[:120].decode(errors="replace")
            self.errors.append(f"{name}: {r.status.decode()} {text}")
        return r

    async def session(self, source: str | None) -> None:
        ep = self.ep
        assert ep.imap_port is not None
        c = await ImapClient.connect(ep.host, ep.imap_port, tls=ep.tls, source=source)
        try:
            await self._op("LOGIN", c.login(self.user, ep.password))
            t = time.monotonic()
            exists, uidnext = await c.select()
            self.lat.add("SELECT", time.monotonic() - t)
            self.ops += 1
            since = self.last_uidnext or max(1, uidnext - 10)
            await self._op("FETCH headers", c.command(_HEADERS % since))
            self.last_uidnext = uidnext
            if exists >= 2:
                a, b = self.rng.sample(range(1, exists + 1), 2)
                await self._op("FETCH bodies", c.command(b"FETCH %d,%d BODY.PEEK[]" % (a, b)))
                await self._op("STORE", c.command(b"STORE %d +FLAGS (\\Seen)" % a))
            await self._op("SEARCH", c.command(self.rng.choice(_SEARCHES)))
            self.appended += 1
            msg = corpus.message(self.user, 1_000_000 + self.appended + self.rng.randrange(10**6))
            await self._op("APPEND", c.command_literal(b"APPEND INBOX (\\Seen)", msg.data))
            await self._op("STORE deleted", c.command(b"STORE 1 +FLAGS.SILENT (\\Deleted)"))
            await self._op("EXPUNGE", c.command(b"EXPUNGE"))
            await self._op("LOGOUT", c.command(b"LOGOUT"))
            self.sessions += 1
        finally:
            await c.s.aclose()


async def run(ep: Endpoint, case: Case, ctx: Context) -> list[Result]:
    n = case.params["clients"]
    if ep.imap_port is None:
        return [failed(NAME, case.label, ep.server("imap"), "ops/s", "no IMAP port")]
    await warm_up(ep, [ep.user("mixed", i) for i in range(n)])
    pss_before, _ = await asyncio.to_thread(procmem.pss_total, ep.pids(ROLES))
    sampler = procmem.PeakSampler(lambda: ep.pids(ROLES), 0.5).start()
    lat = Latencies()
    clients = [_Client(ep, i, lat, 1000 + i) for i in range(n)]
    sources = source_addresses(ep.host)
    duration = ctx.dur(ctx.duration)
    t0 = time.monotonic()
    deadline = t0 + duration
    failures: list[str] = []

    async def loop(cl: _Client) -> None:
        while time.monotonic() < deadline and len(cl.errors) + len(failures) < 50:
            try:
                await cl.session(next(sources))
            except Exception as exc:  # noqa: BLE001 - any failure is counted, not fatal
                failures.append(f"{type(exc).__name__}: {exc}"[:200])
                await asyncio.sleep(0.1)

    try:
        await asyncio.gather(*(loop(cl) for cl in clients))
    finally:
        pss_peak = await asyncio.to_thread(sampler.stop)
    elapsed = time.monotonic() - t0
    per_conn_kib = (pss_peak - pss_before) / n / 1024 if pss_peak and pss_before else math.nan
    ops = sum(cl.ops for cl in clients)
    sessions = sum(cl.sessions for cl in clients)
    errors = [e for cl in clients for e in cl.errors] + failures
    p50, p99 = lat.summary()
    res = Result(NAME, case.label, ep.server("imap"), "ops/s",
                 ops / elapsed if ops else math.nan, p50_ms=p50, p99_ms=p99,
                 detail={"ops": ops, "sessions": sessions, "seconds": elapsed,
                         "by_command": lat.by_name(), "errors": len(errors),
                         "pss_before": pss_before, "pss_peak": pss_peak,
                         "kib_per_connection": per_conn_kib,
                         "first_errors": errors[:3]})
    if not math.isnan(per_conn_kib):
        res.note = f"{per_conn_kib:,.0f} KiB per connection"
    if errors:
        res.note = f"{len(errors)} errors, e.g. {errors[0][:150]}; " + res.note
        res.ok = not failures and len(errors) < ops / 100
    return [res]
