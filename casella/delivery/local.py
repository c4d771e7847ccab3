"""Local delivery shared by every way mail arrives: the step that puts a message into hosted
mailboxes and the messages the server writes itself.

Lives here: `send_to` (a message the server wrote, e.g. a DSN or a notice: into the reader's
mailbox when the address is hosted here, else into the queue with the null sender). Must
never: queue anything the server wrote with a non-null sender, or raise for a message that
could not be placed (it is logged; the mail that caused it is already stored).
"""

from __future__ import annotations

import logging

from casella.delivery.recipients import route
from casella.store.base import Store
from casella.store.model import DeliveryTarget, QueueRecipient

log = logging.getLogger("casella.delivery")


async def send_to(store: Store, hostname: str, address: str, data: bytes,
                  what: str) -> bool:
    """Deliver a message the server wrote to `address`: locally (with Return-Path: <>) when
    hosted here, else queued with the null sender. False when it could not be placed."""
    route_ = await route(store, address)
    placed = False
    if route_.local:
        blob = await store.blobs.stage(b"Return-Path: <>\r\n" + data)
        try:
            outcomes = await store.deliver(blob, [DeliveryTarget(t.account.id)
                                                  for t in route_.local])
        finally:
            blob.discard()
        for o in outcomes:
            if o.error is None:
                placed = True
            else:
                log.warning("%s for %s not delivered: %s", what, address, o.error)
    if route_.remote:
        blob = await store.blobs.stage(data)
        try:
            await store.enqueue(blob, "", [QueueRecipient(a) for a in route_.remote])
        finally:
            blob.discard()
        placed = True
    if route_.empty:
        log.warning("%s dropped: %s does not exist here", what, address)
    return placed
