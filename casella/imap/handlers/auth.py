"""Commands of any state and of the not-authenticated state: CAPABILITY, NOOP, LOGOUT, ID,
STARTTLS, AUTHENTICATE, LOGIN, ENABLE (RFC 9051 §6.1, §6.2, §6.3.1; RFC 2971; RFC 4959;
RFC 5161 with CONDSTORE, QRESYNC, IMAP4rev2 and UTF8=ACCEPT) and COMPRESS (RFC 4978).

Must never: log or keep a password, or answer a login before the authenticator's failure delay.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from casella import __version__
from casella.auth import sasl
from casella.imap import commands as c
from casella.imap import responses as r
from casella.imap.capabilities import ENABLEABLE
from casella.imap.compress import DeflateTransform
from casella.imap.errors import Bad, Bye, No
from casella.imap.session import MAX_AUTH_FAILURES, Done

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
    # The user+IP slot is free by the time the client reads the OK: a client that logs out
    # and at once logs in again is never refused for its own old session.
    await s.release_connection_slot()
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
    # Issue 7: at most imap.max_connections_per_user_ip sessions of one user from one address.
    await s.take_connection_slot(account.address)
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
            line = await s.read_line(float(s.cfg.login_timeout))
            result = mech.step(sasl.decode_response(line))
    except sasl.SaslCancelled:
        raise Bad("Authentication cancelled")
    except sasl.SaslError as exc:
        raise Bad(str(exc))
    return await _finish_login(s, tag, result.authcid, result.password, result.authzid)


async def enable(s: Session, tag: str, cmd: c.Enable) -> Done:
    """RFC 5161; RFC 9051 §6.3.1. Unknown names are ignored; ENABLED lists only what this
    command turned on."""
    enabled: list[str] = []
    for cap in cmd.capabilities:
        name = cap.upper()
        if name not in ENABLEABLE:
            continue
        if name == "IMAP4REV2" and not s.rev2:
            s.rev2 = True
            enabled.append("IMAP4rev2")
        elif name == "CONDSTORE" and not s.condstore:
            s.enable_condstore()
            enabled.append("CONDSTORE")
        elif name == "QRESYNC" and not s.qresync:
            # RFC 7162 §3.2.3: QRESYNC implies CONDSTORE.
            s.enable_qresync()
            enabled.append("QRESYNC")
        elif name == "UTF8=ACCEPT" and not s.utf8:
            s.utf8 = True
            enabled.append("UTF8=ACCEPT")
    s.write(r.untagged(b"ENABLED", *(e.encode("ascii") for e in enabled)) if enabled
            else b"* ENABLED\r\n")
    return Done("ENABLE completed")


async def compress(s: Session, tag: str, cmd: c.Compress) -> Done:
    """RFC 4978 §3: DEFLATE only; NO [COMPRESSIONACTIVE] the second time. Compression starts
    in both directions right after the tagged OK (the session switches after sending it)."""
    if cmd.mechanism != "DEFLATE":
        raise Bad(f"Unknown compression mechanism {cmd.mechanism[:30]}")
    if s.compressed or s.pending_transform is not None:
        raise No("Compression is already active", "COMPRESSIONACTIVE")
    s.pending_transform = DeflateTransform()
    return Done("DEFLATE active")
