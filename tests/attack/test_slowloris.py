"""Slowloris (issue 7 §2): many connections, each dripping one byte of a command line every
half second and never finishing it, are cut off by the per-line deadline (`line_timeout`),
long before any idle timeout, while an honest client on the same server is served normally."""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.attack.util import Imap, Pop3, Smtp, add_user

LINE_TIMEOUT = 2
SLOW = 40            # dripping connections per protocol
DRIP_EVERY = 0.5
GIVE_UP = LINE_TIMEOUT + 8.0   # generous: each must be cut off well before this


def honest_imap(server: Any, user: str) -> None:
    with Imap(server.port("imap")) as c:
        assert c.status("CAPABILITY").startswith(b"OK")
        assert c.login(user).startswith(b"OK")
        assert c.status("SELECT INBOX").startswith(b"OK")
        assert c.status("LOGOUT").startswith(b"OK")


def honest_pop3(server: Any, user: str) -> None:
    with Pop3(server.port("pop3")) as c:
        assert c.login(user).startswith(b"+OK")
        assert c.cmd("STAT").startswith(b"+OK")
        assert c.cmd("QUIT").startswith(b"+OK")


def honest_smtp(server: Any, user: str) -> None:
    with Smtp(server.port("smtp")) as c:
        assert c.code("EHLO honest.example") == 250
        assert c.code("MAIL FROM:<a@remote.example>") == 250
        assert c.code(f"RCPT TO:<{user}>") == 250
        assert c.code("DATA") == 354
        assert c.code(b"Subject: hi\r\n\r\nhello\r\n.") == 250
        assert c.code("QUIT") == 221


HONEST: dict[str, tuple[str, Callable[[Any, str], None], bytes]] = {
    # listener, honest session, the line the slow clients start and never finish
    "imap": ("imap", honest_imap, b"a1 LOGIN someone@example.test secretsecretsecret"),
    "pop3": ("pop3", honest_pop3, b"USER someone@example.test and more and more"),
    "smtp": ("smtp", honest_smtp, b"EHLO slow.example.and.more.and.more.and.more"),
}


def drip_until_cut_off(port: int, count: int, line: bytes, honest: Callable[[], None]
                       ) -> tuple[list[float], float]:
    """Open `count` connections, drip `line` into each; return when each was cut off (seconds
    after its first byte) and how long the honest session took (run mid-attack)."""
    sel = selectors.DefaultSelector()
    socks = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        socks.append(s)
        sel.register(s, selectors.EVENT_READ)
    started = time.monotonic()
    cut: dict[socket.socket, float] = {}
    sent = {s: 0 for s in socks}
    next_drip = started
    honest_time = -1.0
    try:
        while len(cut) < count and time.monotonic() - started < GIVE_UP:
            now = time.monotonic()
            if now >= next_drip:
                for s in socks:
                    if s not in cut and sent[s] < len(line):
                        try:
                            s.send(line[sent[s]:sent[s] + 1])
                            sent[s] += 1
                        except OSError:
                            cut[s] = now - started
                next_drip = now + DRIP_EVERY
            if honest_time < 0 and now - started > 0.7:
                t0 = time.monotonic()
                honest()          # mid-attack: the server still serves
                honest_time = time.monotonic() - t0
            for key, _ in sel.select(timeout=0.05):
                s = key.fileobj
                assert isinstance(s, socket.socket)
                try:
                    data = s.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data and s not in cut:
                    cut[s] = time.monotonic() - started
                    sel.unregister(s)
    finally:
        for s in socks:
            s.close()
        sel.close()
    return sorted(cut.values()), honest_time


@pytest.mark.parametrize("proto", ["imap", "pop3", "smtp"])
def test_slowloris_is_cut_off_and_honest_client_served(make_server: Any, proto: str) -> None:
    server = make_server(
        auth={"allow_plaintext_without_tls": True},
        limits={"max_connections_per_ip": 1000},
        imap={"line_timeout": LINE_TIMEOUT}, pop3={"line_timeout": LINE_TIMEOUT},
        smtp={"line_timeout": LINE_TIMEOUT})
    user = add_user(server).address
    listener, honest, line = HONEST[proto]
    cut, honest_time = drip_until_cut_off(server.port(listener), SLOW, line,
                                          lambda: honest(server, user))
    assert 0 <= honest_time < 5, honest_time
    assert len(cut) == SLOW, f"only {len(cut)} of {SLOW} slow connections were cut off"
    # Cut off by the line deadline: not before it, and well before any idle timeout.
    assert cut[0] >= LINE_TIMEOUT - 0.5 and cut[-1] < GIVE_UP, cut
    wait = time.monotonic() + 10
    while server.server.listeners.sessions and time.monotonic() < wait:
        time.sleep(0.05)
    assert not server.server.listeners.sessions
