"""Listeners: bind each configured address, hand each connection to its protocol service, hold
the connection limits, and stop cleanly.

Lives here: `Service` (what a protocol package provides), `IpCounter` (what counts the
connections per client address: the server passes the one of casella.limits.connections,
shared by every worker and node through the store; `LocalIpCounter`, this process's count,
serves a group used on its own), `ListenerGroup` (start, the total per process and the per-address
limit, graceful stop: stop accepting, let commands in flight finish within the grace period,
then close), and the PROXY protocol behind a load balancer (issue 19): with
`[listen] proxy_protocol_from` set, a listener accepts connections itself, reads the header
(casella.net.proxyproto) of those from the trusted networks before anything else (before TLS
on an implicit-TLS port), never reads past it, and hands the connection on with the client's
address as its peer. Must never: parse a protocol or touch the store, or look for a PROXY
header on a connection from outside the trusted networks (proxy-protocol.txt §5).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import ssl
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from casella import metrics
from casella.config import HostPort
from casella.net.proxyproto import MAX_LENGTH, ProxyHeader, ProxyHeaderError, parse_proxy_header
from casella.net.streams import Connection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

log = logging.getLogger("casella.net")


class Service(Protocol):
    """A protocol front end for one listener (e.g. IMAP on `imaps`)."""

    name: str
    implicit_tls: bool

    async def handle(self, conn: Connection) -> None:
        """Run one session to its end. Must not raise for ordinary client misbehaviour."""

    def refuse(self, conn: Connection, reason: str) -> bytes:
        """The protocol's one-line refusal for a connection that may not be served
        (too many connections): `* BYE …`, `421 4.7.0 …`, `-ERR [IN-USE] …`."""


@dataclass
class ConnectionLimits:
    max_total: int = 5000       # per process
    max_per_ip: int = 50        # as the IpCounter counts (the server's: all processes)


class IpCounter(Protocol):
    """Counts open connections per client address."""

    async def acquire_ip(self, ip: str, limit: int) -> object | None:
        """A token to release when the connection ends, or None when `ip` already has
        `limit` connections (nothing is counted then)."""

    async def release(self, token: object | None) -> None: ...


class LocalIpCounter:
    """An IpCounter of this process's connections only (a ListenerGroup on its own)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    async def acquire_ip(self, ip: str, limit: int) -> object | None:
        if self.counts[ip] >= limit:
            return None
        self.counts[ip] += 1
        return ip

    async def release(self, token: object | None) -> None:
        if isinstance(token, str):
            self.counts[token] -= 1
            if self.counts[token] <= 0:
                del self.counts[token]


@dataclass
class ListenerGroup:
    """All listening sockets of one process and the sessions they serve."""

    tls_context: ssl.SSLContext | None
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    tls_handshake_timeout: float = 30.0
    servers: list[asyncio.Server] = field(default_factory=list)
    sessions: dict[Connection, asyncio.Task[None]] = field(default_factory=dict)
    ip_counter: IpCounter = field(default_factory=LocalIpCounter)
    bound: dict[str, HostPort] = field(default_factory=dict)
    proxy_from: Sequence[Network] = ()       # [listen] proxy_protocol_from
    proxy_timeout: float = 5.0               # [listen] proxy_protocol_timeout
    _accepting: list[tuple[asyncio.Task[None], socket.socket]] = field(default_factory=list)
    _handshakes: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self, name: str, address: HostPort, service: Service,
                    sock: socket.socket | None = None) -> HostPort:
        """Listen on `address` (port 0 picks a free port) and return the bound address."""
        loop = asyncio.get_running_loop()
        ctx = self.tls_context if service.implicit_tls else None
        if service.implicit_tls and ctx is None:
            raise RuntimeError(f"listener {name} needs a TLS context")

        def factory() -> Connection:
            conn = Connection(name, loop)
            conn.on_made = lambda c: self._accepted(c, service)
            return conn

        if self.proxy_from:
            return self._start_accepting(name, address, service, ctx, sock)
        if sock is not None:
            server = await loop.create_server(factory, sock=sock, ssl=ctx,
                                              ssl_handshake_timeout=self.tls_handshake_timeout
                                              if ctx else None, backlog=1024)
        else:
            server = await loop.create_server(
                factory, host=address.host or None, port=address.port, ssl=ctx,
                ssl_handshake_timeout=self.tls_handshake_timeout if ctx else None,
                reuse_address=True, backlog=1024)
        self.servers.append(server)
        sockname = server.sockets[0].getsockname()
        bound = HostPort(sockname[0], sockname[1])
        self.bound[name] = bound
        log.info("listening", extra={"proto": name, "remote": str(bound)})
        return bound

    # --- accepting behind a load balancer (PROXY protocol) -----------------------------------

    def _start_accepting(self, name: str, address: HostPort, service: Service,
                         ctx: ssl.SSLContext | None, sock: socket.socket | None) -> HostPort:
        if sock is None:
            sock = _bind(address)
        sock.setblocking(False)
        task = asyncio.get_running_loop().create_task(self._accept_loop(name, sock, service,
                                                                        ctx))
        self._accepting.append((task, sock))
        sockname = sock.getsockname()
        bound = HostPort(sockname[0], sockname[1])
        self.bound[name] = bound
        log.info("listening (PROXY protocol from %s)",
                 ", ".join(str(n) for n in self.proxy_from), extra={"proto": name,
                                                                   "remote": str(bound)})
        return bound

    def _trusted(self, ip: str) -> bool:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError:
            return False
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return any(addr in net for net in self.proxy_from)

    async def _accept_loop(self, name: str, sock: socket.socket, service: Service,
                           ctx: ssl.SSLContext | None) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, peer = await loop.sock_accept(sock)
            except OSError as exc:
                # Out of descriptors or a connection reset before accept: go on, briefly
                # paused so that a full descriptor table does not spin the loop.
                log.warning("accept failed: %s", exc, extra={"proto": name})
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    await asyncio.sleep(0.1)
                continue
            task = loop.create_task(self._handshake(name, client, peer[0], service, ctx))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    async def _handshake(self, name: str, client: socket.socket, ip: str, service: Service,
                         ctx: ssl.SSLContext | None) -> None:
        """The PROXY header (from a trusted network only), then TLS on an implicit-TLS port,
        then the session."""
        loop = asyncio.get_running_loop()
        client.setblocking(False)
        real: tuple[str, int] | None = None
        if self._trusted(ip):
            try:
                async with asyncio.timeout(self.proxy_timeout):
                    header = await read_proxy_header(loop, client)
            except (ProxyHeaderError, TimeoutError, OSError) as exc:
                why = "no PROXY header in time" if isinstance(exc, TimeoutError) else str(exc)
                log.warning("closed: %s", why, extra={"proto": name, "remote": ip})
                client.close()
                return
            real = header.source

        def factory() -> Connection:
            conn = Connection(name, loop)
            conn.proxied_peer = real
            conn.on_made = lambda c: self._accepted(c, service)
            return conn
        try:
            await loop.connect_accepted_socket(
                factory, client, ssl=ctx,
                ssl_handshake_timeout=self.tls_handshake_timeout if ctx else None)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.info("TLS handshake failed: %s", exc, extra={"proto": name, "remote": ip})
            client.close()

    def _accepted(self, conn: Connection, service: Service) -> None:
        if len(self.sessions) >= self.limits.max_total:
            self._refuse(conn, service, "too many connections")
            return
        task = asyncio.get_running_loop().create_task(self._run(conn, service))
        self.sessions[conn] = task

    @staticmethod
    def _refuse(conn: Connection, service: Service, reason: str) -> None:
        log.warning("refused: %s", reason, extra=conn.describe())
        metrics.connection_refused(conn.listener)
        conn.write(service.refuse(conn, reason))
        conn.close()

    async def _run(self, conn: Connection, service: Service) -> None:
        token: object | None = None
        try:
            token = await self.ip_counter.acquire_ip(conn.peer_ip, self.limits.max_per_ip)
            if token is None:
                self._refuse(conn, service, "too many connections from your address")
                return
            if conn.proxy_ip:
                log.info("connect through proxy %s", conn.proxy_ip, extra=conn.describe())
            else:
                log.info("connect", extra=conn.describe())
            metrics.connection_opened(conn.listener)
            await service.handle(conn)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("session crashed", extra=conn.describe())
        finally:
            conn.close()
            try:
                if token is not None:
                    metrics.connection_closed(conn.listener)
                    await self.ip_counter.release(token)
                    log.info("disconnect", extra=conn.describe())
            finally:
                # Only now: while a session is listed, its address may still be counted.
                self.sessions.pop(conn, None)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, ask every session to end after its command in flight, wait up to
        `grace` seconds, then cancel what is left."""
        for server in self.servers:
            server.close()
        for task, sock in self._accepting:
            task.cancel()
            sock.close()
        for task in list(self._handshakes):
            task.cancel()
        self._accepting.clear()
        for conn in list(self.sessions):
            conn.request_shutdown()
        tasks = list(self.sessions.values())
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        for conn in list(self.sessions):
            conn.abort()
        for server in self.servers:
            try:
                await asyncio.wait_for(server.wait_closed(), timeout=1.0)
            except (TimeoutError, asyncio.TimeoutError):
                pass
        self.servers.clear()


def _bind(address: HostPort) -> socket.socket:
    family, _, _, _, sockaddr = socket.getaddrinfo(address.host or None, address.port,
                                                   type=socket.SOCK_STREAM,
                                                   flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(sockaddr)
    sock.listen(1024)
    return sock


async def read_proxy_header(loop: asyncio.AbstractEventLoop,
                            sock: socket.socket) -> ProxyHeader:
    """Read exactly the PROXY header from a non-blocking socket and nothing after it, so the
    bytes that follow (a TLS ClientHello, a pipelined command) stay in the socket for the
    session. Bytes are peeked; as long as the header is incomplete every byte seen belongs to
    it and is taken, and once it is complete exactly its length is taken. At most
    proxyproto.MAX_LENGTH bytes are ever read. The caller bounds the time."""
    got = b""
    while True:
        try:
            seen = sock.recv(MAX_LENGTH - len(got), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            await _readable(loop, sock)
            continue
        if not seen:
            raise ProxyHeaderError("the connection closed before its PROXY header ended")
        header = parse_proxy_header(got + seen)
        take = len(seen) if header is None else header.length - len(got)
        while take:
            chunk = sock.recv(take)     # already received: never blocks, never short of it
            if not chunk:
                raise ProxyHeaderError("the connection closed inside its PROXY header")
            got += chunk
            take -= len(chunk)
        if header is not None:
            return header
        await _readable(loop, sock)


async def _readable(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)
    loop.add_reader(sock.fileno(), ready)
    try:
        await fut
    finally:
        loop.remove_reader(sock.fileno())
