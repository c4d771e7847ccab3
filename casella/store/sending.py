"""Typed records of outbound delivery and the sending limits, as the store takes and returns them.

Lives here: `RecipientResult` (what one delivery attempt did to one queued recipient),
`SendEvent` (one timestamped entry of an account's sending history, which the hourly limits
count), `NoticeRecipient` / `PendingNotice` (a DSN the queue runner still owes a sender).
Must never: import a backend, a protocol or anything doing I/O (like casella.store.model).
"""

from __future__ import annotations

from dataclasses import dataclass

from casella.store.model import QueueEntry, QueueRecipient

# Recipient states of the outbound queue.
QUEUED = "queued"          # waiting for its first attempt
SENDING = "sending"        # claimed by a runner; an attempt is in flight
DEFERRED = "deferred"      # a temporary failure; next_attempt says when to try again
DELIVERED = "delivered"    # the remote server accepted it (final)
FAILED = "failed"          # permanent failure or gave up (final)
FINAL_STATES = (DELIVERED, FAILED)

# Kinds of send events.
EV_SUBMITTED = "submitted"  # recipients an account handed to the outbound queue
EV_DELIVERED = "delivered"  # a delivery attempt for one recipient succeeded
EV_DEFERRED = "deferred"    # ... ended in a temporary failure
EV_FAILED = "failed"        # ... ended in a permanent failure (or the queue gave up)
EVENT_KINDS = (EV_SUBMITTED, EV_DELIVERED, EV_DEFERRED, EV_FAILED)

# Limit settings an account or a domain may carry (None = not set there).
LIMIT_KEYS = ("messages_per_hour", "defers_failures_per_hour", "defers_failures_percent")


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """The outcome of one attempt for one recipient (`recipient_id` = QueueRecipient.id)."""

    recipient_id: int
    state: str                   # DELIVERED | DEFERRED | FAILED | QUEUED (put back untried)
    reply: str = ""              # the remote reply or our reason, one line
    next_attempt: int = 0        # DEFERRED/QUEUED: when to try again
    remote_mta: str = ""         # the host that answered, for the DSN
    dsn: str = ""                # "" or the DSN action owed to the sender: failed | delayed |
                                 # relayed
    attempted: bool = True       # counts as an attempt (attempts + 1, a send event)


@dataclass(frozen=True, slots=True)
class SendEvent:
    at: int                      # seconds since the epoch
    kind: str                    # one of EVENT_KINDS
    count: int                   # recipients
    detail: str = ""             # the recipient address (deferred/failed), for the guard notice


@dataclass(frozen=True, slots=True)
class NoticeRecipient:
    recipient: QueueRecipient
    action: str                  # failed | delayed | relayed
    remote_mta: str
    updated: int                 # when its last attempt ended


@dataclass(frozen=True, slots=True)
class PendingNotice:
    """A DSN owed to `entry.sender` for these recipients (one DSN per entry)."""

    entry: QueueEntry
    recipients: tuple[NoticeRecipient, ...]
