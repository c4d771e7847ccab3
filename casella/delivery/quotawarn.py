"""Quota warnings (issue 9): a user whose mailbox crosses 80 % or 95 % of its quota upwards
gets one message in INBOX per crossing.

Lives here: `send_quota_warnings`, called after a successful store call that adds mail (IMAP
COPY and MOVE; APPEND and SMTP delivery when their result says a warning waits), and the message
it delivers. Which thresholds were crossed is decided by the store inside the transaction that
added the mail and handed to exactly one caller (`Store.take_quota_warnings`), so concurrent
deliveries never warn twice. The texts come from the `[quota]` config section, registered per
store by the IMAP service (`configure`); without it the defaults apply. Must never: raise (the
mail that triggered the warning is already stored and acknowledged), or block the loop.
"""

from __future__ import annotations

import logging
import os
import time
import weakref
from collections.abc import Iterable
from email.utils import formatdate

from casella.config import QuotaConfig, human_size
from casella.errors import CasellaError
from casella.mail.headers import encode_word
from casella.store.base import Store
from casella.store.model import Account, DeliveryTarget

log = logging.getLogger("casella.delivery")

_configs: weakref.WeakKeyDictionary[Store, QuotaConfig] = weakref.WeakKeyDictionary()


def configure(store: Store, config: QuotaConfig) -> None:
    """Use these texts for warnings about mail in this store."""
    _configs[store] = config


def warning_message(config: QuotaConfig, hostname: str, account: Account, percent: int,
                    now: float | None = None) -> bytes:
    """The warning as stored in INBOX: a plain-text message from the mail system,
    `Auto-Submitted: auto-generated` (RFC 3834) so no client or robot answers it."""
    if account.quota_bytes:
        used, limit = human_size(account.used_bytes), human_size(account.quota_bytes)
    else:
        used, limit = f"{account.used_messages} messages", f"{account.quota_messages} messages"
    values = {"percent": percent, "address": account.address, "used": used, "limit": limit}
    subject = config.warning_subject.format(**values)
    body = config.warning_body.format(**values).replace("\r\n", "\n").replace("\n", "\r\n")
    sender = config.warning_from or f"postmaster@{hostname}"
    subject_field = subject.encode("ascii") if subject.isascii() else encode_word(subject)
    header = (
        b"Return-Path: <>\r\n"
        + f"Date: {formatdate(now or time.time(), localtime=False)}\r\n".encode()
        + f"From: Mail system <{sender}>\r\n".encode()
        + f"To: <{account.address}>\r\n".encode()
        + b"Subject: " + subject_field + b"\r\n"
        + f"Message-ID: <quota-{percent}-{os.urandom(8).hex()}@{hostname}>\r\n".encode()
        + b"Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
        + b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
    return header + body.encode("utf-8")


async def send_quota_warnings(store: Store, hostname: str, account_ids: Iterable[int]) -> int:
    """Deliver the warnings owed to these accounts; returns how many were delivered."""
    config = _configs.get(store) or QuotaConfig()
    sent = 0
    for account_id in set(account_ids):
        try:
            # Twice at most: the warning itself may cross the next threshold.
            for _ in range(2):
                thresholds = await store.take_quota_warnings(account_id)
                if not thresholds:
                    break
                for percent in thresholds:
                    account = await store.get_account_by_id(account_id)
                    if account is None:
                        break
                    staged = await store.blobs.stage(
                        warning_message(config, hostname, account, percent))
                    try:
                        (outcome,) = await store.deliver(staged, [DeliveryTarget(account_id)])
                    finally:
                        staged.discard()
                    if outcome.error is None:
                        sent += 1
                        log.info("quota warning %d%% delivered to %s", percent, account.address)
                    else:
                        log.warning("quota warning %d%% for %s not delivered: %s", percent,
                                    account.address, outcome.error)
        except CasellaError as exc:
            log.error("quota warning for account %d failed: %s", account_id, exc)
    return sent
