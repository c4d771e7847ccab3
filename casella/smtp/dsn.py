"""Delivery status notifications: the RFC 3464 multipart/report that tells a sender what became
of a message, shared by SMTP receive (over-quota recipients) and the outbound queue runner.

Lives here: `DsnRecipient` (one per-recipient block), `build_dsn` (the whole message as CRLF
bytes, ready for store.deliver or store.enqueue with the null sender), and `wants_dsn` (the
RFC 3461 NOTIFY rules). Must never: do I/O, import asyncio, config or the store, or be called
for a message whose reverse path is null (PROMISES M6: callers check `sender` first; `build_dsn`
refuses an empty one too).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime

# Postfix's bounce_size_limit default: larger originals are returned as headers only.
FULL_RETURN_LIMIT = 50_000

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")


def _clean(value: str, limit: int = 500) -> str:
    """A header field value built from envelope data: never a CR, LF or other control
    character (PROMISES M7), bounded length."""
    value = _CONTROL.sub(" ", value).strip()
    return value[:limit]


def _date(when: datetime) -> str:
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return format_datetime(when)


@dataclass(frozen=True, slots=True)
class DsnRecipient:
    """RFC 3464 §2.3: what happened for one recipient."""

    final_recipient: str                      # the address delivery was attempted to
    action: str                               # failed | delayed | delivered | relayed | expanded
    status: str                               # enhanced status code, e.g. "5.2.2"
    original_recipient: str | None = None     # ORCPT as "addr-type;address" (RFC 3461 §4.2)
    diagnostic: str | None = None             # the SMTP reply, e.g. "552 5.2.2 Mailbox full"
    remote_mta: str | None = None             # "mx.example.net" when a remote host answered
    last_attempt: datetime | None = None
    will_retry_until: datetime | None = None

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise ValueError(f"unknown DSN action {self.action!r}")
        if not re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", self.status):
            raise ValueError(f"bad DSN status {self.status!r}")


def wants_dsn(notify: Sequence[str], action: str) -> bool:
    """RFC 3461 §4.1 / §6.2: whether the sender asked to hear about `action` for a recipient.
    Without NOTIFY the default is failures (and delays) only."""
    upper = {n.upper() for n in notify}
    if "NEVER" in upper:
        return False
    if not upper:
        return action in ("failed", "delayed")
    if action == "failed":
        return "FAILURE" in upper
    if action == "delayed":
        return "DELAY" in upper
    if action in ("delivered", "relayed", "expanded"):
        return "SUCCESS" in upper
    return False


def _address_type(address: str) -> str:
    # RFC 6533 §3: "utf-8" for internationalized addresses, else RFC 3464's "rfc822".
    return "rfc822" if address.isascii() else "utf-8"


def _subject(recipients: Sequence[DsnRecipient]) -> str:
    actions = {r.action for r in recipients}
    if "failed" in actions:
        return "Undelivered Mail Returned to Sender"
    if "delayed" in actions:
        return "Delayed Mail (still being retried)"
    return "Successful Mail Delivery Report"


def _human_text(hostname: str, recipients: Sequence[DsnRecipient]) -> str:
    lines = [f"This is the mail server at {hostname}.", ""]
    failed = [r for r in recipients if r.action == "failed"]
    delayed = [r for r in recipients if r.action == "delayed"]
    done = [r for r in recipients if r.action in ("delivered", "relayed", "expanded")]
    if failed:
        lines += ["Your message could not be delivered to the recipients below. This is a",
                  "permanent error; the server will not try again.", ""]
        lines += [f"<{_clean(r.final_recipient)}>: {_clean(r.diagnostic or r.status)}"
                  for r in failed]
        lines.append("")
    if delayed:
        lines += ["Your message has not been delivered yet to the recipients below. The",
                  "server keeps trying; you do not need to send it again.", ""]
        lines += [f"<{_clean(r.final_recipient)}>: {_clean(r.diagnostic or r.status)}"
                  for r in delayed]
        lines.append("")
    if done:
        lines += ["Your message was delivered to the recipients below.", ""]
        lines += [f"<{_clean(r.final_recipient)}>: {r.action}" for r in done]
        lines.append("")
    lines.append("The delivery report and the original message (or its header) are attached.")
    return "\r\n".join(lines) + "\r\n"


def _status_part(hostname: str, recipients: Sequence[DsnRecipient], envid: str | None,
                 arrival: datetime | None, received_from: str | None) -> str:
    # RFC 3464 §2.2: per-message fields, then one block per recipient, blank-line separated.
    fields = [f"Reporting-MTA: dns; {_clean(hostname)}"]
    if envid:
        fields.append(f"Original-Envelope-Id: {_clean(envid, 100)}")
    if received_from:
        fields.append(f"Received-From-MTA: dns; {_clean(received_from)}")
    if arrival:
        fields.append(f"Arrival-Date: {_date(arrival)}")
    blocks = ["\r\n".join(fields)]
    for r in recipients:
        rf = []
        if r.original_recipient:
            addr_type, _, addr = r.original_recipient.partition(";")
            rf.append(f"Original-Recipient: {_clean(addr_type, 40)};{_clean(addr)}")
        rf.append(f"Final-Recipient: {_address_type(r.final_recipient)}; "
                  f"{_clean(r.final_recipient)}")
        rf.append(f"Action: {r.action}")
        rf.append(f"Status: {r.status}")
        if r.remote_mta:
            rf.append(f"Remote-MTA: dns; {_clean(r.remote_mta)}")
        if r.diagnostic:
            rf.append(f"Diagnostic-Code: smtp; {_clean(r.diagnostic)}")
        if r.last_attempt:
            rf.append(f"Last-Attempt-Date: {_date(r.last_attempt)}")
        if r.will_retry_until:
            rf.append(f"Will-Retry-Until: {_date(r.will_retry_until)}")
        blocks.append("\r\n".join(rf))
    return "\r\n\r\n".join(blocks) + "\r\n"


def _header_only(message: bytes) -> bytes:
    end = message.find(b"\r\n\r\n")
    return message if end < 0 else message[: end + 2]


def build_dsn(*, hostname: str, sender: str, recipients: Sequence[DsnRecipient],
              original: bytes, original_complete: bool = True, ret: str | None = None,
              envid: str | None = None, arrival: datetime | None = None,
              received_from: str | None = None, now: datetime | None = None,
              message_id: str | None = None) -> bytes:
    """The DSN message for `sender`, as CRLF bytes.

    `original` is the returned message (header included) or at least its header;
    `original_complete` says whether it is the whole message. The whole message is returned
    when RET=FULL or RET is absent, it is complete and not larger than FULL_RETURN_LIMIT;
    otherwise only its header (RFC 3461 §4.3 lets the MTA choose when RET is absent).
    Send it with the null reverse path, so nobody answers it (RFC 3461 §6.2, RFC 5321 §4.5.5).
    """
    if not sender:
        raise ValueError("no DSN for the null reverse path (RFC 3461 §6.2)")
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    now = now or datetime.now(UTC)
    utf8 = not sender.isascii() or any(
        not r.final_recipient.isascii() or not (r.original_recipient or "").isascii()
        for r in recipients)
    full = ret != "HDRS" and original_complete and len(original) <= FULL_RETURN_LIMIT
    returned = original if full else _header_only(original)
    if returned and not returned.endswith(b"\r\n"):
        returned += b"\r\n"
    boundary = "=_casella_" + os.urandom(12).hex()
    while boundary.encode() in returned:
        boundary = "=_casella_" + os.urandom(12).hex()
    msgid = message_id or f"<{os.urandom(12).hex()}.dsn@{_clean(hostname)}>"
    status_type = "message/global-delivery-status" if utf8 else "message/delivery-status"
    if full:
        returned_type = "message/global" if utf8 else "message/rfc822"
    else:
        returned_type = "message/global-headers" if utf8 else "text/rfc822-headers"
    human = _human_text(hostname, recipients)
    header = "\r\n".join([
        f"From: Mail Delivery System <MAILER-DAEMON@{_clean(hostname)}>",
        f"To: <{_clean(sender)}>",
        f"Subject: {_subject(recipients)}",
        f"Date: {_date(now)}",
        f"Message-ID: {msgid}",
        "Auto-Submitted: auto-replied",     # RFC 3834 §5 marks DSNs as automatic
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary="{boundary}"',
        "Content-Transfer-Encoding: "
        + ("7bit" if returned.isascii() and not utf8 else "8bit"),
    ]) + "\r\n\r\n"
    parts = [
        header,
        "This is a MIME-encapsulated delivery status notification.\r\n\r\n",
        f"--{boundary}\r\n",
        ("Content-Type: text/plain; charset=utf-8\r\n"
         f"Content-Transfer-Encoding: {'8bit' if not human.isascii() else '7bit'}\r\n"
         "Content-Description: Notification\r\n\r\n"),
        human,
        f"\r\n--{boundary}\r\n",
        f"Content-Type: {status_type}\r\n",
        "Content-Description: Delivery report\r\n\r\n",
        _status_part(hostname, recipients, envid, arrival, received_from),
        f"\r\n--{boundary}\r\n",
        f"Content-Type: {returned_type}\r\n",
        "Content-Description: " + ("Returned message" if full else "Returned message header")
        + "\r\n\r\n",
    ]
    head = "".join(parts).encode("utf-8")
    return b"".join([head, returned, f"\r\n--{boundary}--\r\n".encode()])
