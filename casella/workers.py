"""Several worker processes on the same listening sockets (`[server] workers = N`).

Lives here: the supervisor (binds the sockets, drops privileges, repairs the store once, forks
N workers, relays change events between them, restarts a worker that dies, stops them all on
SIGTERM/SIGINT, empties the metrics directory at start and marks a dead worker's files there)
and `RelayBus`, the change bus of a worker, which also tells the other workers through the
supervisor. A session in one worker thus hears of a commit made in another, so IDLE
and multi-client updates work across processes. Only worker 0 runs the background services
(the outbound queue runner). Must never: fork after an event loop or a store thread exists in
the supervisor, or let a worker keep the other workers' relay sockets.

Connection limits per IP and per user+IP hold across the workers: they count in the store
(casella.limits.connections), each worker as the owner "<host>/<index>"; the supervisor starts
the counts from zero, and a worker started in place of a dead one first drops what the dead one
held, so a crash never leaves connections counted that are gone.
"""

from __future__ import annotations

import asyncio
import ctypes  # imported here, while root: after the privilege drop it may not be readable
import logging
import os
import signal
import socket
import struct
import sys
import time
from typing import Callable

from casella import eventloop, metrics
from casella.config import Config, HostPort
from casella.store.changes import ChangeBus

log = logging.getLogger("casella.workers")

_EVENT = struct.Struct("!QQQ")  # account id, mailbox id, modseq


class RelayBus(ChangeBus):
    """A worker's bus: local subscribers as usual, and every local commit told to the
    supervisor, which passes it to the other workers."""

    def __init__(self, relay: socket.socket) -> None:
        super().__init__()
        self._relay = relay
        self._relay.setblocking(False)

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.add_reader(self._relay.fileno(), self._on_remote)

    def publish(self, account_id: int, mailbox_id: int, modseq: int) -> None:
        # Relayed first: waking this worker's own subscribers (thousands of IDLE sessions)
        # takes a while, and the other workers need not wait for it.
        try:
            self._relay.send(_EVENT.pack(account_id, mailbox_id, modseq))
        except (BlockingIOError, OSError) as exc:
            # The other workers' sessions catch up at their next command or event.
            log.warning("change event not relayed: %s", exc)
        super().publish(account_id, mailbox_id, modseq)

    def _on_remote(self) -> None:
        while True:
            try:
                data = self._relay.recv(_EVENT.size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                # EOF: the supervisor is gone. A worker never outlives it (nobody would stop or
                # restart it, and a new supervisor would run beside it), and a socket at EOF is
                # readable for ever, so stop listening to it and stop gracefully.
                asyncio.get_running_loop().remove_reader(self._relay.fileno())
                log.error("the supervisor is gone; this worker stops")
                os.kill(os.getpid(), signal.SIGTERM)
                return
            if len(data) != _EVENT.size:
                return
            super().publish(*_EVENT.unpack(data))


def _die_with_parent(supervisor_pid: int) -> None:
    """Linux: have the kernel send SIGTERM to this worker if the supervisor dies (even by
    SIGKILL), and leave at once if it died before the request took effect."""
    try:
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except (OSError, AttributeError):
        pass
    if os.getppid() != supervisor_pid:
        os._exit(0)


def _worker(index: int, config: Config, sockets: dict[str, socket.socket],
            relay: socket.socket) -> int:
    from casella.log import set_process_label
    from casella.server import Server

    set_process_label(f"worker={index}")

    async def main() -> int:
        loop = asyncio.get_running_loop()
        bus = RelayBus(relay)
        bus.attach(loop)
        server = Server(config, sockets=sockets, bus=bus, repair=False,
                        run_background=index == 0, worker=index)
        await server.start()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await server.stop()
        return 0

    return eventloop.run(main(), config.server.event_loop)


async def _repair(config: Config) -> None:
    from casella.errors import StorageError
    from casella.limits.connections import node_name
    from casella.server import open_store

    store = open_store(config)
    await store.open(repair=True)
    # No worker runs yet: none of this node's connections is open (a worker that replaces a
    # dead one forgets what that one held itself, casella.server.Server.start).
    try:
        await store.connections_forget(node_name())
    except StorageError as exc:
        log.error("connection counts not reset: %s", exc)
    await store.close()


class Supervisor:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.sockets: dict[str, socket.socket] = {}
        self.children: dict[int, int] = {}          # pid -> worker index
        self.relays: dict[int, socket.socket] = {}  # worker index -> supervisor's end
        self.stop_requested = False

    def bound(self) -> dict[str, HostPort]:
        out = {}
        for name, sock in self.sockets.items():
            host, port = sock.getsockname()[:2]
            out[name] = HostPort(host, port)
        return out

    def _spawn(self, index: int) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        old = self.relays.pop(index, None)
        if old is not None:
            old.close()
        supervisor_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
                _die_with_parent(supervisor_pid)
                ours.close()
                for other in self.relays.values():
                    other.close()
                code = _worker(index, self.config, self.sockets, theirs)
            except BaseException:
                log.exception("worker %d failed", index)
            finally:
                logging.shutdown()
                os._exit(code)
        theirs.close()
        ours.setblocking(False)
        self.relays[index] = ours
        self.children[pid] = index
        log.info("worker %d started (pid %d)", index, pid)

    def _forward(self, index: int) -> None:
        sock = self.relays.get(index)
        if sock is None:
            return
        while True:
            try:
                data = sock.recv(_EVENT.size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if not data:
                # The worker is gone; the waitpid poll restarts it. Until then its socket is
                # readable for ever: stop watching it.
                asyncio.get_running_loop().remove_reader(sock.fileno())
                return
            for other, peer in self.relays.items():
                if other != index:
                    try:
                        peer.send(data)
                    except OSError:
                        pass

    def _prepare(self) -> None:
        from casella.net.tls import server_context
        from casella.server import bind_sockets, drop_privileges, raise_file_limit

        config = self.config
        raise_file_limit()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        server_context(config)  # creates the certificate, fails early if it is unreadable
        # /metrics sums every worker's counts from files there (before the privilege drop,
        # which hands the directory to server.user with the rest of data_dir).
        metrics.enable_multiprocess(config.data_dir / "metrics")
        self.sockets = bind_sockets(config)
        drop_privileges(config)

    def serve(self, on_ready: Callable[[dict[str, HostPort]], None] | None) -> int:
        # The supervisor forks before it has any event loop or store thread running; its
        # own loop (relaying events, watching workers) starts after the fork.
        def early_stop(signum: int, frame: object) -> None:
            self.stop_requested = True

        # A signal before the supervising loop runs (e.g. right after "ready") must not be
        # lost or turn into a KeyboardInterrupt.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, early_stop)
        self._prepare()
        eventloop.run(_repair(self.config), self.config.server.event_loop)
        for index in range(self.config.server.workers):
            self._spawn(index)
        if on_ready is not None:
            on_ready(self.bound())
        return eventloop.run(self._supervise(), self.config.server.event_loop)

    async def _supervise(self) -> int:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if self.stop_requested:
            stop.set()
        watched: set[int] = set()

        def watch() -> None:
            for index, sock in self.relays.items():
                if sock.fileno() not in watched:
                    loop.add_reader(sock.fileno(), self._forward, index)
                    watched.add(sock.fileno())

        watch()
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except (TimeoutError, asyncio.TimeoutError):
                pass
            for pid, index in list(self.children.items()):
                try:
                    done, status = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done, status = pid, 0
                if done and not stop.is_set():
                    del self.children[pid]
                    sock = self.relays.get(index)
                    if sock is not None:
                        loop.remove_reader(sock.fileno())
                        watched.discard(sock.fileno())
                    log.error("worker %d (pid %d) ended with status %d; restarting", index,
                              pid, status)
                    metrics.mark_process_dead(pid)
                    time.sleep(0.5)
                    self._spawn(index)
                    watch()
        log.info("shutting down %d workers", len(self.children))
        for pid in self.children:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + self.config.server.shutdown_grace_seconds + 5
        while self.children and time.monotonic() < deadline:
            for pid in list(self.children):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    done = pid
                if done:
                    del self.children[pid]
            await asyncio.sleep(0.05)
        for pid in self.children:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        log.info("stopped")
        return 0


def serve(config: Config,
          on_ready: Callable[[dict[str, HostPort]], None] | None = None) -> int:
    """`casella serve`: one process, or a supervisor and `server.workers` workers."""
    if config.server.workers <= 1:
        from casella.server import run
        return eventloop.run(run(config, (lambda srv: on_ready(srv.bound)) if on_ready else None),
                             config.server.event_loop)
    sys.stdout.flush()
    sys.stderr.flush()
    return Supervisor(config).serve(on_ready)
