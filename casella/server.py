"""The server process: open the store, build the TLS context, start every configured listener,
and stop cleanly on SIGTERM/SIGINT.

Lives here: `Server` (start/stop, bound ports), the map from listener names to the protocol
packages that serve them, and `run` used by `casella serve`. Must never: contain protocol
logic or SQL.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import signal
import socket
from typing import Any, Callable

from casella.app import App
from casella.auth.authenticator import Authenticator
from casella.config import Config, HostPort
from casella.errors import ConfigError, StorageError
from casella.limits.connections import ConnectionCounter, node_name, owner_id
from casella.net.listener import ConnectionLimits, ListenerGroup, Service
from casella.net.tls import server_context
from casella.store.base import Store
from casella.store.changes import ChangeBus

log = logging.getLogger("casella.server")

# Which package serves which listener; each has `services(app) -> dict[str, Service]`.
PROVIDERS: dict[str, str] = {
    "smtp": "casella.smtp.server",
    "submission": "casella.smtp.server",
    "submissions": "casella.smtp.server",
    "imap": "casella.imap.server",
    "imaps": "casella.imap.server",
    "pop3": "casella.pop3.server",
    "pop3s": "casella.pop3.server",
    "http": "casella.http.server",
    "https": "casella.http.server",
    "managesieve": "casella.managesieve.server",
}


def open_store(config: Config, bus: ChangeBus | None = None) -> Store:
    if config.store.backend == "sqlite":
        from casella.store.sqlite import SQLiteStore
        return SQLiteStore(config.data_dir, bus=bus, search_index=config.store.search_index)
    raise ConfigError(f"store.backend = {config.store.backend!r}: this build has no such "
                      "backend yet")


def bind_sockets(config: Config) -> dict[str, socket.socket]:
    """Bind every listening socket first: as root this happens before privileges are dropped,
    and a port in use stops start-up before anything else is touched."""
    sockets: dict[str, socket.socket] = {}
    try:
        for name, address in config.listen.items():
            infos = socket.getaddrinfo(address.host or None, address.port,
                                       type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
            family, _, _, _, sockaddr = infos[0]
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(sockaddr)
            except OSError as exc:
                sock.close()
                raise ConfigError(f"listen.{name} = {str(address)!r}: cannot listen: "
                                  f"{exc.strerror or exc}") from exc
            sock.listen(1024)
            sock.setblocking(False)
            sockets[name] = sock
    except BaseException:
        for sock in sockets.values():
            sock.close()
        raise
    return sockets


class Server:
    """One process's share of the service. Alone (workers = 1) it does everything; as one of
    several workers it gets the sockets already bound, the store already repaired, a bus that
    reaches the other workers, and only worker 0 runs the background services."""

    def __init__(self, config: Config, *, sockets: dict[str, socket.socket] | None = None,
                 bus: ChangeBus | None = None, repair: bool = True,
                 run_background: bool = True, worker: int = 0) -> None:
        self.config = config
        self.worker = worker
        self.store: Store | None = None
        self.app: App | None = None
        self.listeners: ListenerGroup | None = None
        self.bound: dict[str, HostPort] = {}
        self._sockets = sockets
        self._bus = bus
        self._repair = repair
        self._run_background = run_background
        # Long-running services with start()/stop() (the outbound queue runner, the online
        # vacuum, the search index's backfill).
        self.background: list[Any] = []
        # Listener services with async open()/close() around their listeners' life (HTTP).
        self._opened: list[Any] = []

    async def start(self) -> None:
        config = self.config
        tls = server_context(config)
        if self._sockets is None:
            config.data_dir.mkdir(parents=True, exist_ok=True)
            sockets = bind_sockets(config)
            try:
                drop_privileges(config)
            except BaseException:
                for sock in sockets.values():
                    sock.close()
                raise
        else:
            sockets = self._sockets
        store = open_store(config, self._bus)
        await store.open(repair=self._repair)
        self.store = store
        # Connection limits count in the store, as this process's owner id. Alone, this
        # process starts its node's counts from zero; a worker forgets what the worker it
        # replaces left counted (the supervisor forgot the node's at start-up).
        counter = ConnectionCounter(store, owner_id(self.worker))
        try:
            if self._repair:
                await store.connections_forget(node_name())
            else:
                await counter.forget_own()
        except StorageError as exc:
            log.error("connection counts not reset: %s", exc)
        self.app = App(config=config, store=store, auth=Authenticator(store, config),
                       tls_context=tls, connections=counter, bound=self.bound)
        if config.spam.rspamd or config.spam.controller:
            from casella.delivery.spam import SpamFilter

            self.app.spam = SpamFilter(config.spam)
        self.listeners = ListenerGroup(
            tls_context=tls,
            limits=ConnectionLimits(max_total=config.limits.max_connections,
                                    max_per_ip=config.limits.max_connections_per_ip),
            ip_counter=counter,
            proxy_from=config.proxy_protocol.trusted,
            proxy_timeout=config.proxy_protocol.timeout)
        services: dict[str, Service] = {}
        for name in config.listen:
            module_name = PROVIDERS[name]
            if name not in services:
                module = importlib.import_module(module_name)
                services.update(module.services(self.app))
        for service in {id(s): s for s in services.values()}.values():
            if hasattr(service, "open"):
                await service.open()
                self._opened.append(service)
        for name, address in config.listen.items():
            self.bound[name] = await self.listeners.start(name, address, services[name],
                                                          sock=sockets[name])
        if self._run_background:
            from casella.smtp.queue import QueueRunner
            from casella.store.indexer import SearchIndexer
            from casella.store.vacuum import VacuumRunner

            self.background.append(QueueRunner(store, config))
            # One process per data_dir gives free pages back (each step takes the write lock).
            self.background.append(VacuumRunner(
                store, threshold=config.store.vacuum_threshold,
                step_pages=config.store.vacuum_step_pages,
                interval=config.store.vacuum_interval,
                check_interval=config.store.vacuum_check_interval))
            if config.store.search_index:
                self.background.append(SearchIndexer(store))
        for obj in self.background:
            await obj.start()

    async def stop(self) -> None:
        for obj in reversed(self.background):
            await obj.stop()
        self.background.clear()
        if self.listeners is not None:
            await self.listeners.stop(self.config.server.shutdown_grace_seconds)
        if self.app is not None and self.app.spam is not None:
            await self.app.spam.close()       # pending learning reads the store: first
        for service in reversed(self._opened):
            await service.close()
        self._opened.clear()
        if self.store is not None:
            if self.app is not None:
                # Sessions cut off at the end of the grace period may not have released theirs.
                try:
                    await self.app.connections.forget_own()
                except StorageError as exc:
                    log.warning("connection counts not dropped at stop: %s", exc)
            await self.store.close()


def raise_file_limit() -> None:
    """One descriptor per connection: lift the soft limit to the hard one, as Dovecot's master
    does for its services, so thousands of idle IMAP clients fit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass


def preload_modules() -> None:
    """Import, while still root, everything imported lazily later: after the switch to an
    unprivileged user the interpreter's own files may no longer be readable (e.g. a Python
    installed under /root), and a lazy import would then fail in the middle of a session."""
    import encodings
    import pkgutil

    import casella

    for info in pkgutil.walk_packages(casella.__path__, "casella."):
        if info.name.startswith("casella.__main__"):
            continue
        importlib.import_module(info.name)
    for info in pkgutil.iter_modules(encodings.__path__, "encodings."):
        try:
            importlib.import_module(info.name)
        except ImportError:  # platform-specific codecs (mbcs, oem)
            pass
    for name in ("email.parser", "email.policy", "email.header", "email.utils", "email.charset",
                 "quopri", "base64", "binascii", "zlib", "hmac", "hashlib", "html", "mmap",
                 "unicodedata", "sqlite3", "ssl", "uuid", "json", "concurrent.futures",
                 "spf", "dkim", "dkim.util", "authres", "authres.dmarc", "nacl.signing",
                 "nacl.encoding", "dns.asyncresolver", "dns.resolver", "publicsuffixlist"):
        importlib.import_module(name)
    from casella.smtp.authcheck import organizational_domain

    organizational_domain("example.com")     # loads the public suffix list data file


def drop_privileges(config: Config) -> None:
    """Started as root: hand data_dir to `server.user` and become that user (PROMISES: a mail
    server never keeps root). Refuse to stay root unless `server.allow_root` says so."""
    if os.geteuid() != 0:
        return
    user = config.server.user
    if not user:
        if config.server.allow_root:
            log.warning("running as root (server.allow_root = true)")
            return
        raise ConfigError("server.user = '': casella refuses to run as root; set server.user "
                          "to an unprivileged user (or server.allow_root = true)")
    import pwd

    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(f"server.user = {user!r}: no such user") from None
    if entry.pw_uid == 0:
        raise ConfigError(f"server.user = {user!r}: that is root")
    preload_modules()
    for dirpath, dirnames, filenames in os.walk(config.data_dir):
        os.chown(dirpath, entry.pw_uid, entry.pw_gid)
        for f in filenames:
            os.chown(os.path.join(dirpath, f), entry.pw_uid, entry.pw_gid)
    os.setgroups([])
    os.setgid(entry.pw_gid)
    os.setuid(entry.pw_uid)
    os.environ["HOME"] = entry.pw_dir
    log.info("running as %s (uid %d)", user, entry.pw_uid)


async def run(config: Config, on_ready: Callable[[Server], None] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; then stop accepting, let commands in flight finish, exit 0."""
    raise_file_limit()
    server = Server(config)
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if on_ready is not None:
        on_ready(server)
    await stop.wait()
    log.info("shutting down")
    await server.stop()
    log.info("stopped")
    return 0
