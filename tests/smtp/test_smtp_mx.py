"""The MX listener with Python's smtplib: delivery into INBOX, aliases, catch-all,
plus-addressing, quota, size limit, relay refusal, single-instance storage, and the end-to-end
read-back."""

from __future__ import annotations

import email
import email.policy
import smtplib
from typing import Any

import pytest

from tests.smtp.helpers import (
    MESSAGE,
    Raw,
    add_alias,
    add_domain,
    add_users,
    stored_bodies,
    body_of,
    create_mailbox,
    messages,
    queue,
    tmp_files,
)


def mx(server: Any) -> smtplib.SMTP:
    return smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10)


def test_mx_delivers_into_inbox_with_trace_headers(server: Any) -> None:
    """Issue 5 §5: Return-Path and Received are prepended; 250 carries an enhanced code."""
    add_users(server, "alice@example.test")
    with mx(server) as s:
        code, caps = s.ehlo("client.example")
        assert code == 250
        for ext in ("PIPELINING", "SIZE 52428800", "8BITMIME", "SMTPUTF8", "CHUNKING",
                    "ENHANCEDSTATUSCODES", "DSN", "STARTTLS"):
            assert ext.encode() in caps.split(b"\n")
        assert b"AUTH" not in caps                       # PROMISES A1: no AUTH on MX
        s.mail("sender@remote.example")
        s.rcpt("Alice@Example.TEST")
        code, text = s.data(MESSAGE)
        assert code == 250 and text.startswith(b"2.0.0")
    [stored] = messages(server, "alice@example.test")
    assert stored.startswith(b"Return-Path: <sender@remote.example>\r\n"
                             b"Authentication-Results: mail.example.test;")
    assert b"\r\nReceived: from client.example ([127.0.0.1])\r\n" in stored
    assert b"by mail.example.test (casella) with ESMTP id " in stored
    assert b"for <Alice@Example.TEST>;" in stored
    assert body_of(stored) == MESSAGE


def test_end_to_end_byte_identical(server: Any) -> None:
    """Issue 5 tests: what was sent is what is stored, apart from the added trace headers;
    dot-stuffing is undone exactly; 8-bit bytes pass."""
    add_users(server, "bob@example.test")
    body = (b"From: a@remote.example\r\nTo: bob@example.test\r\nSubject: \xc3\xa9t\xc3\xa9\r\n"
            b"\r\n.leading dot\r\n..two dots\r\n.\r\n \r\n\ttab line\r\n" + b"x" * 990 +
            b"\r\nlast line without much\r\n")
    with mx(server) as s:
        s.sendmail("a@remote.example", ["bob@example.test"], body,
                   mail_options=["BODY=8BITMIME"])
    [stored] = messages(server, "bob@example.test")
    assert body_of(stored) == body
    parsed = email.message_from_bytes(stored, policy=email.policy.default)
    assert parsed["Subject"] == "\u00e9t\u00e9"
    _imap_read_back(server, "bob@example.test", stored)


def _imap_read_back(server: Any, address: str, stored: bytes) -> None:
    """The same bytes come back over imaplib."""
    import imaplib
    with imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10) as imap:
        imap.starttls(server.ssl_context())
        imap.login(address, "secret")
        imap.select("INBOX")
        typ, data = imap.uid("FETCH", "1:*", "(BODY.PEEK[])")
    assert typ == "OK"
    fetched = [part[1] for part in data if isinstance(part, tuple)]
    assert fetched == [stored]


def test_unknown_user_and_relay_denied(server: Any) -> None:
    """PROMISES M5: unknown local user 550 5.1.1 at RCPT; M4: foreign domain 550 5.7.1."""
    add_users(server, "alice@example.test")
    with mx(server) as s:
        s.ehlo()
        s.mail("x@remote.example")
        code, text = s.rcpt("nobody@example.test")
        assert (code, text[:5]) == (550, b"5.1.1")
        code, text = s.rcpt("someone@elsewhere.example")
        assert (code, text[:5]) == (550, b"5.7.1")
        assert s.rcpt("alice@example.test")[0] == 250


@pytest.mark.parametrize("rcpt,codes", [
    ("<user%elsewhere.example@example.test>", {550}),
    ("<elsewhere.example!user@example.test>", {550}),
    ('<"user@elsewhere.example"@example.test>', {550}),
    ("<@example.test:user@elsewhere.example>", {550}),
    ("<user@elsewhere.example@example.test>", {501}),
    ('<"user%elsewhere.example"@example.test>', {550}),
    ("<user@[192.0.2.1]>", {550}),
    ("<user@localhost>", {550}),
    ("<user@example.test.>", {501}),
])
def test_open_relay_forms_refused(server: Any, rcpt: str, codes: set[int]) -> None:
    """PROMISES M4: every sender-routed form is refused for unauthenticated clients."""
    add_users(server, "user@example.test")
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        assert c.code("MAIL FROM:<x@remote.example>") == 250
        code, text = c.cmd(f"RCPT TO:{rcpt}")
        assert code in codes, text
        assert text.startswith(("5.7.1", "5.1.3")), text
    assert queue(server) == []


def test_source_route_to_hosted_user_is_ignored(server: Any) -> None:
    """RFC 5321 §4.1.2 / App. C: a source route is ignored; the mailbox decides."""
    add_users(server, "user@example.test")
    with mx(server) as s:
        s.ehlo()
        s.mail("x@remote.example")
        assert s.docmd("RCPT TO:<@relay.example:user@example.test>")[0] == 250
        assert s.data(MESSAGE)[0] == 250
    assert len(messages(server, "user@example.test")) == 1


def test_aliases_fan_out_chain_dedupe_and_forward(server: Any) -> None:
    """An alias fans out to accounts, other aliases (followed, de-duplicated) and remote
    addresses (queued); the body is stored once for all local recipients."""
    add_users(server, "alice@example.test")
    add_users(server, "bob@example.test")
    add_alias(server, "team@example.test", "alice@example.test", "staff@example.test",
              "friend@elsewhere.example")
    add_alias(server, "staff@example.test", "bob@example.test", "alice@example.test")
    with mx(server) as s:
        s.sendmail("x@remote.example", ["team@example.test", "alice@example.test"], MESSAGE)
    assert len(messages(server, "alice@example.test")) == 1     # de-duplicated
    assert len(messages(server, "bob@example.test")) == 1
    [entry] = queue(server)
    assert entry.sender == "x@remote.example"
    assert [r.address for r in entry.recipients] == ["friend@elsewhere.example"]
    assert entry.recipients[0].orcpt == "rfc822;team@example.test"


def test_alias_loop_is_bounded(server: Any) -> None:
    """Aliases that point at each other end (visited set, at most 10 hops)."""
    add_domain(server, "example.test")
    add_alias(server, "a@example.test", "b@example.test")
    add_alias(server, "b@example.test", "a@example.test")
    chain = [f"c{i}@example.test" for i in range(13)]
    add_users(server, "end@example.test")
    for src, dst in zip(chain, chain[1:] + ["end@example.test"]):
        add_alias(server, src, dst)
    with mx(server) as s:
        s.ehlo()
        s.mail("x@remote.example")
        assert s.rcpt("a@example.test")[0] == 550
        code, text = s.rcpt("c0@example.test")
        assert code == 550 and text.startswith(b"5.4.6")
        assert s.rcpt("c5@example.test")[0] == 250


def test_catch_all(server: Any) -> None:
    """The `@domain` alias takes mail for unknown users; exact addresses win."""
    add_users(server, "alice@example.test")
    add_users(server, "postbox@example.test")
    add_alias(server, "@example.test", "postbox@example.test")
    with mx(server) as s:
        s.sendmail("x@remote.example", ["whoever@example.test"], MESSAGE)
        s.sendmail("x@remote.example", ["alice@example.test"], MESSAGE)
    assert len(messages(server, "postbox@example.test")) == 1
    assert len(messages(server, "alice@example.test")) == 1


def test_plus_addressing(server: Any) -> None:
    """user+tag: delivered to user, into mailbox `tag` when it exists, else INBOX."""
    add_users(server, "alice@example.test")
    create_mailbox(server, "alice@example.test", "Lists")
    with mx(server) as s:
        s.sendmail("x@remote.example", ["alice+Lists@example.test"], MESSAGE)
        s.sendmail("x@remote.example", ["alice+nosuchbox@example.test"], MESSAGE)
        s.ehlo()
        s.mail("x@remote.example")
        assert s.rcpt("nobody+tag@example.test")[0] == 550
    assert len(messages(server, "alice@example.test", "Lists")) == 1
    assert len(messages(server, "alice@example.test")) == 1


def test_postmaster_without_domain(server: Any) -> None:
    """RFC 5321 §4.1.1.3: RCPT TO:<Postmaster> is the postmaster of this host name."""
    add_users(server, "postmaster@mail.example.test")
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        c.cmd("MAIL FROM:<x@remote.example>")
        assert c.code("RCPT TO:<Postmaster>") == 250
        assert c.code("DATA") == 354
        assert c.code(MESSAGE + b".") == 250
    assert len(messages(server, "postmaster@mail.example.test")) == 1


def test_fifty_recipients_stored_once(server: Any) -> None:
    """DESIGN: a message to many local recipients is stored once (one body), and every
    recipient's INBOX has it; the Received header names no recipient."""
    users = [f"user{i}@example.test" for i in range(50)]
    add_users(server, *users)
    before = len(stored_bodies(server))
    with mx(server) as s:
        refused = s.sendmail("x@remote.example", users, MESSAGE)
        assert refused == {}
    assert len(stored_bodies(server)) == before + 1
    first = messages(server, users[0])
    assert len(first) == 1 and b"for <" not in first[0]
    for u in users:
        assert messages(server, u) == first
    assert tmp_files(server) == []


def test_rcpt_to_full_account_is_452(make_server: Any) -> None:
    """Issue 5 §4: an account already full is refused at RCPT with 452 4.2.2."""
    server = make_server()
    add_users(server, "full@example.test")
    with mx(server) as s:
        s.sendmail("x@remote.example", ["full@example.test"], MESSAGE)
        server.run(server.store.set_quota("full@example.test", 100))
        s.ehlo()
        s.mail("x@remote.example")
        code, text = s.rcpt("full@example.test")
        assert (code, text[:5]) == (452, b"4.2.2")


def test_all_recipients_over_quota_is_552(server: Any) -> None:
    """Issue 5 §4: when the message would exceed the quota of every recipient, the whole
    message is refused at the end of data with 552 5.2.2 and nothing is stored."""
    add_users(server, "small@example.test", quota=500)
    with mx(server) as s:
        s.ehlo()
        s.mail("x@remote.example")
        assert s.rcpt("small@example.test")[0] == 250
        code, text = s.data(MESSAGE + b"z" * 600 + b"\r\n")
        assert (code, text[:5]) == (552, b"5.2.2")
    assert messages(server, "small@example.test") == []


def test_partial_quota_failure_delivers_others_and_bounces(server: Any) -> None:
    """Issue 5 §4 (the documented choice): the others get the message, 250, and the sender
    gets an RFC 3464 DSN for the full mailbox; a hosted sender gets it in its INBOX."""
    add_users(server, "small@example.test", quota=500)
    add_users(server, "big@example.test")
    add_users(server, "sender@example.test")
    with mx(server) as s:
        s.ehlo()
        s.mail("sender@example.test", ["ENVID=abc123"])
        s.rcpt("small@example.test", ["NOTIFY=FAILURE", "ORCPT=rfc822;small@example.test"])
        s.rcpt("big@example.test")
        code, _ = s.data(MESSAGE + b"z" * 600 + b"\r\n")
        assert code == 250
    assert len(messages(server, "big@example.test")) == 1
    assert messages(server, "small@example.test") == []
    [dsn] = messages(server, "sender@example.test")
    assert dsn.startswith(b"Return-Path: <>\r\n")
    msg = email.message_from_bytes(dsn, policy=email.policy.compat32)
    assert msg.get_content_type() == "multipart/report"
    status = msg.get_payload()[1].get_payload()
    assert status[0]["Original-Envelope-Id"] == "abc123"
    assert status[1]["Final-Recipient"] == "rfc822; small@example.test"
    assert status[1]["Status"] == "5.2.2"
    assert status[1]["Action"] == "failed"
    assert len(status) == 2                                   # only the failed recipient


def test_partial_failure_remote_sender_bounce_is_queued(server: Any) -> None:
    """The DSN to a remote sender goes to the queue with the null sender."""
    add_users(server, "small@example.test", quota=500)
    add_users(server, "big@example.test")
    with mx(server) as s:
        s.sendmail("sender@remote.example", ["small@example.test", "big@example.test"],
                   MESSAGE + b"z" * 600 + b"\r\n")
    [entry] = queue(server)
    assert entry.sender == ""
    assert [r.address for r in entry.recipients] == ["sender@remote.example"]


def test_no_dsn_for_null_sender(server: Any) -> None:
    """PROMISES M6: a bounce (null reverse path) that partly fails generates no DSN."""
    add_users(server, "small@example.test", quota=500)
    add_users(server, "big@example.test")
    with mx(server) as s:
        s.ehlo()
        s.mail("<>")
        s.rcpt("small@example.test")
        s.rcpt("big@example.test")
        assert s.data(MESSAGE + b"z" * 600 + b"\r\n")[0] == 250
    assert queue(server) == []
    assert len(messages(server, "big@example.test")) == 1


def test_notify_success_gives_delivered_dsn(server: Any) -> None:
    """RFC 3461 §6.2: NOTIFY=SUCCESS asks for a "delivered" DSN at final delivery."""
    add_users(server, "alice@example.test")
    add_users(server, "sender@example.test")
    with mx(server) as s:
        s.ehlo()
        s.mail("sender@example.test")
        s.rcpt("alice@example.test", ["NOTIFY=SUCCESS"])
        assert s.data(MESSAGE)[0] == 250
    [dsn] = messages(server, "sender@example.test")
    assert b"Action: delivered" in dsn


def test_size_limits(make_server: Any) -> None:
    """PROMISES Q5: SIZE= over the limit is 552 5.3.4 at MAIL; a message over the limit is
    read to its end, refused 552 5.3.4, and nothing is stored; the session goes on."""
    server = make_server(limits={"max_message_size": "2K"})
    add_users(server, "alice@example.test")
    with mx(server) as s:
        code, caps = s.ehlo()
        assert b"SIZE 2048" in caps
        code, text = s.mail("x@remote.example", ["SIZE=4096"])
        assert (code, text[:5]) == (552, b"5.3.4")
        s.rset()
        s.mail("x@remote.example")
        s.rcpt("alice@example.test")
        code, text = s.data(MESSAGE + b"y" * 3000 + b"\r\n")
        assert (code, text[:5]) == (552, b"5.3.4")
        assert s.noop()[0] == 250
        s.mail("x@remote.example")
        s.rcpt("alice@example.test")
        assert s.data(MESSAGE)[0] == 250
    assert len(messages(server, "alice@example.test")) == 1
    assert tmp_files(server) == []


def test_store_failure_is_451_and_nothing_stored(server: Any) -> None:
    """PROMISES D2: when persisting fails the answer is 451 4.3.0, never 250."""
    from casella.errors import StorageError
    add_users(server, "alice@example.test")
    store = server.store

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("disk on fire")
    store.deliver_and_enqueue = broken
    try:
        with mx(server) as s:
            s.ehlo()
            s.mail("x@remote.example")
            s.rcpt("alice@example.test")
            code, text = s.data(MESSAGE)
            assert (code, text[:5]) == (451, b"4.3.0")
            assert s.noop()[0] == 250
    finally:
        del store.deliver_and_enqueue
    assert messages(server, "alice@example.test") == []


def test_smtputf8_addresses(server: Any) -> None:
    """RFC 6531: a non-ASCII address needs the SMTPUTF8 parameter (553 5.6.7 without)."""
    add_users(server, "j\u00f6rg@example.test")
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        assert c.code("MAIL FROM:<x@remote.example>") == 250
        code, text = c.cmd("RCPT TO:<j\u00f6rg@example.test>".encode())
        assert (code, text[:5]) == (553, "5.6.7")
        c.cmd("RSET")
        assert c.code("MAIL FROM:<s\u00e9nder@remote.example> SMTPUTF8".encode()) == 250
        assert c.code("RCPT TO:<J\u00f6rg@example.test>".encode()) == 250
        assert c.code("DATA") == 354
        assert c.code(MESSAGE + b".") == 250
    [stored] = messages(server, "j\u00f6rg@example.test")
    assert b"with UTF8SMTP id" in stored
    assert "Return-Path: <s\u00e9nder@remote.example>".encode() in stored


def test_inbound_checks_write_the_message_once(server: Any, monkeypatch: Any) -> None:
    """Issue 8: with the inbound checks on, a message still in memory is checked before it is
    staged, then staged once, Authentication-Results included (no second copy, no read-back
    of the first), and stored once."""
    import casella.smtp.session as session_module
    from casella.store.blobs import BlobWriter

    add_users(server, "carol@example.test")
    finishes: list[int] = []
    real = BlobWriter.finish

    def counting(self: Any, *args: Any, **kwargs: Any) -> Any:
        finishes.append(1)
        return real(self, *args, **kwargs)

    def no_read_back(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the message was read back from disk")

    monkeypatch.setattr(BlobWriter, "finish", counting)
    monkeypatch.setattr(session_module, "read_staged", no_read_back)
    with mx(server) as s:
        assert s.sendmail("x@remote.example", ["carol@example.test"], MESSAGE) == {}
    assert finishes == [1] and len(stored_bodies(server)) == 1
    [stored] = messages(server, "carol@example.test")
    assert stored.startswith(b"Return-Path: <x@remote.example>\r\n"
                             b"Authentication-Results: mail.example.test;")
    assert body_of(stored) == MESSAGE
    assert tmp_files(server) == []


def test_inbound_checks_on_a_message_too_big_for_memory(server: Any) -> None:
    """A message over a megabyte is on disk before it is checked: it is read back, stored with
    its Authentication-Results, and the first copy leaves no file behind."""
    add_users(server, "dave@example.test")
    before = len(stored_bodies(server))
    big = MESSAGE + b"".join(b"line %07d of a big message\r\n" % i for i in range(60_000))
    with mx(server) as s:
        assert s.sendmail("x@remote.example", ["dave@example.test"], big) == {}
    [stored] = messages(server, "dave@example.test")
    assert stored.startswith(b"Return-Path: <x@remote.example>\r\n"
                             b"Authentication-Results: mail.example.test;")
    assert body_of(stored) == big
    assert len(stored_bodies(server)) == before + 1
    assert tmp_files(server) == []
