"""RFC 3834 / RFC 5230 rules of the vacation reply as table tests: when no reply may go, and
what the reply looks like (pure functions of casella.delivery.filtering)."""

from __future__ import annotations

import pytest

from casella.delivery.filtering import _forwarded_copy, vacation_message, vacation_refusal
from casella.delivery.sieve import MessageView, Vacation

BASE = ("From: Carol <carol@remote.test>\r\nTo: Bob <bob@example.test>\r\n"
        "Subject: Lunch?\r\nMessage-ID: <m1@remote.test>\r\nReferences: <m0@remote.test>\r\n")


def view(extra: str = "", to: str | None = None) -> MessageView:
    head = BASE if to is None else BASE.replace("To: Bob <bob@example.test>", f"To: {to}")
    return MessageView((head + extra + "\r\nHi\r\n").encode())


REFUSALS = [
    ("", "carol@remote.test", None, (), None),
    ("", "", None, (), "null sender"),
    ("", "MAILER-DAEMON@remote.test", None, (), "robot"),
    ("", "owner-list@remote.test", None, (), "robot"),
    ("", "list-request@remote.test", None, (), "robot"),
    ("", "noreply@remote.test", None, (), "robot"),
    ("", "bob@example.test", None, (), "the account itself"),
    ("List-Id: <x.remote.test>\r\n", "carol@remote.test", None, (), "mailing list"),
    ("List-Unsubscribe: <mailto:u@x>\r\n", "carol@remote.test", None, (), "mailing list"),
    ("Precedence: bulk\r\n", "carol@remote.test", None, (), "bulk"),
    ("Precedence: junk\r\n", "carol@remote.test", None, (), "bulk"),
    ("Auto-Submitted: auto-replied\r\n", "carol@remote.test", None, (), "automatic"),
    ("Auto-Submitted: no\r\n", "carol@remote.test", None, (), None),
    ("", "carol@remote.test", "someone@else.test", (), "not among To/Cc"),
    ("", "carol@remote.test", "bob.alias@example.test", ("bob.alias@example.test",), None),
    ("Cc: bob@example.test\r\n", "carol@remote.test", "x@y.test", (), None),
]


@pytest.mark.parametrize("extra,sender,to,addresses,why", REFUSALS)
def test_when_no_reply_goes(extra: str, sender: str, to: str | None,
                            addresses: tuple[str, ...], why: str | None) -> None:
    got = vacation_refusal(view(extra, to), sender, "bob@example.test", "bob@example.test",
                           addresses)
    if why is None:
        assert got is None
    else:
        assert got is not None and why in got


def vac(**kw: object) -> Vacation:
    base: dict[str, object] = {"reason": "Away.", "days": None, "subject": None, "from_": None,
                                   "addresses": (), "mime": False, "handle": "h"}
    base.update(kw)
    return Vacation(**base)  # type: ignore[arg-type]


def test_reply_headers() -> None:
    data = vacation_message(view(), vac(), "bob@example.test", "carol@remote.test",
                            "mail.example.test", now=0)
    head = data.split(b"\r\n\r\n")[0].decode()
    assert "Auto-Submitted: auto-replied" in head
    assert "Subject: Auto: Lunch?" in head
    assert "In-Reply-To: <m1@remote.test>" in head
    assert "References: <m0@remote.test> <m1@remote.test>" in head
    assert "From: <bob@example.test>" in head and "To: <carol@remote.test>" in head
    assert data.endswith(b"\r\n\r\nAway.\r\n")


def test_reply_from_subject_and_mime() -> None:
    """:from only within the account's domain; :subject without line breaks; :mime."""
    data = vacation_message(view(), vac(from_="Boss <ceo@bank.test>", subject="A\r\nBcc: x"),
                            "bob@example.test", "carol@remote.test", "h", now=0)
    assert b"From: <bob@example.test>" in data and b"\r\nBcc:" not in data
    data = vacation_message(view(), vac(from_="Bob <bob.smith@example.test>"),
                            "bob@example.test", "carol@remote.test", "h", now=0)
    assert b"From: <bob.smith@example.test>" in data
    mime = "Content-Type: text/html\r\n\r\n<p>Away</p>\r\n"
    data = vacation_message(view(), vac(reason=mime, mime=True), "bob@example.test",
                            "carol@remote.test", "h", now=0)
    assert b"MIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<p>Away</p>" in data


def test_forwarded_copy_drops_return_path_and_adds_delivered_to() -> None:
    data = b"Return-Path: <a@b.test>\r\nReceived: x\r\n\r\nbody\r\n"
    assert _forwarded_copy(data, "bob@example.test") == \
        b"Delivered-To: bob@example.test\r\nReceived: x\r\n\r\nbody\r\n"
