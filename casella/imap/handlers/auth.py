"""Commands of any state and of the not-authenticated state: CAPABILITY, NOOP, LOGOUT, ID,
STARTTLS, AUTHENTICATE, LOGIN, and ENABLE (RFC 9051 §6.1, §6.2, §6.3.1; RFC 2971; RFC 4959).

Must never: log or keep a password, or answer a login before the authenticator's failure delay.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from casella import __version__
from casella.auth import sasl
from casella.imap import commands as c
from casella.imap import responses as r
from casella.imap.errors import Bad, Bye, No
from casella.imap.session import MAX_AUTH_FAILURES, PRE_AUTH_TIMEOUT, Done

if TYPE_CHECKING:
    from casella.imap.session import Session

log = logging.getLogger("casella.imap")


async def capability(s: Session, tag: str, cmd: c.Capability) -> Done:
    s.write(r.untagged(b"CAPABILITY", " ".join(s.capability_list()).encode("ascii")))
    return Done("CAPABILITY completed")


async def noop(s: Session, tag: str, cmd: c.Noop) -> Done:
    return Done("NOOP completed")


async def logout(s: Session, tag: str, cmd: c.Logout) -> Done:
    s.write(r.status("*", "BYE", "Logging out"))
    s.ending = True
    return Done("LOGOUT completed")


async def id_(s: Session, tag: str, cmd: c.Id) -> Done:
    if cmd.params:
        s.client_id = " ".join(f"{k}={v}" for k, v in cmd.params if v)[:200]
        log.info("client id: %s", s.client_id, extra=s.log_extra())
    s.write(r.untagged(b"ID", b'("name" "casella" "version" ' +
                       r.string(__version__.encode("ascii")) + b")"))
    return Done("ID completed")


async def starttls(s: Session, tag: str, cmd: c.StartTLS) -> None:
    if s.conn.tls:
        raise Bad("TLS is already active")
    s.write(r.status(tag, "OK", "Begin TLS negotiation now"))
    await s.flush()
    # Everything the client pipelined after STARTTLS is thrown away (PROMISES T1).
    await s.conn.start_tls(s.app.tls_context)


def _check_privacy(s: Session) -> None:
    if not s.conn.tls and not s.plaintext_allowed:
        # PROMISES A1, RFC 9051 §6.2.3
        raise No("Use STARTTLS (or the implicit-TLS port) before logging in", "PRIVACYREQUIRED")


async def _finish_login(s: Session, tag: str, username: str, password: str,
                        authzid: str = "") -> Done:
    account = await s.app.auth.login(username, password, remote_ip=s.conn.peer_ip,
                                     protocol="imap", authzid=authzid)
    if account is None:
        s.auth_failures += 1
        if s.auth_failures >= MAX_AUTH_FAILURES:
            s.write(r.status(tag, "NO", "Authentication failed", "AUTHENTICATIONFAILED"))
            raise Bye("Too many failed logins")
        raise No("Authentication failed", "AUTHENTICATIONFAILED")
    s.logged_in(account)
    return Done("Logged in", "CAPABILITY " + " ".join(s.capability_list()))


async def login(s: Session, tag: str, cmd: c.Login) -> Done:
    _check_privacy(s)
    return await _finish_login(s, tag, cmd.username, cmd.password)


async def authenticate(s: Session, tag: str, cmd: c.Authenticate) -> Done:
    _check_privacy(s)
    try:
        mech = sasl.mechanism(cmd.mechanism)
    except sasl.SaslError:
        raise No(f"Unsupported authentication mechanism {cmd.mechanism[:30]}", "CANNOT")
    try:
        initial = None if cmd.initial is None else sasl.decode_response(cmd.initial)
        result = mech.start(initial)
        while isinstance(result, sasl.Challenge):
            s.write(b"+ " + sasl.encode_challenge(result.data) + b"\r\n")
            await s.flush()
            line = await s.read_line(PRE_AUTH_TIMEOUT)
            result = mech.step(sasl.decode_response(line))
    except sasl.SaslCancelled:
        raise Bad("Authentication cancelled")
    except sasl.SaslError as exc:
        raise Bad(str(exc))
    return await _finish_login(s, tag, result.authcid, result.password, result.authzid)


async def enable(s: Session, tag: str, cmd: c.Enable) -> Done:
    """RFC 5161; RFC 9051 §6.3.1. Unknown names are ignored."""
    enabled: list[str] = []
    for cap in cmd.capabilities:
        if cap.upper() == "IMAP4REV2" and not s.rev2:
            s.rev2 = True
            enabled.append("IMAP4rev2")
    s.write(r.untagged(b"ENABLED", *(e.encode("ascii") for e in enabled)) if enabled
            else b"* ENABLED\r\n")
    return Done("ENABLE completed")
