"""End to end with a full casella (the `make_server` fixture) and the fake remote MX reached
through `[delivery] routes`: submission on 587 with smtplib, delivered signed (DKIM verified
with dkimpy against the printed record), a refused recipient bounced into the sender's INBOX,
and both sending limits refusing at RCPT with the exact text."""

from __future__ import annotations

import re
import smtplib
import time
from collections.abc import Callable
from typing import Any

import dkim
import pytest

from casella.smtp.dkim import generate_keys
from casella.smtp.resolver import StaticResolver
from tests.outbound.fakemx import FakeMX
from tests.outbound.helpers import dsn_fields, mailbox_messages, parse


@pytest.fixture
def casella(make_server: Callable[..., Any], remote: FakeMX, dns: StaticResolver) -> Any:
    srv = make_server(delivery={"routes": {"remote.test": f"127.0.0.1:{remote.port}"}})
    srv.add_user("alice@example.test")
    return srv


def submit(srv: Any, to: list[str], subject: str = "hello",
           user: str = "alice@example.test") -> dict[str, tuple[int, bytes]]:
    msg = (f"From: Alice <{user}>\r\nTo: {', '.join(to)}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{time.time_ns()}@example.test>\r\n\r\nHello there.\r\n.dot line\r\n")
    with smtplib.SMTP("127.0.0.1", srv.port("submission"), timeout=30) as s:
        s.starttls(context=srv.ssl_context())
        s.login(user, "secret")
        return s.sendmail(user, to, msg.encode())


def wait(cond: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_submitted_mail_is_delivered_signed_and_refusals_bounce(
        casella: Any, remote: FakeMX, dns: StaticResolver) -> None:
    keys = generate_keys(casella.config.dkim_key_dir, "example.test", "e2e")
    for k in keys:
        dns.add(k.txt_name, "TXT", [k.txt_record])
    remote.rcpt_replies["nobody@remote.test"] = "550 5.1.1 <nobody@remote.test>: unknown"
    refused = submit(casella, ["bob@remote.test", "nobody@remote.test"])
    assert refused == {}           # both queued: the remote refusal comes later, as a DSN
    msgs = remote.wait_for(1)
    assert msgs[0].rcpts == ["bob@remote.test"]
    data = msgs[0].data
    assert data.count(b"DKIM-Signature:") == 2
    assert b"\r\n.dot line\r\n" in data
    table = {(k.txt_name + ".").encode(): k.txt_record.encode() for k in keys}
    d = dkim.DKIM(data)
    assert d.verify(0, dnsfunc=lambda n, timeout=5: table.get(n))
    assert d.verify(1, dnsfunc=lambda n, timeout=5: table.get(n))
    acct = casella.run(casella.store.get_account("alice@example.test"))
    inbox = wait(lambda: casella.run(mailbox_messages(casella.store, acct)))
    bounce = parse(inbox[0])
    assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
    rcpt = dsn_fields(inbox[0])[1][0]
    assert rcpt["final-recipient"] == "rfc822; nobody@remote.test"
    assert rcpt["status"] == "5.1.1" and "unknown" in rcpt["diagnostic-code"]
    wait(lambda: casella.run(casella.store.list_queue()) == [])


def test_queue_list_shows_the_state_of_a_deferred_recipient(casella: Any,
                                                            remote: FakeMX) -> None:
    remote.rcpt_replies["later@remote.test"] = "451 4.2.1 try later"
    submit(casella, ["later@remote.test"])
    entry = wait(lambda: [e for e in casella.run(casella.store.list_queue())
                          if e.recipients[0].state == "deferred"])
    r = entry[0].recipients[0]
    assert r.attempts == 1 and "451 4.2.1" in r.last_reply and r.next_attempt > time.time()


def test_messages_per_hour_refuses_at_rcpt(casella: Any, remote: FakeMX) -> None:
    casella.run(casella.store.set_send_limits("alice@example.test", {"messages_per_hour": 3}))
    assert submit(casella, ["a@remote.test", "b@remote.test"]) == {}
    with smtplib.SMTP("127.0.0.1", casella.port("submission"), timeout=30) as s:
        s.starttls(context=casella.ssl_context())
        s.login("alice@example.test", "secret")
        s.mail("alice@example.test")
        assert s.rcpt("c@remote.test")[0] == 250
        code, text = s.rcpt("d@remote.test")
        assert code == 450
        assert text.decode() == ("4.7.1 alice@example.test has exceeded the max emails per "
                                 "hour (3/3 (100%)) allowed")


def test_defers_and_failures_guard_refuses_at_rcpt(casella: Any, remote: FakeMX) -> None:
    for i in range(5):
        remote.rcpt_replies[f"gone{i}@remote.test"] = "550 5.1.1 no such user"
    submit(casella, [f"gone{i}@remote.test" for i in range(5)] +
           [f"ok{i}@remote.test" for i in range(4)])
    acct = casella.run(casella.store.get_account("alice@example.test"))

    def notice() -> bool:
        return any(parse(m)["Subject"].startswith("Your outgoing mail is paused")
                   for m in casella.run(mailbox_messages(casella.store, acct)))
    wait(notice)
    with smtplib.SMTP("127.0.0.1", casella.port("submission"), timeout=30) as s:
        s.starttls(context=casella.ssl_context())
        s.login("alice@example.test", "secret")
        s.mail("alice@example.test")
        code, text = s.rcpt("x@remote.test")
        assert code == 450
        assert text.decode() == ("4.7.1 alice@example.test has exceeded the max defers and "
                                 "failures per hour (5/5 (55%)) allowed")


def test_mx_adds_authentication_results_and_refuses_dmarc_reject(
        casella: Any, dns: StaticResolver) -> None:
    dns.add("_dmarc.strict.test", "TXT", ["v=DMARC1; p=reject"])
    dns.add("strict.test", "TXT", ["v=spf1 -all"])
    dns.add("fine.test", "TXT", ["v=spf1 ip4:127.0.0.1 -all"])
    with smtplib.SMTP("127.0.0.1", casella.port("smtp"), timeout=30) as s:
        s.ehlo("client.fine.test")
        with pytest.raises(smtplib.SMTPDataError) as exc:
            s.sendmail("x@strict.test", ["alice@example.test"],
                       b"From: <x@strict.test>\r\nSubject: spoof\r\n\r\nhi\r\n")
        assert exc.value.smtp_code == 550 and b"5.7.1" in exc.value.smtp_error
        s.sendmail("x@fine.test", ["alice@example.test"],
                   b"From: <x@fine.test>\r\nSubject: fine\r\n\r\nhi\r\n")
    acct = casella.run(casella.store.get_account("alice@example.test"))
    inbox = wait(lambda: casella.run(mailbox_messages(casella.store, acct)))
    assert len(inbox) == 1
    assert re.search(rb"Authentication-Results: mail\.example\.test;\r\n\tspf=pass "
                     rb"smtp\.mailfrom=x@fine\.test", inbox[0])
