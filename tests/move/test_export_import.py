"""`casella export` / `casella import` through the store contract (issue 19): a store exported
from sqlite and imported into every backend of CASELLA_TEST_BACKENDS, and back into sqlite,
is the same store: every mailbox's UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, UIDs, MODSEQs,
flags, dates, bodies, POP3 state and UIDLs, expunge records, subscriptions, accounts, domains
and aliases (PROMISES U1-U5, U7). An interrupted import continues without duplicating a
message; a broken or unfinished export is refused."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from casella.errors import UserError
from casella.move import exporter
from casella.move import format as fmt
from casella.move.common import Selection
from casella.move.exporter import export_store
from casella.move.importer import import_export
from casella.move.progress import Progress
from casella.store.base import Store
from tests.move.util import differences, fill, mail, snapshot
from tests.store.conftest import _backends, open_store


def quiet(verb: str = "imported") -> Progress:
    return Progress(verb, 0, io.StringIO(), tty=False)


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[Store]:
    store = await open_store("sqlite", tmp_path / "source")
    await fill(store)
    yield store
    await store.close()


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[Callable[..., object]]:
    opened: list[Store] = []

    async def make(backend: str, name: str) -> Store:
        store = await open_store(backend, tmp_path / name)
        opened.append(store)
        return store
    yield make
    for store in opened:
        await store.close()


@pytest.mark.parametrize("backend", _backends())
async def test_sqlite_to_backend_and_back_keeps_everything(
        source: Store, stores: Callable[..., object], tmp_path: Path, backend: str) -> None:
    before = await snapshot(source)
    out = tmp_path / "export"
    accounts, messages = await export_store(source, out, Selection(), quiet("exported"))
    assert (accounts, messages) == (3, 24)
    target: Store = await stores(backend, "target")  # type: ignore[assignment]
    assert await import_export(target, out, Selection(), quiet()) == (3, 24)
    assert differences(await snapshot(target), before) == []
    # ... and back: sqlite -> backend -> sqlite.
    again = tmp_path / "export2"
    await export_store(target, again, Selection(), quiet("exported"))
    back: Store = await stores("sqlite", "back")  # type: ignore[assignment]
    await import_export(back, again, Selection(), quiet())
    assert differences(await snapshot(back), before) == []
    # A body shared by several mailboxes is stored once on the way, as at delivery.
    assert sorted(await back.stored_bodies()) == sorted(await source.stored_bodies())
    # New mail after the move goes above everything moved.
    inbox = await back.get_mailbox((await back.get_account("alice@example.test")).id, "INBOX")
    from tests.move.util import append
    (uid,) = await append(back, inbox.id, [mail(500)])
    assert uid == before["alice@example.test INBOX"][1]


async def test_export_layout_is_the_documented_one(source: Store, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/export-format.md: the manifest, one folder per account and per mailbox, each
    message as <uid>.eml (copies of one body hard-linked) with one JSON line; a big body is
    read in pieces."""
    monkeypatch.setattr(exporter, "READ_PIECE", 64 * 1024)
    out = tmp_path / "export"
    await export_store(source, out, Selection(), quiet("exported"))
    manifest = json.loads((out / fmt.MANIFEST).read_text())
    assert manifest["format"] == "casella-export" and manifest["complete"] is True
    alice = out / "accounts" / "alice@example.test"
    account = json.loads((alice / "account.json").read_text())
    assert account["password_hash"].startswith("$argon2id$")
    assert "Junk" not in account["subscriptions"] and "Lists/dev" in account["subscriptions"]
    boxes = {json.loads((d / "mailbox.json").read_text())["name"]: d
             for d in (alice / "mailboxes").iterdir()}
    assert set(boxes) == {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive", "Lists",
                          "Lists/dev", "Grüße", "Grüße/日本"}
    inbox = json.loads((boxes["INBOX"] / "mailbox.json").read_text())
    assert [u for u, _ in inbox["expunged"]] == [6, 7]
    lines = [json.loads(line) for line in (boxes["INBOX"] / "messages.jsonl").open()]
    assert [m["uid"] for m in lines] == [1, 2, 3, 4, 5, 8, 9, 10, 11, 12, 13, 14]
    first = lines[0]
    assert first["pop3_uidl"] == f"{1:08X}{inbox['uidvalidity']:08X}"
    assert first["pop3_retrieved"] == 1_700_000_100 and lines[2]["pop3_hidden"] is True
    assert (boxes["INBOX"] / "1.eml").read_bytes() == mail(1)
    big = boxes["INBOX"] / "14.eml"
    assert big.stat().st_size == lines[-1]["size"] > 200_000
    copied = boxes["Lists/dev"] / "6.eml"                          # COPY of INBOX 1
    assert copied.stat().st_ino == (boxes["INBOX"] / "1.eml").stat().st_ino  # one body
    assert json.loads((boxes["Grüße"] / "mailbox.json").read_text())["selectable"] is False
    with pytest.raises(UserError, match="not an empty directory"):
        await export_store(source, out, Selection(), quiet("exported"))


async def test_selection_takes_accounts_their_domains_and_aliases(
        source: Store, stores: Callable[..., object], tmp_path: Path) -> None:
    out = tmp_path / "export"
    await export_store(source, out, Selection(domains=["other.test"]), quiet("exported"))
    assert [p.name for p in (out / "accounts").iterdir()] == ["carol@other.test"]
    full = tmp_path / "full"
    await export_store(source, full, Selection(), quiet("exported"))
    target: Store = await stores("sqlite", "target")  # type: ignore[assignment]
    assert await import_export(target, full, Selection(accounts=["bob@example.test"]),
                               quiet()) == (1, 1)
    assert [a.address for a in await target.list_accounts()] == ["bob@example.test"]
    assert [d.name for d in await target.list_domains()] == ["example.test"]
    assert [a.source for a in await target.list_aliases()] == ["info@example.test"]
    with pytest.raises(UserError, match="not in the export"):
        await import_export(target, full, Selection(accounts=["nobody@example.test"]), quiet())
    with pytest.raises(UserError, match="no such user"):
        await export_store(source, tmp_path / "x", Selection(accounts=["no@example.test"]),
                           quiet("exported"))


async def test_an_interrupted_import_continues_without_duplicates(
        source: Store, stores: Callable[..., object], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19: a re-run continues where the last one stopped and never duplicates a
    message; the messages already there are counted apart."""
    from casella.move import common

    monkeypatch.setattr(common, "BATCH_MESSAGES", 3)
    out = tmp_path / "export"
    await export_store(source, out, Selection(), quiet("exported"))
    target: Store = await stores("sqlite", "target")  # type: ignore[assignment]
    real = target.import_messages
    calls = 0

    async def failing(mailbox_id: int, items: object) -> object:
        nonlocal calls
        calls += 1
        if calls == 4:
            raise OSError("the disk went away")
        return await real(mailbox_id, items)  # type: ignore[arg-type]
    monkeypatch.setattr(target, "import_messages", failing)
    with pytest.raises(OSError):
        await import_export(target, out, Selection(), quiet())
    monkeypatch.setattr(target, "import_messages", real)
    progress = quiet()
    assert await import_export(target, out, Selection(), progress) == (3, 17)
    assert progress.skipped == 7
    assert "imported 24 of 24 messages (7 were there already)" in \
        progress.stream.getvalue()  # type: ignore[attr-defined]
    assert differences(await snapshot(target), await snapshot(source)) == []
    again = quiet()
    assert await import_export(target, out, Selection(), again) == (3, 0)
    assert differences(await snapshot(target), await snapshot(source)) == []


async def test_a_rerun_takes_the_sources_flags_and_removals(
        source: Store, stores: Callable[..., object], tmp_path: Path) -> None:
    """A last run from a newer export of the same store brings flag changes over and removes
    what the source expunged since; mail that came to casella meanwhile stays."""
    first = tmp_path / "first"
    await export_store(source, first, Selection(), quiet("exported"))
    target: Store = await stores("sqlite", "target")  # type: ignore[assignment]
    await import_export(target, first, Selection(), quiet())
    alice = await source.get_account("alice@example.test")
    inbox = await source.get_mailbox(alice.id, "INBOX")
    await source.store_flags(inbox.id, [(1, 1)], "add", ["\\Flagged"])
    await source.remove_messages(inbox.id, [(9, 9)])
    second = tmp_path / "second"
    await export_store(source, second, Selection(), quiet("exported"))
    await import_export(target, second, Selection(), quiet())
    t_alice = await target.get_account("alice@example.test")
    t_inbox = await target.get_mailbox(t_alice.id, "INBOX")
    flags = {uid: f for uid, _, f in await target.fetch_flags(t_inbox.id, [(1, 100)])}
    assert "\\Flagged" in flags[1] and 9 not in flags
    assert set(flags) == {m.uid for m in await source.fetch_meta(inbox.id, [(1, 100)])}


async def test_a_broken_export_is_refused(source: Store, stores: Callable[..., object],
                                          tmp_path: Path) -> None:
    out = tmp_path / "export"
    await export_store(source, out, Selection(), quiet("exported"))
    target: Store = await stores("sqlite", "target")  # type: ignore[assignment]
    eml = next((out / "accounts" / "carol@other.test" / "mailboxes").glob("*/2.eml"))
    eml.write_bytes(eml.read_bytes().replace(b"message", b"massage"))
    with pytest.raises(fmt.FormatError, match="does not match"):
        await import_export(target, out, Selection(accounts=["carol@other.test"]), quiet())
    manifest = out / fmt.MANIFEST
    data = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**data, "complete": False}))
    with pytest.raises(fmt.FormatError, match="did not finish"):
        await import_export(target, out, Selection(), quiet())
    manifest.unlink()
    with pytest.raises(fmt.FormatError, match="missing"):
        await import_export(target, out, Selection(), quiet())


GOOD = {"uid": 1, "modseq": 1, "flags": [], "internaldate": 1, "savedate": None, "size": 1,
        "sha256": "0" * 64}


@pytest.mark.parametrize("line, error", [
    (json.dumps({**GOOD, "uid": 0}), "uid must be"),
    (json.dumps({**GOOD, "flags": "\\Seen"}), "flags must be"),
    (json.dumps({**GOOD, "sha256": "XYZ"}), "sha256 must be"),
    (json.dumps({**GOOD, "modseq": True}), "modseq must be"),
    ("not json", "not a JSON line"),
    ("[1, 2]", "expected a JSON object"),
])
def test_message_records_are_checked(line: str, error: str) -> None:
    assert fmt.message_from("m.jsonl line 1", json.dumps(GOOD)).sha256 == "0" * 64
    with pytest.raises(fmt.FormatError, match=error):
        fmt.message_from("m.jsonl line 1", line)


def test_progress_draws_a_bar_on_a_terminal_and_lines_otherwise() -> None:
    tty = io.StringIO()
    p = Progress("imported", 4, tty, tty=True)
    p.mailbox("alice@example.test INBOX")
    p.advance(2)
    p.mailbox_done()
    p.finish()
    text = tty.getvalue()
    assert "\r\033[K[" in text and "2/4 alice@example.test INBOX" in text
    assert text.endswith("imported 2 of 4 messages\n")
    log = io.StringIO()
    p = Progress("imported", 4, log, tty=False)
    p.mailbox("alice@example.test INBOX")
    p.advance(3)
    p.mailbox_done()
    p.finish()
    assert log.getvalue() == ("alice@example.test INBOX: 3 messages\n"
                              "imported 3 of 4 messages\n")
