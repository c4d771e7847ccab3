"""The RFC 3464 DSN builder (casella.smtp.dsn) and the RFC 3461 NOTIFY rules."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

import pytest

from casella.smtp.dsn import FULL_RETURN_LIMIT, DsnRecipient, build_dsn, wants_dsn

ORIGINAL = (b"From: Sender <s@remote.example>\r\nTo: u@h.example\r\nSubject: hi\r\n"
            b"Message-ID: <1@remote.example>\r\n\r\nHello there.\r\n")


def _parse(data: bytes) -> email.message.Message:
    return email.message_from_bytes(data, policy=email.policy.compat32)


def test_failed_dsn_structure() -> None:
    """RFC 3464 §2: multipart/report; report-type=delivery-status with a human part, a
    message/delivery-status part (per-message then per-recipient fields), and the message."""
    data = build_dsn(
        hostname="mx.h.example", sender="s@remote.example",
        recipients=[DsnRecipient("u@h.example", "failed", "5.2.2",
                                 original_recipient="rfc822;alias@h.example",
                                 diagnostic="552 5.2.2 Mailbox full")],
        original=ORIGINAL, envid="ENV-1",
        arrival=datetime(2024, 5, 1, 12, 0, tzinfo=UTC), received_from="client.example")
    assert b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    msg = _parse(data)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["To"] == "<s@remote.example>"
    assert "MAILER-DAEMON@mx.h.example" in msg["From"]
    parts = msg.get_payload()
    assert [p.get_content_type() for p in parts] == [
        "text/plain", "message/delivery-status", "message/rfc822"]
    status = parts[1].get_payload()
    per_message, per_rcpt = status[0], status[1]
    assert per_message["Reporting-MTA"] == "dns; mx.h.example"
    assert per_message["Original-Envelope-Id"] == "ENV-1"
    assert per_message["Arrival-Date"].startswith("Wed, 01 May 2024")
    assert per_rcpt["Final-Recipient"] == "rfc822; u@h.example"
    assert per_rcpt["Original-Recipient"] == "rfc822;alias@h.example"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.2.2"
    assert per_rcpt["Diagnostic-Code"] == "smtp; 552 5.2.2 Mailbox full"
    returned = parts[2].get_payload()[0]
    assert returned["Message-ID"] == "<1@remote.example>"
    assert "Hello there." in returned.get_payload()
    assert "u@h.example" in parts[0].get_payload()


def test_headers_only_when_asked_or_large() -> None:
    """RFC 3461 §4.3: RET=HDRS returns the header only; casella also does so for messages
    over FULL_RETURN_LIMIT or when it holds only the header."""
    rcpt = [DsnRecipient("u@h.example", "failed", "5.1.1")]
    for kwargs in ({"ret": "HDRS"}, {"original_complete": False}):
        msg = _parse(build_dsn(hostname="h.example", sender="s@r.example", recipients=rcpt,
                               original=ORIGINAL, **kwargs))  # type: ignore[arg-type]
        part = msg.get_payload()[2]
        assert part.get_content_type() == "text/rfc822-headers"
        assert b"Hello there" not in part.as_bytes()
    big = ORIGINAL + b"x" * FULL_RETURN_LIMIT + b"\r\n"
    msg = _parse(build_dsn(hostname="h.example", sender="s@r.example", recipients=rcpt,
                           original=big))
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"


def test_no_dsn_for_null_sender() -> None:
    """PROMISES M6: never a DSN for the null reverse path."""
    with pytest.raises(ValueError):
        build_dsn(hostname="h.example", sender="", original=ORIGINAL,
                  recipients=[DsnRecipient("u@h.example", "failed", "5.1.1")])


def test_no_header_injection() -> None:
    """PROMISES M7: envelope data with CR/LF can never add a header line to the DSN."""
    data = build_dsn(hostname="h.example", sender="s@r.example\r\nBcc: x@evil.example",
                     recipients=[DsnRecipient("u@h.example\r\nX-Evil: 1", "failed", "5.1.1",
                                              original_recipient="rfc822;a\r\nX-Evil: 2",
                                              diagnostic="550\r\nX-Evil: 3")],
                     original=ORIGINAL, envid="e\r\nX-Evil: 4")
    for line in data.split(b"\r\n"):
        assert not line.startswith((b"Bcc:", b"X-Evil:"))


def test_utf8_addresses_use_global_types() -> None:
    """RFC 6533: internationalized addresses use the utf-8 address type and the
    message/global-delivery-status type."""
    msg = _parse(build_dsn(hostname="h.example", sender="s@r.example",
                           recipients=[DsnRecipient("j\u00f6rg@h.example", "failed", "5.2.2")],
                           original=ORIGINAL))
    assert msg.get_payload()[1].get_content_type() == "message/global-delivery-status"
    assert b"utf-8; j\xc3\xb6rg@h.example" in msg.as_bytes()


def test_success_and_delay_subjects() -> None:
    ok = _parse(build_dsn(hostname="h.example", sender="s@r.example", original=ORIGINAL,
                          recipients=[DsnRecipient("u@h.example", "delivered", "2.0.0")]))
    assert ok["Subject"] == "Successful Mail Delivery Report"
    later = _parse(build_dsn(hostname="h.example", sender="s@r.example", original=ORIGINAL,
                             recipients=[DsnRecipient("u@h.example", "delayed", "4.4.1",
                                                      will_retry_until=datetime.now())]))
    assert later["Subject"].startswith("Delayed Mail")


def test_bad_recipient_fields_refused() -> None:
    with pytest.raises(ValueError):
        DsnRecipient("u@h.example", "bounced", "5.0.0")
    with pytest.raises(ValueError):
        DsnRecipient("u@h.example", "failed", "550")


@pytest.mark.parametrize("notify,action,expected", [
    ((), "failed", True), ((), "delayed", True), ((), "delivered", False),
    (("NEVER",), "failed", False), (("SUCCESS",), "delivered", True),
    (("SUCCESS",), "failed", False), (("FAILURE", "DELAY"), "delayed", True),
    (("FAILURE",), "relayed", False), (("success",), "relayed", True),
])
def test_wants_dsn(notify: tuple[str, ...], action: str, expected: bool) -> None:
    """RFC 3461 §4.1 and §6.2."""
    assert wants_dsn(notify, action) is expected
