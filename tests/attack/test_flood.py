"""Connection flood (issue 7 §2, PROMISES P4): 10,000 connections opened and abandoned on the
SMTP, IMAP and POP3 listeners — held open together, then dropped, some with a half-sent
command, some reset — leave no session behind, the connection count returns to zero and the
server serves normally afterwards. Limits are raised for the test ([limits] max_connections,
max_connections_per_ip); the limit itself is tested with a small value."""

from __future__ import annotations

import os
import resource
import socket
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.attack.util import Imap, Pop3, Smtp, add_user, wait_for

TOTAL = 10_000
LISTENERS = ("smtp", "imap", "pop3")
BATCH = 500


@pytest.fixture
def many_files() -> Iterator[int]:
    """Client and server share this process: two descriptors per connection, plus slack."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 2 * TOTAL + 2000
    try:
        if hard != resource.RLIM_INFINITY and hard < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, want))   # needs root
        else:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    except (ValueError, OSError):
        pass
    got = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        yield got
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def sessions(server: Any) -> int:
    return len(server.server.listeners.sessions)


def test_ten_thousand_abandoned_connections(make_server: Any, many_files: int) -> None:
    server = make_server(limits={"max_connections": 2 * TOTAL,
                                 "max_connections_per_ip": 2 * TOTAL},
                         auth={"allow_plaintext_without_tls": True})
    user = add_user(server).address
    ports = [server.port(name) for name in LISTENERS]
    # Hold as many at once as the descriptor limit allows (all 10,000 when root can raise it).
    at_once = min(TOTAL, (many_files - 1000) // 2)
    opened = 0
    started = time.monotonic()
    while opened < TOTAL:
        wave: list[socket.socket] = []
        try:
            while len(wave) < at_once and opened < TOTAL:
                for _ in range(min(BATCH, at_once - len(wave), TOTAL - opened)):
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    s.settimeout(20)
                    s.connect(("127.0.0.1", ports[opened % len(ports)]))
                    wave.append(s)
                    opened += 1
                # Let the server accept what is queued before the next batch (listen backlog).
                held = len(wave)
                assert wait_for(lambda n=held: sessions(server) >= n - 50, 30), \
                    (sessions(server), held)
            held = len(wave)
            assert wait_for(lambda n=held: sessions(server) == n, 30)
            for i, s in enumerate(wave):
                if i % 3 == 0:
                    s.send(b"a1 LOGIN half")          # a command never finished
                if i % 2 == 0:                          # reset instead of a clean close
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        finally:
            for s in wave:
                s.close()
        assert wait_for(lambda: sessions(server) == 0, 60), sessions(server)
    elapsed = time.monotonic() - started
    assert opened == TOTAL
    # Nothing is left counted against the address (the count every worker shares).
    assert server.run(server.store.connections_count(["ip:127.0.0.1"])) == {}
    assert elapsed < 90, elapsed

    # Afterwards: normal service on every protocol.
    with Smtp(server.port("smtp")) as c:
        assert c.code("EHLO after.example") == 250
        assert c.code("MAIL FROM:<a@remote.example>") == 250
        assert c.code(f"RCPT TO:<{user}>") == 250
        assert c.code("DATA") == 354
        assert c.code(b"Subject: after\r\n\r\nstill here\r\n.") == 250
    with Imap(server.port("imap")) as c:
        assert c.login(user).startswith(b"OK")
        untagged, tagged = c.cmd("SELECT INBOX")
        assert tagged.split(b" ")[1] == b"OK" and b"* 1 EXISTS" in untagged
    with Pop3(server.port("pop3")) as c:
        assert c.login(user).startswith(b"+OK")
        assert c.cmd("STAT").startswith(b"+OK 1 ")
    assert wait_for(lambda: sessions(server) == 0, 10)
    # No descriptor leaked: what the process has open is back near where it started.
    assert len(os.listdir("/proc/self/fd")) < 1000


def test_connection_limits_refuse_with_the_protocols_reply(make_server: Any) -> None:
    """Beyond [limits] max_connections_per_ip each protocol refuses in its own words
    (`421 4.7.0`, `* BYE`, `-ERR [IN-USE]`) and closes."""
    server = make_server(limits={"max_connections_per_ip": 3})
    for name, expect in (("smtp", (b"421 4.7.0",)), ("imap", (b"* BYE",)),
                         ("pop3", (b"-ERR [IN-USE]",))):
        held = [socket.create_connection(("127.0.0.1", server.port(name)), timeout=10)
                for _ in range(3)]
        try:
            for s in held:
                assert s.recv(1000)
            extra = socket.create_connection(("127.0.0.1", server.port(name)), timeout=10)
            with extra:
                data = extra.recv(1000)
                assert data.startswith(expect), data
                assert extra.recv(1000) == b""
        finally:
            for s in held:
                s.close()
        assert wait_for(lambda: sessions(server) == 0, 10)
