"""Hostile input over a real socket (PROMISES P1, P5): garbage never crashes a session or the
server, never produces an internal error, and nothing stored changes."""

from __future__ import annotations

import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.imap.util import Raw, deliver, message, new_user, store_state

_PIECES = [b"a ", b"b1 ", b"LOGIN ", b"SELECT INBOX", b"FETCH 1:* ", b"(BODY[", b"]<0.5>)",
           b"SEARCH ", b"OR ", b"NOT ", b"STORE 1 +FLAGS ", b"(\\Seen)", b"APPEND INBOX ",
           b"{5}\r\n", b"{3+}\r\nabc", b"\r\n", b"\n", b'"', b"\\", b"\x00", b"\xff", b"*",
           b"%", b"(", b")", b"IDLE\r\n", b"DONE\r\n", b"UID ", b"EXPUNGE", b"CLOSE",
           b"LIST \"\" *", b"ENABLE IMAP4rev2", b"~{2}\r\nxy", b"$", b"1:*", b"NOOP"]


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def victim(srv):
    acct = new_user(srv)
    deliver(srv, acct, message("keep me"))
    return acct


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(_PIECES) | st.binary(max_size=20), max_size=40))
def test_garbage_after_login(srv, victim, chunks: list[bytes]) -> None:
    errors = _Errors()
    logging.getLogger("casella").addHandler(errors)
    try:
        raw = Raw(srv)
        raw.login(victim)
        raw.sock.settimeout(2.0)
        try:
            raw.send(b"".join(chunks) + b"\r\n")
            raw.send(b"zz LOGOUT\r\n")
            data = b""
            while True:
                part = raw.sock.recv(65536)
                if not part:
                    break
                data += part
        except (TimeoutError, ConnectionError, OSError):
            data = b""
        finally:
            raw.close()
        assert b"SERVERBUG" not in data
    finally:
        logging.getLogger("casella").removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]
    state = store_state(srv, victim)
    assert len(state) >= 1          # garbage may APPEND or flag, never lose the message


def test_server_still_serves(srv, victim) -> None:
    raw = Raw(srv)
    raw.login(victim)
    assert raw.ok("NOOP") == []
    raw.close()
