"""One client connection: a bounded, deadline-guarded reader and a writer over asyncio.

Lives here: `Connection`, an asyncio.Protocol with its own input buffer, read_line with a
maximum length, read_exactly/read_some for literals and DATA, `unread` for pipelined bytes,
write/drain with flow control, the STARTTLS upgrade that throws away plaintext pipelined after
the STARTTLS command (RFC 3207 §4.2, RFC 2595 §3.1, RFC 9051 §6.2.1), an optional stream
transform (COMPRESS=DEFLATE), and a shutdown signal. Must never: know a protocol's grammar,
touch the store, or block the loop.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import ssl
import time
from typing import Any, Callable, Protocol, cast

log = logging.getLogger("casella.net")

_READ_HIGH_WATER = 256 * 1024
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)     # Linux only
_ids = itertools.count(1)
# The client a load balancer named (PROXY protocol) for each transport whose connection came
# through one, by transport id, while the connection lasts: code that reads a transport
# itself after `hand_over` (the HTTP listener) asks `client_address` instead of `peername`.
_clients: dict[int, tuple[str, int]] = {}


def client_address(transport: object) -> tuple[str, int] | None:
    """The client a PROXY header named for this transport's connection, if it had one."""
    return _clients.get(id(transport))


class ConnectionClosed(Exception):
    """The peer closed the connection (or it was reset) before the read completed."""


class ReadTimeout(Exception):
    """The peer sent nothing complete within the deadline."""


class LineTimeout(ReadTimeout):
    """A line was started but not finished within read_line's `line_timeout`: a slow-drip
    (slowloris) client. A ReadTimeout, so code that does not tell them apart still works."""


class LineTooLong(Exception):
    """A line exceeded the maximum length. The rest of it was consumed and discarded, so the
    next read starts on the following line."""

    def __init__(self, length: int, head: bytes = b"", tail: bytes = b"") -> None:
        super().__init__(f"line of {length} octets is too long")
        self.length = length
        self.head = head    # the first <= 128 bytes of the line (IMAP answers with its tag)
        self.tail = tail    # the last <= 64 bytes without the line end (a LITERAL+ {n+}?)


class ServerShutdown(Exception):
    """The server is stopping: the session should say goodbye and end."""


class StreamTransform(Protocol):
    """A byte-stream codec placed under the protocol after authentication (COMPRESS).

    `decode` may hand out only part of what its input expands to (a deflate bomb inflates
    1000:1) and keep the rest; it then reports `pending`, and the connection pauses the
    transport and calls `decode(b"")` for more as the session reads, so a connection's input
    stays bounded by the same high-water mark with or without a transform."""

    def decode(self, data: bytes) -> bytes: ...
    def encode(self, data: bytes) -> bytes: ...


class Connection(asyncio.Protocol):
    """A client connection with an input buffer the session reads through."""

    def __init__(self, listener: str, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.id = f"{next(_ids):x}"
        self.listener = listener
        self.loop = loop or asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer_ip = ""
        self.peer_port = 0
        # Behind a load balancer (PROXY protocol): the client it named, set before the
        # connection is made; peer_ip/peer_port then are the client's, proxy_ip the balancer's.
        self.proxied_peer: tuple[str, int] | None = None
        self.proxy_ip = ""
        self.local_port = 0
        self.tls = False
        self.tls_version: str | None = None
        self.tls_cipher: str | None = None
        self.user: str | None = None
        self.started = time.monotonic()
        self.closed = asyncio.Event()
        self._buf = bytearray()
        self._eof = False
        self._lost_exc: BaseException | None = None
        self._read_waiter: asyncio.Future[None] | None = None
        self._wait_deadline: float | None = None   # of the read now waiting (loop time)
        self._wait_slow_line = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._paused_reading = False
        self._write_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._transform: StreamTransform | None = None
        self._shutdown = False
        self.on_made: Callable[[Connection], None] | None = None
        # Called by request_shutdown: for a session that no longer reads through this object
        # (hand_over), so it hears that the server is stopping.
        self.on_shutdown: Callable[[], None] | None = None
        self._tcp_sock: Any = None             # the TCP socket, for TCP_QUICKACK after reads

    # --- asyncio.Protocol callbacks ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, only alike.
        self.transport = cast(asyncio.Transport, transport)
        # asyncio disables Nagle only for sockets whose proto is IPPROTO_TCP, which accepted
        # sockets are not: without this, a reply written in two pieces waits for the client's
        # delayed ACK (40 ms on Linux).
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self._tcp_sock = sock
            except OSError:
                pass
        peer = transport.get_extra_info("peername")
        if self.proxied_peer is not None:
            self.proxy_ip = peer[0] if peer else ""
            peer = self.proxied_peer
            _clients[id(transport)] = peer
        if peer:
            self.peer_ip, self.peer_port = peer[0], peer[1]
        sock = transport.get_extra_info("sockname")
        if sock:
            self.local_port = sock[1]
        self._note_tls(transport)
        if self.on_made is not None:
            self.on_made(self)

    def data_received(self, data: bytes) -> None:
        if self._tcp_sock is not None and _QUICKACK is not None:
            # Acknowledge what arrived at once rather than after the delayed-ACK timer: a
            # client that writes a literal and its closing CRLF (or a DATA's last line) in two
            # pieces holds the second back under Nagle's algorithm until this ACK comes, 40 ms
            # on Linux (Dovecot sets it after its reads too). The kernel clears it again by
            # itself, hence once per read.
            try:
                self._tcp_sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
            except OSError:
                self._tcp_sock = None
        if self._transform is not None:
            try:
                data = self._transform.decode(data)
            except Exception as exc:  # corrupt compressed stream: the session cannot go on
                self._lost_exc = exc
                self._eof = True
                self._wake()
                if self.transport is not None:
                    self.transport.abort()
                return
        self._buf += data
        held_back = self._transform is not None and getattr(self._transform, "pending", False)
        if (held_back or len(self._buf) > _READ_HIGH_WATER) and not self._paused_reading \
                and self.transport:
            self._paused_reading = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self._eof = True
        self._wake()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._forget_client()
        self._cancel_timer()    # a pending timer would keep this connection alive until then
        self._eof = True
        self._lost_exc = exc
        self._wake()
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_exception(ConnectionClosed("connection lost"))
        self._drain_waiters.clear()
        self.closed.set()

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        for fut in self._drain_waiters:
            if not fut.done():
                fut.set_result(None)
        self._drain_waiters.clear()

    # --- reading -------------------------------------------------------------------------

    def _wake(self) -> None:
        waiter = self._read_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _consumed(self) -> None:
        transform = self._transform
        while transform is not None and getattr(transform, "pending", False) and \
                len(self._buf) < _READ_HIGH_WATER // 2:
            try:
                self._buf += transform.decode(b"")
            except Exception as exc:
                self._lost_exc = exc
                self._eof = True
                if self.transport is not None:
                    self.transport.abort()
                break
        if transform is not None and getattr(transform, "pending", False):
            return  # keep the transport paused until the held-back bytes are read
        if self._paused_reading and len(self._buf) < _READ_HIGH_WATER // 2 and self.transport:
            self._paused_reading = False
            self.transport.resume_reading()

    async def _wait_data(self, deadline: float | None,
                         line_deadline: float | None = None) -> None:
        """Wait until more bytes arrive, EOF, shutdown or the deadline (LineTimeout when the
        line deadline is the earlier one)."""
        if self._eof:
            raise ConnectionClosed("connection closed by peer")
        if self._shutdown:
            raise ServerShutdown()
        slow_line = line_deadline is not None and (deadline is None or line_deadline < deadline)
        if slow_line:
            deadline = line_deadline
        waiter = self.loop.create_future()
        self._read_waiter = waiter
        try:
            if deadline is not None:
                if deadline <= self.loop.time():
                    raise LineTimeout() if slow_line else ReadTimeout()
                self._wait_deadline = deadline
                self._wait_slow_line = slow_line
                self._arm_timer(deadline)
            await waiter
        finally:
            self._read_waiter = None
            self._wait_deadline = None
        if self._shutdown and not self._buf:
            raise ServerShutdown()

    # One timer per connection, re-armed lazily, rather than a timeout context per read: a
    # deadline usually moves later with each command, so the timer that is already set (for
    # an earlier one) is kept, and when it fires it only sets itself again for the deadline
    # of the read then waiting. A read that waits costs no timer handle of its own.

    def _arm_timer(self, deadline: float) -> None:
        if self._timer is not None:
            if self._timer_when <= deadline:
                return
            self._timer.cancel()
        self._timer = self.loop.call_at(deadline, self._on_timer)
        self._timer_when = deadline

    def _on_timer(self) -> None:
        self._timer = None
        waiter, deadline = self._read_waiter, self._wait_deadline
        if waiter is None or deadline is None or waiter.done():
            return
        if self.loop.time() >= deadline:
            waiter.set_exception(LineTimeout() if self._wait_slow_line else ReadTimeout())
        else:
            self._arm_timer(deadline)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _deadline(self, timeout: float | None) -> float | None:
        return None if timeout is None else self.loop.time() + timeout

    @property
    def buffered(self) -> int:
        """Bytes received and not yet read (pipelined input)."""
        return len(self._buf)

    async def read_line(self, max_length: int, timeout: float | None = None,
                        line_timeout: float | None = None) -> bytes:
        """One line without its CRLF (or bare LF) ending. Raises LineTooLong after discarding
        an over-long line through its end, ReadTimeout, ConnectionClosed or ServerShutdown.

        `timeout` bounds the whole call (the idle time included). `line_timeout`, when given,
        also bounds the time from the line's first byte to its end, so a client dripping one
        byte every few seconds is cut off (LineTimeout) long before the idle timeout."""
        deadline = self._deadline(timeout)
        line_deadline: float | None = None
        scanned = 0
        while True:
            idx = self._buf.find(b"\n", scanned)
            if idx >= 0:
                end = idx - 1 if idx > 0 and self._buf[idx - 1] == 0x0D else idx
                if idx > max_length + 1:
                    head, tail = bytes(self._buf[:128]), bytes(self._buf[max(0, end - 64):end])
                    del self._buf[: idx + 1]
                    self._consumed()
                    raise LineTooLong(idx + 1, head, tail)
                line = bytes(self._buf[:end])
                del self._buf[: idx + 1]
                self._consumed()
                return line
            if line_timeout is not None and self._buf and line_deadline is None:
                line_deadline = self.loop.time() + line_timeout
            if len(self._buf) > max_length + 1:
                await self._discard_line(len(self._buf), deadline, line_deadline)
            scanned = len(self._buf)
            if self._eof:
                raise ConnectionClosed("connection closed by peer")
            await self._wait_data(deadline, line_deadline)

    async def _discard_line(self, already: int, deadline: float | None,
                            line_deadline: float | None = None) -> None:
        total = already
        head = bytes(self._buf[:128])
        tail = bytes(self._buf[-65:])
        self._buf.clear()
        self._consumed()
        while True:
            await self._wait_data(deadline, line_deadline)
            idx = self._buf.find(b"\n")
            if idx >= 0:
                total += idx + 1
                last = (tail + bytes(self._buf[:idx]))[-65:]
                if last.endswith(b"\r"):
                    last = last[:-1]
                del self._buf[: idx + 1]
                self._consumed()
                raise LineTooLong(total, head, last[-64:])
            total += len(self._buf)
            tail = (tail + bytes(self._buf[-65:]))[-65:]
            self._buf.clear()
            self._consumed()

    async def read_exactly(self, n: int, timeout: float | None = None) -> bytes:
        """Exactly n bytes (use read_some in a loop for large literals)."""
        deadline = self._deadline(timeout)
        while len(self._buf) < n:
            await self._wait_data(deadline)
        data = bytes(self._buf[:n])
        del self._buf[:n]
        self._consumed()
        return data

    async def read_some(self, max_bytes: int, timeout: float | None = None) -> bytes:
        """Between 1 and max_bytes bytes, as soon as any are there."""
        if not self._buf:
            await self._wait_data(self._deadline(timeout))
        data = bytes(self._buf[:max_bytes])
        del self._buf[:max_bytes]
        self._consumed()
        return data

    def unread(self, data: bytes) -> None:
        """Put bytes back in front of the buffer (read too far, e.g. past end of DATA)."""
        if data:
            self._buf[:0] = data

    def discard_buffered(self) -> int:
        """Drop everything received and not read yet; returns how many bytes."""
        n = len(self._buf)
        self._buf.clear()
        self._consumed()
        return n

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._buf

    # --- writing -------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        if self._transform is not None:
            data = self._transform.encode(data)
        self.transport.write(data)

    async def drain(self) -> None:
        if self._lost_exc is not None or (self.transport is not None and self.transport.is_closing()):
            if self._eof:
                raise ConnectionClosed("connection lost")
        if not self._write_paused:
            return
        fut = self.loop.create_future()
        self._drain_waiters.append(fut)
        await fut

    async def send(self, data: bytes) -> None:
        self.write(data)
        await self.drain()

    # --- TLS and transforms --------------------------------------------------------------

    def _note_tls(self, transport: asyncio.BaseTransport) -> None:
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            self.tls = True
            self.tls_version = sslobj.version()
            cipher = sslobj.cipher()
            self.tls_cipher = cipher[0] if cipher else None

    async def start_tls(self, context: ssl.SSLContext, timeout: float = 30.0) -> None:
        """Upgrade to TLS as the server. Plaintext the client pipelined after the STARTTLS
        command is discarded first, so it can never be read as if it came through TLS."""
        assert self.transport is not None
        self.discard_buffered()
        self._eof = False
        try:
            new_transport = await self.loop.start_tls(
                self.transport, self, context, server_side=True, ssl_handshake_timeout=timeout)
        except (ssl.SSLError, OSError, ConnectionError, TimeoutError) as exc:
            if self.transport is not None:
                self.transport.abort()
            raise ConnectionClosed(f"TLS handshake failed: {exc}") from exc
        if new_transport is None:
            raise ConnectionClosed("TLS handshake failed")
        self.transport = new_transport
        self.discard_buffered()
        self._note_tls(new_transport)

    def set_transform(self, transform: StreamTransform) -> None:
        """Place a codec under the stream from the next byte on (RFC 4978 §3: compression starts
        right after the tagged OK); bytes already buffered were sent compressed, so decode them."""
        self._transform = transform
        if self._buf:
            pending = bytes(self._buf)
            self._buf.clear()
            self._buf += transform.decode(pending)

    # --- ending --------------------------------------------------------------------------

    def request_shutdown(self) -> None:
        """Ask the session to end at its next read (the command in flight may finish)."""
        self._shutdown = True
        self._wake()
        if self.on_shutdown is not None:
            self.on_shutdown()

    def hand_over(self, protocol: asyncio.BaseProtocol) -> None:
        """Give the transport to another protocol object (the HTTP listener's, which parses
        requests itself), with the bytes already received. The listener keeps counting this
        connection until its session ends; after this call nothing is read through here."""
        transport = self.transport
        if transport is None or self.closed.is_set() or transport.is_closing():
            raise ConnectionClosed("connection closed before it was handed over")
        pending = bytes(self._buf)
        self._buf.clear()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if pending and isinstance(protocol, asyncio.Protocol):
            protocol.data_received(pending)
        if self._paused_reading:
            self._paused_reading = False
            transport.resume_reading()
        if self._eof and isinstance(protocol, asyncio.Protocol):
            protocol.eof_received()

    @property
    def shutting_down(self) -> bool:
        return self._shutdown

    def _forget_client(self) -> None:
        if self.proxied_peer is not None and self.transport is not None:
            _clients.pop(id(self.transport), None)

    def close(self) -> None:
        # The listener closes every connection when its session ends (after a hand-over too).
        self._forget_client()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    async def wait_closed(self, timeout: float = 5.0) -> None:
        try:
            async with asyncio.timeout(timeout):
                await self.closed.wait()
        except TimeoutError:
            self.abort()

    def describe(self) -> dict[str, Any]:
        return {"conn": self.id, "proto": self.listener, "remote": self.peer_ip,
                "user": self.user or "-"}
