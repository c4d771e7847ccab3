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
import signal
from typing import Callable

from casella.app import App
from casella.auth.authenticator import Authenticator
from casella.config import Config, HostPort
from casella.errors import ConfigError
from casella.net.listener import ListenerGroup, Service
from casella.net.tls import server_context
from casella.store.base import Store

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
}


def open_store(config: Config) -> Store:
    if config.store.backend == "sqlite":
        from casella.store.sqlite import SQLiteStore
        return SQLiteStore(config.data_dir)
    raise ConfigError(f"store.backend = {config.store.backend!r}: this build has no such "
                      "backend yet")


class Server:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.store: Store | None = None
        self.app: App | None = None
        self.listeners: ListenerGroup | None = None
        self.bound: dict[str, HostPort] = {}
        self._background: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        config = self.config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        tls = server_context(config)
        store = open_store(config)
        await store.open()
        self.store = store
        self.app = App(config=config, store=store, auth=Authenticator(store, config),
                       tls_context=tls)
        self.listeners = ListenerGroup(tls_context=tls)
        services: dict[str, Service] = {}
        for name in config.listen:
            module_name = PROVIDERS[name]
            if name not in services:
                module = importlib.import_module(module_name)
                services.update(module.services(self.app))
        try:
            for name, address in config.listen.items():
                self.bound[name] = await self.listeners.start(name, address, services[name])
        except OSError as exc:
            await self.stop()
            raise ConfigError(f"listen.{name} = {str(address)!r}: cannot listen: "
                              f"{exc.strerror or exc}") from exc
        for service in {id(s): s for s in services.values()}.values():
            starter = getattr(service, "start_background", None)
            if starter is not None:
                task = starter()
                if task is not None:
                    self._background.append(task)

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self.listeners is not None:
            await self.listeners.stop(self.config.server.shutdown_grace_seconds)
        if self.store is not None:
            await self.store.close()


async def run(config: Config, on_ready: Callable[[Server], None] | None = None) -> int:
    """Serve until SIGTERM or SIGINT; then stop accepting, let commands in flight finish, exit 0."""
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
