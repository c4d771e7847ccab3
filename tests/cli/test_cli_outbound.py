"""The outbound admin commands through the real console script: queue list/show/flush/hold/
release/remove, limits set/show/reset, user hold-sending/release-sending and the sending usage
of `user show`, dkim generate/show (exit 0 / 1 with one line / 2 for bad usage)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from casella.store.model import QueueRecipient
from casella.store.sqlite import SQLiteStore
from tests.cli.util import Runner, casella_runner, fails, ok



@pytest.fixture
def cli(tmp_path: Path) -> Runner:
    return casella_runner(tmp_path, "[limits]\nmessages_per_hour = 180\n")


def enqueue(data_dir: Path, sender: str, recipients: list[str],
            account: str | None = None) -> int:
    async def go() -> int:
        store = SQLiteStore(data_dir)
        await store.open(repair=False)
        try:
            acct = await store.get_account(account) if account else None
            blob = await store.blobs.stage(b"From: <" + sender.encode() +
                                           b">\r\nSubject: queued\r\n\r\nbody\r\n")
            try:
                return await store.enqueue(blob, sender, [QueueRecipient(r) for r in recipients],
                                           acct.id if acct else None)
            finally:
                blob.discard()
        finally:
            await store.close()
    return asyncio.run(go())


def test_queue_commands(cli) -> None:
    assert "the queue is empty" in ok(cli("queue", "list"))
    ok(cli("domain", "add", "example.test"))
    ok(cli("user", "add", "alice@example.test", "--password", "pw"))
    qid = enqueue(cli.data_dir, "alice@example.test", ["bob@remote.test", "eve@remote.test"],
                  "alice@example.test")
    listing = ok(cli("queue", "list"))
    assert f"{qid:>6}" in listing and "alice@example.test" in listing
    assert "-> bob@remote.test: queued, 0 attempts, next now" in listing
    show = ok(cli("queue", "show", str(qid)))
    assert "Subject: queued" in show and "eve@remote.test" in show
    assert "held" in ok(cli("queue", "hold", str(qid)))
    assert "(held)" in ok(cli("queue", "list"))
    ok(cli("queue", "release", str(qid)))
    assert "(held)" not in ok(cli("queue", "list"))
    assert "0 recipients will be tried at once" in ok(cli("queue", "flush"))
    assert "0 recipients" in ok(cli("queue", "flush", str(qid)))
    assert "removed" in ok(cli("queue", "remove", str(qid)))
    assert "the queue is empty" in ok(cli("queue", "list"))
    assert "does not exist" in fails(cli("queue", "show", "999"))
    assert "does not exist" in fails(cli("queue", "remove", "999"))
    fails(cli("queue", "show"), code=2)
    fails(cli("queue", "show", "abc"), code=2)


def test_limits_commands_and_user_show(cli) -> None:
    ok(cli("domain", "add", "example.test"))
    ok(cli("user", "add", "alice@example.test", "--password", "pw"))
    out = ok(cli("limits", "set", "example.test", "--messages-per-hour", "100"))
    assert "messages-per-hour=100" in out
    out = ok(cli("limits", "set", "alice@example.test", "--messages-per-hour", "150",
                 "--defers-failures-per-hour", "3", "--defers-failures-percent", "40"))
    assert "messages-per-hour=150 defers-failures-per-hour=3 defers-failures-percent=40" in out
    enqueue(cli.data_dir, "alice@example.test", ["a@remote.test", "b@remote.test"],
            "alice@example.test")
    show = ok(cli("limits", "show", "alice@example.test"))
    assert "last hour: 2 of 100 recipients sent" in show          # the domain's 100 wins
    assert "defers and failures: 0 of 3" in show and "blocks at 40%" in show
    dom = ok(cli("limits", "show", "example.test"))
    assert "domain example.test: messages-per-hour=100" in dom and "alice@example.test" in dom
    user = ok(cli("user", "show", "alice@example.test"))
    assert "sending   allowed" in user and "last hour: 2 of 100 recipients sent" in user
    assert "sending counters of example.test reset" in ok(cli("limits", "reset", "example.test"))
    assert "last hour: 0 of 100" in ok(cli("limits", "show", "alice@example.test"))
    ok(cli("limits", "set", "example.test", "--messages-per-hour", "default"))
    assert "last hour: 0 of 150" in ok(cli("limits", "show", "alice@example.test"))
    assert "does not exist" in fails(cli("limits", "show", "nobody@example.test"))
    assert "does not exist" in fails(cli("limits", "set", "nodomain.test",
                                         "--messages-per-hour", "5"))
    assert "bad limit" in fails(cli("limits", "set", "example.test",
                                    "--messages-per-hour", "-3"))
    assert "at most 100" in fails(cli("limits", "set", "example.test",
                                      "--defers-failures-percent", "101"))
    assert "nothing to set" in fails(cli("limits", "set", "example.test"))
    fails(cli("limits"), code=2)


def test_hold_and_release_sending(cli) -> None:
    ok(cli("domain", "add", "example.test"))
    ok(cli("user", "add", "alice@example.test", "--password", "pw"))
    assert "on hold" in ok(cli("user", "hold-sending", "alice@example.test"))
    assert "sending   held by an admin" in ok(cli("user", "show", "alice@example.test"))
    assert "released" in ok(cli("user", "release-sending", "alice@example.test"))
    assert "sending   allowed" in ok(cli("user", "show", "alice@example.test"))
    assert "does not exist" in fails(cli("user", "hold-sending", "bob@example.test"))


def test_dkim_generate_prints_verifiable_records(cli, tmp_path: Path) -> None:
    import dkim

    from casella.smtp.dkim import Signer

    out = ok(cli("dkim", "generate", "Example.test", "--selector", "s2026"))
    records = dict(re.findall(r'^(\S+)\. IN TXT (.+)$', out, re.MULTILINE))
    assert set(records) == {"s2026-rsa._domainkey.example.test",
                            "s2026-ed25519._domainkey.example.test"}
    assert "PRIVATE" not in out
    # The printed records, as a resolver would return them, verify a signed message.
    table = {}
    for name, value in records.items():
        text = "".join(re.findall(r'"([^"]*)"', value))
        table[(name + ".").encode()] = text.encode()
    key_dir = cli.data_dir / "dkim"
    assert oct((key_dir / "example.test" / "s2026-rsa.key").stat().st_mode & 0o777) == "0o600"
    message = b"From: <a@example.test>\r\nTo: <b@remote.test>\r\nSubject: x\r\n\r\nhi\r\n"
    signed = Signer(key_dir).sign(message) + message
    d = dkim.DKIM(signed)
    assert d.verify(0, dnsfunc=lambda n, timeout=5: table.get(n))
    assert d.verify(1, dnsfunc=lambda n, timeout=5: table.get(n))
    assert "already exists" in fails(cli("dkim", "generate", "example.test",
                                         "--selector", "s2026"))
    assert ok(cli("dkim", "show", "example.test")).count("IN TXT") == 2
    assert "no DKIM key" in fails(cli("dkim", "show", "other.test"))
    assert "bad selector" in fails(cli("dkim", "generate", "example.test", "--selector", "a_b"))
