"""Small message bodies kept in the database (blobs.INLINE_MAX, schema version 6): staged in
memory without a file, stored in the transaction that references them, read in pieces, shared
when the same content comes again, collected with their row, and never left behind."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from casella.errors import StorageError
from casella.store.blobs import INLINE_MAX, BlobStore
from casella.store.model import AppendItem, DeliveryTarget
from casella.store.sqlite import SQLiteStore
from tests.store.test_contract import PASSWORD_HASH


def message(n: int, size: int = 200) -> bytes:
    head = f"From: a@example.org\r\nSubject: inline {n}\r\n\r\n".encode()
    body = (b"0123456789abcdef" * (size // 16 + 1))[:max(size - len(head) - 2, 0)]
    return head + body + b"\r\n"


def files_in(blobs: BlobStore) -> list[Path]:
    """Published body files (a staged file's temporary name goes in an I/O thread, later)."""
    return [f for d in blobs.root.iterdir() if d.name != "tmp" for f in d.iterdir()]


async def open_with_user(data_dir: Path, inline_max: int = INLINE_MAX
                         ) -> tuple[SQLiteStore, int, int]:
    store = SQLiteStore(data_dir, blobs=BlobStore(data_dir / "blobs", inline_max=inline_max))
    await store.open()
    acct = await store.get_account("inline@example.test")
    if acct is None:
        await store.add_domain("example.test")
        acct = await store.add_account("inline@example.test", PASSWORD_HASH, 0)
    box = await store.get_mailbox(acct.id, "INBOX")
    assert box is not None
    return store, acct.id, box.id


async def append_one(store: SQLiteStore, box_id: int, data: bytes) -> str:
    """APPEND `data` to the mailbox; its digest."""
    staged = await store.blobs.stage(data)
    try:
        await store.append(box_id, [AppendItem(staged)])
    finally:
        staged.discard()
    return staged.digest


async def stored_as_file(data_dir: Path, data: bytes) -> str:
    """`data` appended by a store that keeps every body in a file (as casella did before
    schema version 6), then closed; its digest."""
    store, _, box_id = await open_with_user(data_dir, inline_max=-1)
    try:
        digest = await append_one(store, box_id, data)
        assert len(files_in(store.blobs)) == 1
        return digest
    finally:
        await store.close()


def body_rows(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "casella.db") as conn:
        return conn.execute("SELECT count(*) FROM blob_bodies").fetchone()[0]


async def collected(store: SQLiteStore) -> None:
    """Wait for the blob collector, which runs after a write once a release has waited."""
    for _ in range(100):
        await store.add_domain(f"flush{_}.test")
        if not await store.stored_bodies():
            return
        await asyncio.sleep(0.05)


async def test_a_small_body_is_staged_in_memory_and_a_big_one_in_a_file(tmp_path: Path
                                                                        ) -> None:
    blobs = BlobStore(tmp_path / "blobs")
    blobs.prepare()
    small = await blobs.stage(message(1, INLINE_MAX))
    assert small.data == message(1, INLINE_MAX) and small.tmp_path is None
    assert small.size == INLINE_MAX and small.parsed.header.startswith(b"From:")
    assert files_in(blobs) == [] and list(blobs.tmp_dir.iterdir()) == []
    small.discard()
    big = await blobs.stage(message(2, INLINE_MAX + 1))
    assert big.data is None and big.tmp_path is not None
    assert big.tmp_path.read_bytes() == message(2, INLINE_MAX + 1)
    big.discard()
    # Many MIME delimiters: parsed in the I/O thread, still kept in memory.
    bomb = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"\r\n--b\r\n\r\nx" * 100
    many = await blobs.stage(bomb)
    assert many.data == bomb and many.tmp_path is None


async def test_delivered_small_body_lives_in_the_database_and_reads_in_pieces(tmp_path: Path
                                                                              ) -> None:
    data_dir = tmp_path / "data"
    store, acct_id, box_id = await open_with_user(data_dir)
    try:
        data = message(1, 10_000)
        staged = await store.blobs.stage(data)
        try:
            [outcome] = await store.deliver(staged, [DeliveryTarget(acct_id)])
        finally:
            staged.discard()
        assert outcome.error is None
        assert files_in(store.blobs) == [] and body_rows(data_dir) == 1
        assert await store.stored_bodies() == [staged.digest]
        assert await store.read_blob(staged.digest) == data
        assert await store.read_blob(staged.digest, 100, 50) == data[100:150]
        assert await store.read_blob(staged.digest, 9_990) == data[9_990:]
        # read_blob reads up to `length`; read_blobs pieces must be whole (literal sizes).
        assert await store.read_blob(staged.digest, 9_990, 100) == data[9_990:]
        assert await store.read_blobs([(staged.digest, 0, 10), (staged.digest, 5, 5)]) == [
            data[:10], data[5:10]]
        with pytest.raises(StorageError):
            await store.read_blobs([(staged.digest, 9_990, 100)])
        with pytest.raises(StorageError):
            await store.read_blob("0" * 64)
        await store.remove_messages(box_id, [(1, 1)])
        await collected(store)
        assert await store.stored_bodies() == [] and body_rows(data_dir) == 0
    finally:
        await store.close()


async def test_same_content_is_kept_once_whichever_way_it_was_first_stored(tmp_path: Path
                                                                         ) -> None:
    data_dir = tmp_path / "data"
    data = message(1, 5_000)
    await stored_as_file(data_dir, data)     # first as a file...
    # ...then again, small enough to be inline: the file is referenced, nothing is added.
    store, acct_id, box_id = await open_with_user(data_dir)
    try:
        staged = await store.blobs.stage(data)
        assert staged.data is not None
        await store.append(box_id, [AppendItem(staged), AppendItem(staged)])
        staged.discard()
        assert body_rows(data_dir) == 0
        assert await store.stored_bodies() == [staged.digest]
        assert await store.read_blob(staged.digest) == data
        # Released but not yet collected (the collector runs as soon as the writer is idle,
        # so the release is written behind its back), then delivered again: the file is
        # referenced once more, no second copy is made.
        with sqlite3.connect(data_dir / "casella.db") as conn:
            conn.execute("UPDATE blobs SET refcount = 0")
        staged = await store.blobs.stage(data)
        [outcome] = await store.deliver(staged, [DeliveryTarget(acct_id)])
        staged.discard()
        assert outcome.error is None
        assert await store.read_blob(staged.digest) == data
        assert await store.stored_bodies() == [staged.digest]
    finally:
        await store.close()


async def test_same_small_content_twice_is_one_row(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    store, acct_id, box_id = await open_with_user(data_dir)
    try:
        data = message(7, 3_000)
        digest = await append_one(store, box_id, data)
        assert await append_one(store, box_id, data) == digest
        assert body_rows(data_dir) == 1 and files_in(store.blobs) == []
        await store.remove_messages(box_id, [(1, 1)])
        assert body_rows(data_dir) == 1
        assert await store.read_blob(digest) == data
    finally:
        await store.close()


async def test_one_read_mixes_bodies_in_files_and_in_the_database(tmp_path: Path) -> None:
    """An upgraded store holds both: read_blobs answers each piece from where it is."""
    data_dir = tmp_path / "data"
    old, new = message(1, 4_000), message(2, 4_000)
    in_file = await stored_as_file(data_dir, old)
    store, _, box_id = await open_with_user(data_dir)
    try:
        inline = await append_one(store, box_id, new)
        assert len(files_in(store.blobs)) == 1 and body_rows(data_dir) == 1
        got = await store.read_blobs([(in_file, 10, 20), (inline, 0, len(new)),
                                      (in_file, 0, len(old)), (inline, 7, 3)])
        assert got == [old[10:30], new, old, new[7:10]]
        with pytest.raises(StorageError):
            await store.read_blobs([(in_file, 0, 10), ("f" * 64, 0, 10)])
    finally:
        await store.close()


async def test_a_file_body_never_reads_the_bytes_left_under_a_reused_blob_id(tmp_path: Path
                                                                          ) -> None:
    """Blob ids can be reused; were a body row ever left behind under one, a new blob kept as
    a file must not be answered with those bytes."""
    data_dir = tmp_path / "data"
    store, _, box_id = await open_with_user(data_dir, inline_max=-1)
    try:
        with sqlite3.connect(data_dir / "casella.db") as conn:
            next_id = conn.execute("SELECT coalesce(max(id), 0) + 1 FROM blobs").fetchone()[0]
            conn.execute("INSERT INTO blob_bodies (blob_id, data) VALUES (?, x'00')",
                         (next_id,))
        data = message(3, 2_000)
        assert await store.read_blob(await append_one(store, box_id, data)) == data
        assert body_rows(data_dir) == 0
    finally:
        await store.close()


async def test_an_empty_body_reads_back_empty(tmp_path: Path) -> None:
    store, _, box_id = await open_with_user(tmp_path / "data")
    try:
        digest = await append_one(store, box_id, b"")
        assert await store.read_blob(digest) == b""
        assert await store.read_blob(digest, 0, 10) == b""
        assert await store.read_blobs([(digest, 0, 0)]) == [b""]
    finally:
        await store.close()
