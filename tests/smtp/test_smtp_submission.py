"""The submission listeners with Python's smtplib: STARTTLS then AUTH, implicit TLS on
`submissions`, sender ownership (envelope and From:), local delivery and the outbound queue."""

from __future__ import annotations

import base64
import logging
import smtplib
from typing import Any

import pytest

from tests.smtp.helpers import MESSAGE, Raw, add_alias, add_users, messages, queue

OWN = (b"From: Alice <alice@example.test>\r\nTo: someone@elsewhere.example\r\n"
       b"Subject: from alice\r\n\r\nHi.\r\n")


def submission(server: Any) -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10)
    s.starttls(context=server.ssl_context())
    return s


def test_starttls_then_auth_then_send(server: Any) -> None:
    """RFC 6409 + RFC 3207 + RFC 4954: AUTH is offered only after TLS; after AUTH the user
    sends to a local and a remote recipient; the remote one is queued durably before 250."""
    add_users(server, "alice@example.test")
    add_users(server, "bob@example.test")
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as s:
        code, caps = s.ehlo()
        assert b"STARTTLS" in caps and b"AUTH" not in caps          # PROMISES A1
        s.starttls(context=server.ssl_context())
        _, caps = s.ehlo()
        assert b"STARTTLS" not in caps and b"AUTH PLAIN LOGIN" in caps
        code, text = s.login("alice@example.test", "secret")
        assert (code, text[:5]) == (235, b"2.7.0")
        refused = s.sendmail("alice@example.test",
                             ["bob@example.test", "someone@elsewhere.example"], OWN)
        assert refused == {}
    [stored] = messages(server, "bob@example.test")
    assert b"with ESMTPSA id" in stored
    assert b"(Authenticated sender: alice@example.test)" in stored
    assert b"(using TLSv1.3 with cipher " in stored or b"(using TLSv1.2" in stored
    [entry] = queue(server)
    assert entry.sender == "alice@example.test"
    assert [r.address for r in entry.recipients] == ["someone@elsewhere.example"]
    assert entry.account_id == server.run(server.store.get_account("alice@example.test")).id
    blob = server.run(server.store.fetch_static([entry.blob_id]))[entry.blob_id]
    queued = server.run(server.store.read_blob(blob.digest))
    assert queued.startswith(b"Received: ")                     # no Return-Path when relaying
    assert queued.endswith(OWN)


def test_auth_login_mechanism(server: Any) -> None:
    """The LOGIN mechanism (what many clients use), through smtplib's own implementation."""
    add_users(server, "alice@example.test")
    with submission(server) as s:
        s.ehlo()
        s.user, s.password = "alice@example.test", "secret"
        code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        assert code == 235


def test_implicit_tls_submissions(server: Any) -> None:
    """RFC 8314 §3.3: `submissions` speaks TLS from the first byte, no STARTTLS offered."""
    add_users(server, "alice@example.test")
    add_users(server, "bob@example.test")
    with smtplib.SMTP_SSL("127.0.0.1", server.port("submissions"), timeout=10,
                          context=server.ssl_context()) as s:
        _, caps = s.ehlo()
        assert b"STARTTLS" not in caps and b"AUTH PLAIN LOGIN" in caps
        s.login("alice@example.test", "secret")
        s.sendmail("alice@example.test", ["bob@example.test"], OWN)
    assert len(messages(server, "bob@example.test")) == 1


def test_auth_before_starttls_refused(server: Any) -> None:
    """Issue 5: AUTH before STARTTLS on submission is 530 5.7.0; MAIL before AUTH too."""
    add_users(server, "alice@example.test")
    plain = base64.b64encode(b"\0alice@example.test\0secret").decode()
    with Raw(server.port("submission")) as c:
        c.ehlo()
        code, text = c.cmd(f"AUTH PLAIN {plain}")
        assert (code, text[:5]) == (530, "5.7.0")
        code, text = c.cmd("MAIL FROM:<alice@example.test>")
        assert (code, text[:5]) == (530, "5.7.0")
        c.starttls(server.ssl_context())
        c.ehlo()
        code, text = c.cmd("MAIL FROM:<alice@example.test>")
        assert (code, text[:5]) == (530, "5.7.0")
        assert c.code(f"AUTH PLAIN {plain}") == 235
        assert c.code(f"AUTH PLAIN {plain}") == 503               # RFC 4954 §4: only once


def test_plaintext_auth_when_allowed(make_server: Any) -> None:
    """auth.allow_plaintext_without_tls = true (loopback testing) offers AUTH without TLS."""
    server = make_server(auth={"allow_plaintext_without_tls": True})
    add_users(server, "alice@example.test")
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as s:
        _, caps = s.ehlo()
        assert b"AUTH PLAIN LOGIN" in caps
        assert s.login("alice@example.test", "secret")[0] == 235


def test_mx_has_no_auth(server: Any) -> None:
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        assert c.code("AUTH PLAIN AGFsaWNlAHNlY3JldA==") == 503


def test_bad_credentials_and_three_failures(server: Any, caplog: Any) -> None:
    """535 5.7.8 for a wrong password and an unknown user alike (PROMISES A3); the third
    failure closes the connection with 421; the password is never logged."""
    add_users(server, "alice@example.test")
    caplog.set_level(logging.INFO, logger="casella")
    with Raw(server.port("submission")) as c:
        c.ehlo()
        c.starttls(server.ssl_context())
        c.ehlo()
        wrong = base64.b64encode(b"\0alice@example.test\0Wr0ngPassw0rd").decode()
        unknown = base64.b64encode(b"\0ghost@example.test\0Wr0ngPassw0rd").decode()
        r1 = c.cmd(f"AUTH PLAIN {wrong}")
        r2 = c.cmd(f"AUTH PLAIN {unknown}")
        assert r1 == r2 == (535, "5.7.8 Authentication credentials invalid")
        # LOGIN with the challenge round trips
        assert c.code("AUTH LOGIN") == 334
        assert c.code(base64.b64encode(b"alice@example.test")) == 334
        code, text = c.cmd(base64.b64encode(b"Wr0ngPassw0rd"))
        assert (code, text[:5]) == (421, "4.7.0")
        assert c.closed()
    assert "Wr0ngPassw0rd" not in caplog.text
    assert wrong not in caplog.text


def test_auth_cancel_and_bad_base64(server: Any) -> None:
    """RFC 4954 §4: "*" cancels (501 5.7.0); undecodable base64 is 501 5.5.2."""
    add_users(server, "alice@example.test")
    with Raw(server.port("submissions"), server.ssl_context(), implicit_tls=True) as c:
        c.ehlo()
        assert c.code("AUTH PLAIN") == 334
        code, text = c.cmd("*")
        assert (code, text[:5]) == (501, "5.7.0")
        assert c.code("AUTH PLAIN") == 334
        code, text = c.cmd("!!notbase64!!")
        assert (code, text[:5]) == (501, "5.5.2")
        assert c.code("AUTH CRAM-MD5") == 504
        plain = base64.b64encode(b"\0alice@example.test\0secret").decode()
        assert c.code("AUTH PLAIN =") == 535        # an empty PLAIN response is no login
        assert c.code("AUTH PLAIN") == 334
        assert c.code(plain) == 235


@pytest.mark.parametrize("sender,ok", [
    ("alice@example.test", True),
    ("Alice@EXAMPLE.test", True),
    ("alice+news@example.test", True),
    ("sales@example.test", True),              # an alias that delivers to alice
    ("bob@example.test", False),
    ("boss@example.test", False),              # an alias that does not include alice
    ("anyone@example.test", False),            # only a catch-all points at alice
    ("alice@elsewhere.example", False),
])
def test_sender_ownership_envelope(server: Any, sender: str, ok: bool) -> None:
    """PROMISES A5: MAIL FROM must be the user's own address or an alias of it (553 5.7.1)."""
    add_users(server, "alice@example.test")
    add_users(server, "bob@example.test")
    add_alias(server, "sales@example.test", "bob@example.test", "alice@example.test")
    add_alias(server, "boss@example.test", "bob@example.test")
    add_alias(server, "@example.test", "alice@example.test")
    with submission(server) as s:
        s.login("alice@example.test", "secret")
        code, text = s.mail(sender)
        if ok:
            assert code == 250
        else:
            assert (code, text[:5]) == (553, b"5.7.1")
            assert b"own address" in text


def test_sender_ownership_from_header(server: Any) -> None:
    """PROMISES A5 for the header: From: must be owned too; nothing is stored otherwise."""
    add_users(server, "alice@example.test")
    add_users(server, "bob@example.test")
    add_alias(server, "sales@example.test", "alice@example.test")
    spoofed = OWN.replace(b"From: Alice <alice@example.test>", b"From: Bob <bob@example.test>")
    two = OWN.replace(b"From: Alice <alice@example.test>",
                      b"From: alice@example.test, bob@example.test")
    alias = OWN.replace(b"From: Alice <alice@example.test>",
                        b"From: \"Sales\" <Sales@Example.test>")
    no_from = b"Subject: nothing\r\n\r\nbody\r\n"
    with submission(server) as s:
        s.login("alice@example.test", "secret")
        for message, expected in ((spoofed, 553), (two, 553), (no_from, 550), (alias, 250),
                                  (OWN, 250)):
            s.mail("alice@example.test")
            s.rcpt("bob@example.test")
            code, text = s.data(message)
            assert code == expected, (message, text)
            if code != 250:
                assert text.startswith((b"5.7.1", b"5.6.0"))
    assert len(messages(server, "bob@example.test")) == 2


def test_null_sender_refused_on_submission(server: Any) -> None:
    add_users(server, "alice@example.test")
    with submission(server) as s:
        s.login("alice@example.test", "secret")
        assert s.mail("<>")[0] == 553


def test_unknown_local_recipient_on_submission(server: Any) -> None:
    """Hosted domains are resolved even on submission: an unknown user is 550 5.1.1."""
    add_users(server, "alice@example.test")
    with submission(server) as s:
        s.login("alice@example.test", "secret")
        s.mail("alice@example.test")
        code, text = s.rcpt("nobody@example.test")
        assert (code, text[:5]) == (550, b"5.1.1")


def test_queue_keeps_dsn_parameters(server: Any) -> None:
    """RFC 3461: RET, ENVID, NOTIFY and ORCPT reach the queue entry for the queue runner."""
    add_users(server, "alice@example.test")
    with submission(server) as s:
        s.login("alice@example.test", "secret")
        s.mail("alice@example.test", ["RET=HDRS", "ENVID=QQ314159"])
        s.rcpt("one@elsewhere.example", ["NOTIFY=SUCCESS,FAILURE",
                                          "ORCPT=rfc822;One+40elsewhere.example"])
        s.rcpt("two@other.example", ["NOTIFY=NEVER"])
        assert s.data(OWN)[0] == 250
    [entry] = queue(server)
    assert (entry.ret, entry.envid) == ("HDRS", "QQ314159")
    one, two = entry.recipients
    assert (one.address, one.orcpt, one.notify) == (
        "one@elsewhere.example", "rfc822;One@elsewhere.example", ("SUCCESS", "FAILURE"))
    assert (two.address, two.notify) == ("two@other.example", ("NEVER",))
    assert entry.size > len(OWN)


def test_submission_remote_only_does_not_store_locally(server: Any) -> None:
    add_users(server, "alice@example.test")
    with submission(server) as s:
        s.login("alice@example.test", "secret")
        s.sendmail("alice@example.test", ["x@elsewhere.example"], OWN)
    assert len(queue(server)) == 1
    assert messages(server, "alice@example.test") == []
    assert MESSAGE  # the shared sample stays importable for the other modules
