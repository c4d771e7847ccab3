"""Sieve, forwarding, SRS and vacation at local delivery, over real SMTP sockets (issue 20):
scripts stored for an account act on mail from the MX and from submission; rejects are
answered in the session when they can be; forwarded and auto-replied mail leaves through the
queue with an SRS sender, counted against the account's limits; loops stop."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Callable
from typing import Any

import pytest

from casella.smtp.resolver import StaticResolver
from tests.outbound.fakemx import FakeMX
from tests.outbound.helpers import dsn_fields, mailbox_messages, parse


@pytest.fixture
def srv(make_server: Callable[..., Any], remote: FakeMX, dns: StaticResolver) -> Any:
    s = make_server(delivery={"routes": {"remote.test": f"127.0.0.1:{remote.port}"}},
                    inbound={"checks": False}, srs={"secret": "test-secret"},
                    sieve={"max_redirects": 3})
    s.add_user("bob@example.test")
    s.add_user("carol@example.test")
    return s


def msg(sender: str = "alice@remote.test", to: str = "bob@example.test",
        subject: str = "hello", extra: str = "", body: str = "Hello Bob.\r\n") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{time.time_ns()}@remote.test>\r\n{extra}"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n{body}").encode()


def mx_send(srv: Any, rcpts: list[str], data: bytes, sender: str = "alice@remote.test"
            ) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=30) as s:
        return s.sendmail(sender, rcpts, data)


def script(srv: Any, user: str, text: str, name: str = "main") -> None:
    async def go() -> None:
        acct = await srv.store.get_account(user)
        await srv.store.sieve_put(acct.id, name, text)
        await srv.store.sieve_set_active(acct.id, name)
    srv.run(go())


def box(srv: Any, user: str, name: str = "INBOX") -> list[bytes]:
    acct = srv.run(srv.store.get_account(user))
    return srv.run(mailbox_messages(srv.store, acct, name))


def flags(srv: Any, user: str, name: str) -> list[tuple[str, ...]]:
    async def go() -> list[tuple[str, ...]]:
        acct = await srv.store.get_account(user)
        mb = await srv.store.get_mailbox(acct.id, name)
        snap = await srv.store.select(mb.id)
        metas = await srv.store.fetch_meta(mb.id, [(1, max(snap.uids))])
        return [m.flags for m in metas]
    return srv.run(go())


def wait(cond: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_fileinto_create_flags_and_non_ascii_folder(srv: Any) -> None:
    """RFC 5228 fileinto, RFC 5490 :create (a Unicode folder name), RFC 5232 flags."""
    script(srv, "bob@example.test", 'require ["fileinto", "mailbox", "imap4flags"];\r\n'
           'if header :contains "subject" "report" {\r\n'
           '  addflag "$Report";\r\n  fileinto :create "Rapports/Été";\r\n  stop;\r\n}\r\n'
           'fileinto "Does/Not/Exist";\r\n')
    assert mx_send(srv, ["bob@example.test"], msg(subject="weekly report")) == {}
    assert mx_send(srv, ["bob@example.test"], msg(subject="other")) == {}
    assert len(box(srv, "bob@example.test", "Rapports/Été")) == 1
    assert flags(srv, "bob@example.test", "Rapports/Été") == [("$Report",)]
    # fileinto a mailbox that does not exist (no :create): kept in INBOX.
    inbox = box(srv, "bob@example.test")
    assert len(inbox) == 1 and b"Subject: other" in inbox[0]


def test_reject_alone_is_answered_in_the_session(srv: Any) -> None:
    """RFC 5429 §2.1: with one recipient the refusal is the SMTP reply (550 5.7.1)."""
    script(srv, "bob@example.test", 'require "reject";\r\nreject "I do not want this.";')
    with pytest.raises(smtplib.SMTPDataError) as info:
        mx_send(srv, ["bob@example.test"], msg())
    assert info.value.smtp_code == 550
    assert b"5.7.1 I do not want this." in info.value.smtp_error
    assert box(srv, "bob@example.test") == []


def test_reject_among_several_recipients_sends_a_dsn(srv: Any) -> None:
    """RFC 5429 §2.1: when others take the message, the rejecter's refusal is a DSN."""
    script(srv, "bob@example.test", 'require "ereject"; ereject "Not here.";')
    sender = "carol@example.test"
    srv.add_user("dave@example.test")
    assert mx_send(srv, ["bob@example.test", "dave@example.test"], msg(sender=sender),
                   sender=sender) == {}
    assert len(box(srv, "dave@example.test")) == 1 and box(srv, "bob@example.test") == []
    dsn = wait(lambda: box(srv, "carol@example.test"))
    rcpt = dsn_fields(dsn[0])[1][0]
    assert rcpt["final-recipient"] == "rfc822; bob@example.test"
    assert rcpt["status"] == "5.7.1" and "Not here." in rcpt["diagnostic-code"]


def test_reject_for_the_null_sender_sends_nothing(srv: Any) -> None:
    """PROMISES M6: a refusal never goes to the null sender."""
    script(srv, "bob@example.test", 'require "reject"; reject "no";')
    srv.add_user("dave@example.test")
    assert mx_send(srv, ["bob@example.test", "dave@example.test"], msg(), sender="") == {}
    assert len(box(srv, "dave@example.test")) == 1
    assert box(srv, "carol@example.test") == []


def test_a_failing_script_never_loses_mail(srv: Any, caplog: pytest.LogCaptureFixture
                                           ) -> None:
    """RFC 5228 §2.10.6: a runtime error keeps the message in INBOX and is logged."""
    script(srv, "bob@example.test", " ".join(f'redirect "x{i}@remote.test";'
                                             for i in range(5)))
    assert mx_send(srv, ["bob@example.test"], msg()) == {}
    assert len(box(srv, "bob@example.test")) == 1
    assert "more than 3 redirects" in caplog.text
    # A script stored behind ManageSieve's back that does not compile: the same.
    script(srv, "bob@example.test", "this is not sieve", name="broken")
    assert mx_send(srv, ["bob@example.test"], msg()) == {}
    assert len(box(srv, "bob@example.test")) == 2
    assert "does not compile" in caplog.text


def test_discard_and_submission_runs_the_script_too(srv: Any) -> None:
    """Every message delivered to a mailbox, MX or submission, goes through the script."""
    script(srv, "bob@example.test", 'if header :contains "subject" "spam" { discard; }')
    assert mx_send(srv, ["bob@example.test"], msg(subject="spam spam")) == {}
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30) as s:
        s.starttls(context=srv.ssl_context())
        s.login("carol@example.test", "secret")
        s.sendmail("carol@example.test", ["bob@example.test"],
                   msg(sender="carol@example.test", subject="more spam"))
        s.sendmail("carol@example.test", ["bob@example.test"],
                   msg(sender="carol@example.test", subject="ham"))
    inbox = box(srv, "bob@example.test")
    assert len(inbox) == 1 and b"Subject: ham" in inbox[0]


def test_redirect_goes_out_with_srs_and_counts_against_the_limit(srv: Any,
                                                                 remote: FakeMX) -> None:
    """RFC 5228 redirect: queued with an SRS0 sender and Delivered-To; the account's hourly
    limit counts it; a bounce to the SRS address comes back to the original sender."""
    script(srv, "bob@example.test", 'require "copy"; redirect :copy "bob@remote.test";')
    assert mx_send(srv, ["bob@example.test"], msg()) == {}
    got = remote.wait_for(1)[0]
    assert got.rcpts == ["bob@remote.test"]
    assert got.mail_from.startswith("SRS0=") and got.mail_from.endswith(
        "=remote.test=alice@mail.example.test")
    assert got.data.startswith(b"Delivered-To: bob@example.test\r\n")
    assert b"Return-Path" not in got.data
    assert len(box(srv, "bob@example.test")) == 1          # :copy keeps it
    acct = srv.run(srv.store.get_account("bob@example.test"))
    events = srv.run(srv.store.send_events(acct.id, 0))
    assert next((e.kind, e.count) for e in events) == ("submitted", 1)
    # The bounce: RCPT TO the SRS address on our MX goes back to alice@remote.test.
    bounce = b"Subject: Undelivered\r\n\r\nbounce\r\n"
    assert mx_send(srv, [got.mail_from], bounce, sender="") == {}
    back = remote.wait_for(2)[1]
    assert back.rcpts == ["alice@remote.test"] and back.mail_from == ""
    # A forged or damaged SRS address is refused at RCPT.
    forged = got.mail_from.replace("SRS0=", "SRS0=AAAA", 1)
    with pytest.raises(smtplib.SMTPRecipientsRefused) as info:
        mx_send(srv, [forged], bounce, sender="")
    assert info.value.recipients[forged][0] == 550


def test_redirect_loops_self_and_limits_keep_the_message(srv: Any, remote: FakeMX) -> None:
    """A message that already went through this account (Delivered-To), a redirect to the
    account itself and an account over its hourly limit: kept, never sent on."""
    script(srv, "bob@example.test", 'redirect "bob@remote.test";')
    looped = msg(extra="Delivered-To: other@x.test\r\nDelivered-To: bob@example.test\r\n")
    assert mx_send(srv, ["bob@example.test"], looped) == {}
    assert len(box(srv, "bob@example.test")) == 1
    script(srv, "bob@example.test", 'redirect "BOB@example.test";')
    assert mx_send(srv, ["bob@example.test"], msg()) == {}
    assert len(box(srv, "bob@example.test")) == 2
    srv.run(srv.store.set_send_limits("bob@example.test", {"messages_per_hour": 1}))
    script(srv, "bob@example.test", 'redirect "bob@remote.test";')
    assert mx_send(srv, ["bob@example.test"], msg()) == {}
    assert mx_send(srv, ["bob@example.test"], msg()) == {}
    assert len(remote.wait_for(1)) == 1
    time.sleep(0.5)
    assert len(remote.messages) == 1                        # the second stayed here
    assert len(box(srv, "bob@example.test")) == 3


def test_hop_limit(make_server: Callable[..., Any], remote: FakeMX, dns: StaticResolver
                   ) -> None:
    """[forwarding] max_hops: a message with that many Delivered-To fields is kept."""
    srv = make_server(delivery={"routes": {"remote.test": f"127.0.0.1:{remote.port}"}},
                      inbound={"checks": False}, forwarding={"max_hops": 2})
    srv.add_user("bob@example.test")
    script(srv, "bob@example.test", 'redirect "bob@remote.test";')
    hops = msg(extra="Delivered-To: a@x.test\r\nDelivered-To: b@y.test\r\n")
    assert mx_send(srv, ["bob@example.test"], hops) == {}
    assert len(box(srv, "bob@example.test")) == 1
    assert remote.messages == []


def test_account_forward_with_and_without_a_copy(srv: Any, remote: FakeMX) -> None:
    """The account-level forward: sent on with SRS; kept too only with keep."""
    srv.run(srv.store.set_forward("bob@example.test", ["fwd@remote.test"], keep=False))
    assert mx_send(srv, ["bob@example.test"], msg()) == {}
    got = remote.wait_for(1)[0]
    assert got.rcpts == ["fwd@remote.test"] and got.mail_from.startswith("SRS0=")
    assert box(srv, "bob@example.test") == []
    srv.run(srv.store.set_forward("bob@example.test", ["fwd@remote.test",
                                                       "carol@example.test"], keep=True))
    assert mx_send(srv, ["bob@example.test"], msg(subject="second")) == {}
    assert len(remote.wait_for(2)) == 2
    assert len(box(srv, "bob@example.test")) == 1
    # A hosted destination gets it straight into its INBOX (its own rules do not run).
    carol = box(srv, "carol@example.test")
    assert len(carol) == 1 and carol[0].startswith(b"Delivered-To: bob@example.test\r\n")


def test_vacation_once_per_sender_and_rfc3834_rules(srv: Any) -> None:
    """RFC 5230 / RFC 3834: one reply per sender per :days, Auto-Submitted, In-Reply-To;
    none to lists, bulk, auto-submitted or null senders, nor when bob is not in To/Cc."""
    script(srv, "bob@example.test", 'require "vacation";\r\n'
           'vacation :days 2 :subject "Away" "I am away until Monday.";')
    sender = "carol@example.test"
    first = msg(sender=sender)
    assert mx_send(srv, ["bob@example.test"], first, sender=sender) == {}
    assert mx_send(srv, ["bob@example.test"], msg(sender=sender), sender=sender) == {}
    for extra in ("List-Id: <l.example.org>\r\n", "Precedence: bulk\r\n",
                  "Auto-Submitted: auto-generated\r\n"):
        assert mx_send(srv, ["bob@example.test"], msg(sender="dave@example.test", extra=extra),
                       sender="dave@example.test") == {}
    assert mx_send(srv, ["bob@example.test"], msg(to="someone@else.test")) == {}
    assert mx_send(srv, ["bob@example.test"], msg(), sender="") == {}
    assert mx_send(srv, ["bob@example.test"], msg(sender="mailer-daemon@remote.test"),
                   sender="MAILER-DAEMON@remote.test") == {}
    replies = wait(lambda: box(srv, "carol@example.test"))
    time.sleep(0.3)
    assert len(box(srv, "carol@example.test")) == 1
    reply = parse(replies[0])
    assert reply["Subject"] == "Away" and reply["Auto-Submitted"].startswith("auto-replied")
    original_id = parse(first)["Message-ID"]
    assert reply["In-Reply-To"] == original_id and original_id in reply["References"]
    assert reply["From"].addresses[0].addr_spec == "bob@example.test"
    assert b"I am away until Monday." in replies[0]
    assert len(box(srv, "bob@example.test")) == 8           # every message is still kept


def test_vacation_loop_between_two_accounts_stops(srv: Any) -> None:
    """Two accounts on vacation answering each other: the replies are Auto-Submitted, so the
    second one never answers the first's reply."""
    vac = 'require "vacation"; vacation "away";'
    script(srv, "bob@example.test", vac)
    script(srv, "carol@example.test", vac)
    assert mx_send(srv, ["bob@example.test"], msg(sender="carol@example.test"),
                   sender="carol@example.test") == {}
    wait(lambda: box(srv, "carol@example.test"))
    time.sleep(0.3)
    assert len(box(srv, "carol@example.test")) == 1      # bob's reply
    assert len(box(srv, "bob@example.test")) == 1        # the original only
