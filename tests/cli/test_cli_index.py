"""`casella index rebuild [--user ADDRESS]` and `casella index status` through the real console
script (issue 21): a rebuild hands the bodies to the backfill and indexes them again, printing
its progress; SEARCH finds the same afterwards. Exit 0, 1 with one line for an unknown user, 2
for bad usage."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from casella.store.model import AppendItem
from casella.store.sqlite import SQLiteStore
from tests.cli.util import Runner, casella_runner, fails, ok


@pytest.fixture
def cli(tmp_path: Path) -> Runner:
    """`casella` with `[store] search_index = true`."""
    return casella_runner(tmp_path, "[store]\nsearch_index = true\n")


async def _inbox(store: SQLiteStore, address: str) -> int:
    acct = await store.get_account(address)
    assert acct is not None
    mb = await store.get_mailbox(acct.id, "INBOX")
    assert mb is not None
    return mb.id


async def _deliver(data_dir: Path, address: str, bodies: list[bytes]) -> None:
    store = SQLiteStore(data_dir)
    await store.open(repair=False)
    try:
        inbox = await _inbox(store, address)
        staged = [await store.blobs.stage(b) for b in bodies]
        await store.append(inbox, [AppendItem(s) for s in staged])
        for s in staged:
            s.discard()
    finally:
        await store.close()


async def _found(data_dir: Path, address: str, needle: str) -> tuple[frozenset[int], ...]:
    store = SQLiteStore(data_dir)
    await store.open(repair=False)
    try:
        answer = await store.search_index(await _inbox(store, address), 1000,
                                          [("text", needle)])
        assert answer.unindexed == frozenset()
        return answer.found   # type: ignore[return-value]
    finally:
        await store.close()


@pytest.fixture
def users(cli, tmp_path):  # type: ignore[no-untyped-def]
    ok(cli("domain", "add", "example.test"))
    for name in ("bob", "eve"):
        ok(cli("user", "add", f"{name}@example.test", "--password-stdin", stdin="pw\n"))
    asyncio.run(_deliver(tmp_path / "data", "bob@example.test", [
        b"Subject: m%d\r\n\r\nQuetzal feather %d\r\n" % (i, i) for i in range(30)]))
    asyncio.run(_deliver(tmp_path / "data", "eve@example.test", [b"Subject: e\r\n\r\nx\r\n"]))
    return cli


def test_index_status_and_rebuild(users, tmp_path) -> None:  # type: ignore[no-untyped-def]
    status = ok(users("index", "status"))
    assert "bodies indexed: 31" in status and "waiting for the backfill: 0" in status
    assert "size: trigrams " in status and " KB, text " in status
    out = ok(users("index", "rebuild", "--user", "bob@example.test"))
    lines = out.splitlines()
    assert lines[0] == "rebuilding the search index of bob@example.test: 30 bodies"
    assert "indexed 30, 0 waiting" in lines
    assert lines[-1].startswith("done: 31 bodies indexed, 0 left out")
    found = asyncio.run(_found(tmp_path / "data", "bob@example.test", "quetzal feather 2"))
    assert found == (frozenset({3, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30}),)
    out = ok(users("index", "rebuild"))
    assert out.splitlines()[0] == "rebuilding the search index of every user: 31 bodies"
    assert "done: 31 bodies indexed" in out
    assert "waiting for the backfill: 0" in ok(users("index", "status"))


def test_index_errors(users) -> None:  # type: ignore[no-untyped-def]
    assert "does not exist" in fails(users("index", "rebuild", "--user", "nobody@example.test"))
    fails(users("index"), code=2)
    fails(users("index", "frob"), code=2)


def test_rebuild_refused_while_the_index_is_off(tmp_path: Path) -> None:
    """The default: no index ([store] search_index = false); status says so, rebuild refuses
    with what to change."""
    cli_index_off = casella_runner(tmp_path)
    assert ok(cli_index_off("index", "status")).startswith(
        "search index: off ([store] search_index = false)\n")
    assert "set [store] search_index = true" in fails(cli_index_off("index", "rebuild"))
