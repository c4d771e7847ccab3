"""Listeners: bind each configured address, hand each connection to its protocol service, count
connections per IP, and stop cleanly.

Lives here: `Service` (what a protocol package provides), `ListenerGroup` (start, per-IP
connection counting, graceful stop: stop accepting, let commands in flight finish within the
grace period, then close). Must never: parse a protocol or touch the store.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from casella import metrics
from casella.config import HostPort
from casella.net.streams import Connection

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
    max_total: int = 5000
    max_per_ip: int = 50


@dataclass
class ListenerGroup:
    """All listening sockets of one process and the sessions they serve."""

    tls_context: ssl.SSLContext | None
    limits: ConnectionLimits = field(default_factory=ConnectionLimits)
    tls_handshake_timeout: float = 30.0
    servers: list[asyncio.Server] = field(default_factory=list)
    sessions: dict[Connection, asyncio.Task[None]] = field(default_factory=dict)
    per_ip: Counter[str] = field(default_factory=Counter)
    bound: dict[str, HostPort] = field(default_factory=dict)

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

    def _accepted(self, conn: Connection, service: Service) -> None:
        ip = conn.peer_ip
        total = len(self.sessions)
        if total >= self.limits.max_total or self.per_ip[ip] >= self.limits.max_per_ip:
            reason = "too many connections" if total >= self.limits.max_total \
                else "too many connections from your address"
            log.warning("refused: %s", reason, extra=conn.describe())
            metrics.connection_refused(conn.listener)
            conn.write(service.refuse(conn, reason))
            conn.close()
            return
        self.per_ip[ip] += 1
        task = asyncio.get_running_loop().create_task(self._run(conn, service))
        self.sessions[conn] = task

    async def _run(self, conn: Connection, service: Service) -> None:
        log.info("connect", extra=conn.describe())
        metrics.connection_opened(conn.listener)
        try:
            await service.handle(conn)
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("session crashed", extra=conn.describe())
        finally:
            conn.close()
            metrics.connection_closed(conn.listener)
            self.sessions.pop(conn, None)
            self.per_ip[conn.peer_ip] -= 1
            if self.per_ip[conn.peer_ip] <= 0:
                del self.per_ip[conn.peer_ip]
            log.info("disconnect", extra=conn.describe())

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, ask every session to end after its command in flight, wait up to
        `grace` seconds, then cancel what is left."""
        for server in self.servers:
            server.close()
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
