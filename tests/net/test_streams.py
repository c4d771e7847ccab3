"""The connection plumbing: bounded lines, literals, STARTTLS that discards pipelined
plaintext (PROMISES T1), per-IP limits and graceful shutdown — over real sockets."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from casella.config import HostPort
from casella.net.listener import ConnectionLimits, ListenerGroup
from casella.net.streams import Connection, LineTooLong, ReadTimeout, ServerShutdown
from casella.net.tls import ensure_self_signed


class Echo:
    """Test service: echoes lines; STARTTLS upgrades; BIG reads a 5-byte literal."""
    name = "echo"
    implicit_tls = False

    def __init__(self, ctx: ssl.SSLContext | None = None) -> None:
        self.ctx = ctx
        self.events: list[str] = []

    def refuse(self, conn: Connection, reason: str) -> bytes:
        return f"NO {reason}\r\n".encode()

    async def handle(self, conn: Connection) -> None:
        while True:
            try:
                line = await conn.read_line(20, timeout=5)
            except LineTooLong as exc:
                await conn.send(f"TOOLONG {exc.length}\r\n".encode())
                continue
            except ReadTimeout:
                await conn.send(b"TIMEOUT\r\n")
                return
            except ServerShutdown:
                await conn.send(b"BYE shutting down\r\n")
                self.events.append("bye")
                return
            except Exception:
                return
            if line == b"STARTTLS":
                await conn.send(b"GO\r\n")
                assert self.ctx is not None
                await conn.start_tls(self.ctx)
                await conn.send(f"TLS {conn.tls_version}\r\n".encode())
            elif line == b"LIT":
                data = await conn.read_exactly(5, timeout=5)
                await conn.send(b"GOT " + data + b"\r\n")
            elif line == b"SLOW":
                await asyncio.sleep(0.5)
                await conn.send(b"DONE\r\n")
            else:
                await conn.send(b"ECHO " + line + b"\r\n")


@pytest.fixture
def tls_pair(tmp_path: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    ensure_self_signed(cert, key, "localhost")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    client.check_hostname = False
    return server, client


async def start(service: Echo, limits: ConnectionLimits | None = None
                ) -> tuple[ListenerGroup, int]:
    group = ListenerGroup(tls_context=None, limits=limits or ConnectionLimits())
    bound = await group.start("echo", HostPort("127.0.0.1", 0), service)
    return group, bound.port


async def test_lines_literals_and_long_lines() -> None:
    group, port = await start(Echo())
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"hello\r\nbare lf\nLIT\r\nab\r\nc" + b"x" * 100 + b"\r\nafter\r\n")
        assert await r.readline() == b"ECHO hello\r\n"
        assert await r.readline() == b"ECHO bare lf\r\n"
        assert await r.readline() == b"GOT ab\r\n"
        assert await r.readline() == b"c\r\n"
        assert await r.readline() == b"TOOLONG 102\r\n"
        assert await r.readline() == b"ECHO after\r\n"
        w.close()
    finally:
        await group.stop(1)


async def test_starttls_discards_pipelined_plaintext(tls_pair) -> None:
    server_ctx, client_ctx = tls_pair
    group, port = await start(Echo(server_ctx))
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"STARTTLS\r\nINJECTED\r\n")
        assert await r.readline() == b"GO\r\n"
        await w.start_tls(client_ctx)
        first = await asyncio.wait_for(r.readline(), 10)
        assert first.startswith(b"TLS TLSv1.")
        w.write(b"inside\r\n")
        assert await asyncio.wait_for(r.readline(), 10) == b"ECHO inside\r\n"
        w.close()
    finally:
        await group.stop(1)


async def test_per_ip_limit_refuses_with_service_reply() -> None:
    group, port = await start(Echo(), ConnectionLimits(max_total=100, max_per_ip=2))
    try:
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(2)]
        for r, w in conns:
            w.write(b"x\r\n")
            assert await r.readline() == b"ECHO x\r\n"
        r, w = await asyncio.open_connection("127.0.0.1", port)
        assert await asyncio.wait_for(r.readline(), 10) == \
            b"NO too many connections from your address\r\n"
        assert await r.read() == b""
        for _, w2 in conns:
            w2.close()
    finally:
        await group.stop(1)


async def test_graceful_stop_lets_command_finish_then_says_bye() -> None:
    service = Echo()
    group, port = await start(service)
    r, w = await asyncio.open_connection("127.0.0.1", port)
    idle_r, idle_w = await asyncio.open_connection("127.0.0.1", port)
    idle_w.write(b"hi\r\n")
    assert await idle_r.readline() == b"ECHO hi\r\n"
    w.write(b"SLOW\r\n")
    await asyncio.sleep(0.1)
    await group.stop(5)
    assert await r.readline() == b"DONE\r\n"
    assert await r.readline() == b"BYE shutting down\r\n"
    assert await idle_r.readline() == b"BYE shutting down\r\n"
    assert service.events.count("bye") == 2
    w.close()
    idle_w.close()


async def test_long_line_keeps_its_head_and_tail() -> None:
    """IMAP answers an over-long line with its tag and must see a LITERAL+ at its end."""
    seen: list[LineTooLong] = []

    class Probe(Echo):
        async def handle(self, conn: Connection) -> None:
            for _ in range(2):
                try:
                    await conn.read_line(1000, timeout=5)
                except LineTooLong as exc:
                    seen.append(exc)
            await conn.send(b"done\r\n")

    group, port = await start(Probe())
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        long = b"a1 APPEND INBOX " + b"x" * 70000 + b" {5+}"
        w.write(long[:500])
        await asyncio.sleep(0.05)
        w.write(long[500:] + b"\r\n" + b"b2 " + b"y" * 1500 + b"\r\n")
        assert await asyncio.wait_for(r.readline(), 10) == b"done\r\n"
        assert seen[0].head.startswith(b"a1 APPEND") and seen[0].tail.endswith(b"x {5+}")
        assert seen[0].length == len(long) + 2
        assert seen[1].head.startswith(b"b2 yyy") and seen[1].tail == b"y" * 64
        w.close()
    finally:
        await group.stop(1)


async def test_accepted_connections_have_nodelay() -> None:
    """Without TCP_NODELAY a reply in two writes waits 40 ms for a delayed ACK."""
    import socket as socket_mod
    seen: list[int] = []

    class Probe(Echo):
        async def handle(self, conn: Connection) -> None:
            sock = conn.transport.get_extra_info("socket")
            seen.append(sock.getsockopt(socket_mod.IPPROTO_TCP, socket_mod.TCP_NODELAY))
            await conn.send(b"ok\r\n")

    group, port = await start(Probe())
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        assert await r.readline() == b"ok\r\n"
        assert seen and seen[0] != 0
        w.close()
    finally:
        await group.stop(1)


def test_every_read_asks_for_an_immediate_ack() -> None:
    """A client that writes a literal and its closing CRLF (or DATA's last line) in two pieces
    holds the second back under Nagle's algorithm until our ACK of the first: with the
    kernel's delayed ACK that is 40 ms per APPEND (imaplib's APPEND took 44 ms). Each read
    therefore sets TCP_QUICKACK, which the kernel clears again by itself (Linux)."""
    import socket as socket_mod

    quickack = getattr(socket_mod, "TCP_QUICKACK", None)
    if quickack is None:
        pytest.skip("TCP_QUICKACK is Linux's; elsewhere the kernel decides alone")

    class FakeSocket:
        family = socket_mod.AF_INET

        def __init__(self) -> None:
            self.calls: list[tuple[int, int, int]] = []

        def setsockopt(self, level: int, name: int, value: int) -> None:
            self.calls.append((level, name, value))

    class FakeTransport:
        def __init__(self, sock: FakeSocket) -> None:
            self.sock = sock

        def get_extra_info(self, name: str) -> object:
            return {"socket": self.sock, "peername": ("192.0.2.1", 1234),
                    "sockname": ("127.0.0.1", 143)}.get(name)

    sock = FakeSocket()
    loop = asyncio.new_event_loop()
    try:
        conn = Connection("imap", loop)
        conn.connection_made(FakeTransport(sock))    # type: ignore[arg-type]
        sock.calls.clear()
        conn.data_received(b"Subject: x\r\n\r\nhello\r\n")
        conn.data_received(b"\r\n")
    finally:
        loop.close()
    assert sock.calls == [(socket_mod.IPPROTO_TCP, quickack, 1)] * 2


async def test_transform_that_holds_back_keeps_the_buffer_bounded() -> None:
    """A transform whose output is 1000x its input (a deflate bomb) hands it out piecewise:
    the connection's buffer stays near the high-water mark and every byte arrives in order."""
    from casella.net import streams

    class Bomb:
        def __init__(self) -> None:
            self.backlog = bytearray()

        @property
        def pending(self) -> bool:
            return bool(self.backlog)

        def decode(self, data: bytes) -> bytes:
            for b in data:
                self.backlog += bytes([b]) * (1 << 20)
            out = bytes(self.backlog[:64 * 1024])
            del self.backlog[:64 * 1024]
            return out

        def encode(self, data: bytes) -> bytes:
            return data

    peak = 0
    received = bytearray()

    class Reader(Echo):
        async def handle(self, conn: Connection) -> None:
            nonlocal peak
            await conn.read_line(100, timeout=5)
            conn.set_transform(Bomb())
            await conn.send(b"go\r\n")
            while len(received) < 10 << 20:
                peak = max(peak, conn.buffered)
                received.extend(await conn.read_some(32 * 1024, timeout=10))
            await conn.send(b"done\r\n")

    group, port = await start(Reader())
    try:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(b"start\r\n")
        assert await r.readline() == b"go\r\n"
        w.write(b"abcdefghij")
        assert await asyncio.wait_for(r.readline(), 30) == b"done\r\n"
        assert peak <= 2 * streams._READ_HIGH_WATER
        expected = b"".join(bytes([c]) * (1 << 20) for c in b"abcdefghij")
        assert bytes(received) == expected
        w.close()
    finally:
        await group.stop(1)
