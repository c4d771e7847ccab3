"""SMTP smuggling and STARTTLS command injection on all three protocols (issue 7 §4, PROMISES
M1/M2/T1/T2/T3), and the same trick against IMAP and POP3: message data that looks like protocol
(commands, terminators, replies) is only ever data.

Smuggling: a message whose body holds a bare-LF or bare-CR "end of data" followed by a second
transaction never becomes two messages, on the MX and on authenticated submission, with DATA
and with BDAT; the session stays in step. STARTTLS injection: plaintext pipelined after
STARTTLS/STLS is thrown away, never executed inside TLS, and the state learnt before TLS is
forgotten."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest

from tests.attack.util import PASSWORD, Imap, Pop3, Smtp, add_user, deliver, message

# The end-of-data forms of the SMTP smuggling research (SEC Consult, 2023) and their kin.
VECTORS = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r.\n", b"\r\n.\n", b"\n.\r",
           b"\r\n\x00.\r\n", b"\r\n.\x00\r\n", b"\r\n .\r\n"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.conftest import RunningServer, build_test_config
    server = RunningServer(build_test_config(tmp_path_factory.mktemp("inject") / "var"))
    try:
        yield server
    finally:
        server.stop()


def inbox_subjects(server: Any, address: str) -> list[bytes]:
    async def go() -> list[bytes]:
        account = await server.store.get_account(address)
        mb = await server.store.get_mailbox(account.id, "INBOX")
        metas = await server.store.fetch_meta(mb.id, [(1, 1 << 32)])
        statics = await server.store.fetch_static([m.blob_id for m in metas])
        out = []
        for m in metas:
            data = await server.store.read_blob(statics[m.blob_id].digest)
            header = data.split(b"\r\n\r\n", 1)[0]
            for line in header.split(b"\r\n"):
                if line.startswith(b"Subject:"):
                    out.append(line[8:].strip())
        return out
    result: list[bytes] = server.run(go())
    return result


def smuggling_payload(victim: str) -> bytes:
    return (b"From: x@remote.example\r\nSubject: first\r\n\r\nbody\r\n")


def smuggled(victim: str) -> bytes:
    return (b"MAIL FROM:<ceo@example.test>\r\nRCPT TO:<" + victim.encode() + b">\r\nDATA\r\n"
            b"From: ceo@example.test\r\nSubject: smuggled\r\n\r\nwire the money\r\n.\r\n")


@pytest.mark.parametrize("vector", VECTORS, ids=repr)
def test_smuggling_on_the_mx(srv: Any, vector: bytes) -> None:
    rcpt = add_user(srv).address
    victim = add_user(srv).address
    with Smtp(srv.port("smtp")) as c:
        assert c.code("EHLO attacker.example") == 250
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<" + rcpt.encode() + b">\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        c.send(smuggling_payload(victim).rstrip(b"\r\n") + vector + smuggled(victim))
        code, text = c.reply()
        # Refused whole (bare CR/LF, 5.6.0) or, for forms that are not line ends at all,
        # taken as one message; either way no second transaction is ever started.
        assert code in (250, 554), text
        assert not c.closed(0.3) and c.buf == b""      # nothing answered the smuggled part
        assert c.code("NOOP") == 250
    assert inbox_subjects(srv, victim) == []
    assert len(inbox_subjects(srv, rcpt)) <= 1


@pytest.mark.parametrize("vector", [b"\n.\n", b"\r\n.\r", b"\r.\r\n"], ids=repr)
def test_smuggling_on_submission(make_server: Any, vector: bytes) -> None:
    """An authenticated customer cannot smuggle a second message with another sender."""
    server = make_server()
    sender = add_user(server).address
    victim = add_user(server).address
    with Smtp(server.port("submissions"), server.ssl_context()) as c:
        assert c.code("EHLO customer.example") == 250
        token = base64.b64encode(f"\0{sender}\0{PASSWORD}".encode()).decode()
        assert c.code(f"AUTH PLAIN {token}") == 235
        c.send(f"MAIL FROM:<{sender}>\r\nRCPT TO:<{sender}>\r\nDATA\r\n".encode())
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        body = f"From: {sender}\r\nSubject: first\r\n\r\nbody".encode()
        c.send(body + vector + smuggled(victim))
        code, text = c.reply()
        assert code // 100 == 5 and "bare CR or LF" in text, text
        assert not c.closed(0.3) and c.buf == b""
        assert c.code("NOOP") == 250
    assert inbox_subjects(server, victim) == []
    assert server.run(server.store.list_queue()) == []


def test_smuggling_with_bdat(srv: Any) -> None:
    """In a BDAT chunk a line `.` means nothing: the chunk size frames the message, so the
    'smuggled' text is just content of one message (RFC 3030 §2), never a command."""
    rcpt = add_user(srv).address
    victim = add_user(srv).address
    data = b"Subject: first\r\n\r\nbody\r\n.\r\n" + smuggled(victim)
    with Smtp(srv.port("smtp")) as c:
        assert c.code("EHLO attacker.example") == 250
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<" + rcpt.encode() + b">\r\n" +
               f"BDAT {len(data)} LAST\r\n".encode() + data)
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 250]
        assert c.code("NOOP") == 250
    assert inbox_subjects(srv, victim) == []
    assert inbox_subjects(srv, rcpt) == [b"first"]


def test_pipelined_transaction_after_data_is_legitimate(srv: Any) -> None:
    """Control: RFC 2920 pipelining of a real second transaction after a proper CRLF.CRLF is
    two messages, as it must be (the defence only rejects bare line ends)."""
    rcpt = add_user(srv).address
    with Smtp(srv.port("smtp")) as c:
        assert c.code("EHLO client.example") == 250
        one = (b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<" + rcpt.encode() + b">\r\nDATA\r\n")
        c.send(one)
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        c.send(b"Subject: a\r\n\r\none\r\n.\r\n" + one)
        assert [c.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
        c.send(b"Subject: b\r\n\r\ntwo\r\n.\r\n")
        assert c.reply()[0] == 250
    assert sorted(inbox_subjects(srv, rcpt)) == [b"a", b"b"]


# --- STARTTLS injection ---------------------------------------------------------------------

def test_smtp_starttls_injection(srv: Any) -> None:
    rcpt = add_user(srv).address
    with Smtp(srv.port("smtp")) as c:
        assert c.code("EHLO attacker.example") == 250
        c.send(b"STARTTLS\r\nMAIL FROM:<x@remote.example>\r\nRCPT TO:<" + rcpt.encode() +
               b">\r\n")
        assert c.reply()[0] == 220
        assert c.buf == b""
        c.starttls(srv.ssl_context())
        assert not c.closed(0.5) and c.buf == b""      # the injected commands were dropped
        assert c.code("RCPT TO:<" + rcpt + ">") == 503   # no transaction, no EHLO: forgotten
        code, caps = c.cmd("EHLO attacker.example")
        assert code == 250 and "STARTTLS" not in caps
        assert c.code("STARTTLS") == 503


def test_imap_starttls_injection(srv: Any) -> None:
    """RFC 9051 §6.2.1 / PROMISES T1: `STARTTLS` and `LOGIN` in one packet: the LOGIN is
    dropped, never run inside TLS; the session is still not authenticated."""
    user = add_user(srv).address
    with Imap(srv.port("imap")) as c:
        c.send(f"a1 STARTTLS\r\na2 LOGIN {user} {PASSWORD}\r\na3 SELECT INBOX\r\n".encode())
        _, tagged = c.tagged(b"a1")
        assert tagged.startswith(b"a1 OK")
        assert c.buf == b""
        c.starttls(srv.ssl_context())
        assert not c.closed(0.5) and c.buf == b""
        status = c.status("SELECT INBOX")
        assert status.startswith((b"BAD", b"NO")), status
        untagged, tagged = c.cmd("CAPABILITY")
        assert b"STARTTLS" not in b" ".join(untagged)
        assert c.status("STARTTLS").startswith(b"BAD")
        assert c.login(user).startswith(b"OK")
        assert c.status("STARTTLS").startswith(b"BAD")     # T3: never after login


def test_pop3_stls_injection(srv: Any) -> None:
    """RFC 2595 §4 / PROMISES T1: `STLS` with USER/PASS pipelined in plaintext: dropped."""
    user = add_user(srv)
    deliver(srv, user, message("pop"))
    with Pop3(srv.port("pop3")) as c:
        c.send(f"STLS\r\nUSER {user.address}\r\nPASS {PASSWORD}\r\nSTAT\r\n".encode())
        assert c.line().startswith(b"+OK")
        assert c.buf == b""
        c.starttls(srv.ssl_context())
        assert not c.closed(0.5) and c.buf == b""
        assert c.cmd("STAT").startswith(b"-ERR")            # not logged in
        assert c.cmd("STLS").startswith(b"-ERR")            # only once
        assert c.login(user.address).startswith(b"+OK")
        assert c.cmd("STAT").startswith(b"+OK 1 ")


def test_plaintext_login_refused_without_tls(srv: Any) -> None:
    """PROMISES A1: without TLS no password is taken: IMAP LOGINDISABLED + NO
    [PRIVACYREQUIRED], POP3 -ERR, SMTP submission offers no AUTH (530 5.7.0)."""
    user = add_user(srv).address
    with Imap(srv.port("imap")) as c:
        assert b"LOGINDISABLED" in c.greeting or b"LOGINDISABLED" in b" ".join(
            c.cmd("CAPABILITY")[0])
        status = c.login(user)
        assert status.startswith(b"NO") and b"PRIVACYREQUIRED" in status
    with Pop3(srv.port("pop3")) as c:
        assert c.login(user).startswith(b"-ERR")
    with Smtp(srv.port("submission")) as c:
        code, caps = c.cmd("EHLO c")
        assert "AUTH" not in caps
        token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
        code, text = c.cmd(f"AUTH PLAIN {token}")
        assert (code, text[:5]) == (530, "5.7.0")


# --- the same trick on IMAP and POP3: message data that looks like protocol -----------------

TRICKY = (b"From: a@example.org\r\nSubject: tricky\r\n\r\nline\r\n.\r\n+OK fake end\r\n"
          b"..double\r\n.\r\nx1 LOGOUT\r\nx2 DELETE INBOX\r\n* BYE fake\r\n.")


def test_imap_append_data_is_never_a_command(srv: Any) -> None:
    """A message whose lines look like commands (and like POP3/SMTP terminators), sent with a
    synchronizing literal and with LITERAL+: stored byte for byte, nothing in it is run, and
    FETCH gives it back as one literal of its exact size."""
    user = add_user(srv)
    with Imap(srv.port("imaps"), srv.ssl_context()) as c:
        assert c.login(user.address).startswith(b"OK")
        c.send(b"a1 APPEND INBOX {%d}\r\n" % len(TRICKY))
        assert c.line().startswith(b"+")
        c.send(TRICKY + b"\r\n")
        assert c.tagged(b"a1")[1].startswith(b"a1 OK")
        c.send(b"a2 APPEND INBOX {%d+}\r\n" % len(TRICKY) + TRICKY + b"\r\n")
        assert c.tagged(b"a2")[1].startswith(b"a2 OK")
        untagged, tagged = c.cmd("SELECT INBOX")
        assert b"* 2 EXISTS" in untagged and b" OK " in tagged
        c.send(b"a3 FETCH 1:2 (BODY.PEEK[])\r\n")
        bodies = []
        while True:
            line = c.line()
            if line.startswith(b"a3 "):
                assert line.startswith(b"a3 OK")
                break
            if line.endswith(b"}"):
                size = int(line.rsplit(b"{", 1)[1][:-1])
                while len(c.buf) < size:
                    c.buf += c.sock.recv(65536)
                bodies.append(c.buf[:size])
                c.buf = c.buf[size:]
        assert bodies == [TRICKY, TRICKY]


def test_pop3_retr_of_tricky_data_ends_only_at_the_real_terminator(srv: Any) -> None:
    """RFC 1939 §3 byte-stuffing: a message with lines ".", "+OK ..." and ".." cannot end the
    multi-line answer early or fake a reply; un-stuffed it is the stored message."""
    user = add_user(srv)
    deliver(srv, user, TRICKY + b"\r\n")
    with Pop3(srv.port("pop3s"), srv.ssl_context()) as c:
        assert c.login(user.address).startswith(b"+OK")
        assert c.cmd("RETR 1").startswith(b"+OK")
        lines = c.multi()
        unstuffed = [line[1:] if line.startswith(b".") else line for line in lines]
        assert b"\r\n".join(unstuffed) + b"\r\n" == TRICKY + b"\r\n"
        assert c.cmd("NOOP").startswith(b"+OK")            # in step after the answer
        assert c.cmd("TOP 1 3").startswith(b"+OK")
        top = c.multi()
        assert top[-3:] == [b"line", b"..", b"+OK fake end"]
        assert c.cmd("NOOP").startswith(b"+OK")
