"""Taking a received message to its recipients: trace headers, streaming into the blob store,
local delivery and the outbound queue, and bounces for recipients that failed at the end.

Lives here: `Envelope` (one mail transaction), `trace_headers` (Return-Path and Received, the
same bytes for every local recipient so the body is stored once), `MessageSink` (streams the
message into one blob writer for local delivery and, when there are remote recipients, one
without Return-Path for the queue), `from_addresses` (the From: header, for the submission
sender check), and `commit` (store.deliver / store.enqueue, the 552 "all failed" rule, DSNs).
Must never: touch sockets, reply before the store call returned, or send a DSN for the null
reverse path (PROMISES M6).
"""

from __future__ import annotations

import functools
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime

from casella.delivery.filtering import Arrival, Filtering, Plan, staged_bytes
from casella.delivery.local import send_to
from casella.delivery.quotawarn import send_quota_warnings
from casella.delivery.recipients import LocalTarget, Resolution
from casella.errors import NotFound, QuotaExceeded, StorageError
from casella.mail.address import GROUP_END, MISSING_DOMAIN, MISSING_MAILBOX, parse_addresses
from casella.mail.headers import field_value, split_fields
from casella.smtp import proto
from casella.smtp.data import HeadCapture
from casella.smtp.dsn import DsnRecipient, build_dsn, wants_dsn
from casella.smtp.proto import Mail, Rcpt, Reply
from casella.store.base import Store
from casella.store.blobs import BlobWriter, StagedBlob
from casella.store.model import Account, DeliveryOutcome, DeliveryTarget, QueueRecipient

log = logging.getLogger("casella.smtp")

_HELO_UNSAFE = re.compile(r"[^A-Za-z0-9.\-_:\[\]]")


def new_message_id() -> str:
    """The id shown in Received, the 250 reply and the logs."""
    return os.urandom(8).hex().upper()


@dataclass(slots=True)
class Recipient:
    """An accepted RCPT TO and what it expanded to."""

    rcpt: Rcpt
    resolution: Resolution

    @property
    def orcpt(self) -> str:
        # RFC 3461 §4.2: without ORCPT the DSN names the address as given.
        return self.rcpt.orcpt or f"rfc822;{self.rcpt.recipient.address}"


@dataclass(slots=True)
class Envelope:
    id: str
    mail: Mail
    sender: str                                   # "" for the null reverse path
    account: Account | None                       # the authenticated submitter
    helo: str
    peer_ip: str
    esmtp: bool
    tls_version: str | None = None
    tls_cipher: str | None = None
    recipients: list[Recipient] = field(default_factory=list)
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def has_local(self) -> bool:
        return any(r.resolution.local for r in self.recipients)

    @property
    def has_remote(self) -> bool:
        return any(r.resolution.remote for r in self.recipients)

    @property
    def protocol(self) -> str:
        """RFC 3848 / RFC 6531 §4.3 "with" keyword."""
        if not self.esmtp:
            return "SMTP"
        base = "UTF8SMTP" if self.mail.smtputf8 else "ESMTP"
        return base + ("S" if self.tls_version else "") + ("A" if self.account else "")


def _ip_literal(ip: str) -> str:
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


@functools.lru_cache(maxsize=4)
def _received_date(when: datetime) -> str:
    """The RFC 5322 date of a Received field; a busy MX stamps many messages in one second
    (received_at is taken to the second for this reason)."""
    return format_datetime(when)


def trace_headers(hostname: str, env: Envelope, return_path: bool) -> bytes:
    """Return-Path (final delivery only, RFC 5321 §4.4) and Received, folded, CRLF ended.
    Everything in them comes from parsed paths and our own state, none of which can hold CR
    or LF (PROMISES M7); the HELO argument is reduced to safe characters as well."""
    helo = _HELO_UNSAFE.sub("", env.helo)[:255] or "unknown"
    lines = [f"Received: from {helo} ({_ip_literal(env.peer_ip)})"]
    if env.tls_version:
        lines.append(f"\t(using {env.tls_version} with cipher {env.tls_cipher or 'unknown'})")
    if env.account is not None:
        lines.append(f"\t(Authenticated sender: {env.account.address})")
    lines.append(f"\tby {hostname} (casella) with {env.protocol} id {env.id}")
    when = _received_date(env.received_at)
    if len(env.recipients) == 1:
        # Only for a single recipient: naming one of several would leak the others' Bcc and
        # make the header differ per recipient, so the body could not be stored once.
        lines.append(f"\tfor <{env.recipients[0].rcpt.recipient.address}>; {when}")
    else:
        lines[-1] += ";"
        lines.append(f"\t{when}")
    out = "\r\n".join(lines) + "\r\n"
    if return_path:
        out = f"Return-Path: <{env.sender}>\r\n" + out
    return out.encode("utf-8")


class MessageSink:
    """Streams one message into the blob store as it arrives: a local copy (with Return-Path)
    when any recipient is local, a queue copy (without) when any is remote, plus the head."""

    def __init__(self, store: Store, hostname: str, env: Envelope) -> None:
        self._hostname = hostname
        self._env = env
        self._blobs = store.blobs
        self._queue_trace: bytes | None = None
        self.local_trace = trace_headers(hostname, env, return_path=True)
        self.local: BlobWriter | None = store.blobs.writer() if env.has_local else None
        self.queue: BlobWriter | None = store.blobs.writer() if env.has_remote else None
        self.head = HeadCapture()
        self.aborted = False

    @property
    def queue_trace(self) -> bytes:
        """Received without Return-Path (the queue copy, bounces); made when first asked."""
        if self._queue_trace is None:
            self._queue_trace = trace_headers(self._hostname, self._env, return_path=False)
        return self._queue_trace

    async def start(self) -> None:
        if self.local is not None:
            await self.local.write(self.local_trace)
        if self.queue is not None:
            await self.queue.write(self.queue_trace)

    async def write(self, data: bytes) -> None:
        if self.aborted or not data:
            return
        self.head.feed(data)
        if self.local is not None:
            await self.local.write(data)
        if self.queue is not None:
            await self.queue.write(data)

    def abort(self) -> None:
        """Throw the partial message away: nothing is stored (disconnect, refusal)."""
        self.aborted = True
        for w in (self.local, self.queue):
            if w is not None:
                w.abort()

    def local_data(self) -> bytes | None:
        """The local copy as received so far, when it is still all in memory (not for a
        message of more than a megabyte), else None."""
        if self.local is None or self.aborted:
            return None
        return self.local.peek()

    async def finish(self, local_data: bytes | None = None
                     ) -> tuple[StagedBlob | None, StagedBlob | None]:
        """fsync and parse; the caller publishes them with the store and discards them.
        `local_data` replaces the local copy's bytes (the received ones with a header added,
        see `local_data`), so that the message is written to disk once. Both are published
        early (linked and their directory fsynced before the store's write lock is taken, see
        casella.store.blobs): the store's transaction, which every worker's deliveries wait
        for in turn, then holds no fsync but its own commit."""
        local = queue = None
        try:
            if self.local is not None and local_data is not None:
                self.local.abort()
                local = await self._blobs.stage(local_data, publish_early=True)
            elif self.local is not None:
                local = await self.local.finish(publish_early=True)
            if self.queue is not None:
                queue = await self.queue.finish(publish_early=True)
        except BaseException:
            if local is not None:
                local.discard()
            self.abort()
            raise
        return local, queue

    @property
    def original(self) -> tuple[bytes, bool]:
        """The message as a bounce returns it (with our Received) and whether it is whole."""
        return self.queue_trace + self.head.prefix, self.head.complete


def from_addresses(header: bytes) -> list[str]:
    """The addresses of every From: field (RFC 5322 §3.6.2), groups skipped."""
    out: list[str] = []
    for name, raw in split_fields(header):
        if name.lower() != b"from":
            continue
        for addr in parse_addresses(field_value(raw)):
            if addr == GROUP_END or addr[3] is None:
                continue
            mailbox, host = addr[2], addr[3]
            if mailbox in (None, MISSING_MAILBOX) or host == MISSING_DOMAIN:
                continue
            assert mailbox is not None
            out.append(f"{mailbox.decode('utf-8', 'replace')}@{host.decode('utf-8', 'replace')}")
    return out


@dataclass(slots=True)
class _Local:
    target: LocalTarget
    recipients: list[Recipient]


def _status_of(error: Exception) -> tuple[str, Reply]:
    if isinstance(error, QuotaExceeded):
        return "5.2.2", proto.MAILBOX_FULL
    if isinstance(error, NotFound):
        return "5.1.1", proto.UNKNOWN_USER
    return "5.0.0", proto.reply(550, "5.0.0", "Delivery failed")


def _queue_orcpt(address: str, r: Recipient) -> str | None:
    """ORCPT for a queued recipient: the client's, or, when an alias expanded to this remote
    address, the address the client asked for (so a later DSN names it)."""
    if r.rcpt.orcpt:
        return r.rcpt.orcpt
    return None if address == r.resolution.address else r.orcpt


async def commit(store: Store, hostname: str, env: Envelope,
                 local_blob: StagedBlob | None, queue_blob: StagedBlob | None,
                 sink: MessageSink, extra: dict[str, object],
                 rules: Filtering | None = None) -> Reply:
    """Store the message for every recipient and say what to answer. StorageError propagates
    (the session answers 451/452). Per the issue, recipients whose quota the message would
    exceed fail here: if every recipient failed the whole message is refused (552 5.2.2),
    otherwise the others get it and the sender gets a DSN for the failed ones.
    With `rules` (issue 20) each local account's Sieve script and forward decide first: a
    reject of every local recipient (and no remote one) is answered here (550 5.7.1, RFC 5429
    §2.1), other rejects get a DSN; redirects and forwards are queued before the local copies
    are stored, vacation replies after."""
    locals_: dict[tuple[int, str], _Local] = {}
    remote: dict[str, Recipient] = {}
    for r in env.recipients:
        for t in r.resolution.local:
            locals_.setdefault(t.key, _Local(t, [])).recipients.append(r)
        for address in r.resolution.remote:
            remote.setdefault(address, r)
    keys = list(locals_.values())

    plan: Plan | None = None
    if rules is not None and keys and local_blob is not None:
        blob = local_blob
        plan = await rules.plan(
            [Arrival(loc.target, loc.recipients[0].rcpt.recipient.address) for loc in keys],
            env.sender, lambda: staged_bytes(blob.data, blob.tmp_path))
        for ap in plan.arrivals:
            if ap.error:
                log.warning("message %s for %s: %s; delivered to its mailbox", env.id,
                            ap.arrival.target.account.address, ap.error, extra=extra)
        if plan.all_rejected and not remote:
            reject = plan.arrivals[0].reject
            assert reject is not None
            log.info("message %s rejected by the recipient's Sieve script", env.id,
                     extra=extra)
            return proto.reply(550, "5.7.1", _reject_text(reject.reason))
        await rules.send_on(plan, env.sender, hostname)

    # Which key each delivery target serves (a script may file one message several times).
    targets: list[DeliveryTarget] = []
    owners: list[int] = []
    rejected: list[int] = []
    for i, loc in enumerate(keys):
        if plan is not None:
            ap = plan.arrivals[i]
            if ap.reject is not None:
                rejected.append(i)
            targets += ap.targets
            owners += [i] * len(ap.targets)
        else:
            targets.append(DeliveryTarget(loc.target.account.id, loc.target.mailbox))
            owners.append(i)
    # One transaction for the local copies and the queue entry (PROMISES D12).
    outcomes, queue_id = await store.deliver_and_enqueue(
        local_blob if targets else None, targets, queue_blob, env.sender,
        [QueueRecipient(address, _queue_orcpt(address, r), r.rcpt.notify)
         for address, r in remote.items()],
        env.account.id if env.account else None, env.mail.envid, env.mail.ret)
    delivered = [o for o in outcomes if o.error is None]
    # Quota warnings (issue 9): one message per 80 % / 95 % crossing, decided by the store,
    # which says in each outcome whether one waits (so a delivery costs no extra round trip).
    await send_quota_warnings(store, hostname, [o.target.account_id for o in delivered
                                                if o.quota_warning])
    # A key failed when every one of its deliveries failed (a key with none, discarded or
    # sent on, or rejected, did not fail here).
    per_key: dict[int, list[DeliveryOutcome]] = {}
    for i, o in zip(owners, outcomes):
        per_key.setdefault(i, []).append(o)
    failed = [(keys[i], os_[0]) for i, os_ in per_key.items()
              if all(o.error is not None for o in os_)]
    succeeded = {i for i, os_ in per_key.items() if any(o.error is None for o in os_)}
    if outcomes and not delivered and not remote and len(failed) + len(rejected) == len(keys):
        assert failed[0][1].error is not None
        refusal = next((_status_of(o.error)[1] for _, o in failed
                        if isinstance(o.error, QuotaExceeded)),
                       _status_of(failed[0][1].error)[1])
        log.info("message %s refused at end of data: every recipient failed", env.id,
                 extra=extra)
        return refusal
    if plan is not None and rules is not None:
        await rules.reply_vacations(plan, env.sender, hostname)

    notices: list[DsnRecipient] = []
    for loc, o in failed:
        assert o.error is not None
        status, why = _status_of(o.error)
        log.info("message %s not delivered to %s: %s", env.id, loc.target.account.address,
                 o.error, extra=extra)
        for r in loc.recipients:
            if wants_dsn(r.rcpt.notify, "failed"):
                notices.append(DsnRecipient(loc.target.account.address, "failed", status,
                                            original_recipient=r.orcpt,
                                            diagnostic=str(why)))
    for i in rejected:
        assert plan is not None and plan.arrivals[i].reject is not None
        loc = keys[i]
        # RFC 5429 §2.1: the refusal goes back to the sender as a DSN here.
        why = proto.reply(550, "5.7.1", _reject_text(plan.arrivals[i].reject.reason))
        log.info("message %s rejected for %s by its Sieve script", env.id,
                 loc.target.account.address, extra=extra)
        for r in loc.recipients:
            if wants_dsn(r.rcpt.notify, "failed"):
                notices.append(DsnRecipient(loc.target.account.address, "failed", "5.7.1",
                                            original_recipient=r.orcpt, diagnostic=str(why)))
    for i in sorted(succeeded):
        for r in keys[i].recipients:
            if wants_dsn(r.rcpt.notify, "delivered"):
                notices.append(DsnRecipient(keys[i].target.account.address, "delivered",
                                            "2.0.0", original_recipient=r.orcpt))
    if notices:
        if env.sender:
            await _send_dsn(store, hostname, env, sink, notices, extra)
        else:
            # PROMISES M6: a null reverse path never gets a DSN; the failure is only logged.
            log.warning("message %s from the null sender: no DSN for %d failed recipient(s)",
                        env.id, sum(1 for n in notices if n.action == "failed"), extra=extra)
    suffix = f" (queue {queue_id})" if queue_id is not None else ""
    return proto.message_accepted(env.id + suffix)


def _reject_text(reason: str) -> str:
    """The first line of a Sieve reject reason, safe for an SMTP reply."""
    first = next((line.strip() for line in reason.splitlines() if line.strip()), "")
    return proto.safe_text(first or "Message rejected by the recipient", 400)


async def _send_dsn(store: Store, hostname: str, env: Envelope, sink: MessageSink,
                    notices: list[DsnRecipient], extra: dict[str, object]) -> None:
    """Deliver a DSN to the sender: into its INBOX when hosted here, else to the queue, both
    with the null sender. The message itself is already stored, so a failure here is logged,
    not answered (it would make the client send the message again)."""
    original, complete = sink.original
    data = build_dsn(hostname=hostname, sender=env.sender, recipients=notices,
                     original=original, original_complete=complete, ret=env.mail.ret,
                     envid=env.mail.envid, arrival=env.received_at, received_from=env.helo)
    try:
        if await send_to(store, hostname, env.sender, data, f"DSN for message {env.id}"):
            log.info("DSN for message %s sent to %s", env.id, env.sender, extra=extra)
    except StorageError as exc:
        log.error("DSN for message %s could not be stored: %s", env.id, exc, extra=extra)
