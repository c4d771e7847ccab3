"""The search index (issue 21): `Store.search_index` gives exactly the messages the plain scan
of IMAP SEARCH TEXT and BODY keeps (RFC 9051 §6.4.4: case-insensitive substring of the decoded
text), a superset for the header keys, and leaves the messages it does not hold to the scan;
the index is written with the message, removed with its body, rebuilt and backfilled.

The reference below is the scan's own reading of a stored message (casella.imap.search: the
decoded headers, `body_text` of the stored part tree, casefolded)."""

from __future__ import annotations

import asyncio
import base64
import quopri
import sqlite3
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casella.errors import SchemaMismatch
from casella.mail.sections import load_parts
from casella.mail.text import body_text, decoded_headers, search_texts
from casella.store.base import Store
from casella.store.indexer import SearchIndexer
from casella.store.model import AppendItem
from casella.store.sqlite import SQLiteStore
from tests.store.conftest import open_store

T = TypeVar("T")
HASH = "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"

WORDS = ["Grüße", "STRASSE", "straße", "ΣΊΣΥΦΟΣ", "σίσυφος", "İstanbul", "ǅemal", "ﬁne", "naïve",
         "日本語", "😀x", "quetzal", "Feather", "a", "to", "the", "Ab", "x=y", "50%", "tab\tbed",
         "ŉ", "Ωmega", "KELVIN", "\u212aelvin", "déjà", "DÉJÀ"]


async def _append_all(store: Store, mailbox_id: int, messages: list[bytes]) -> list[int]:
    staged = [await store.blobs.stage(m) for m in messages]
    try:
        result = await store.append(mailbox_id, [AppendItem(s) for s in staged])
    finally:
        for s in staged:
            s.discard()
    return list(result.uids)


async def _scan(store: Store, mailbox_id: int) -> dict[int, tuple[bytes, str, str]]:
    """UID -> (stored header, decoded headers, body text), casefolded, as the scan reads them."""
    metas = await store.fetch_meta(mailbox_id, [(1, 1 << 32)])
    statics = await store.fetch_static([m.blob_id for m in metas])
    out = {}
    for m in metas:
        static = statics[m.blob_id]
        data = await store.read_blob(static.digest)
        out[m.uid] = (static.header, decoded_headers(static.header).casefold(),
                      body_text(data, load_parts(static.parts)).casefold())
    return out


def _expected(scan: dict[int, tuple[bytes, str, str]], scope: str, needle: str) -> set[int]:
    if scope == "text":
        return {u for u, (_, h, b) in scan.items() if needle in h or needle in b}
    if scope == "body":
        return {u for u, (_, _, b) in scan.items() if needle in b}
    return {u for u, (header, _, _) in scan.items()
            if any(needle in v for name in ("subject", "from", "to", "x-note")
                   for v in search_texts(header, name))}


def _mime(subject: str, sender: str, parts: list[tuple[str, str, str, str]]) -> bytes:
    """A message with the given (subtype, charset, transfer encoding, text) text parts."""
    head = (f"From: {sender}\r\nTo: Bob <bob@example.test>\r\nSubject: {subject}\r\n"
            f"X-Note: =?utf-8?b?{base64.b64encode(subject.encode()).decode()}?=\r\n"
            "MIME-Version: 1.0\r\n").encode()
    leaves = []
    for subtype, charset, cte, text in parts:
        if subtype == "html":
            text = f"<p>{text}</p>&amp;"
        try:
            raw = text.encode(charset)
        except UnicodeEncodeError:
            charset, raw = "utf-8", text.encode("utf-8")
        if cte == "base64":
            body = base64.encodebytes(raw).replace(b"\n", b"\r\n")
        elif cte == "quoted-printable":
            body = quopri.encodestring(raw).replace(b"\n", b"\r\n")
        else:
            cte, body = "8bit", raw.replace(b"\r", b"").replace(b"\n", b"\r\n")
        leaves.append(f"Content-Type: text/{subtype}; charset={charset}\r\n"
                      f"Content-Transfer-Encoding: {cte}\r\n\r\n".encode() + body + b"\r\n")
    if len(leaves) == 1:
        return head + leaves[0]
    return (head + b'Content-Type: multipart/alternative; boundary="BB"\r\n\r\n'
            + b"".join(b"--BB\r\n" + leaf for leaf in leaves) + b"--BB--\r\n")


texts = st.lists(st.sampled_from(WORDS), min_size=1, max_size=12).flatmap(
    lambda ws: st.sampled_from([" ", "\n", "-", ""]).map(lambda sep: sep.join(ws)))
parts = st.tuples(st.sampled_from(["plain", "html"]),
                  st.sampled_from(["utf-8", "iso-8859-1", "utf-16"]),
                  st.sampled_from(["8bit", "quoted-printable", "base64"]), texts)
messages = st.builds(_mime, texts.map(lambda t: t.replace("\n", " ")),
                     st.sampled_from(["Ann <ann@example.org>", '"Zoë, Q." <z@example.net>',
                                      "=?utf-8?q?Gr=C3=BC=C3=9Fe?= <g@example.org>"]),
                     st.lists(parts, min_size=1, max_size=2))


def _case(draw: Callable[[Any], Any], text: str) -> str:
    return str(draw(st.sampled_from([str.upper, str.lower, str.swapcase, str.title,
                                     lambda s: s]))(text))


@st.composite
def needles(draw: Callable[[Any], Any], pool: list[str]) -> str:
    kind = draw(st.sampled_from(["slice", "word", "short", "free"]))
    if kind == "slice" and pool:
        text = draw(st.sampled_from(pool))
        start = draw(st.integers(0, max(len(text) - 1, 0)))
        return _case(draw, text[start:start + draw(st.integers(1, 14))] or "x")
    if kind == "word":
        return _case(draw, draw(st.sampled_from(WORDS)))
    if kind == "short":
        return draw(st.text(alphabet="aAbßσΣ \n", min_size=1, max_size=2))
    return draw(st.text(alphabet="abeqtuzßSΣ日😀 -\"\n", min_size=3, max_size=8))


def _run(loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, T]) -> T:
    return loop.run_until_complete(coro)


@pytest.mark.parametrize("backend", ["sqlite", "sqlite-files"])
def test_index_answers_as_the_scan_does(tmp_path: Path, backend: str) -> None:
    """Property: for random messages (QP, base64, UTF-16/Latin-1, HTML, encoded words,
    non-ASCII that casefolds to other lengths) and random needles (slices spanning words,
    mixed case, 1-2 characters, unrelated text), TEXT and BODY are found exactly where the scan
    finds them, the header keys in a superset, and nothing is left unindexed; after a reset,
    nothing is found and every message is left to the scan."""
    loop = asyncio.new_event_loop()
    store = _run(loop, open_store(backend, tmp_path / "data"))
    counter = iter(range(1_000_000))
    try:
        _run(loop, store.add_domain("example.test"))
        acct = _run(loop, store.add_account("p@example.test", HASH, 0))

        @settings(max_examples=60, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
        @given(st.lists(messages, min_size=1, max_size=3), st.data())
        def check(msgs: list[bytes], data: st.DataObject) -> None:
            mb = _run(loop, store.create_mailbox(acct.id, f"box{next(counter)}"))
            _run(loop, _append_all(store, mb.id, msgs))
            scan = _run(loop, _scan(store, mb.id))
            pool = [t for _, h, b in scan.values() for t in (h, b)]
            queries = [(data.draw(st.sampled_from(["text", "body", "any"])),
                        data.draw(needles(pool)).casefold()) for _ in range(6)]
            answer = _run(loop, store.search_index(mb.id, 1 << 32, queries))
            assert answer.unindexed == frozenset()
            for (scope, needle), found in zip(queries, answer.found):
                expected = _expected(scan, scope, needle)
                if len(needle) < 3:
                    assert found is None
                elif scope == "any":
                    assert found is not None and expected <= found, (needle, scan)
                else:
                    assert found == expected, (scope, needle, scan)
            _run(loop, store.remove_messages(mb.id, [(1, 1 << 32)]))

        check()
    finally:
        _run(loop, store.close())
        loop.close()


async def _fresh(store: Store, name: str = "a@example.test") -> tuple[int, int]:
    if await store.get_domain("example.test") is None:
        await store.add_domain("example.test")
    acct = await store.add_account(name, HASH, 0)
    mb = await store.get_mailbox(acct.id, "INBOX")
    assert mb is not None
    return acct.id, mb.id


async def test_written_with_the_message_and_gone_with_its_body(store: Store) -> None:
    """A delivered body is indexed by its own transaction; a body shared by two mailboxes is
    indexed once; once no message holds it, its index rows go with it (the collector)."""
    _, inbox = await _fresh(store)
    shared = _mime("one", "a@b.c", [("plain", "utf-8", "base64", "Zürich quetzal")])
    uids = await _append_all(store, inbox, [shared])
    status = await store.search_index_status()
    assert (status.indexed, status.pending, status.left_out) == (1, 0, 0)
    assert status.index_bytes > 0 and status.text_bytes > 0
    # The text is kept casefolded: the caller casefolds the needle.
    answer = await store.search_index(inbox, 10, [("body", "zürich"), ("text", "ONE"),
                                                  ("text", "one"), ("body", "one")])
    assert answer.found == (frozenset(uids), frozenset(), frozenset(uids), frozenset())
    _, inbox2 = await _fresh(store, "b@example.test")
    await _append_all(store, inbox2, [shared])
    assert (await store.search_index_status()).indexed == 1
    await store.remove_messages(inbox, [(1, 10)])
    assert (await store.search_index(inbox2, 10, [("body", "quetzal")])).found == \
        (frozenset({1}),)
    await store.remove_messages(inbox2, [(1, 10)])
    await store.add_domain("flush.test")            # a write, after which the collector runs
    for _ in range(200):
        if (await store.search_index_status()).indexed == 0:
            break
        await asyncio.sleep(0.05)
    assert (await store.search_index_status()).indexed == 0


async def _collected(store: Store, indexed: int) -> bool:
    await store.add_domain(f"flush{indexed}.test")  # a write, after which the collector runs
    for _ in range(200):
        if (await store.search_index_status()).indexed == indexed:
            return True
        await asyncio.sleep(0.05)
    return False


async def test_collected_trigrams_wait_for_the_purge_and_never_answer(store: Store) -> None:
    """A collected body's trigrams stay in the FTS table until the background purge removes
    them (search_dead), matching nothing meanwhile: a new body with the same text (and maybe
    the same blob id) is found once, under its own row, and the purge leaves it found."""
    _, inbox = await _fresh(store)
    await _append_all(store, inbox, [_mime("gone", "a@b.c",
                                           [("plain", "utf-8", "8bit", "axolotl one")])])
    await store.remove_messages(inbox, [(1, 10)])
    assert await _collected(store, 0)
    uids = await _append_all(store, inbox, [_mime("back", "a@b.c",
                                                  [("plain", "utf-8", "8bit", "axolotl two")])])
    answer = await store.search_index(inbox, 10, [("body", "axolotl"), ("body", "one")])
    assert answer.found == (frozenset(uids), frozenset()) and answer.unindexed == frozenset()
    assert await store.search_index_purge() == (1, 0)
    assert await store.search_index_purge() == (0, 0)
    answer = await store.search_index(inbox, 10, [("body", "axolotl"), ("body", "two")])
    assert answer.found == (frozenset(uids), frozenset(uids))


async def test_gone_with_a_deleted_mailbox_or_account(store: Store) -> None:
    """Deleting a mailbox, then an account, removes the index rows of the bodies no message
    holds any more (and keeps those other mailboxes still hold)."""
    acct, inbox = await _fresh(store)
    await store.create_mailbox(acct, "Lists")
    lists = await store.get_mailbox(acct, "Lists")
    assert lists is not None
    body = [("plain", "utf-8", "8bit", "kept")]
    await _append_all(store, inbox, [_mime("a", "a@b.c", body), _mime("b", "a@b.c", body)])
    await _append_all(store, lists.id, [_mime("a", "a@b.c", body), _mime("c", "a@b.c", body)])
    assert (await store.search_index_status()).indexed == 3
    await store.delete_mailbox(acct, "Lists")
    assert await _collected(store, 2)
    await store.remove_account("a@example.test")
    assert await _collected(store, 0)


async def test_queued_bodies_wait_and_big_ones_are_left_out(store: Store) -> None:
    """A body only queued for sending is not indexed; a text over the limit is left out, and
    the scan answers for it."""
    from casella.mail.text import INDEX_MAX_TEXT_BYTES
    from casella.store.model import QueueRecipient

    _, inbox = await _fresh(store)
    big = _mime("big", "a@b.c", [("plain", "utf-8", "8bit",
                                  "needle " + "x" * INDEX_MAX_TEXT_BYTES)])
    await _append_all(store, inbox, [big])
    staged = await store.blobs.stage(b"Subject: out\r\n\r\nqueued text\r\n")
    try:
        await store.enqueue(staged, "a@example.test", [QueueRecipient("x@remote.test")])
    finally:
        staged.discard()
    status = await store.search_index_status()
    assert (status.indexed, status.pending, status.left_out) == (0, 0, 2)
    answer = await store.search_index(inbox, 10, [("text", "needle")])
    assert answer.found == (frozenset(),) and answer.unindexed == frozenset({1})
    assert await store.search_index_backfill() == (0, 0)


async def test_reset_and_backfill(store: Store) -> None:
    """`search_index_reset` hands one account's bodies (or all) to the backfill; meanwhile the
    index names them as not held; the backfill indexes them in bounded batches."""
    acct, inbox = await _fresh(store)
    _, other = await _fresh(store, "o@example.test")
    await _append_all(store, inbox, [_mime(f"m{i}", "a@b.c", [("plain", "utf-8", "8bit",
                                                               f"body {i} needle")])
                                     for i in range(5)])
    await _append_all(store, other, [_mime("o", "a@b.c", [("plain", "utf-8", "8bit", "needle")])])
    assert await store.search_index_reset(acct) == 5
    answer = await store.search_index(inbox, 10, [("body", "needle")])
    assert answer.found == (frozenset(),) and answer.unindexed == frozenset(range(1, 6))
    assert (await store.search_index(other, 10, [("body", "needle")])).found == \
        (frozenset({1}),)
    assert await store.search_index_backfill(max_chars=1, max_bodies=10) == (1, 4)
    while (await store.search_index_backfill(max_bodies=2))[1]:
        pass
    answer = await store.search_index(inbox, 10, [("body", "needle")])
    assert answer.found == (frozenset(range(1, 6)),) and answer.unindexed == frozenset()
    assert await store.search_index_reset() == 6
    assert (await store.search_index_status()).pending == 6
    indexer = SearchIndexer(store, pause=0, idle=0.05)
    await indexer.start()
    try:
        for _ in range(400):
            if (await store.search_index_status()).pending == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        await indexer.stop()
    assert (await store.search_index_status()).indexed == 6


async def test_a_version_11_database_is_indexed_after_the_upgrade(tmp_path: Path) -> None:
    """A store made before the index (schema version 11) is refused until `casella migrate`
    brings it to version 12; its bodies wait for the backfill, SEARCH meanwhile leaves them to the scan, then the index holds
    them."""
    data = tmp_path / "data"
    store = await open_store("sqlite", data)
    _, inbox = await _fresh(store)
    await _append_all(store, inbox, [
        _mime("old", "a@b.c", [("plain", "utf-8", "quoted-printable", "stored before")]),
        _mime("older", "a@b.c", [("html", "utf-8", "base64", "Ünïcode")])])
    await store.close()
    conn = sqlite3.connect(data / "casella.db")
    for table in ("search_fts", "search_text", "search_dead", "search_unindexed"):
        conn.execute(f"DROP TABLE {table}")
    conn.execute("PRAGMA user_version=11")
    conn.commit()
    conn.close()

    with pytest.raises(SchemaMismatch):
        await open_store("sqlite", data)
    assert await SQLiteStore(data).migrate() == [12]
    store = await open_store("sqlite", data)
    try:
        version = await store._read(lambda c: c.execute("PRAGMA user_version").fetchone()[0])
        assert version == 12
        answer = await store.search_index(inbox, 10, [("body", "ünïcode")])
        assert answer.found == (frozenset(),) and answer.unindexed == frozenset({1, 2})
        assert await store.search_index_backfill() == (2, 0)
        answer = await store.search_index(inbox, 10, [("body", "ünïcode"), ("text", "before")])
        assert answer.found == (frozenset({2}), frozenset({1}))
        assert answer.unindexed == frozenset()
    finally:
        await store.close()


async def test_start_up_repair_hands_missing_rows_to_the_backfill(tmp_path: Path) -> None:
    """Derived data lost (PROMISES D11): a body with no index row at all is found at start-up
    and indexed again."""
    data = tmp_path / "data"
    store = await open_store("sqlite", data)
    _, inbox = await _fresh(store)
    await _append_all(store, inbox, [_mime("lost", "a@b.c", [("plain", "utf-8", "8bit", "x")])])
    await store.close()
    conn = sqlite3.connect(data / "casella.db")
    conn.execute("INSERT INTO search_fts (search_fts) VALUES ('delete-all')")
    conn.execute("DELETE FROM search_text")
    conn.commit()
    conn.close()
    store = await open_store("sqlite", data, repair=True)
    try:
        assert (await store.search_index_status()).pending == 1
        assert await store.search_index_backfill() == (1, 0)
        assert (await store.search_index(inbox, 5, [("text", "lost")])).found == \
            (frozenset({1}),)
    finally:
        await store.close()


async def test_off_writes_nothing_and_answers_nothing(tmp_path: Path) -> None:
    """`[store] search_index = false` (the default): no index row is written, SEARCH is told
    to read every message; turned on, start-up repair hands the bodies to the backfill."""
    data = tmp_path / "data"
    store = SQLiteStore(data, search_index=False)
    await store.open()
    try:
        _, inbox = await _fresh(store)
        await _append_all(store, inbox, [_mime("off", "a@b.c",
                                               [("plain", "utf-8", "8bit", "narwhal")])])
        status = await store.search_index_status()
        assert (status.indexed, status.pending, status.left_out) == (0, 0, 0)
        answer = await store.search_index(inbox, 10, [("body", "narwhal")])
        assert answer.found == (None,) and answer.unindexed == frozenset()
    finally:
        await store.close()
    store = SQLiteStore(data)
    await store.open(repair=True)
    try:
        assert (await store.search_index_status()).pending == 1
        assert await store.search_index_backfill() == (1, 0)
        answer = await store.search_index(inbox, 10, [("body", "narwhal")])
        assert answer.found == (frozenset({1}),)
    finally:
        await store.close()
