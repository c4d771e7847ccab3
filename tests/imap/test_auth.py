"""Connection set-up and authentication over real sockets: greeting, CAPABILITY, STARTTLS
(RFC 9051 §6.2.1, PROMISES T1/T3), LOGINDISABLED and PRIVACYREQUIRED (PROMISES A1), LOGIN,
AUTHENTICATE PLAIN/LOGIN with SASL-IR (RFC 4959), ID, ENABLE, NAMESPACE, LOGOUT."""

from __future__ import annotations

import base64
import imaplib
import ssl
import time

import pytest
from imapclient import IMAPClient

from casella.imap import session as imap_session
from tests.imap.util import PASSWORD, TIMEOUT, Raw, imapclient_login, imaplib_login, new_user


def caps(line: bytes) -> set[str]:
    start = line.index(b"[CAPABILITY ") + len(b"[CAPABILITY ")
    return set(line[start:line.index(b"]", start)].decode().split())


def test_greeting_plain_port_has_logindisabled(srv) -> None:
    """PROMISES A1: before TLS no password mechanism; STARTTLS and LOGINDISABLED offered."""
    raw = Raw(srv, tls=False)
    got = caps(raw.greeting)
    assert {"IMAP4rev1", "IMAP4rev2", "STARTTLS", "LOGINDISABLED"} <= got
    assert not any(c.startswith("AUTH=") for c in got)
    lines = raw.ok("CAPABILITY")
    assert lines[0].startswith(b"* CAPABILITY ") and b"LOGINDISABLED" in lines[0]
    raw.close()


def test_implicit_tls_greeting(srv) -> None:
    raw = Raw(srv, tls=True)
    got = caps(raw.greeting)
    expected = {"IMAP4rev1", "IMAP4rev2", "IDLE", "UIDPLUS", "MOVE", "LITERAL+", "NAMESPACE",
                "ID", "ENABLE", "UNSELECT", "CHILDREN", "SPECIAL-USE", "SASL-IR", "AUTH=PLAIN",
                "AUTH=LOGIN"}
    assert expected <= got
    assert "STARTTLS" not in got and "LOGINDISABLED" not in got
    raw.close()


def test_login_before_tls_is_refused(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv, tls=False)
    _, tagged = raw.command(f'LOGIN "{acct.address}" "{PASSWORD}"')
    assert tagged.startswith(b"t1 NO [PRIVACYREQUIRED]")
    _, tagged = raw.command("AUTHENTICATE PLAIN " + base64.b64encode(
        f"\0{acct.address}\0{PASSWORD}".encode()).decode())
    assert tagged.startswith(b"t2 NO [PRIVACYREQUIRED]")
    # The session survives and STARTTLS then LOGIN works.
    raw.starttls()
    lines = raw.ok("CAPABILITY")
    got = set(lines[0].split()[2:])
    assert b"STARTTLS" not in got and b"LOGINDISABLED" not in got and b"AUTH=PLAIN" in got
    raw.login(acct)
    raw.close()


def test_starttls_discards_pipelined_plaintext(srv) -> None:
    """PROMISES T1: commands sent after STARTTLS in the same packet never run inside TLS."""
    acct = new_user(srv)
    raw = Raw(srv, tls=False)
    raw.send(b"s1 STARTTLS\r\ns2 LOGIN " + acct.address.encode() + b" secret\r\n")
    assert raw.line().startswith(b"s1 OK")
    raw.sock = srv.ssl_context().wrap_socket(raw.sock)
    raw.buf = b""
    lines, tagged = raw.command("NOOP", tag="n1")
    assert tagged.startswith(b"n1 OK") and not any(b"s2" in x for x in lines)
    _, tagged = raw.command("SELECT INBOX")
    assert b"BAD" in tagged   # still not logged in
    _, tagged = raw.command("STARTTLS")
    assert b"BAD" in tagged   # T3/T2: no second STARTTLS
    raw.close()


def test_starttls_not_after_login(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv, tls=True)
    raw.login(acct)
    _, tagged = raw.command("STARTTLS")
    assert b" BAD " in tagged
    raw.close()


def test_imaplib_starttls_and_implicit(srv) -> None:
    acct = new_user(srv)
    for tls in ("starttls", "implicit"):
        m = imaplib_login(srv, acct, tls=tls)
        assert "IDLE" in m.capabilities or m.capability()[0] == "OK"
        typ, data = m.namespace()
        assert typ == "OK" and data[0] == b'(("" "/")) NIL NIL'
        assert m.logout()[0] == "BYE"


def test_imapclient_starttls_and_implicit(srv) -> None:
    acct = new_user(srv)
    for tls in ("starttls", "implicit"):
        c = imapclient_login(srv, acct, tls=tls)
        assert c.has_capability("MOVE")
        assert c.namespace().personal == (("", "/"),)
        c.logout()


def test_plaintext_allowed_by_config(make_server) -> None:
    server = make_server(auth={"allow_plaintext_without_tls": True})
    acct = new_user(server)
    raw = Raw(server, tls=False)
    got = caps(raw.greeting)
    assert "LOGINDISABLED" not in got and "AUTH=PLAIN" in got and "STARTTLS" in got
    raw.login(acct)
    raw.close()


def test_bad_credentials(srv) -> None:
    """Same answer for a wrong password and an unknown user (PROMISES A3)."""
    acct = new_user(srv)
    raw = Raw(srv)
    _, t1 = raw.command(f'LOGIN "{acct.address}" "wrong"')
    _, t2 = raw.command('LOGIN "nobody@example.test" "wrong"')
    assert t1.split(b" ", 1)[1] == t2.split(b" ", 1)[1] == \
        b"NO [AUTHENTICATIONFAILED] Authentication failed"
    raw.login(acct)   # the session survived
    raw.close()
    c = IMAPClient("127.0.0.1", srv.port("imaps"), ssl_context=srv.ssl_context(),
                   timeout=TIMEOUT)
    with pytest.raises(IMAPClient.Error):
        c.login(acct.address, "nope")
    c.login(acct.address, PASSWORD)
    c.logout()


def test_too_many_failed_logins_disconnects(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    for _ in range(imap_session.MAX_AUTH_FAILURES - 1):
        _, tagged = raw.command(f'LOGIN "{acct.address}" "y"')
        assert b"AUTHENTICATIONFAILED" in tagged
    raw.send(b"z LOGIN " + acct.address.encode() + b" y\r\n")
    assert raw.line().startswith(b"z NO")
    assert raw.line().startswith(b"* BYE")
    assert raw.closed()


def test_authenticate_plain_with_and_without_initial_response(srv) -> None:
    acct = new_user(srv)
    token = base64.b64encode(f"\0{acct.address}\0{PASSWORD}".encode())
    raw = Raw(srv)
    _, tagged = raw.command(b"AUTHENTICATE PLAIN " + token)   # SASL-IR
    assert tagged.startswith(b"t1 OK [CAPABILITY ")
    raw.close()
    raw = Raw(srv)
    raw.send(b"a AUTHENTICATE PLAIN\r\n")
    assert raw.line() == b"+ "
    raw.send(token + b"\r\n")
    assert raw.line().startswith(b"a OK")
    raw.close()


def test_authenticate_login_mechanism(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.send(b"a AUTHENTICATE LOGIN\r\n")
    assert base64.b64decode(raw.line()[2:]) == b"Username:"
    raw.send(base64.b64encode(acct.address.encode()) + b"\r\n")
    assert base64.b64decode(raw.line()[2:]) == b"Password:"
    raw.send(base64.b64encode(PASSWORD.encode()) + b"\r\n")
    assert raw.line().startswith(b"a OK")
    raw.close()


def test_authenticate_cancel_garbage_and_authzid(srv) -> None:
    acct = new_user(srv)
    other = new_user(srv)
    raw = Raw(srv)
    raw.send(b"a AUTHENTICATE PLAIN\r\n")
    raw.line()
    raw.send(b"*\r\n")
    assert raw.line().startswith(b"a BAD")         # RFC 9051 §6.2.2: cancelled
    raw.send(b"b AUTHENTICATE PLAIN\r\n")
    raw.line()
    raw.send(b"!!!!\r\n")
    assert raw.line().startswith(b"b BAD")
    _, tagged = raw.command("AUTHENTICATE CRAM-MD5")
    assert b" NO " in tagged
    # PROMISES A4: acting as somebody else is refused.
    token = base64.b64encode(f"{other.address}\0{acct.address}\0{PASSWORD}".encode())
    _, tagged = raw.command(b"AUTHENTICATE PLAIN " + token)
    assert b"NO [AUTHENTICATIONFAILED]" in tagged
    raw.close()


def test_imaplib_authenticate_plain(srv) -> None:
    acct = new_user(srv)
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ssl_context(),
                          timeout=TIMEOUT)
    typ, _ = m.authenticate("PLAIN", lambda _: f"\0{acct.address}\0{PASSWORD}".encode())
    assert typ == "OK"
    m.logout()


def test_id_enable_namespace_noop_logout(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    lines = raw.ok('ID ("name" "test-client" "version" "1")')
    assert lines[0].startswith(b'* ID ("name" "casella"')
    assert raw.ok("ID NIL")
    _, tagged = raw.command("ENABLE IMAP4rev2")
    assert b" BAD " in tagged                      # not before login
    raw.login(acct)
    assert raw.ok("ENABLE IMAP4rev2 FOO") == [b"* ENABLED IMAP4rev2"]
    assert raw.ok("ENABLE IMAP4rev2") == [b"* ENABLED"]
    assert raw.ok("NAMESPACE") == [b'* NAMESPACE (("" "/")) NIL NIL']
    raw.ok("NOOP")
    lines, tagged = raw.command("LOGOUT")
    assert lines == [b"* BYE Logging out"] and tagged.startswith(b"t")
    assert raw.closed()


def test_wrong_state_commands(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    for command in ("SELECT INBOX", "LIST \"\" *", "FETCH 1 FLAGS", "EXPUNGE", "IDLE"):
        _, tagged = raw.command(command)
        assert b" BAD " in tagged, command
    raw.login(acct)
    for command in ("FETCH 1 FLAGS", "STORE 1 +FLAGS (\\Seen)", "EXPUNGE", "CLOSE", "CHECK",
                    "SEARCH ALL", "COPY 1 Trash", "UNSELECT"):
        _, tagged = raw.command(command)
        assert tagged.split(b" ", 2)[1] == b"BAD" and b"No mailbox selected" in tagged
    _, tagged = raw.command(f'LOGIN "{acct.address}" "{PASSWORD}"')
    assert b"BAD" in tagged
    raw.ok("SELECT INBOX")
    _, tagged = raw.command("ENABLE IMAP4rev2")
    assert b"BAD" in tagged
    raw.close()


def test_pre_auth_timeout(make_server) -> None:
    """An idle unauthenticated connection is closed with BYE (PROMISES P4, imap.login_timeout)."""
    server = make_server(imap={"login_timeout": 1})
    raw = Raw(server)
    time.sleep(0.2)
    assert raw.line().startswith(b"* BYE")
    assert raw.closed()


def test_autologout_after_login(make_server) -> None:
    """imap.idle_timeout: RFC 9051 §5.4 autologout."""
    server = make_server(imap={"idle_timeout": 1})
    acct = new_user(server)
    raw = Raw(server)
    raw.login(acct)
    assert raw.line().startswith(b"* BYE Autologout")
    assert raw.closed()


def test_tls_handshake_garbage_does_not_hurt(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv, tls=False)
    raw.send(b"a STARTTLS\r\n")
    assert raw.line().startswith(b"a OK")
    raw.send(b"this is not TLS\r\n" * 10)
    assert raw.closed()
    m = imaplib_login(srv, acct)
    m.logout()


def test_server_shutdown_says_bye(make_server) -> None:
    server = make_server()
    acct = new_user(server)
    raw = Raw(server)
    raw.login(acct)
    server.stop()
    assert raw.line().startswith(b"* BYE")
    assert raw.closed()


def test_ssl_context_is_the_generated_cert(srv) -> None:
    ctx = ssl.create_default_context(cafile=str(srv.cafile))
    ctx.check_hostname = False
    m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=ctx, timeout=TIMEOUT)
    m.logout()
