"""The queue runner: delivers what submission (and forwarding, and DSNs) put into the outbound
queue, retries, gives up, and tells senders.

Lives here: `QueueRunner` (the background loop, `run_once` for tests, start/stop, wake),
per-attempt work (group a message's due recipients by domain, find the hosts, sign with DKIM,
talk SMTP through casella.smtp.client, record each recipient's outcome), the retry schedule
(`retry_delay`: initial, doubling, capped; give up after `give_up_after`), the DSNs owed and
the sending guard. Must never: deliver a recipient twice by its own doing, lose a recipient,
block the event loop (DKIM signing runs in a thread), or send a DSN for the null sender.

Exactly-once by our own doing, at-least-once across crashes (PROMISES D5): a recipient is
claimed ("sending") in the store before its attempt, and its outcome is recorded in the store
right after the remote server's final reply to DATA — before QUIT, before any other recipient
or host is tried. Only recipients whose RCPT got a 2xx are delivered by that final 2xx (RFC
5321 §3.3; SMTP has no per-recipient DATA replies). A runner stopped or crashed between the
remote 250 and that record leaves the recipient in "sending"; `queue_recover` at the next
start makes it due again, so that one recipient may receive the message twice — the only
duplicate, and one the promise tolerates (loss is not).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from casella import metrics
from casella.delivery.local import send_to
from casella.errors import StorageError
from casella.limits.sendlimit import guard_notice, update_guard
from casella.smtp.client import (
    OutRecipient,
    SmtpClient,
    SmtpClientError,
    SmtpReply,
    Timeouts,
    TlsFailed,
    is_loopback,
    opportunistic_tls_context,
)
from casella.smtp.dkim import Signer
from casella.smtp.dsn import wants_dsn
from casella.smtp.queue.clock import Clock
from casella.smtp.queue.notices import dsn_for
from casella.smtp.queue.routing import RouteError, Target, targets_for
from casella.smtp.resolver import Resolver, get_resolver
from casella.store.model import QueueEntry, QueueRecipient
from casella.store.sending import DEFERRED, DELIVERED, FAILED, RecipientResult

# casella.metrics' names for the outcomes of a delivery attempt, per recipient.
_EVENTS = {DELIVERED: "sent", DEFERRED: "deferred", FAILED: "bounced"}

if TYPE_CHECKING:
    from casella.config import Config
    from casella.store.base import Store

log = logging.getLogger("casella.queue")

PRUNE_EVERY = 600.0          # seconds between removals of send events outside every window
MAX_ADDRESSES_PER_HOST = 2   # IPv4 and IPv6 of one MX, say


def retry_delay(attempts: int, initial: int, maximum: int) -> int:
    """Seconds to wait after the `attempts`-th failed attempt: initial, 2x, 4x … capped."""
    if attempts < 1:
        return initial
    return min(maximum, initial * (2 ** min(attempts - 1, 30)))


def _domain_of(address: str) -> str:
    return address.rsplit("@", 1)[-1].lower()


@dataclass
class _Pending:
    """A recipient during one attempt."""

    rcpt: QueueRecipient
    reply: str = ""
    permanent: bool = False


class QueueRunner:
    def __init__(self, store: Store, config: Config, *, resolver: Resolver | None = None,
                 clock: Clock | None = None, timeouts: Timeouts | None = None,
                 poll_interval: float = 2.0, mx_port: int = 25) -> None:
        self.store = store
        self.config = config
        self.hostname = config.hostname
        self._resolver = resolver
        self.clock = clock or Clock()
        self.timeouts = timeouts or Timeouts()
        self.poll_interval = poll_interval
        self.mx_port = mx_port           # 25; tests aim MX records at a fake server
        self.signer = Signer(config.dkim_key_dir) if config.dkim.sign else None
        self.tls_context = opportunistic_tls_context()
        self._sem = asyncio.Semaphore(config.delivery.concurrency)
        self._wake = asyncio.Event()
        self._notice_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._last_prune = 0.0

    @property
    def resolver(self) -> Resolver:
        return self._resolver or get_resolver()

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Recover attempts a previous run left open, then run in the background."""
        recovered = await self.store.queue_recover(int(self.clock.now()))
        if recovered:
            log.warning("queue: %d recipient(s) were in flight when casella stopped; "
                        "they will be tried again", recovered)
        self._task = asyncio.create_task(self._loop(), name="queue-runner")

    async def stop(self) -> None:
        """Stop at once: attempts in flight are cancelled and stay claimed ("sending") in the
        store, so the next start tries them again."""
        tasks = list(self._inflight)
        if self._task is not None:
            tasks.append(self._task)
            self._task = None
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self._inflight.clear()

    def wake(self) -> None:
        """Look at the queue now (after an enqueue, a flush or a release)."""
        self._wake.set()

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once(wait=False)
            except asyncio.CancelledError:
                raise
            except StorageError as exc:
                log.error("queue: the store is unavailable: %s", exc)
            except Exception:
                log.exception("queue runner error")
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass
            self._wake.clear()

    # --- one pass ------------------------------------------------------------------------

    async def run_once(self, wait: bool = True) -> int:
        """Send owed notices, start an attempt for every due (message, domain) group; with
        `wait`, until all of them finished. Returns how many groups were started."""
        now = self.clock.now()
        await self.send_notices()
        if now - self._last_prune >= PRUNE_EVERY:
            self._last_prune = now
            await self.store.prune_send_events(int(now) - 2 * 3600)
        started = 0
        for entry in await self.store.queue_due(int(now)):
            groups: dict[str, list[QueueRecipient]] = defaultdict(list)
            for r in entry.recipients:
                groups[_domain_of(r.address)].append(r)
            for domain, rcpts in groups.items():
                await self._sem.acquire()
                try:
                    claimed = set(await self.store.queue_claim([r.id for r in rcpts]))
                except BaseException:
                    self._sem.release()
                    raise
                mine = [r for r in rcpts if r.id in claimed]
                if not mine:
                    self._sem.release()
                    continue
                task = asyncio.create_task(self._attempt(entry, domain, mine))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
                started += 1
        if wait and self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)
            await self.send_notices()
        return started

    async def _attempt(self, entry: QueueEntry, domain: str,
                       rcpts: list[QueueRecipient]) -> None:
        try:
            results = await self._deliver(entry, domain, rcpts)
            if results:
                await self._after(entry, results)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The recipients stay "sending" until the next start: never lost, never doubled.
            log.exception("queue %d: attempt for %s failed unexpectedly", entry.id, domain)
        finally:
            self._sem.release()

    async def _after(self, entry: QueueEntry, results: list[RecipientResult]) -> None:
        if any(r.dsn for r in results):
            self.wake()       # the loop (or run_once) sends them, one DSN per message
        if entry.account_id is not None and entry.sender and \
                any(r.state in (DEFERRED, FAILED) for r in results):
            await self.check_guard(entry.account_id)

    # --- delivering one group ------------------------------------------------------------

    async def _deliver(self, entry: QueueEntry, domain: str,
                       rcpts: list[QueueRecipient]) -> list[RecipientResult]:
        """Try the hosts of `domain` for these claimed recipients; every outcome is recorded
        in the store as soon as it is known. Returns all recorded results."""
        pending = {r.id: _Pending(r) for r in rcpts}
        recorded: list[RecipientResult] = []
        try:
            targets = await targets_for(domain, self.config.delivery, self.resolver,
                                       self.mx_port)
        except RouteError as exc:
            for p in pending.values():
                p.reply, p.permanent = exc.reply, exc.permanent
            recorded += await self._record_rest(entry, pending, "")
            return recorded
        message = await self._message(entry)
        for target in targets:
            for address in target.addresses[:MAX_ADDRESSES_PER_HOST]:
                if not pending:
                    return recorded
                recorded += await self._try_host(entry, target, address, pending, message)
                if not pending:
                    return recorded
        recorded += await self._record_rest(entry, pending, targets[-1].host if targets else "")
        return recorded

    async def _message(self, entry: QueueEntry) -> bytes:
        static = (await self.store.fetch_static([entry.blob_id])).get(entry.blob_id)
        if static is None:
            raise StorageError(f"queue {entry.id}: its message is missing from the store")
        data = await self.store.read_blob(static.digest)
        if self.signer is not None and entry.sender:
            signature = await asyncio.to_thread(self.signer.sign, data)
            data = signature + data
        return data

    def _client(self, target: Target, address: str, starttls: bool) -> SmtpClient:
        verify = target.routed and target.auth is not None and not is_loopback(address)
        ctx = ssl.create_default_context() if verify else self.tls_context
        return SmtpClient(target.host, target.port, helo=self.hostname, timeouts=self.timeouts,
                          tls_context=ctx, starttls=starttls, auth=target.auth,
                          server_hostname=target.host if verify else None,
                          connect_host=address)

    async def _try_host(self, entry: QueueEntry, target: Target, address: str,
                        pending: dict[int, _Pending], message: bytes) -> list[RecipientResult]:
        """One connection. Decided recipients leave `pending` and are recorded at once."""
        client = self._client(target, address, starttls=True)
        try:
            try:
                await client.connect()
            except TlsFailed as exc:
                # Opportunistic TLS (RFC 7435): a broken handshake is retried in plaintext,
                # unless we would send a password over it.
                await client.close()
                if target.auth is not None and not is_loopback(address):
                    raise
                log.info("queue %d: %s; trying %s without TLS", entry.id, exc, target.host)
                client = self._client(target, address, starttls=False)
                await client.connect()
            order = list(pending.values())
            result = await client.send(
                entry.sender, [OutRecipient(p.rcpt.address, p.rcpt.notify, p.rcpt.orcpt)
                               for p in order],
                message, envid=entry.envid, ret=entry.ret)
        except SmtpClientError as exc:
            await client.close()
            reply = str(exc.reply) if exc.reply is not None else f"451 {exc.status} {exc}"
            for p in pending.values():
                p.reply = reply
            if client.data_started:
                # The message went (partly) out: do not offer it to another host now; the
                # whole group waits for the next attempt (at least once, never twice by us
                # in one attempt).
                return await self._record_rest(entry, pending, target.host)
            log.info("queue %d: %s (%s): %s", entry.id, target.host, address, exc)
            return []
        decided: list[RecipientResult] = []
        remote_dsn = "DSN" in client.extensions
        for i, p in enumerate(order):
            outcome = self._rcpt_outcome(result.mail_reply, result.rcpt_replies[i],
                                         result.data_reply)
            if outcome is None:
                # A temporary refusal of the whole transaction: the next host may do better.
                p.reply = str(result.mail_reply if not result.mail_reply.ok
                              else SmtpReply(451, ("4.4.2 no reply to RCPT",)))
                continue
            del pending[p.rcpt.id]
            decided.append(self._result(entry, p.rcpt, outcome, target.host, remote_dsn))
        # Record before QUIT and before anything else happens (the module docstring).
        now = int(self.clock.now())
        await self.store.queue_record(decided, now)
        self._log(entry, decided)
        await client.quit()
        return decided

    @staticmethod
    def _rcpt_outcome(mail: SmtpReply, rcpt: SmtpReply | None,
                      data: SmtpReply | None) -> SmtpReply | None:
        """The reply that decides a recipient, or None to try the next host."""
        if not mail.ok:
            return mail if mail.permanent else None
        if rcpt is None:
            return None
        if not rcpt.ok:
            return rcpt
        if data is None:
            return SmtpReply(451, ("4.4.2 no final reply to the message data",))
        return data

    def _result(self, entry: QueueEntry, rcpt: QueueRecipient, reply: SmtpReply, host: str,
                remote_dsn: bool) -> RecipientResult:
        if reply.ok:
            relayed = bool(entry.sender) and not remote_dsn and \
                wants_dsn(rcpt.notify, "relayed")
            return RecipientResult(rcpt.id, DELIVERED, str(reply), 0, host,
                                   "relayed" if relayed else "")
        if reply.permanent:
            return self._failed(entry, rcpt, str(reply), host)
        return self._deferred(entry, rcpt, str(reply), host)

    def _failed(self, entry: QueueEntry, rcpt: QueueRecipient, reply: str,
                host: str) -> RecipientResult:
        dsn = "failed" if entry.sender and wants_dsn(rcpt.notify, "failed") else ""
        return RecipientResult(rcpt.id, FAILED, reply, 0, host, dsn)

    def _deferred(self, entry: QueueEntry, rcpt: QueueRecipient, reply: str,
                  host: str) -> RecipientResult:
        d = self.config.delivery
        now = self.clock.now()
        age = now - entry.created
        if age >= d.give_up_after:
            days = d.give_up_after / 86400
            return self._failed(entry, rcpt, f"{reply} (gave up after {days:g} days in the "
                                              "queue)", host)
        nxt = int(now) + retry_delay(rcpt.attempts + 1, d.retry_initial, d.retry_max)
        delayed = bool(entry.sender) and age >= d.delay_notice_after and \
            wants_dsn(rcpt.notify, "delayed")
        return RecipientResult(rcpt.id, DEFERRED, reply, nxt, host,
                               "delayed" if delayed else "")

    async def _record_rest(self, entry: QueueEntry, pending: dict[int, _Pending],
                           host: str) -> list[RecipientResult]:
        results = []
        for p in pending.values():
            reply = p.reply or "451 4.4.1 no mail server could be reached"
            if p.permanent:
                results.append(self._failed(entry, p.rcpt, reply, host))
            else:
                results.append(self._deferred(entry, p.rcpt, reply, host))
        pending.clear()
        await self.store.queue_record(results, int(self.clock.now()))
        self._log(entry, results)
        return results

    def _log(self, entry: QueueEntry, results: list[RecipientResult]) -> None:
        by_id = {r.id: r.address for r in entry.recipients}
        for r in results:
            if r.state in _EVENTS:
                metrics.message(_EVENTS[r.state])
            log.info("queue %d to <%s>: %s via %s (%s)", entry.id, by_id.get(r.recipient_id, "?"),
                     r.state, r.remote_mta or "-", r.reply)

    # --- notices and the guard -----------------------------------------------------------

    async def send_notices(self) -> int:
        """Send every DSN the queue owes (after a crash too); returns how many were sent."""
        async with self._notice_lock:
            return await self._send_notices()

    async def _send_notices(self) -> int:
        sent = 0
        for notice in await self.store.queue_pending_notices():
            ids = [n.recipient.id for n in notice.recipients]
            if notice.entry.sender:
                data = await dsn_for(self.store, self.hostname, notice,
                                     self.config.delivery.give_up_after, self.clock.now())
                actions = ",".join(sorted({n.action for n in notice.recipients}))
                await send_to(self.store, self.hostname, notice.entry.sender, data,
                              f"DSN ({actions}) for queue {notice.entry.id}")
                sent += 1
            await self.store.queue_notices_sent(ids)
        return sent

    async def check_guard(self, account_id: int) -> None:
        account = await self.store.get_account_by_id(account_id)
        if account is None:
            return
        trip = await update_guard(self.store, self.config.limits, account, self.clock.now())
        if trip is None:
            return
        log.warning("sending guard tripped for %s: %d of %d attempts deferred or failed in "
                    "the last hour", account.address, trip.usage.defers_failures,
                    trip.usage.attempts)
        data = guard_notice(self.hostname, account, trip, self.clock.now())
        await send_to(self.store, self.hostname, account.address, data,
                      "sending guard notice")
