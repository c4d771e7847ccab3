"""Issue 20: moving mail into and out of Junk over IMAP trains Rspamd (learn_spam, learn_ham
over the controller worker), in the background: the IMAP command's reply never waits for it.

A fake controller (always run) checks the exact requests and that a slow controller does not
delay MOVE; our own rspamd (skipped when not installed) checks that the learning is real.
"""

from __future__ import annotations

import imaplib
import threading
import time
from typing import Any

from tests.smtp.helpers import add_users, messages
from tests.spam.conftest import PASSWORD, Answer, FakeHttp, Rspamd

ALICE = "alice@example.test"


def learn_server(make_server: Any, controller: str, **spam: Any) -> Any:
    srv = make_server(auth={"allow_plaintext_without_tls": True},
                      spam={"controller": controller, "controller_password": PASSWORD,
                            **spam})
    add_users(srv, ALICE)
    return srv


def put(srv: Any, mailbox: str, *bodies: bytes) -> None:
    """Messages placed directly into one of alice's mailboxes."""
    async def go() -> None:
        from casella.store.model import AppendItem

        account = await srv.store.get_account(ALICE)
        mb = await srv.store.get_mailbox(account.id, mailbox)
        for body in bodies:
            staged = await srv.store.blobs.stage(body)
            try:
                await srv.store.append(mb.id, [AppendItem(staged, (), int(time.time()))])
            finally:
                staged.discard()
    srv.run(go())


def imap(srv: Any, mailbox: str = "INBOX") -> imaplib.IMAP4:
    c = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=30)
    c.login(ALICE, "secret")
    c.select(mailbox)
    return c


def body(n: int) -> bytes:
    return (f"From: someone@remote.example\r\nTo: {ALICE}\r\nSubject: offer {n}\r\n"
            f"Message-ID: <learn-{n}-{time.monotonic_ns()}@remote.example>\r\n\r\n"
            + " ".join(f"word{i}x{n} cheap{n} offer now" for i in range(40)) + "\r\n").encode()


def drain(srv: Any) -> None:
    srv.run(srv.app.spam.drain())


def test_move_into_junk_learns_spam_without_delaying_the_reply(make_server: Any,
                                                               fake_http: FakeHttp) -> None:
    """MOVE INBOX -> Junk: the tagged OK comes while the controller has not answered (it
    answers only when the test lets it: a MOVE that waited for it would never complete); POST
    /learnspam reaches it with the stored message, the controller password and the account as
    Deliver-To."""
    gate = threading.Event()
    fake_http.answer = Answer(body=b'{"success": true}', gate=gate)
    srv = learn_server(make_server, fake_http.url)
    msg = body(1)
    put(srv, "INBOX", msg)
    c = imap(srv)
    try:
        assert c.uid("MOVE", "1", "Junk")[0] == "OK"
        assert c.noop()[0] == "OK"                      # the session goes on meanwhile
        [req] = fake_http.wait_requests(1)
        assert not gate.is_set()
    finally:
        gate.set()
    assert (req.method, req.path) == ("POST", "/learnspam")
    assert req.header("Password") == [PASSWORD]
    assert req.header("Deliver-To") == [ALICE]
    [stored] = messages(srv, ALICE, "Junk")
    assert req.body == stored and stored.endswith(msg)
    c.logout()
    drain(srv)


def test_each_move_and_copy(make_server: Any, fake_http: FakeHttp) -> None:
    """Which moves teach what: MOVE or COPY into Junk -> spam; MOVE out of Junk into another
    folder -> ham; out of Junk into Trash, COPY out of Junk, Junk to Junk and moves between
    ordinary folders -> nothing."""
    fake_http.answer = Answer(body=b'{"success": true}')
    srv = learn_server(make_server, fake_http.url)
    put(srv, "INBOX", body(1), body(2), body(3))

    def expect(*paths: str) -> None:
        drain(srv)
        got = [r.path for r in fake_http.requests]
        fake_http.requests.clear()
        assert got == list(paths)

    c = imap(srv)
    assert c.uid("COPY", "1", "Junk")[0] == "OK"               # Junk gets UID 1
    expect("/learnspam")
    assert c.uid("MOVE", "2", "Archive")[0] == "OK"            # ordinary to ordinary
    expect()
    assert c.uid("MOVE", "3", "Junk")[0] == "OK"               # Junk UID 2
    expect("/learnspam")
    c.select("Junk")
    assert c.uid("COPY", "1", "INBOX")[0] == "OK"              # a copy is not a verdict
    expect()
    assert c.uid("COPY", "1", "Junk")[0] == "OK"               # Junk to Junk: UID 3
    expect()
    assert c.uid("MOVE", "1", "Archive")[0] == "OK"            # not spam after all
    expect("/learnham")
    assert c.uid("MOVE", "2", "Trash")[0] == "OK"              # thrown away: no verdict
    expect()
    c.logout()


def test_learn_concurrency_and_backlog(make_server: Any, fake_http: FakeHttp,
                                       caplog: Any) -> None:
    """`learn_concurrency` requests at most in flight (the controller holds them until the
    test lets go); beyond `learn_backlog` waiting messages the rest is skipped, with a
    warning, and the MOVE itself is unaffected."""
    gate = threading.Event()
    fake_http.answer = Answer(body=b'{"success": true}', gate=gate)
    srv = learn_server(make_server, fake_http.url, learn_concurrency=2, learn_backlog=4)
    put(srv, "INBOX", *(body(i) for i in range(6)))
    c = imap(srv)
    try:
        assert c.uid("MOVE", "1:3", "Junk")[0] == "OK"
        assert len(fake_http.wait_requests(2)) == 2     # two held by the controller ...
        assert c.uid("MOVE", "4:6", "Junk")[0] == "OK"  # ... 3 waiting: one more fits
        assert fake_http.most_in_flight == 2
    finally:
        gate.set()
    drain(srv)
    assert len(fake_http.requests) == 4
    assert fake_http.most_in_flight == 2
    assert any("spam learning backlog full" in r.getMessage() for r in caplog.records)
    assert len(messages(srv, ALICE, "Junk")) == 6
    assert srv.app.spam.learn_pending == 0
    c.logout()


def test_controller_errors_are_logged_not_answered(make_server: Any, fake_http: FakeHttp,
                                                   caplog: Any) -> None:
    """A refusing controller (403, wrong password) or a dead one: the IMAP command is OK as
    ever; the failure is in the log."""
    fake_http.answer = Answer(status=403, body=b'{"error": "Unauthorized"}')
    srv = learn_server(make_server, fake_http.url)
    put(srv, "INBOX", body(1))
    c = imap(srv)
    assert c.uid("MOVE", "1", "Junk")[0] == "OK"
    drain(srv)
    assert any("learn_spam" in r.getMessage() and "HTTP 403 Unauthorized" in r.getMessage()
               for r in caplog.records)
    c.logout()


def test_learning_off_without_controller(make_server: Any, fake_http: FakeHttp) -> None:
    """Checking on, no controller: moves teach nothing."""
    srv = make_server(auth={"allow_plaintext_without_tls": True},
                      spam={"rspamd": fake_http.url})
    add_users(srv, ALICE)
    put(srv, "INBOX", body(1))
    c = imap(srv)
    assert c.uid("MOVE", "1", "Junk")[0] == "OK"
    drain(srv)
    assert fake_http.requests == []
    c.logout()


def test_real_rspamd_learns(make_server: Any, rspamd: Rspamd) -> None:
    """Our own rspamd: a MOVE into Junk and one out of it are learnt (its "learned" count
    grows by two); the password is really needed (the controller asks it of loopback too)."""
    srv = learn_server(make_server, rspamd.controller)
    put(srv, "INBOX", body(101), body(102))
    before = rspamd.learned()
    c = imap(srv)
    assert c.uid("MOVE", "1", "Junk")[0] == "OK"
    drain(srv)
    assert rspamd.learned() == before + 1
    c.select("INBOX")
    assert c.uid("MOVE", "2", "Junk")[0] == "OK"
    c.select("Junk")
    assert c.uid("MOVE", "2", "INBOX")[0] == "OK"             # learnt as spam, now ham
    drain(srv)
    assert rspamd.learned() == before + 3
    c.logout()
    wrong = learn_server(make_server, rspamd.controller, controller_password="wrong")
    put(wrong, "INBOX", body(103))
    c = imap(wrong)
    assert c.uid("MOVE", "1", "Junk")[0] == "OK"
    drain(wrong)
    assert rspamd.learned() == before + 3
    c.logout()
