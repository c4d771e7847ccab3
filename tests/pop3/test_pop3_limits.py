"""The `[pop3]` limits (issue 7 §2-§3, §6) crossed over real sockets: the login timeout bounds
the whole AUTHORIZATION state, the line deadline cuts off slow-drip clients (also inside an
AUTH exchange), the bad-command budget closes the connection, and storage errors are
`-ERR [SYS/TEMP]` with a sentence while the session goes on."""

from __future__ import annotations

import time
from typing import Any

from casella.errors import DiskFull, StorageError
from tests.pop3.util import Raw, add_user, deliver_all, message

USER = "limits@example.test"


def serve(make_server: Any, **pop3: Any) -> Any:
    srv = make_server(auth={"allow_plaintext_without_tls": True}, pop3=pop3)
    deliver_all(srv, add_user(srv, USER), [message(f"m{i}") for i in range(2)])
    return srv


def drip(c: Raw, data: bytes, every: float, give_up: float) -> None:
    """Send one byte at a time until the server answers or `give_up` seconds pass."""
    started = time.monotonic()
    c.sock.settimeout(every)
    for byte in data:
        if time.monotonic() - started > give_up:
            break
        try:
            c.send(bytes([byte]))
            chunk = c.sock.recv(4096)
        except TimeoutError:
            continue
        except OSError:
            break
        c.buf += chunk
        break
    c.sock.settimeout(10)


def test_login_timeout_bounds_the_authorization_state(make_server: Any) -> None:
    """`[pop3] login_timeout`: commands that never log in (CAPA every half second) do not keep
    a connection beyond it."""
    srv = serve(make_server, login_timeout=2)
    c = Raw(srv.port("pop3"))
    started = time.monotonic()
    while time.monotonic() - started < 8:
        try:
            reply = c.cmd(b"NOOP")
        except (EOFError, OSError):
            break
        if reply.startswith(b"-ERR Not logged in in time"):
            break
        time.sleep(0.4)
    assert 1.5 < time.monotonic() - started < 6
    assert c.closed()


def test_login_timeout_does_not_apply_after_login(make_server: Any) -> None:
    srv = serve(make_server, login_timeout=1)
    c = Raw(srv.port("pop3"))
    assert c.login(USER).startswith(b"+OK")
    time.sleep(1.5)
    assert c.cmd(b"STAT").startswith(b"+OK 2 ")


def test_line_timeout_cuts_off_a_slow_drip(make_server: Any) -> None:
    """`[pop3] line_timeout`: a command line dripped a byte at a time is cut off."""
    srv = serve(make_server, line_timeout=1)
    c = Raw(srv.port("pop3"))
    started = time.monotonic()
    drip(c, b"USER someone-who-types-very-slowly@example.test", 0.25, 8)
    assert c.line() == b"-ERR Command line not completed in time; closing."
    assert c.closed()
    assert time.monotonic() - started < 5


def test_line_timeout_in_an_auth_exchange(make_server: Any) -> None:
    """The AUTH continuation line is under the same deadline."""
    srv = serve(make_server, line_timeout=1)
    c = Raw(srv.port("pop3"))
    assert c.cmd(b"AUTH PLAIN").startswith(b"+ ")
    drip(c, b"AGxpbWl0c0BleGFtcGxlLnRlc3QAc2VjcmV0", 0.25, 8)
    assert c.line() == b"-ERR Command line not completed in time; closing."
    assert c.closed()


def test_max_bad_commands_is_a_config_key(make_server: Any) -> None:
    srv = serve(make_server, max_bad_commands=3)
    c = Raw(srv.port("pop3"))
    assert c.cmd(b"BOGUS").startswith(b"-ERR")
    assert c.cmd(b"XTND").startswith(b"-ERR")
    assert c.cmd(b"BOGUS").startswith(b"-ERR")
    assert c.line() == b"-ERR Too many bad commands; closing."
    assert c.closed()


def test_storage_errors_are_sys_temp(make_server: Any, monkeypatch: Any) -> None:
    """RFC 3206 §4: a failing store is `-ERR [SYS/TEMP]` with a sentence (disk full says so);
    the session goes on and the next command works."""
    srv = serve(make_server)
    c = Raw(srv.port("pop3"))
    assert c.login(USER).startswith(b"+OK")
    for error, words in ((DiskFull("no space"), b"disk is full"),
                         (StorageError("database locked"), b"temporarily unavailable")):
        async def broken(*args: Any, error: Exception = error, **kwargs: Any) -> Any:
            raise error
        monkeypatch.setattr(srv.store, "read_blob", broken)
        monkeypatch.setattr(srv.store, "read_blobs", broken)   # RETR's read-ahead
        reply = c.cmd(b"RETR 1")
        assert reply.startswith(b"-ERR [SYS/TEMP] ") and words in reply, reply
        monkeypatch.undo()
        assert c.cmd(b"STAT").startswith(b"+OK 2 ")
    assert c.cmd(b"RETR 1").startswith(b"+OK")
