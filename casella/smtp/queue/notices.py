"""Messages the queue runner writes itself: DSNs (bounces, the one delay notice, "relayed"
reports) and the sending guard's notice, and how they reach their reader.

Lives here: `dsn_for` (a PendingNotice turned into RFC 3464 bytes with casella.smtp.dsn) and `status_of`
(the enhanced status of a stored reply); they reach their reader through
casella.delivery.local.send_to. Must never: produce a DSN for the null reverse path
(PROMISES M6).
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from casella.smtp.dsn import FULL_RETURN_LIMIT, DsnRecipient, build_dsn
from casella.store.base import Store
from casella.store.sending import PendingNotice

log = logging.getLogger("casella.queue")

_STATUS_RE = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_DEFAULT_STATUS = {"failed": "5.0.0", "delayed": "4.0.0", "relayed": "2.0.0"}


def status_of(reply: str, action: str) -> str:
    """The enhanced status for a DSN: from the reply when it has one of the right class."""
    want = _DEFAULT_STATUS[action][0]
    m = _STATUS_RE.search(reply)
    if m and m.group(1) == want:
        return ".".join(m.groups())
    if m and action == "failed":
        # A temporary code on a failure (we gave up): same subject and detail, class 5.
        return f"5.{m.group(2)}.{m.group(3)}"
    return _DEFAULT_STATUS[action]


def _ts(when: float) -> datetime:
    return datetime.fromtimestamp(when, UTC)


async def original_of(store: Store, blob_id: int) -> tuple[bytes, bool]:
    """The queued message (or its first FULL_RETURN_LIMIT+1 bytes) and whether it is whole."""
    static = (await store.fetch_static([blob_id])).get(blob_id)
    if static is None:
        return b"", False
    data = await store.read_blob(static.digest, 0, FULL_RETURN_LIMIT + 1)
    if len(data) > FULL_RETURN_LIMIT:
        return static.header, False
    return data, True


async def dsn_for(store: Store, hostname: str, notice: PendingNotice, give_up_after: int,
                  now: float) -> bytes:
    entry = notice.entry
    if not entry.sender:
        raise ValueError("no DSN for the null reverse path (PROMISES M6)")
    recipients = []
    for n in notice.recipients:
        r = n.recipient
        recipients.append(DsnRecipient(
            final_recipient=r.address, action=n.action, status=status_of(r.last_reply, n.action),
            original_recipient=r.orcpt, diagnostic=r.last_reply or None,
            remote_mta=n.remote_mta or None, last_attempt=_ts(n.updated),
            will_retry_until=_ts(entry.created + give_up_after) if n.action == "delayed"
            else None))
    original, complete = await original_of(store, entry.blob_id)
    return build_dsn(hostname=hostname, sender=entry.sender, recipients=recipients,
                     original=original, original_complete=complete, ret=entry.ret,
                     envid=entry.envid, arrival=_ts(entry.created), now=_ts(now))
