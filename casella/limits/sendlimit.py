"""The two sending limits every shared host enforces, and the admin hold on an account.

Lives here: the effective limits of an account (`effective_limits`: its own setting and its
domain's, the lower wins; the config default when neither is set), its usage in the rolling
one-hour window (`usage_from_events`), the refusal texts in the shape hosting customers know from
cPanel/Exim, the RCPT-time check the submission session calls (`check_send_limits`), the guard
the queue runner updates after delivery attempts (`update_guard`), a submission refused as spam
counted as failures (`record_refused`), the plain-language notice an account receives when the
guard trips (`guard_notice`), and what the customer's page shows (`sending_status`). Asks the
store for facts (send events, settings); the store never asks this module. Must never: import
a protocol module, or discard mail: every refusal here is temporary (450), so the message stays
in the customer's outbox.

Definitions (all over the last WINDOW seconds, `at > now - WINDOW`):
- submitted: recipients the account handed to the outbound queue (one "submitted" send event
  per queued message, written by store.enqueue in the queuing transaction). Local recipients
  are not counted: they never leave the server and cannot hurt its reputation.
- attempts ("sent" in the percentage): delivery attempts the queue runner made for the
  account's queued recipients: delivered + deferred + failed, one per recipient per attempt.
- defers and failures: attempts that ended deferred (4xx, connection or DNS trouble) or failed
  (5xx, no such domain, gave up). Each retry that defers counts again, as in cPanel.
- messages per hour blocks a new recipient when submitted + recipients already accepted in
  this transaction + 1 > messages_per_hour.
- the guard blocks when defers_failures >= defers_failures_per_hour AND
  defers_failures * 100 >= defers_failures_percent * attempts, i.e. at least the limit in
  number and at least the configured share of what the runner tried to send.
A limit of 0 means unlimited.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, make_msgid

from casella import metrics
from casella.config import LimitsConfig
from casella.store.base import Store
from casella.store.model import Account, Domain
from casella.store.sending import (
    EV_DEFERRED,
    EV_DELIVERED,
    EV_FAILED,
    EV_SUBMITTED,
    LIMIT_KEYS,
    SendEvent,
)

WINDOW = 3600
REFUSAL_CODE = 450
REFUSAL_STATUS = "4.7.1"   # RFC 3463: delivery not authorized (temporarily, 4.x.x)


@dataclass(frozen=True, slots=True)
class Limits:
    messages_per_hour: int           # 0 = unlimited
    defers_failures_per_hour: int    # 0 = no guard
    defers_failures_percent: int


@dataclass(frozen=True, slots=True)
class Usage:
    submitted: int
    delivered: int
    deferred: int
    failed: int
    failed_recipients: tuple[str, ...]   # deferred or failed, most recent last, unique

    @property
    def attempts(self) -> int:
        return self.delivered + self.deferred + self.failed

    @property
    def defers_failures(self) -> int:
        return self.deferred + self.failed

    @property
    def defers_failures_pct(self) -> int:
        """Share of the attempts that deferred or failed, rounded down (0 with no attempt)."""
        return self.defers_failures * 100 // self.attempts if self.attempts else 0


@dataclass(frozen=True, slots=True)
class Refusal:
    """A temporary refusal for the SMTP session to send as `code status text`."""

    code: int
    status: str
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}"


@dataclass(frozen=True, slots=True)
class GuardTrip:
    """The guard has just started blocking an account."""

    usage: Usage
    limits: Limits
    resumes_at: int


def _lowest(values: Sequence[int | None], default: int) -> int:
    """The lower of the set values, 0 meaning unlimited; the default when none is set."""
    chosen = [v for v in values if v is not None]
    if not chosen:
        return default
    limited = [v for v in chosen if v > 0]
    return min(limited) if limited else 0


def effective_limits(defaults: LimitsConfig, account: Account, domain: Domain | None) -> Limits:
    """The account's limits: for each key the lower of the account's and its domain's
    settings; the config default when neither sets it."""
    values = []
    for key in LIMIT_KEYS:
        own = getattr(account, key)
        dom = getattr(domain, key) if domain is not None else None
        if key == "defers_failures_percent":
            # A percentage: the lower value is the stricter one; 0 means "any share".
            chosen = [v for v in (own, dom) if v is not None]
            values.append(min(chosen) if chosen else getattr(defaults, key))
        else:
            values.append(_lowest((own, dom), getattr(defaults, key)))
    return Limits(*values)


def usage_from_events(events: Sequence[SendEvent], now: float) -> Usage:
    since = now - WINDOW
    counts = {EV_SUBMITTED: 0, EV_DELIVERED: 0, EV_DEFERRED: 0, EV_FAILED: 0}
    failed: dict[str, None] = {}
    for ev in events:
        if ev.at <= since or ev.at > now:
            continue
        counts[ev.kind] = counts.get(ev.kind, 0) + ev.count
        if ev.kind in (EV_DEFERRED, EV_FAILED) and ev.detail:
            failed.pop(ev.detail, None)
            failed[ev.detail] = None
    return Usage(counts[EV_SUBMITTED], counts[EV_DELIVERED], counts[EV_DEFERRED],
                 counts[EV_FAILED], tuple(failed))


def guard_blocked(limits: Limits, usage: Usage) -> bool:
    n = usage.defers_failures
    if limits.defers_failures_per_hour <= 0 or n < limits.defers_failures_per_hour:
        return False
    return n * 100 >= limits.defers_failures_percent * usage.attempts


def guard_resumes_at(limits: Limits, events: Sequence[SendEvent], now: float) -> int:
    """When the guard stops blocking if nothing else happens: the first moment an event
    leaving the window makes `guard_blocked` false."""
    times = sorted({int(ev.at) + WINDOW for ev in events if now - WINDOW < ev.at <= now})
    for t in times:
        if not guard_blocked(limits, usage_from_events(events, t)):
            return t
    return int(now) + WINDOW


def emails_refusal(address: str, used: int, limit: int) -> Refusal:
    """cPanel/Exim's shape: "(used/limit (percent%))"."""
    return Refusal(REFUSAL_CODE, REFUSAL_STATUS,
                   f"{address} has exceeded the max emails per hour "
                   f"({used}/{limit} ({used * 100 // limit}%)) allowed")


def defers_refusal(address: str, usage: Usage, limit: int) -> Refusal:
    """cPanel/Exim's shape: "(defers+failures/limit (share of attempts%))"."""
    return Refusal(REFUSAL_CODE, REFUSAL_STATUS,
                   f"{address} has exceeded the max defers and failures per hour "
                   f"({usage.defers_failures}/{limit} ({usage.defers_failures_pct}%)) allowed")


def held_refusal(address: str) -> Refusal:
    return Refusal(REFUSAL_CODE, REFUSAL_STATUS,
                   f"{address} may not send mail at the moment: the administrator has put its "
                   "outgoing mail on hold")


async def account_limits(store: Store, defaults: LimitsConfig, account: Account) -> Limits:
    return effective_limits(defaults, account, await store.get_domain(account.domain))


async def account_usage(store: Store, account: Account, now: float | None = None) -> Usage:
    now = time.time() if now is None else now
    return usage_from_events(await store.send_events(account.id, int(now) - WINDOW - 1), now)


async def check_send_limits(store: Store, defaults: LimitsConfig, account: Account,
                            pending: int = 0, adding: int = 1,
                            now: float | None = None) -> Refusal | None:
    """The RCPT-time check on submission, for a recipient that leaves the server.

    `pending` is how many remote recipients this transaction has accepted already (they are
    not queued yet, so the store does not count them), `adding` how many this RCPT adds
    (an alias may expand to several). Returns None to accept, or a Refusal to send as the
    RCPT reply (450 4.7.1: temporary, the client keeps the message and tries later). The
    account record must be fresh (read at AUTH or later) for the hold flag."""
    now = time.time() if now is None else now
    current = await store.get_account_by_id(account.id) or account
    if current.sending_held:
        metrics.send_refused("held")
        return held_refusal(current.address)
    limits = await account_limits(store, defaults, current)
    events = await store.send_events(current.id, int(now) - WINDOW - 1)
    usage = usage_from_events(events, now)
    limit = limits.messages_per_hour
    used = usage.submitted + pending
    if limit > 0 and used + adding > limit:
        metrics.send_refused("messages_per_hour")
        return emails_refusal(current.address, used, limit)
    if guard_blocked(limits, usage):
        metrics.send_refused("defers_failures")
        return defers_refusal(current.address, usage, limits.defers_failures_per_hour)
    return None


async def update_guard(store: Store, defaults: LimitsConfig, account: Account,
                       now: float | None = None) -> GuardTrip | None:
    """After the queue runner recorded attempts for the account: returns a GuardTrip when the
    guard has just started blocking (one per trip: while the stored "blocked until" has not
    passed, a still-blocked account is the same trip, whose end moves later)."""
    now = time.time() if now is None else now
    limits = await account_limits(store, defaults, account)
    events = await store.send_events(account.id, int(now) - WINDOW - 1)
    usage = usage_from_events(events, now)
    previous = await store.get_send_guard(account.id)
    if not guard_blocked(limits, usage):
        return None
    resumes = guard_resumes_at(limits, events, now)
    await store.set_send_guard(account.id, resumes)
    if previous is not None and previous > now:
        return None
    metrics.send_held("guard")
    return GuardTrip(usage, limits, resumes)


async def record_refused(store: Store, defaults: LimitsConfig, account: Account,
                         recipients: Sequence[str], now: float | None = None
                         ) -> GuardTrip | None:
    """A message the account submitted was refused for what it is (issue 20: Rspamd said
    reject, the mark of a compromised account): one "failed" event per recipient, as if each
    delivery had failed, then the guard as after queue attempts (a GuardTrip when this made
    it start blocking)."""
    now = time.time() if now is None else now
    await store.add_send_events(account.id, [SendEvent(int(now), EV_FAILED, 1, r[:320])
                                             for r in recipients] or
                                [SendEvent(int(now), EV_FAILED, 1, "")])
    return await update_guard(store, defaults, account, now)


def _when(ts: int) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def guard_notice(hostname: str, account: Account, trip: GuardTrip,
                 now: float | None = None) -> bytes:
    """The message put in the account's INBOX when the guard trips: what happened, which
    recipients failed, and when sending resumes."""
    now = time.time() if now is None else now
    u, lim = trip.usage, trip.limits
    failed = list(u.failed_recipients[-20:])
    lines = [
        f"Hello {account.address},",
        "",
        "Outgoing mail from your address is paused for a while.",
        "",
        (f"In the last hour {u.defers_failures} of the {u.attempts} deliveries the server "
         f"tried for you ({u.defers_failures_pct}%) could not be completed: the receiving "
         "servers refused them or asked us to try later. To protect the server's good name, "
         f"an account may have at most {lim.defers_failures_per_hour} such deliveries in an "
         f"hour when they make up {lim.defers_failures_percent}% or more of its mail."),
        "",
        "The recipients that failed or were delayed most recently:",
        "",
        *[f"  {r}" for r in failed],
        "",
        (f"You can send again from {_when(trip.resumes_at)} (if no more deliveries fail). "
         "Until then your mail program will keep new messages in its outbox and send them "
         "later; nothing you wrote is lost. Messages already accepted stay in the queue."),
        "",
        ("What to check: addresses that no longer exist in your address book or mailing "
         "lists, and, if you did not send these messages yourself, change your password: "
         "someone else may be using your account."),
        "",
        f"-- the mail server {hostname}",
    ]
    body = "\r\n".join(lines) + "\r\n"
    header = "\r\n".join([
        f"From: Mail Delivery System <MAILER-DAEMON@{hostname}>",
        f"To: <{account.address}>",
        "Subject: Your outgoing mail is paused: too many failed deliveries",
        f"Date: {format_datetime(datetime.fromtimestamp(now, UTC))}",
        f"Message-ID: {make_msgid('guard', domain=hostname)}",
        "Auto-Submitted: auto-generated",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]) + "\r\n\r\n"
    return (header + body).encode("utf-8")


@dataclass(frozen=True, slots=True)
class SendingStatus:
    """What the customer's page shows about sending (all over the last hour)."""

    limits: Limits
    usage: Usage
    held: bool                 # the administrator put outgoing mail on hold (no end date)
    guard_until: int | None    # the defers-and-failures guard blocks until then
    hourly_full_until: int | None  # messages_per_hour is used up until then

    @property
    def blocked(self) -> bool:
        return self.held or self.guard_until is not None or self.hourly_full_until is not None


async def sending_status(store: Store, defaults: LimitsConfig, account: Account,
                         now: float | None = None) -> SendingStatus:
    """The account's limits, its usage this hour, and whatever stops it from sending now,
    with when that lifts by itself: the same rules `check_send_limits` applies."""
    now = time.time() if now is None else now
    current = await store.get_account_by_id(account.id) or account
    limits = await account_limits(store, defaults, current)
    events = await store.send_events(current.id, int(now) - WINDOW - 1)
    usage = usage_from_events(events, now)
    guard_until: int | None = None
    if guard_blocked(limits, usage):
        guard_until = guard_resumes_at(limits, events, now)
    full_until: int | None = None
    limit = limits.messages_per_hour
    if limit > 0 and usage.submitted >= limit:
        # A recipient leaves the count an hour after it was queued: the earliest moment the
        # count falls below the limit again.
        submitted = sorted((int(ev.at), ev.count) for ev in events
                           if ev.kind == EV_SUBMITTED and now - WINDOW < ev.at <= now)
        remaining = usage.submitted
        for at, count in submitted:
            remaining -= count
            if remaining < limit:
                full_until = at + WINDOW
                break
    return SendingStatus(limits, usage, current.sending_held, guard_until, full_until)
