"""Fixtures for the outbound tests: a fake remote MX, a fixed DNS table, and a store + queue
runner with a hand-moved clock in the test's own event loop."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from casella.config import Config, config_from_mapping
from casella.smtp.client import Timeouts
from casella.smtp.queue import ManualClock, QueueRunner
from casella.smtp.resolver import StaticResolver, set_resolver
from casella.store.base import Store
from casella.store.model import Account, QueueRecipient
from casella.store.sqlite import SQLiteStore
from tests.outbound.fakemx import FakeMX

FAST = Timeouts(connect=2, greeting=2, command=2, data_init=2, data_block=2, data_end=2)


def message(sender: str = "alice@example.test", to: str = "bob@remote.test",
            subject: str = "hello", body: str = "Hello Bob.\r\n") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.test>\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n{body}").encode()


@pytest.fixture
def fake_mx() -> Iterator[FakeMX]:
    mx = FakeMX()
    yield mx
    mx.close()


@pytest.fixture
def resolver() -> Iterator[StaticResolver]:
    r = StaticResolver()
    previous = set_resolver(r)
    yield r
    set_resolver(previous)


@dataclass
class Env:
    store: Store
    config: Config
    runner: QueueRunner
    clock: ManualClock
    mx: FakeMX
    resolver: StaticResolver
    data_dir: Path

    async def user(self, address: str = "alice@example.test") -> Account:
        from casella.auth.passwords import hash_password

        domain = address.rsplit("@", 1)[1]
        if await self.store.get_domain(domain) is None:
            await self.store.add_domain(domain)
        return await self.store.add_account(address, hash_password("secret"), 0)

    async def enqueue(self, recipients: list[str] | list[QueueRecipient],
                      sender: str = "alice@example.test", account: Account | None = None,
                      data: bytes | None = None, envid: str | None = None,
                      ret: str | None = None) -> int:
        rcpts = [r if isinstance(r, QueueRecipient) else QueueRecipient(r) for r in recipients]
        blob = await self.store.blobs.stage(data or message(sender, rcpts[0].address))
        try:
            return await self.store.enqueue(blob, sender, rcpts,
                                            account.id if account else None, envid, ret)
        finally:
            blob.discard()

    async def states(self, qid: int) -> dict[str, str]:
        entry = await self.store.get_queue_entry(qid)
        return {r.address: r.state for r in entry.recipients} if entry else {}

    async def new_runner(self) -> QueueRunner:
        self.runner = QueueRunner(self.store, self.config, clock=self.clock, timeouts=FAST,
                                  poll_interval=0.05)
        return self.runner


def build_config(data_dir: Path, mx: FakeMX, **extra: Any) -> Config:
    raw: dict[str, Any] = {
        "hostname": "mail.example.test",
        "data_dir": str(data_dir),
        "listen": {},
        "delivery": {"routes": {"remote.test": f"127.0.0.1:{mx.port}",
                                "other.test": f"127.0.0.1:{mx.port}"}},
    }
    for key, value in extra.items():
        if isinstance(value, dict):
            raw.setdefault(key, {}).update(value)
        else:
            raw[key] = value
    return config_from_mapping(raw, data_dir.parent)


@pytest.fixture
async def env(tmp_path: Path, fake_mx: FakeMX, resolver: StaticResolver) -> AsyncIterator[Env]:
    data_dir = tmp_path / "data"
    store = SQLiteStore(data_dir)
    await store.open()
    config = build_config(data_dir, fake_mx)
    clock = ManualClock()
    runner = QueueRunner(store, config, clock=clock, timeouts=FAST, poll_interval=0.05)
    e = Env(store, config, runner, clock, fake_mx, resolver, data_dir)
    try:
        yield e
    finally:
        await e.runner.stop()
        await store.close()
