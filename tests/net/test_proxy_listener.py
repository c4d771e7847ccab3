"""The PROXY protocol on casella's listeners (issue 19, proxy-protocol.txt): over real sockets,
a connection from `[listen] proxy_protocol_from` must start with a valid header (v1 or v2)
and is then, for per-IP limits, brute-force counters, Received headers and logs, the client
the header names; IMAP, POP3, SMTP and implicit TLS (the header comes before the TLS
handshake). A connection from elsewhere is never parsed for a header. A missing, bad, slow or
over-long header closes the connection."""

from __future__ import annotations

import ipaddress
import itertools
import logging
import socket
import ssl
import struct
import time
from collections.abc import Callable

import pytest

from casella.net.proxyproto import V2_SIGNATURE
from tests.conftest import RunningServer
from tests.smtp.helpers import messages

USER = "alice@example.test"
PLAIN = {"allow_plaintext_without_tls": True, "failure_delay": 0.01, "max_failure_delay": 0.05}


def v1(src: str, sport: int = 40000, dport: int = 143) -> bytes:
    family = "TCP6" if ":" in src else "TCP4"
    dst = "::1" if family == "TCP6" else "127.0.0.1"
    return f"PROXY {family} {src} {dst} {sport} {dport}\r\n".encode()


def v2(src: str | None, sport: int = 40000, dport: int = 993) -> bytes:
    """A version 2 header; `src` None: the LOCAL command (a health check)."""
    if src is None:
        return V2_SIGNATURE + b"\x20\x00\x00\x00"
    ip = ipaddress.ip_address(src)
    dst = ipaddress.ip_address("::1" if ip.version == 6 else "127.0.0.1")
    block = ip.packed + dst.packed + struct.pack("!HH", sport, dport)
    block += b"\x04\x00\x03abc"                                     # a NOOP TLV, skipped
    fam = 0x21 if ip.version == 6 else 0x11
    return V2_SIGNATURE + bytes([0x21, fam]) + struct.pack("!H", len(block)) + block


def proxied(make_server: Callable[..., RunningServer], trusted: str = "127.0.0.0/8",
            **overrides: object) -> RunningServer:
    listen = dict(overrides.pop("listen", {}))   # type: ignore[call-overload]
    server = make_server(auth=PLAIN, **overrides)
    if listen or trusted:
        server.stop()
        cfg_listen = {name: "127.0.0.1:0" for name in server.config.listen}
        cfg_listen.update({"proxy_protocol_from": [trusted], **listen})
        server = make_server(auth=PLAIN, listen=cfg_listen, **overrides)
    server.add_user(USER, "secret")
    return server


class Line:
    """A line-oriented client on a socket that may carry a PROXY header first."""

    def __init__(self, port: int, header: bytes = b"", then: bytes = b"",
                 tls: ssl.SSLContext | None = None, timeout: float = 10.0) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if header or then:
            sock.sendall(header + then)
        self.sock: socket.socket = tls.wrap_socket(sock) if tls else sock
        self.buf = b""

    @classmethod
    def on(cls, sock: socket.socket) -> Line:
        """A Line on a socket the test connected itself."""
        line = cls.__new__(cls)
        line.sock, line.buf = sock, b""
        return line

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(f"closed; buffered {self.buf!r}")
            self.buf += data
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def until(self, prefix: bytes) -> list[bytes]:
        lines = [self.line()]
        while not lines[-1].startswith(prefix):
            lines.append(self.line())
        return lines

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def closed(self) -> bool:
        """The server closed without a word (or after only what `buf` holds)."""
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.buf += data
        except (ConnectionResetError, ssl.SSLError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def failures(server: RunningServer, ip: str) -> int:
    status = server.run(server.store.auth_status([f"ip:{ip}"], int(time.time())))
    return status.get(f"ip:{ip}", (0, 0))[0]


def test_imap_counts_failed_logins_for_the_client_not_the_proxy(
        make_server: Callable[..., RunningServer], caplog: pytest.LogCaptureFixture) -> None:
    """The header and a pipelined command arrive in one packet: the header is taken, the
    command is not lost, and the brute-force counter and the log lines are the client's."""
    caplog.set_level(logging.INFO, logger="casella")
    server = proxied(make_server)
    c = Line(server.port("imap"), v1("203.0.113.7"), b"a1 CAPABILITY\r\n")
    assert c.line().startswith(b"* OK")
    assert c.until(b"a1 ")[-1].startswith(b"a1 OK")
    c.send(b"a2 LOGIN alice@example.test wrong\r\n")
    assert c.until(b"a2 ")[-1].startswith(b"a2 NO")
    c.close()
    assert failures(server, "203.0.113.7") == 1
    assert failures(server, "127.0.0.1") == 0
    connects = [r for r in caplog.records if r.getMessage().startswith("connect")]
    assert [(r.getMessage(), getattr(r, "remote", None)) for r in connects] == [
        ("connect through proxy 127.0.0.1", "203.0.113.7")]


@pytest.mark.parametrize("header", [v1("203.0.113.9"), v2("203.0.113.9", dport=143)])
def test_a_header_in_pieces(make_server: Callable[..., RunningServer], header: bytes) -> None:
    """The header may arrive in several segments (each read takes only what is there, all of
    it header) and the first command right behind its last byte."""
    server = proxied(make_server)
    sock = socket.create_connection(("127.0.0.1", server.port("imap")), timeout=10)
    cuts = [0, 3, 7, 13, len(header) - 1, len(header)]
    for lo, hi in itertools.pairwise(cuts):
        sock.sendall(header[lo:hi])
        time.sleep(0.05)
    sock.sendall(b"a1 LOGIN alice@example.test wrong\r\n")
    c = Line.on(sock)
    assert c.line().startswith(b"* OK")
    assert c.until(b"a1 ")[-1].startswith(b"a1 NO")
    c.close()
    assert failures(server, "203.0.113.9") == 1


def test_pop3_with_a_version_2_header_from_ipv6(
        make_server: Callable[..., RunningServer]) -> None:
    server = proxied(make_server)
    c = Line(server.port("pop3"), v2("2001:db8::7", dport=110))
    assert c.line().startswith(b"+OK")
    c.send(b"USER alice@example.test\r\nPASS wrong\r\n")
    assert c.line().startswith(b"+OK")
    assert c.line().startswith(b"-ERR")
    c.close()
    assert failures(server, "2001:db8::7") == 1


def test_smtp_received_header_names_the_client(
        make_server: Callable[..., RunningServer]) -> None:
    """RFC 5321 §4.4: the Received line records the client's address; SPF (the inbound
    checks) is asked about the same one."""
    server = proxied(make_server)
    c = Line(server.port("smtp"), v1("198.51.100.25", dport=25))
    assert c.line().startswith(b"220")
    for command, code in ((b"EHLO client.example", b"250"), (b"MAIL FROM:<s@remote.example>",
                          b"250"), (f"RCPT TO:<{USER}>".encode(), b"250"), (b"DATA", b"354"),
                          (b"Subject: hi\r\n\r\nhello\r\n.", b"250")):
        c.send(command + b"\r\n")
        reply = [c.line()]
        while reply[-1][3:4] == b"-":
            reply.append(c.line())
        assert reply[-1].startswith(code), (command, reply)
    c.close()
    (stored,) = messages(server, USER)
    (received,) = [h for h in stored.split(b"\r\n\r\n")[0].split(b"\r\n")
                   if h.startswith(b"Received:")]
    assert b"198.51.100.25" in received and b"127.0.0.1" not in received, received


def _tls_hello(ctx: ssl.SSLContext) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_side=False)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return obj, incoming, outgoing


def test_implicit_tls_reads_the_header_before_the_handshake(
        make_server: Callable[..., RunningServer]) -> None:
    """On imaps the header precedes TLS; the ClientHello sent in the same packet as the
    header must reach the TLS layer untouched (the listener reads exactly the header)."""
    server = proxied(make_server)
    ctx = server.ssl_context()
    obj, incoming, outgoing = _tls_hello(ctx)
    sock = socket.create_connection(("127.0.0.1", server.port("imaps")), timeout=10)
    sock.sendall(v2("192.0.2.55") + outgoing.read())            # one packet
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(outgoing.read())
            data = sock.recv(65536)
            assert data, "closed during the handshake"
            incoming.write(data)
    sock.sendall(outgoing.read())

    def line() -> bytes:
        while True:
            try:
                return obj.read(65536)
            except ssl.SSLWantReadError:
                incoming.write(sock.recv(65536))
    assert line().startswith(b"* OK")
    obj.write(b"a1 LOGIN alice@example.test wrong\r\n")
    sock.sendall(outgoing.read())
    reply = b""
    while b"a1 " not in reply:
        reply += line()
    assert b"a1 NO" in reply
    sock.close()
    assert failures(server, "192.0.2.55") == 1


def test_pop3s_through_an_ssl_socket(make_server: Callable[..., RunningServer]) -> None:
    server = proxied(make_server)
    c = Line(server.port("pop3s"), v1("192.0.2.77", dport=995), tls=server.ssl_context())
    assert c.line().startswith(b"+OK")
    c.send(b"USER alice@example.test\r\nPASS wrong\r\n")
    assert c.line().startswith(b"+OK") and c.line().startswith(b"-ERR")
    c.close()
    assert failures(server, "192.0.2.77") == 1


@pytest.mark.parametrize("listener", ["http", "https"])
def test_http_sees_the_client_behind_the_proxy(make_server: Callable[..., RunningServer],
                                               caplog: pytest.LogCaptureFixture,
                                               listener: str) -> None:
    """The web listeners hand the connection to their HTTP engine; the request log (and the
    customer page's brute-force counting, which reads the same address) names the client."""
    caplog.set_level(logging.INFO, logger="casella")
    server = proxied(make_server)
    tls = server.ssl_context() if listener == "https" else None
    c = Line(server.port(listener), v1("198.51.100.80", dport=443), tls=tls)
    c.send(b"GET /healthz HTTP/1.1\r\nHost: mail.example.test\r\nConnection: close\r\n\r\n")
    assert c.line().startswith(b"HTTP/1.1 ")
    c.closed()
    c.close()
    requests = [r for r in caplog.records if r.getMessage().startswith("GET /healthz")]
    assert [getattr(r, "remote", None) for r in requests] == ["198.51.100.80"]


def test_per_ip_limit_counts_clients_behind_the_proxy(
        make_server: Callable[..., RunningServer]) -> None:
    """[limits] max_connections_per_ip applies to the address the header names: two clients
    behind one proxy are two addresses, one client twice is refused the second time."""
    server = proxied(make_server, limits={"max_connections_per_ip": 1})
    port = server.port("imap")
    a = Line(port, v1("203.0.113.1"))
    b = Line(port, v1("203.0.113.2"))
    assert a.line().startswith(b"* OK") and b.line().startswith(b"* OK")
    again = Line(port, v1("203.0.113.1"))
    assert again.line().startswith(b"* BYE")
    for c in (a, b, again):
        c.close()


def test_local_command_is_the_proxy_itself(make_server: Callable[..., RunningServer]) -> None:
    """A v2 LOCAL header (a health check) is served as the connection it is."""
    server = proxied(make_server)
    c = Line(server.port("imap"), v2(None))
    assert c.line().startswith(b"* OK")
    c.send(b"a1 LOGIN alice@example.test wrong\r\n")
    assert c.until(b"a1 ")[-1].startswith(b"a1 NO")
    c.close()
    assert failures(server, "127.0.0.1") == 1


@pytest.mark.parametrize("first", [
    b"a1 CAPABILITY\r\n",                                       # no header at all
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",                        # bare LF
    b"PROXY TCP4 999.2.3.4 5.6.7.8 1 2\r\n",
    b"PROXY " + b"x" * 150,                                     # no CRLF within 107 bytes
    V2_SIGNATURE + b"\x21\x11\xff\xff",                         # 65535 bytes announced
    V2_SIGNATURE + b"\x2f\x11\x00\x0c" + b"\0" * 12,            # unknown command
])
def test_a_trusted_connection_without_a_valid_header_is_closed(
        make_server: Callable[..., RunningServer], first: bytes) -> None:
    server = proxied(make_server)
    c = Line(server.port("imap"), then=first)
    assert c.closed() and c.buf == b""                          # not even a greeting
    c.close()


def test_a_header_that_does_not_come_in_time_closes(
        make_server: Callable[..., RunningServer]) -> None:
    """[listen] proxy_protocol_timeout: half a header, then silence."""
    server = proxied(make_server, listen={"proxy_protocol_timeout": 0.5})
    c = Line(server.port("imap"), then=b"PROXY TCP4 203.0.113.7 ", timeout=10)
    started = time.monotonic()
    assert c.closed() and c.buf == b""
    assert time.monotonic() - started < 5
    c.close()


def test_a_connection_from_elsewhere_is_never_parsed(
        make_server: Callable[..., RunningServer]) -> None:
    """proxy-protocol.txt §5: only the configured networks may name another address. From
    127.0.0.1 with only 10.0.0.0/8 trusted, a PROXY line is an (invalid) IMAP command."""
    server = proxied(make_server, trusted="10.0.0.0/8")
    c = Line(server.port("imap"))
    assert c.line().startswith(b"* OK")
    c.send(v1("203.0.113.7") + b"a2 LOGIN alice@example.test wrong\r\n")
    lines = c.until(b"a2 ")
    assert lines[0].startswith(b"PROXY BAD") or lines[0].startswith(b"* BAD"), lines
    c.close()
    assert failures(server, "127.0.0.1") == 1
    assert failures(server, "203.0.113.7") == 0
