"""Reading what landed in a mailbox, for the outbound tests."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

from casella.store.base import Store
from casella.store.model import Account


async def mailbox_messages(store: Store, account: Account, name: str = "INBOX") -> list[bytes]:
    mb = await store.get_mailbox(account.id, name)
    assert mb is not None
    snap = await store.select(mb.id)
    if not snap.uids:
        return []
    metas = await store.fetch_meta(mb.id, [(min(snap.uids), max(snap.uids))])
    statics = await store.fetch_static([m.blob_id for m in metas])
    return [await store.read_blob(statics[m.blob_id].digest) for m in metas]


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def dsn_fields(data: bytes) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(per-message fields, per-recipient fields) of a DSN's delivery-status part, read from
    the raw bytes (RFC 3464 §2.1: blocks separated by blank lines)."""
    msg = parse(data)
    assert msg.get_content_type() == "multipart/report"
    boundary = msg.get_boundary()
    assert boundary
    for part in data.split(b"--" + boundary.encode()):
        head, _, body = part.partition(b"\r\n\r\n")
        if b"Content-Type: message/delivery-status" not in head and \
                b"Content-Type: message/global-delivery-status" not in head:
            continue
        text = body.decode("utf-8").strip()
        blocks = []
        for block in text.split("\r\n\r\n"):
            fields = {}
            for line in block.split("\r\n"):
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            blocks.append(fields)
        return blocks[0], blocks[1:]
    raise AssertionError("no delivery-status part")
