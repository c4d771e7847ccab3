"""POP3 sessions over real sockets: every command in every state, authentication, STLS,
implicit TLS, limits and bad input (RFC 1939, RFC 2449, RFC 5034, RFC 2595)."""

from __future__ import annotations

import base64
import poplib
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pop3.util import Raw, add_user, login

USER = "user@example.test"


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


# --- every command in every state ----------------------------------------------------------

AUTHORIZATION_TABLE = [
    (b"STAT", b"-ERR STAT is only valid after logging in"),
    (b"LIST", b"-ERR LIST is only valid after logging in"),
    (b"LIST 1", b"-ERR LIST is only valid after logging in"),
    (b"UIDL", b"-ERR UIDL is only valid after logging in"),
    (b"UIDL 1", b"-ERR UIDL is only valid after logging in"),
    (b"RETR 1", b"-ERR RETR is only valid after logging in"),
    (b"TOP 1 0", b"-ERR TOP is only valid after logging in"),
    (b"DELE 1", b"-ERR DELE is only valid after logging in"),
    (b"NOOP", b"-ERR NOOP is only valid after logging in"),
    (b"RSET", b"-ERR RSET is only valid after logging in"),
    (b"PASS secret", b"-ERR Send USER before PASS."),
    (b"APOP user@example.test c4c9334bac560ecc979e58001b3e22fb", b"-ERR APOP is not available"),
    (b"AUTH CRAM-MD5", b"-ERR Unsupported authentication mechanism CRAM-MD5"),
    (b"XTND XMIT", b"-ERR Unknown command: XTND"),
    (b"RETR", b"-ERR RETR needs an argument"),
    (b"USER", b"-ERR USER needs an argument"),
    (b"USER " + b"a" * 300, b"-ERR Command line too long"),
    (b"USER x", b"+OK"),
]


@pytest.mark.parametrize("line,reply", AUTHORIZATION_TABLE,
                         ids=[t[0][:20].decode() for t in AUTHORIZATION_TABLE])
def test_authorization_state_commands(fresh: tuple[Any, str], line: bytes, reply: bytes
                                      ) -> None:
    """RFC 1939 §4: only USER/PASS/APOP/AUTH/CAPA/STLS/QUIT before login; errors keep the
    session going."""
    srv, _ = fresh
    c = Raw(srv.port("pop3"))
    assert c.greeting.startswith(b"+OK")
    assert c.cmd(line).startswith(reply)
    assert c.cmd(b"CAPA") == b"+OK Capability list follows."
    assert b"USER" in c.multi()
    assert c.cmd(b"QUIT") == b"+OK Logging out."
    assert c.closed()


TRANSACTION_TABLE = [
    (b"USER x", b"-ERR USER is not valid after logging in"),
    (b"PASS x", b"-ERR PASS is not valid after logging in"),
    (b"APOP x y", b"-ERR APOP is not valid after logging in"),
    (b"AUTH PLAIN", b"-ERR AUTH is not valid after logging in"),
    (b"STLS", b"-ERR STLS is only valid before logging in."),
    (b"STAT", b"+OK 3 "),
    (b"LIST 2", b"+OK 2 "),
    (b"LIST 4", b"-ERR There is no message 4."),
    (b"LIST 0", b"-ERR There is no message 0."),
    (b"LIST x", b"-ERR LIST needs a message number as a number"),
    (b"UIDL 1", b"+OK 1 00000001"),
    (b"UIDL 9", b"-ERR There is no message 9."),
    (b"RETR 4", b"-ERR There is no message 4."),
    (b"RETR", b"-ERR RETR needs an argument"),
    (b"TOP 1", b"-ERR TOP needs an argument"),
    (b"TOP 1 -2", b"-ERR TOP needs a non-negative line count"),
    (b"TOP 7 0", b"-ERR There is no message 7."),
    (b"DELE 4", b"-ERR There is no message 4."),
    (b"DELE", b"-ERR DELE needs an argument"),
    (b"NOOP", b"+OK"),
    (b"NOOP 1", b"-ERR Too many arguments for NOOP"),
    (b"RSET", b"+OK Maildrop has 3 messages"),
    (b"LAST", b"-ERR Unknown command: LAST"),
    (b"\x00\xff", b"-ERR Unknown command"),
]


@pytest.mark.parametrize("line,reply", TRANSACTION_TABLE,
                         ids=[t[0][:20].decode("latin-1") for t in TRANSACTION_TABLE])
def test_transaction_state_commands(fresh: tuple[Any, str], line: bytes, reply: bytes
                                    ) -> None:
    """RFC 1939 §5: TRANSACTION commands; AUTHORIZATION commands are refused after login;
    the session continues after every -ERR and nothing is deleted."""
    srv, user = fresh
    c = Raw(srv.port("pop3"))
    assert c.login(user).startswith(b"+OK Logged in")
    assert c.cmd(line).startswith(reply)
    assert c.cmd(b"STAT").startswith(b"+OK 3 ")
    assert c.cmd(b"QUIT") == b"+OK Logging out."
    assert c.closed()
    c2 = Raw(srv.port("pop3"))
    c2.login(user)
    assert c2.cmd(b"STAT").startswith(b"+OK 3 ")


def test_transaction_multiline_commands(plain: Any) -> None:
    """LIST, UIDL, RETR, TOP and CAPA with their multi-line answers (RFC 1939 §7, RFC 2449)."""
    c = Raw(plain.port("pop3"))
    c.login(plain.user)
    stat = c.cmd(b"STAT").split()
    n, octets = int(stat[1]), int(stat[2])
    assert c.cmd(b"LIST").startswith(b"+OK 3 messages")
    listing = c.multi()
    assert [int(l.split()[0]) for l in listing] == [1, 2, 3]
    assert sum(int(l.split()[1]) for l in listing) == octets and n == 3
    assert c.cmd(b"UIDL") == b"+OK"
    uidls = c.multi()
    assert len(uidls) == 3 and all(len(l.split()[1]) == 16 for l in uidls)
    size1 = int(listing[0].split()[1])
    assert c.cmd(b"RETR 1") == b"+OK %d octets" % size1
    body = c.multi()
    assert sum(len(l) + 2 for l in body) == size1
    assert c.cmd(b"TOP 1 0").startswith(b"+OK")
    top = c.multi()
    assert top[-1] == b"" and b"Subject: m0" in top
    assert c.cmd(b"CAPA").startswith(b"+OK")
    caps = c.multi()
    assert b"TOP" in caps and b"UIDL" in caps and b"STLS" not in caps and b"USER" not in caps
    assert c.cmd(b"QUIT") == b"+OK Logging out."


def test_dele_rset_and_deleted_messages_refused(plain: Any) -> None:
    """RFC 1939 §5: a deleted message may not be referred to; STAT/LIST leave it out; RSET
    unmarks; without QUIT nothing is removed."""
    c = Raw(plain.port("pop3"))
    c.login(plain.user)
    total = int(c.cmd(b"STAT").split()[2])
    size2 = int(c.cmd(b"LIST 2").split()[2])
    assert c.cmd(b"DELE 2") == b"+OK Message 2 marked for deletion."
    assert c.cmd(b"DELE 2") == b"-ERR Message 2 is already deleted."
    for cmd in (b"RETR 2", b"TOP 2 1", b"LIST 2", b"UIDL 2"):
        assert c.cmd(cmd) == b"-ERR Message 2 is marked as deleted.", cmd
    assert c.cmd(b"STAT") == b"+OK 2 %d" % (total - size2)
    assert c.cmd(b"LIST").startswith(b"+OK 2 messages")
    assert [l.split()[0] for l in c.multi()] == [b"1", b"3"]
    c.cmd(b"UIDL")
    assert [l.split()[0] for l in c.multi()] == [b"1", b"3"]
    assert c.cmd(b"RSET") == b"+OK Maildrop has 3 messages (%d octets)." % total
    assert c.cmd(b"RETR 2").startswith(b"+OK")
    c.multi()
    c.close()


def test_quit_closes_and_update_state(plain: Any) -> None:
    """RFC 1939 §6: QUIT in TRANSACTION enters UPDATE, replies, and closes."""
    c = Raw(plain.port("pop3"))
    c.login(plain.user)
    c.cmd(b"DELE 1")
    assert c.cmd(b"QUIT") == b"+OK Logging out, 1 message deleted."
    assert c.closed()


# --- poplib over plain, STLS and implicit TLS ----------------------------------------------


@pytest.mark.parametrize("tls", ["none", "stls", "implicit"])
def test_poplib_download(plain: Any, tls: str) -> None:
    """Python's poplib over each transport: STAT, LIST, UIDL, RETR, TOP, DELE, QUIT."""
    c = login(plain, plain.user, tls=tls)
    count, size = c.stat()
    assert count == 3
    _resp, listing, _ = c.list()
    assert sum(int(l.split()[1]) for l in listing) == size
    _, uidls, _ = c.uidl()
    assert len({l.split()[1] for l in uidls}) == 3
    _, msg, _octets = c.retr(2)
    assert b"Subject: m1" in msg
    _, top, _ = c.top(3, 0)
    assert top[-1] == b"" and b"Subject: m2" in top
    assert c.dele(1).startswith(b"+OK")
    assert c.quit().startswith(b"+OK")
    c2 = login(plain, plain.user, tls=tls)
    assert c2.stat()[0] == 2
    c2.quit()


def test_poplib_capa_pre_and_post_tls(tls_only: Any) -> None:
    """Without TLS and with plaintext refused (the default), CAPA offers STLS but neither USER
    nor SASL; after STLS it offers USER and SASL PLAIN LOGIN and no STLS (RFC 2595 §4)."""
    c = poplib.POP3("127.0.0.1", tls_only.port("pop3"), timeout=10)
    caps = c.capa()
    assert "STLS" in caps and "USER" not in caps and "SASL" not in caps
    for name in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE",
                 "IMPLEMENTATION"):
        assert name in caps
    # RFC 2449 §6.7: "USER" before login, since an account may choose its own expiry.
    assert caps["EXPIRE"] == ["NEVER", "USER"]
    c.stls(tls_only.ssl_context())
    caps = c.capa()
    assert "STLS" not in caps and "USER" in caps and caps["SASL"] == ["PLAIN", "LOGIN"]
    c.user(tls_only.user)
    assert c.pass_("secret").startswith(b"+OK")
    c.quit()


def test_plaintext_refused_before_tls(tls_only: Any) -> None:
    """PROMISES A1: USER/PASS and AUTH are refused before TLS with an [AUTH] sentence."""
    c = Raw(tls_only.port("pop3"))
    for line in (b"USER " + tls_only.user.encode(), b"PASS secret", b"AUTH PLAIN",
                 b"AUTH PLAIN " + b64(b"\0" + tls_only.user.encode() + b"\0secret"), b"AUTH"):
        reply = c.cmd(line)
        assert reply.startswith(b"-ERR [AUTH] Plaintext authentication is not allowed"), line
    assert c.cmd(b"STAT").startswith(b"-ERR")
    assert c.cmd(b"STLS") == b"+OK Begin TLS negotiation now."
    c.starttls(tls_only.ssl_context())
    assert c.login(tls_only.user).startswith(b"+OK Logged in")
    assert c.cmd(b"QUIT").startswith(b"+OK")


def test_implicit_tls_pop3s(tls_only: Any) -> None:
    """pop3s: TLS from the first byte; no STLS offered; login allowed at once."""
    c = login(tls_only, tls_only.user, tls="implicit")
    assert "STLS" not in c.capa()
    assert c.stat()[0] == 1
    with pytest.raises(poplib.error_proto):
        c._shortcmd("STLS")  # RFC 2595: no STLS on an encrypted connection
    c.quit()


def test_stls_twice_refused(tls_only: Any) -> None:
    c = Raw(tls_only.port("pop3"))
    assert c.cmd(b"STLS").startswith(b"+OK")
    c.starttls(tls_only.ssl_context())
    assert c.cmd(b"STLS") == b"-ERR TLS is already active on this connection."


def test_stls_discards_pipelined_plaintext(tls_only: Any) -> None:
    """PROMISES T1: `STLS\\r\\nCAPA\\r\\n` in one packet: the CAPA is never answered inside TLS."""
    c = Raw(tls_only.port("pop3"))
    c.send(b"STLS\r\nCAPA\r\n")
    assert c.line() == b"+OK Begin TLS negotiation now."
    c.starttls(tls_only.ssl_context())
    assert c.buf == b""
    # The first answer inside TLS is NOOP's: the pipelined CAPA was thrown away.
    assert c.cmd(b"NOOP").startswith(b"-ERR NOOP is only valid after logging in")
    c.sock.settimeout(0.3)
    with pytest.raises((socket.timeout, TimeoutError, ssl.SSLError)):
        c.line()


# --- authentication ------------------------------------------------------------------------


def test_same_answer_unknown_user_and_wrong_password(plain: Any) -> None:
    """PROMISES A3: USER always +OK; unknown user and wrong password get the same -ERR [AUTH]."""
    c = Raw(plain.port("pop3"))
    assert c.cmd(b"USER nobody@example.test") == b"+OK"
    unknown = c.cmd(b"PASS secret")
    assert c.cmd(b"USER " + plain.user.encode()) == b"+OK"
    wrong = c.cmd(b"PASS wrong")
    assert unknown == wrong == b"-ERR [AUTH] Authentication failed."
    assert c.cmd(b"USER nodomain") == b"+OK"
    assert c.cmd(b"PASS x") == unknown
    assert c.login(plain.user).startswith(b"+OK Logged in")


def test_too_many_auth_failures_close(plain: Any) -> None:
    c = Raw(plain.port("pop3"))
    for _ in range(4):
        c.cmd(b"USER " + plain.user.encode())
        assert c.cmd(b"PASS bad") == b"-ERR [AUTH] Authentication failed."
    c.cmd(b"USER " + plain.user.encode())
    assert c.cmd(b"PASS bad") == b"-ERR [AUTH] Authentication failed."
    assert c.line() == b"-ERR [AUTH] Too many failed logins; closing."
    assert c.closed()


def test_password_with_spaces(make_server: Callable[..., Any]) -> None:
    """RFC 1939 §7 PASS: spaces belong to the password."""
    srv = make_server(auth={"allow_plaintext_without_tls": True})
    add_user(srv, USER, password="correct horse battery staple")
    c = Raw(srv.port("pop3"))
    assert c.login(USER, "correct horse battery staple").startswith(b"+OK Logged in")


def test_auth_plain_with_initial_response(plain: Any) -> None:
    """RFC 5034 §4 with an initial response."""
    c = Raw(plain.port("pop3"))
    reply = c.cmd(b"AUTH PLAIN " + b64(b"\0" + plain.user.encode() + b"\0secret"))
    assert reply.startswith(b"+OK Logged in: 3 messages")


def test_auth_plain_with_authzid_of_self(plain: Any) -> None:
    c = Raw(plain.port("pop3"))
    reply = c.cmd(b"AUTH PLAIN " + b64(plain.user.encode() + b"\0" + plain.user.encode() + b"\0secret"))
    assert reply.startswith(b"+OK Logged in")


def test_auth_plain_as_someone_else_fails(plain: Any) -> None:
    """PROMISES A4: an authzid other than the user fails like a wrong password."""
    add_user(plain, "other@example.test")
    c = Raw(plain.port("pop3"))
    reply = c.cmd(b"AUTH PLAIN " + b64(b"other@example.test\0" + plain.user.encode() + b"\0secret"))
    assert reply == b"-ERR [AUTH] Authentication failed."


def test_auth_plain_challenge_and_cancel(plain: Any) -> None:
    """RFC 5034 §4: "+ " continuation, "*" cancels with -ERR, the session goes on."""
    c = Raw(plain.port("pop3"))
    assert c.cmd(b"AUTH PLAIN") == b"+ "
    assert c.cmd(b"*") == b"-ERR Authentication cancelled."
    assert c.cmd(b"AUTH PLAIN") == b"+ "
    assert c.cmd(b"not base64!").startswith(b"-ERR Authentication exchange failed")
    assert c.cmd(b"AUTH PLAIN") == b"+ "
    assert c.cmd(b64(b"\0" + plain.user.encode() + b"\0wrong")) == b"-ERR [AUTH] Authentication failed."
    assert c.cmd(b"AUTH PLAIN") == b"+ "
    assert c.cmd(b64(b"\0" + plain.user.encode() + b"\0secret")).startswith(b"+OK Logged in")


def test_auth_login_both_ways(plain: Any) -> None:
    """LOGIN with and without an initial response (the user name)."""
    c = Raw(plain.port("pop3"))
    assert c.cmd(b"AUTH LOGIN") == b"+ " + b64(b"Username:")
    assert c.cmd(b64(plain.user.encode())) == b"+ " + b64(b"Password:")
    assert c.cmd(b64(b"secret")).startswith(b"+OK Logged in")
    c.cmd(b"QUIT")
    c2 = Raw(plain.port("pop3"))
    assert c2.cmd(b"AUTH LOGIN " + b64(plain.user.encode())) == b"+ " + b64(b"Password:")
    assert c2.cmd(b64(b"secret")).startswith(b"+OK Logged in")


def test_auth_long_continuation_line_allowed(make_server: Callable[..., Any]) -> None:
    """RFC 5034 §4: a client response may exceed the 255-octet command limit."""
    srv = make_server(auth={"allow_plaintext_without_tls": True})
    long_password = "p" * 600
    add_user(srv, USER, password=long_password)
    c = Raw(srv.port("pop3"))
    assert c.cmd(b"AUTH PLAIN") == b"+ "
    assert c.cmd(b64(b"\0" + USER.encode() + b"\0" + long_password.encode())).startswith(
        b"+OK Logged in")


def test_bare_auth_lists_mechanisms(plain: Any) -> None:
    c = Raw(plain.port("pop3"))
    assert c.cmd(b"AUTH") == b"+OK"
    assert c.multi() == [b"PLAIN", b"LOGIN"]


def test_second_session_gets_in_use(plain: Any) -> None:
    """RFC 2449 §8.1.2: one POP3 session per maildrop; the second gets -ERR [IN-USE] and may
    log in once the first has ended."""
    first = Raw(plain.port("pop3"))
    first.login(plain.user)
    second = Raw(plain.port("pop3s"), plain.ssl_context())
    reply = second.login(plain.user)
    assert reply.startswith(b"-ERR [IN-USE] ")
    assert second.cmd(b"STAT").startswith(b"-ERR")  # still in AUTHORIZATION
    first.cmd(b"QUIT")
    assert first.closed()
    assert second.login(plain.user).startswith(b"+OK Logged in")


def test_lock_released_when_connection_drops(plain: Any) -> None:
    first = Raw(plain.port("pop3"))
    first.login(plain.user)
    first.close()
    for _ in range(50):
        c = Raw(plain.port("pop3"))
        reply = c.login(plain.user)
        if reply.startswith(b"+OK"):
            return
        assert reply.startswith(b"-ERR [IN-USE]")
        c.close()
        time.sleep(0.1)
    pytest.fail("lock never released")


# --- limits and bad input ------------------------------------------------------------------


def test_command_line_limit(plain: Any) -> None:
    """RFC 2449 §4: 255 octets including CRLF; longer is refused and the session continues,
    also for lines far beyond the read buffer."""
    c = Raw(plain.port("pop3"))
    assert c.cmd(b"USER " + b"a" * 248) == b"+OK"
    assert c.cmd(b"USER " + b"a" * 249).startswith(b"-ERR Command line too long (256 octets")
    assert c.cmd(b"NOOP" + b" " * 20000).startswith(b"-ERR Command line too long")
    assert c.login(plain.user).startswith(b"+OK Logged in")


def test_too_many_bad_commands_disconnect(plain: Any) -> None:
    """PROMISES P5: repeated protocol errors end the connection (`[pop3] max_bad_commands`)."""
    c = Raw(plain.port("pop3"))
    for i in range(plain.config.pop3.max_bad_commands - 1):
        assert c.cmd(b"BOGUS").startswith(b"-ERR Unknown command")
    assert c.cmd(b"BOGUS").startswith(b"-ERR Unknown command")
    assert c.line() == b"-ERR Too many bad commands; closing."
    assert c.closed()


def test_pipelining(plain: Any) -> None:
    """RFC 2449 §6.6 PIPELINING: many commands in one packet, answered in order."""
    c = Raw(plain.port("pop3"))
    c.send(b"USER " + plain.user.encode() + b"\r\nPASS secret\r\nSTAT\r\nLIST 1\r\nUIDL 2\r\n"
           b"RETR 3\r\nNOOP\r\nQUIT\r\n")
    assert c.line() == b"+OK"
    assert c.line().startswith(b"+OK Logged in")
    assert c.line().startswith(b"+OK 3 ")
    assert c.line().startswith(b"+OK 1 ")
    assert c.line().startswith(b"+OK 2 ")
    assert c.line().startswith(b"+OK ") and b"Subject: m2" in c.multi()
    assert c.line() == b"+OK"
    assert c.line() == b"+OK Logging out."


def test_expire_capability(make_server: Callable[..., Any]) -> None:
    """RFC 2449 §6.7: EXPIRE n when pop3.expire_days is set."""
    srv = make_server(auth={"allow_plaintext_without_tls": True}, pop3={"expire_days": 30})
    c = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
    assert c.capa()["EXPIRE"] == ["30", "USER"]


def test_account_policy_overrides_the_config(make_server: Callable[..., Any]) -> None:
    """Issue 18: an account's own POP3 policy (customer page) beats `[pop3] delete` and
    `expire_days`; after login CAPA lists the account's own EXPIRE (RFC 2449 §6.7)."""
    import imaplib

    srv = make_server(auth={"allow_plaintext_without_tls": True}, pop3={"expire_days": 30})
    srv.add_user("own@example.test", "secret")
    srv.run(srv.store.set_pop3_policy("own@example.test", "hide", 0))
    for n in (1, 2):
        c = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
        c.login("own@example.test", "secret")
        c.append("INBOX", None, None, b"Subject: m%d\r\n\r\nbody\r\n" % n)
        c.logout()
    p = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
    p.user("own@example.test")
    p.pass_("secret")
    assert p.capa()["EXPIRE"] == ["NEVER"]
    p.dele(1)
    p.quit()
    p = poplib.POP3("127.0.0.1", srv.port("pop3"), timeout=10)
    p.user("own@example.test")
    p.pass_("secret")
    assert p.stat()[0] == 1          # hidden from POP3 ...
    p.quit()
    c = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
    c.login("own@example.test", "secret")
    assert c.select("INBOX")[1] == [b"2"]   # ... but kept for IMAP
    c.logout()


def test_refuse_line(plain: Any) -> None:
    from casella.pop3.server import services
    svc = services(plain.app)["pop3"]
    assert svc.refuse(None, "too many connections") == \
        b"-ERR [IN-USE] Too many connections; try again later.\r\n"  # type: ignore[arg-type]


def test_idle_timeout_logs_out_without_update(make_server: Any) -> None:
    """RFC 1939 §3: the autologout timer closes the session without entering UPDATE (the
    real timer is 10 minutes, `[pop3] idle_timeout`; shortened here)."""
    from tests.pop3.util import deliver_all, message
    srv = make_server(auth={"allow_plaintext_without_tls": True}, pop3={"idle_timeout": 1})
    deliver_all(srv, add_user(srv, USER), [message(f"m{i}") for i in range(3)])
    c = Raw(srv.port("pop3"))
    c.login(USER)
    c.cmd(b"DELE 1")
    assert c.line() == b"-ERR Disconnected for inactivity."
    assert c.closed()
    again = Raw(srv.port("pop3"))
    for _ in range(50):
        reply = again.login(USER)
        if reply.startswith(b"+OK"):
            break
        time.sleep(0.1)
    assert again.cmd(b"STAT").startswith(b"+OK 3 ")


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b"")),
                min_size=1, max_size=8))
def test_random_lines_always_get_one_status_line(shared_plain: Any, lines: list[bytes]) -> None:
    """Whatever arrives, each line gets one +OK, -ERR or SASL "+ " line and the server stays
    up (a new connection still gets a greeting)."""
    c = Raw(shared_plain.port("pop3"))
    try:
        for line in lines:
            try:
                reply = c.cmd(line)
            except EOFError:
                break  # closed after too many bad commands or QUIT
            assert reply.startswith((b"+OK", b"-ERR", b"+ ")), (line, reply)
            if reply.startswith(b"+OK Begin TLS"):
                break  # the rest would be read as a TLS handshake
            if reply.startswith(b"+OK") and line[:4].upper() in (b"CAPA", b"AUTH"):
                c.multi()
    finally:
        c.close()
    assert Raw(shared_plain.port("pop3")).greeting.startswith(b"+OK")
