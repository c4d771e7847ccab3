"""Issue 20 over real sockets: an SMTP session against casella, Rspamd's verdict before the
final 250 of DATA/BDAT, and where the message lands.

With our own rspamd (tests/spam/conftest.py; skipped when it is not installed): each action
(reject, add header, rewrite subject, greylist, soft reject, no action) gives its SMTP reply
and its mailbox. With a fake HTTP server (always run): what casella sends Rspamd, and every way
the check can fail (down, slow, garbage, huge answers, HTTP errors) against `[spam] on_error`.
"""

from __future__ import annotations

import base64
import socket
import time
from typing import Any

import pytest

from casella.store.sending import EV_FAILED
from tests.smtp.helpers import Raw, add_users, messages
from tests.spam.conftest import (
    GTUBE_ADD_HEADER,
    GTUBE_NO_ACTION,
    GTUBE_REJECT,
    GTUBE_REWRITE_SUBJECT,
    Answer,
    FakeHttp,
    Rspamd,
    free_port,
    rspamd_json,
)

ALICE = "alice@example.test"
BOB = "bob@example.test"


def message(body: str = "Hello there.", subject: str = "test", extra: str = "") -> bytes:
    return (f"From: Sender <sender@remote.example>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{time.monotonic_ns()}@remote.example>\r\n{extra}\r\n"
            f"{body}\r\n").encode()


def send(server: Any, data: bytes, rcpts: tuple[str, ...] = (ALICE,),
         sender: str = "sender@remote.example", bdat: bool = False) -> tuple[int, str]:
    """One message to the MX listener; the reply to the end of its data."""
    with Raw(server.port("smtp"), timeout=30) as c:
        assert c.ehlo("client.remote.example")[0] == 250
        assert c.code(f"MAIL FROM:<{sender}>") == 250
        for r in rcpts:
            assert c.code(f"RCPT TO:<{r}>") == 250
        if bdat:
            c.send(f"BDAT {len(data)} LAST\r\n".encode() + data)
            return c.reply()
        assert c.code("DATA") == 354
        c.send(data + b".\r\n")
        return c.reply()


def spam_server(make_server: Any, url: str, **spam: Any) -> Any:
    srv = make_server(spam={"rspamd": url, **spam})
    add_users(srv, ALICE, BOB)
    return srv


def header_block(stored: bytes) -> bytes:
    return stored.partition(b"\r\n\r\n")[0]


# --- with our own rspamd ----------------------------------------------------------------------

def test_reject_is_550_and_nothing_stored(make_server: Any, rspamd: Rspamd) -> None:
    """Rspamd says reject (the GTUBE pattern): 550 5.7.1 with a clear text in the session,
    nothing in INBOX or Junk (PROMISES D12), for DATA and for BDAT."""
    srv = spam_server(make_server, rspamd.normal)
    for bdat in (False, True):
        code, text = send(srv, message(GTUBE_REJECT), bdat=bdat)
        assert code == 550, text
        assert text.startswith("5.7.1 Message rejected as spam"), text
    assert messages(srv, ALICE) == [] and messages(srv, ALICE, "Junk") == []


def test_add_header_goes_to_junk_marked(make_server: Any, rspamd: Rspamd) -> None:
    """add header: 250, the message in the recipient's Junk with X-Spam: Yes, the score and
    Rspamd's symbols; a forged X-Spam from the sender is gone; INBOX stays empty."""
    srv = spam_server(make_server, rspamd.normal)
    code, text = send(srv, message(GTUBE_ADD_HEADER, extra="X-Spam: No\r\n"),
                      rcpts=(ALICE, BOB))
    assert code == 250, text
    for who in (ALICE, BOB):
        assert messages(srv, who) == []
        [stored] = messages(srv, who, "Junk")
        head = header_block(stored)
        assert head.startswith(b"Return-Path: <sender@remote.example>\r\n")
        assert b"\r\nX-Spam: Yes\r\n" in head
        assert b"\r\nX-Spam-Score: 60.00 / 150.00\r\n" in head
        assert b"\r\nX-Spam-Action: add header\r\n" in head
        assert b"\r\nX-Spamd-Result: default: True [60.00 / 150.00];\r\n\tGTUBE(" in head
        assert b"X-Spam: No" not in head
        assert b"Authentication-Results:" in head          # the DMARC path kept its header
        assert stored.endswith(GTUBE_ADD_HEADER.encode() + b"\r\n")


def test_rewrite_subject(make_server: Any, rspamd: Rspamd) -> None:
    """rewrite subject: into Junk, the Subject as Rspamd rewrote it (its configured prefix),
    and only one Subject field."""
    srv = spam_server(make_server, rspamd.normal)
    code, text = send(srv, message(GTUBE_REWRITE_SUBJECT, subject="cheap watches"))
    assert code == 250, text
    [stored] = messages(srv, ALICE, "Junk")
    head = header_block(stored)
    assert b"\r\nSubject: *** SPAM *** cheap watches\r\n" in head
    assert head.count(b"Subject:") == 1
    assert b"X-Spam-Action: rewrite subject" in head


@pytest.mark.parametrize("action", ["greylist", "soft reject"])
def test_greylist_and_soft_reject_are_451(make_server: Any, rspamd: Rspamd,
                                          action: str) -> None:
    """greylist / soft reject: 451 4.7.1, temporary; nothing stored."""
    srv = spam_server(make_server, rspamd.normal)
    code, text = send(srv, message(extra=f"X-Casella-Test-Action: {action}\r\n"))
    assert code == 451, text
    assert text.startswith("4.7.1 Message deferred by the spam filter; try again later")
    assert messages(srv, ALICE) == [] and messages(srv, ALICE, "Junk") == []


def test_no_action_goes_to_inbox_unmarked(make_server: Any, rspamd: Rspamd) -> None:
    """no action: INBOX, nothing added; a forged verdict the sender wrote is removed."""
    srv = spam_server(make_server, rspamd.normal)
    data = message(GTUBE_NO_ACTION, extra="X-Spam: Yes\r\nX-Spam-Score: 99\r\n")
    assert send(srv, data)[0] == 250
    [stored] = messages(srv, ALICE)
    assert b"X-Spam" not in header_block(stored)
    assert messages(srv, ALICE, "Junk") == []


def test_junk_is_the_special_use_mailbox(make_server: Any, rspamd: Rspamd) -> None:
    """RFC 6154: the message goes to the mailbox marked \\Junk, whatever its name."""
    srv = spam_server(make_server, rspamd.normal)

    async def rename() -> None:
        account = await srv.store.get_account(ALICE)
        await srv.store.rename_mailbox(account.id, "Junk", "Spam")
        mb = await srv.store.get_mailbox(account.id, "Spam")
        await srv.store.set_special_use(mb.id, "\\Junk")
    srv.run(rename())
    assert send(srv, message(GTUBE_ADD_HEADER))[0] == 250
    [stored] = messages(srv, ALICE, "Spam")
    assert b"X-Spam: Yes" in stored and messages(srv, ALICE) == []


def test_big_message_is_scanned_and_marked(make_server: Any, rspamd: Rspamd) -> None:
    """A message too big to stay in memory (over 1 MiB) is read back, scanned and re-staged
    with the headers; one copy ends up in Junk."""
    srv = spam_server(make_server, rspamd.normal)
    # Rspamd looks for the test pattern in small text parts only: the bulk is an attachment.
    filler = ("eHh4" * 19 + "\r\n") * 20000
    body = (f"--b1\r\nContent-Type: text/plain\r\n\r\n{GTUBE_ADD_HEADER}\r\n--b1\r\n"
            "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n"
            f"\r\n{filler}--b1--")
    code, text = send(srv, message(body, extra="MIME-Version: 1.0\r\nContent-Type: "
                                               "multipart/mixed; boundary=b1\r\n"))
    assert code == 250, text
    [stored] = messages(srv, ALICE, "Junk")
    assert len(stored) > 1_500_000 and b"X-Spam: Yes" in header_block(stored)
    assert len(srv.run(srv.store.stored_bodies())) == 1


def test_max_size_skips_the_scan(make_server: Any, rspamd: Rspamd) -> None:
    """`[spam] max_size`: a bigger message is not scanned (it arrives in INBOX even with the
    reject pattern); one of the size limit or below is."""
    srv = spam_server(make_server, rspamd.normal, max_size="2K")
    big = message(GTUBE_REJECT + "\r\n" + "y" * 2100)
    assert send(srv, big)[0] == 250
    assert len(messages(srv, ALICE)) == 1
    assert send(srv, message(GTUBE_REJECT))[0] == 550


def _submit(srv: Any, data: bytes, rcpts: tuple[str, ...]) -> tuple[int, str]:
    with Raw(srv.port("submission"), timeout=30) as c:
        c.ehlo()
        c.starttls(srv.ssl_context())
        c.ehlo()

        token = base64.b64encode(f"\0{ALICE}\0secret".encode()).decode()
        assert c.code(f"AUTH PLAIN {token}") == 235
        assert c.code(f"MAIL FROM:<{ALICE}>") == 250
        for r in rcpts:
            assert c.code(f"RCPT TO:<{r}>") == 250
        assert c.code("DATA") == 354
        c.send(data + b".\r\n")
        return c.reply()


OWN_SPAM = (f"From: {ALICE}\r\nTo: victim@elsewhere.example\r\nSubject: buy\r\n\r\n"
            f"{GTUBE_REJECT}\r\n").encode()


def test_submission_not_checked_unless_asked(make_server: Any, rspamd: Rspamd) -> None:
    """check_submission = false (the default): our own users' mail is not scanned."""
    srv = spam_server(make_server, rspamd.normal)
    assert _submit(srv, OWN_SPAM, (BOB,))[0] == 250
    assert len(messages(srv, BOB)) == 1


def test_submission_spam_is_refused_and_counted(make_server: Any, rspamd: Rspamd,
                                                caplog: pytest.LogCaptureFixture) -> None:
    """check_submission = true: a compromised account's spam is refused (550 5.7.1, not
    sent, nothing queued), logged loudly, and each recipient counts as a failed delivery
    against its sending limits: with defers_failures_per_hour = 2 the guard trips, sending
    pauses (450 at RCPT) and the account gets the guard's notice."""
    srv = make_server(spam={"rspamd": rspamd.normal, "check_submission": True},
                      limits={"defers_failures_per_hour": 2, "defers_failures_percent": 50})
    add_users(srv, ALICE, BOB)
    code, text = _submit(srv, OWN_SPAM, ("victim@elsewhere.example", "other@elsewhere.example"))
    assert code == 550
    assert text == "5.7.1 Message rejected as spam; it was not sent (Gtube pattern)"
    assert srv.run(srv.store.list_queue()) == []
    account = srv.run(srv.store.get_account(ALICE))
    events = srv.run(srv.store.send_events(account.id, 0))
    assert sorted((e.kind, e.detail) for e in events) == [
        (EV_FAILED, "other@elsewhere.example"), (EV_FAILED, "victim@elsewhere.example")]
    assert any("OUTBOUND SPAM from alice@example.test" in r.getMessage() and
               r.levelname == "ERROR" for r in caplog.records)
    [notice] = messages(srv, ALICE)
    assert b"Subject: Your outgoing mail is paused" in notice
    # The guard now holds further mail to remote recipients.
    with Raw(srv.port("submission"), timeout=30) as c:
        c.ehlo()
        c.starttls(srv.ssl_context())
        c.ehlo()

        token = base64.b64encode(f"\0{ALICE}\0secret".encode()).decode()
        assert c.code(f"AUTH PLAIN {token}") == 235
        assert c.code(f"MAIL FROM:<{ALICE}>") == 250
        code, text = c.cmd("RCPT TO:<victim@elsewhere.example>")
        assert code == 450 and "defers and failures" in text
    # Clean mail from the same account is still scanned and goes through locally.
    clean = f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: hi\r\n\r\nlunch?\r\n".encode()
    assert _submit(srv, clean, (BOB,))[0] == 250


# --- without Rspamd: a fake server, or nothing listening --------------------------------------

def test_request_carries_the_envelope(make_server: Any, fake_http: FakeHttp) -> None:
    """POST /checkv2 with the message as received (our trace fields on top) and the headers
    Rspamd expects: From (envelope sender), Rcpt (each), IP, Helo, Hostname (no reverse name
    here: "unknown"), Queue-Id (the id of the 250 reply); no User from the internet."""
    fake_http.answer = Answer(body=rspamd_json("no action"))
    srv = spam_server(make_server, fake_http.url)
    data = message()
    code, text = send(srv, data, rcpts=(ALICE, BOB))
    assert code == 250
    [req] = fake_http.requests
    assert (req.method, req.path) == ("POST", "/checkv2")
    assert req.header("From") == ["sender@remote.example"]
    assert req.header("Rcpt") == [ALICE, BOB]
    assert req.header("IP") == ["127.0.0.1"]
    assert req.header("Helo") == ["client.remote.example"]
    assert req.header("Hostname") == ["unknown"]
    assert req.header("Queue-Id") == [text.rsplit(" ", 1)[1]]
    assert req.header("User") == []
    assert req.body.startswith(b"Return-Path: <sender@remote.example>\r\nReceived: ")
    assert req.body.endswith(data)
    [stored] = messages(srv, ALICE)
    assert stored.endswith(data)


def test_confirmed_reverse_name_is_the_hostname(make_server: Any, fake_http: FakeHttp) -> None:
    """Hostname is the client's reverse name only when its forward lookup gives the client's
    address back (forward-confirmed)."""
    from casella.smtp.resolver import StaticResolver, set_resolver

    fake_http.answer = Answer(body=rspamd_json("no action"))
    srv = spam_server(make_server, fake_http.url)
    set_resolver(StaticResolver({("1.0.0.127.in-addr.arpa", "PTR"): ["client.remote.example"],
                                 ("client.remote.example", "A"): ["127.0.0.1"]}))
    assert send(srv, message())[0] == 250
    set_resolver(StaticResolver({("1.0.0.127.in-addr.arpa", "PTR"): ["liar.remote.example"],
                                 ("liar.remote.example", "A"): ["192.0.2.7"]}))
    assert send(srv, message())[0] == 250
    assert [r.header("Hostname") for r in fake_http.requests] == [["client.remote.example"],
                                                                   ["unknown"]]


def test_submission_request_names_the_user(make_server: Any, fake_http: FakeHttp) -> None:
    """Submission, when checked: User is the authenticated account."""
    fake_http.answer = Answer(body=rspamd_json("add header", 8.0))
    srv = make_server(spam={"rspamd": fake_http.url, "check_submission": True})
    add_users(srv, ALICE, BOB)
    clean = f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: hi\r\n\r\nlunch?\r\n".encode()
    assert _submit(srv, clean, (BOB,))[0] == 250
    [req] = fake_http.requests
    assert req.header("User") == [ALICE] and req.header("From") == [ALICE]
    # add header on submission: sent as it is, not junked.
    [stored] = messages(srv, BOB)
    assert b"X-Spam" not in stored


def _dead_port() -> int:
    """A loopback port where nothing listens (connection refused at once)."""
    return free_port()


@pytest.mark.parametrize("on_error,code", [("accept", 250), ("tempfail", 451)])
def test_rspamd_down(make_server: Any, on_error: str, code: int) -> None:
    """Rspamd not running: accept (and log) or 451 4.3.0, as `[spam] on_error` says."""
    srv = spam_server(make_server, f"http://127.0.0.1:{_dead_port()}", on_error=on_error)
    got, text = send(srv, message())
    assert got == code, text
    if code == 451:
        assert text == "4.3.0 The spam filter is unavailable; try again later"
        assert messages(srv, ALICE) == []
    else:
        assert len(messages(srv, ALICE)) == 1


GARBAGE = [
    Answer(body=b"<html>Bad gateway</html>"),
    Answer(body=b'{"score": 3}'),                                   # no action
    Answer(body=b'{"action": "explode", "score": 3}'),
    Answer(body=b'{"action": "reject", "score": "lots"}'),
    Answer(status=500, body=rspamd_json("reject", 99.0)),
    Answer(body=b'{"action": "reject", "score": 1}' + b" " * (3 * 1024 * 1024)),
    Answer(body=b'{"action": "reject", "score": 1}' + b" " * (3 * 1024 * 1024), chunked=True),
]


@pytest.mark.parametrize("answer", GARBAGE, ids=["html", "no-action", "unknown-action",
                                                 "bad-score", "http-500", "huge",
                                                 "huge-chunked"])
@pytest.mark.parametrize("on_error,code", [("accept", 250), ("tempfail", 451)])
def test_garbage_answers(make_server: Any, fake_http: FakeHttp, answer: Answer,
                         on_error: str, code: int, caplog: pytest.LogCaptureFixture) -> None:
    """Rspamd talking garbage (not JSON, fields missing or wrong, an HTTP error, an answer
    over max_reply_size): never taken as a verdict; accept or tempfail by config, logged."""
    fake_http.answer = answer
    srv = spam_server(make_server, fake_http.url, on_error=on_error, max_reply_size="1M")
    got, text = send(srv, message())
    assert got == code, text
    assert len(messages(srv, ALICE)) == (1 if code == 250 else 0)
    assert messages(srv, ALICE, "Junk") == []
    assert any("spam check of message" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("on_error,code", [("accept", 250), ("tempfail", 451)])
def test_slow_rspamd_times_out(make_server: Any, fake_http: FakeHttp, on_error: str,
                               code: int) -> None:
    """An answer that does not come within `[spam] timeout`: the message is answered at the
    timeout (not when Rspamd finally speaks), by on_error."""
    fake_http.answer = Answer(body=rspamd_json("reject", 99.0), delay=8.0)
    srv = spam_server(make_server, fake_http.url, timeout=1, on_error=on_error)
    started = time.monotonic()
    got, text = send(srv, message())
    assert time.monotonic() - started < 6.0
    assert got == code, text


def test_connect_timeout(make_server: Any) -> None:
    """`[spam] connect_timeout`: a host that never completes the TCP handshake (here a
    listening socket whose accept queue is full, so the kernel drops our SYN) is given up
    after connect_timeout, well before the total timeout."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    port = lsock.getsockname()[1]
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        try:
            c.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        fillers.append(c)
    try:
        srv = spam_server(make_server, f"http://127.0.0.1:{port}", timeout=60,
                          connect_timeout=0.5, on_error="tempfail")
        started = time.monotonic()
        code, _ = send(srv, message())
        assert code == 451
        assert time.monotonic() - started < 20.0
    finally:
        for c in fillers:
            c.close()
        lsock.close()


def test_spam_off_by_default(server: Any) -> None:
    """No [spam] rspamd: no filter at all."""
    assert server.app.spam is None


def test_dmarc_quarantine_uses_the_same_junk(make_server: Any, fake_http: FakeHttp) -> None:
    """The DMARC quarantine path and the spam path share the Junk lookup: a p=quarantine
    failure lands in the mailbox marked \\Junk (renamed here), even when Rspamd sees nothing
    wrong, and keeps its Authentication-Results."""
    from casella.smtp.resolver import StaticResolver, set_resolver

    fake_http.answer = Answer(body=rspamd_json("no action"))
    srv = spam_server(make_server, fake_http.url)
    set_resolver(StaticResolver({("_dmarc.remote.example", "TXT"): [b"v=DMARC1; p=quarantine"]}))

    async def rename() -> None:
        account = await srv.store.get_account(ALICE)
        await srv.store.rename_mailbox(account.id, "Junk", "Unwanted")
        mb = await srv.store.get_mailbox(account.id, "Unwanted")
        await srv.store.set_special_use(mb.id, "\\Junk")
    srv.run(rename())
    assert send(srv, message())[0] == 250
    [stored] = messages(srv, ALICE, "Unwanted")
    head = header_block(stored)
    assert b"dmarc=fail" in head and b"X-Spam" not in head
    assert messages(srv, ALICE) == []
