"""The SMTP side of spam filtering (issue 20): what the session tells Rspamd about a message,
and what follows a refused submission.

Lives here: `scan` (the envelope as casella.delivery.spam.ScanEnvelope, with the client's
forward-confirmed reverse name, then SpamFilter.scan), `client_hostname` (that name, from
casella's resolver) and `count_refused` (a submission Rspamd rejected counts as failed
deliveries against the account's sending limits, and the guard's notice goes out if that trips
it). The decisions themselves are casella.delivery.spam's. Must never: reply to the client,
touch a socket, or log message content.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging

from casella.config import LimitsConfig
from casella.delivery.local import send_to
from casella.delivery.spam import (
    REFUSE,
    TO_JUNK,
    ScanEnvelope,
    SpamFilter,
    SpamVerdict,
    junk_mailbox,
    mark_message,
)
from casella.limits.sendlimit import guard_notice, record_refused
from casella.smtp.delivery import Envelope
from casella.smtp.resolver import DnsError, NXDomain, get_resolver, reverse_name
from casella.store.base import Store

# What the session uses of casella.delivery.spam, through this one module.
__all__ = ["REFUSE", "TO_JUNK", "client_hostname", "count_refused", "junk_mailbox",
           "mark_message", "scan"]

log = logging.getLogger("casella.smtp")

HOSTNAME_WAIT = 5.0          # seconds the reverse lookup may take before it is left to Rspamd
MAX_PTR_NAMES = 3            # reverse names tried for a forward match


async def client_hostname(ip: str) -> str | None:
    """The client's reverse name when a forward lookup of it gives `ip` back (what Rspamd's
    Hostname header means); "unknown" when there is none; None when DNS could not say (then
    the header is left out and Rspamd looks itself)."""
    resolver = get_resolver()

    async def lookup() -> str:
        try:
            names = await resolver.query(reverse_name(ip), "PTR")
        except NXDomain:
            return "unknown"
        want = ipaddress.ip_address(ip)
        for name in names[:MAX_PTR_NAMES]:
            try:
                found = await resolver.addresses(name)
            except DnsError:
                continue
            if any(ipaddress.ip_address(a) == want for a in found):
                return str(name).lower()
        return "unknown"

    try:
        return await asyncio.wait_for(lookup(), HOSTNAME_WAIT)
    except (DnsError, TimeoutError, ValueError):
        return None


async def scan(spam: SpamFilter, env: Envelope, data: bytes, submission: bool) -> SpamVerdict:
    """Ask Rspamd about the message as received (`data`, with our trace fields)."""
    envelope = ScanEnvelope(
        sender=env.sender, recipients=[r.rcpt.recipient.address for r in env.recipients],
        ip=env.peer_ip, helo=env.helo, queue_id=env.id,
        hostname=await client_hostname(env.peer_ip),
        user=env.account.address if submission and env.account is not None else None)
    return await spam.scan(data, envelope, submission)


async def count_refused(store: Store, limits: LimitsConfig, hostname: str, env: Envelope,
                        verdict: SpamVerdict, extra: dict[str, object]) -> None:
    """A submission refused as spam: said loudly (a customer's account sending spam is how a
    hosting IP gets blacklisted), and counted as one failed delivery per recipient."""
    account = env.account
    assert account is not None
    recipients = [r.rcpt.recipient.address for r in env.recipients]
    log.error("OUTBOUND SPAM from %s refused: message %s to %d recipient(s), Rspamd %s; the "
              "account may be compromised", account.address, env.id, len(recipients),
              verdict.summary, extra=extra)
    trip = await record_refused(store, limits, account, recipients)
    if trip is not None:
        log.warning("sending guard tripped for %s: %d of %d attempts deferred or failed in "
                    "the last hour", account.address, trip.usage.defers_failures,
                    trip.usage.attempts, extra=extra)
        await send_to(store, hostname, account.address, guard_notice(hostname, account, trip),
                      "sending guard notice")
