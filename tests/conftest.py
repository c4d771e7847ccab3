"""Shared fixtures: a real casella server on loopback, running in a background thread with its
own event loop so tests can use blocking clients (imaplib, poplib, smtplib, imapclient).

`server` starts every listener on 127.0.0.1 with free ports and a temporary data_dir;
`make_server(**overrides)` takes config overrides as nested dicts. Servers stop at test end.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.util
import os
import ssl
import subprocess
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from casella.config import LISTENER_NAMES, Config, config_from_mapping, parse_size
from casella.eventloop import new_event_loop
from casella.server import PROVIDERS, Server
from casella.smtp.resolver import StaticResolver, set_resolver
from casella.store.model import Account
from tests.outbound.fakemx import FakeMX

T = TypeVar("T")


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def available_listeners() -> list[str]:
    """Listeners whose protocol package exists in this tree."""
    out = []
    for name in LISTENER_NAMES:
        try:
            if importlib.util.find_spec(PROVIDERS[name]) is not None:
                out.append(name)
        except ModuleNotFoundError:
            pass
    return out


def build_test_config(data_dir: Path, **overrides: Any) -> Config:
    listen = {name: "127.0.0.1:0" for name in available_listeners()}
    raw: dict[str, Any] = {
        "hostname": "mail.example.test",
        "data_dir": str(data_dir),
        "listen": listen,
        "auth": {"failure_delay": 0.05, "max_failure_delay": 0.2},
        "server": {"shutdown_grace_seconds": 2.0, "allow_root": True},
    }
    raw = _deep_merge(raw, overrides)
    return config_from_mapping(raw, data_dir.parent)


class RunningServer:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.data_dir = config.data_dir
        # The loop casella serves on ([server] event_loop): uvloop when installed.
        self.loop = new_event_loop(config.server.event_loop)
        self._thread = threading.Thread(target=self.loop.run_forever, name="casella-test",
                                        daemon=True)
        self._thread.start()
        self.server = Server(config)
        try:
            self.run(self.server.start())
        except BaseException:
            self._stop_loop()
            raise
        assert self.server.app is not None and self.server.store is not None
        self.app = self.server.app
        self.store = self.server.store
        self.cafile = config.tls_cert_path
        self._stopped = False

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        """Run a coroutine on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def port(self, name: str) -> int:
        return self.server.bound[name].port

    def add_user(self, address: str, password: str = "secret",
                 quota: str | int = "1G") -> Account:
        from casella.auth.passwords import hash_password

        async def go() -> Account:
            domain = address.rsplit("@", 1)[1]
            if await self.store.get_domain(domain) is None:
                await self.store.add_domain(domain)
            return await self.store.add_account(address, hash_password(password),
                                                parse_size(quota))
        return self.run(go())

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.cafile))
        ctx.check_hostname = False
        return ctx

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self.loop.is_running():
            self.loop.close()

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        try:
            self.run(self.server.stop(), timeout=30)
        finally:
            self._stop_loop()


@pytest.fixture(autouse=True)
def no_real_dns() -> Iterator[None]:
    """No test asks the internet's DNS: an empty table answers NXDOMAIN unless a test installs
    its own StaticResolver."""
    from casella.smtp.resolver import StaticResolver, set_resolver

    previous = set_resolver(StaticResolver())
    try:
        yield
    finally:
        set_resolver(previous)


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[Callable[..., RunningServer]]:
    started: list[RunningServer] = []
    counter = iter(range(1000))

    def make(**overrides: Any) -> RunningServer:
        srv = RunningServer(build_test_config(tmp_path / f"server{next(counter)}", **overrides))
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def server(make_server: Callable[..., RunningServer]) -> RunningServer:
    return make_server()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 12 MiB tmpfs to fill up (disk-full tests); mounting needs root."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12M", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def remote() -> Iterator[FakeMX]:
    """A fake remote MX on loopback, for `[delivery] routes` to send to."""
    mx = FakeMX()
    yield mx
    mx.close()


@pytest.fixture
def dns() -> Iterator[StaticResolver]:
    """A resolver answering only what the test puts in it, in place of the system's."""
    r = StaticResolver()
    previous = set_resolver(r)
    yield r
    set_resolver(previous)
