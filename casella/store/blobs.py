"""Message bodies: content-addressed, written durably, parsed once.

Lives here: `BlobStore` (paths, staging, publishing, removal, orphan listing; the backend
reads bodies, since it knows which are kept inline), `BlobWriter` (collects a message while
it arrives, spilling a big one into a temporary file) and `StagedBlob` (a parsed body waiting
for a store transaction to publish it).

A body of at most `INLINE_MAX` bytes that arrived whole in memory is not written to a file at
all: its `StagedBlob` carries the bytes, and the backend stores them in its database inside
the transaction that references them, so the commit's own fsync makes them durable with the
metadata (issue 8: a file of its own cost a delivery an inode, two fsyncs and a hop to an I/O
thread). Everything below about files applies to the bigger bodies.

Durable write order (STYLE.md): temporary file inside data_dir → fsync(file) → rename into
place → fsync(directory) → the caller commits the metadata → the caller replies. Removal is
done only by the backend while it holds its write lock. Publication is too, except that a
writer may publish *early* (`finish(publish_early=True)`): link and fsync the directory
before the write lock is taken, so that the lock is not held through those fsyncs. Under the
lock the backend then only checks that the final name still holds the very inode whose
directory entry was made durable (`publish`), and links and fsyncs again if not; an early
link that no commit came to claim is removed under the lock (`drop_unclaimed`). Must never:
write outside its root, or leave a partial file under a final name.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import functools
import hashlib
import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

from casella.errors import DiskFull, StorageError

_SPILL_THRESHOLD = 1024 * 1024  # above this a message is written to disk as it arrives
# A message this small with at most this many lines that could be MIME delimiters is parsed
# on the calling (event loop) thread, a few hundred microseconds, rather than in the I/O
# thread, where the parse would only take turns at the GIL with the loop; bigger or
# many-part messages (a 64 KiB part bomb takes ~90 ms) are parsed in the I/O thread.
_PARSE_HERE_SIZE = 64 * 1024
_PARSE_HERE_PARTS = 16
# SQLite's own measurements ("Internal Versus External BLOBs") put the break-even between a
# blob in the database and one in a file of its own near 100 KB for 4 KiB pages; below this
# size the body is stored in the database (see the module docstring).
INLINE_MAX = 64 * 1024
_io_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="blob-io")


def _unlink_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _read_range(path: Path, offset: int, length: int) -> bytes:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read(length)
    except OSError as exc:
        raise _storage_error(exc, "read the staged message") from exc


def _storage_error(exc: OSError, what: str) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"no space left to {what}")
    return StorageError(f"could not {what}: {exc.strerror or exc}")


class ParsedData:
    """What the parser produced for a staged blob (see casella.mail.parse.ParsedMessage)."""

    __slots__ = ("header", "envelope", "bodystructure", "body", "parts", "preview", "search",
                 "index")

    def __init__(self, header: bytes, envelope: bytes, bodystructure: bytes, body: bytes,
                 parts: str, preview: str, search: tuple[str, ...],
                 index: tuple[str, str] | None) -> None:
        self.header = header
        self.envelope = envelope
        self.bodystructure = bodystructure
        self.body = body
        self.parts = parts
        self.preview = preview
        self.search = search
        self.index = index


def _default_parser(data: bytes | mmap.mmap, with_index: bool = True) -> ParsedData:
    from casella.mail.parse import parse_message

    p = parse_message(data, with_index)
    return ParsedData(p.header, p.envelope, p.bodystructure, p.body, p.parts, p.preview,
                      p.search, p.index)


class StagedBlob:
    """A parsed message, either in memory (`data`, at most INLINE_MAX bytes: the backend
    stores the bytes in its transaction) or written to a temporary file and fsynced
    (`tmp_path`). Publish it through a store operation, then call `discard()` (which removes
    the temporary file if it is still there)."""

    __slots__ = ("tmp_path", "data", "digest", "size", "parsed", "_store", "early_ino",
                 "own_link", "committed")

    def __init__(self, store: "BlobStore", tmp_path: Path | None, digest: str, size: int,
                 parsed: ParsedData, data: bytes | None = None) -> None:
        assert (tmp_path is None) != (data is None)
        self._store = store
        self.tmp_path = tmp_path
        self.data = data
        self.digest = digest
        self.size = size
        self.parsed = parsed
        # Published early: the inode the final name held when its directory was fsynced.
        self.early_ino: int | None = None
        self.own_link = False     # that inode is this staged file's (the early link made it)
        self.committed = False    # a committed transaction references the digest

    def discard(self) -> None:
        if self.tmp_path is None:
            return
        if self.own_link and not self.committed:
            # The early link may be an orphan: the writer removes it under its lock unless a
            # row references the digest by then.
            self.own_link = False
            assert self.early_ino is not None
            self._store.unclaimed.append((self.digest, self.early_ino))
        # The temporary name goes in an I/O thread, not here: discard() runs on the event
        # loop, and an unlink waits for the filesystem journal, which the other sessions'
        # fsyncs keep busy (1-2 ms under load). Nothing reads the name after this; one left
        # behind by a crash is removed at start-up (clean_tmp).
        _io_executor.submit(_unlink_quietly, self.tmp_path)

    async def read(self, offset: int, length: int) -> bytes:
        """Up to `length` octets of the staged message from `offset` (IMAP CATENATE copies a
        large TEXT part out of the blob it was streamed into)."""
        if self.data is not None:
            return self.data[offset:offset + length]
        assert self.tmp_path is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_io_executor, _read_range, self.tmp_path, offset,
                                          length)

    def __enter__(self) -> "StagedBlob":
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


class BlobWriter:
    """Collects a message as it arrives; small ones stay in memory, large ones spill to the
    temporary file at once so memory stays bounded."""

    def __init__(self, store: "BlobStore") -> None:
        self._store = store
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._size = 0
        self._hash = hashlib.sha256()
        self._fd: int | None = None
        self._path: Path | None = None
        self._done = False

    @property
    def size(self) -> int:
        return self._size

    async def write(self, data: bytes) -> None:
        if not data:
            return
        self._hash.update(data)
        self._size += len(data)
        self._chunks.append(data)
        self._buffered += len(data)
        if self._buffered >= _SPILL_THRESHOLD:
            await self._spill()

    def peek(self) -> bytes | None:
        """Everything written so far when it is all still in memory (nothing spilled to the
        temporary file), else None."""
        if self._fd is not None:
            return None
        if len(self._chunks) > 1:
            self._chunks = [b"".join(self._chunks)]
        return self._chunks[0] if self._chunks else b""

    async def _spill(self) -> None:
        chunks, self._chunks, self._buffered = self._chunks, [], 0
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(_io_executor, self._write_sync, chunks)

    def _write_sync(self, chunks: list[bytes]) -> None:
        try:
            if self._fd is None:
                self._path = self._store.new_tmp_path()
                self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            for chunk in chunks:
                view = memoryview(chunk)
                while view:
                    n = os.write(self._fd, view)
                    view = view[n:]
        except OSError as exc:
            raise _storage_error(exc, "write the message") from exc

    async def finish(self, publish_early: bool = False) -> StagedBlob:
        """Parse the message and return it staged: in memory when it is small enough to be
        stored inline (INLINE_MAX), else in its temporary file, fsynced. With `publish_early`
        such a file is also linked under its final name and that directory fsynced, in the
        same hop to the I/O thread (see the module docstring); the store's transaction then
        has no fsync of its own to do for it."""
        loop = asyncio.get_running_loop()
        chunks, self._chunks, self._buffered = self._chunks, [], 0
        parsed = None
        try:
            inline = self._fd is None and self._size <= self._store.inline_max
            if inline or self._fd is None and self._size <= _PARSE_HERE_SIZE:
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                chunks = [data]
                if data.count(b"\n--") <= _PARSE_HERE_PARTS:
                    parsed = self._store.parser(data)
                if inline:
                    if parsed is None:
                        parsed = await loop.run_in_executor(_io_executor, self._store.parser,
                                                            data)
                    self._done = True
                    return StagedBlob(self._store, None, self._hash.hexdigest(), self._size,
                                      parsed, data=data)
            return await loop.run_in_executor(_io_executor, self._finish_sync, chunks,
                                              publish_early, parsed)
        except BaseException:
            self.abort()
            raise

    def _finish_sync(self, chunks: list[bytes], publish_early: bool = False,
                     parsed: ParsedData | None = None) -> StagedBlob:
        data: bytes | None = None
        if self._fd is None and len(chunks) <= 1:
            data = chunks[0] if chunks else b""
        elif self._fd is None:
            data = b"".join(chunks)
        if data is not None:
            self._write_sync([data])
        else:
            self._write_sync(chunks)
        assert self._fd is not None and self._path is not None
        try:
            os.fsync(self._fd)
            tmp_ino = os.fstat(self._fd).st_ino
        except OSError as exc:
            raise _storage_error(exc, "write the message") from exc
        finally:
            os.close(self._fd)
            self._fd = None
        self._done = True
        if parsed is None and data is not None:
            parsed = self._store.parser(data)
        elif parsed is None:
            parsed = self._store.parse_file(self._path)
        staged = StagedBlob(self._store, self._path, self._hash.hexdigest(), self._size, parsed)
        if publish_early:
            self._store.publish_early(staged, tmp_ino)
        return staged

    def abort(self) -> None:
        """Throw the partial message away (client disconnected, too big, refused)."""
        self._chunks.clear()
        if self._fd is not None:
            try:
                os.close(self._fd)
            except OSError:
                pass
            self._fd = None
        if self._path is not None and not self._done:
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                pass


class BlobStore:
    """Files under `root/<2 hex>/<sha256 hex>`; temporary files under `root/tmp/`."""

    def __init__(self, root: Path,
                 parser: Callable[[bytes | mmap.mmap], ParsedData] | None = None,
                 inline_max: int = INLINE_MAX, index_texts: bool = True) -> None:
        self.root = root
        self.inline_max = inline_max   # -1: every body goes to a file
        self.tmp_dir = root / "tmp"
        # Without the search index the texts it would hold are not worked out at all.
        self.parser = parser or functools.partial(_default_parser, with_index=index_texts)
        self._tmp_counter = 0
        # (digest, inode) of early links whose staged blob was discarded uncommitted.
        self.unclaimed: collections.deque[tuple[str, int]] = collections.deque()

    def prepare(self) -> None:
        """Create the root, tmp/ and the 256 shard directories (named by a digest's first two
        hex digits) once, and make their entries durable: a message's own fsyncs then only
        need its file and its shard directory, and no delivery creates a directory."""
        self.root.mkdir(parents=True, exist_ok=True)
        created = False
        for name in ["tmp"] + [f"{i:02x}" for i in range(256)]:
            try:
                (self.root / name).mkdir()
                created = True
            except FileExistsError:
                pass
        if created:
            self.sync_dirs({self.root, self.root.parent})

    def _link(self, src: Path, final: Path) -> bool:
        """os.link, creating the shard directory if somebody removed it; whether it did (the
        caller then makes the root's entry durable before it relies on the link)."""
        try:
            os.link(src, final)
            return False
        except FileNotFoundError:
            if not src.exists():
                raise
            final.parent.mkdir(exist_ok=True)
            os.link(src, final)
            return True

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def new_tmp_path(self) -> Path:
        self._tmp_counter += 1
        return self.tmp_dir / f"{os.getpid()}.{self._tmp_counter}.{os.urandom(6).hex()}"

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    async def stage(self, data: bytes, publish_early: bool = False) -> StagedBlob:
        """Write `data` durably to a temporary file and parse it (`publish_early`: see
        `BlobWriter.finish`)."""
        writer = BlobWriter(self)
        await writer.write(data)
        return await writer.finish(publish_early)

    def parse_file(self, path: Path) -> ParsedData:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return self.parser(b"")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return self.parser(mm)

    def publish_early(self, staged: StagedBlob, tmp_ino: int) -> None:
        """Link a staged (fsynced) file under its final name and fsync that directory, before
        any lock is taken. The inode found there is read *before* the fsync, so the entry it
        names was durable by the time the fsync returned. Any failure leaves the work to
        `publish` under the lock."""
        final = self.path_for(staged.digest)
        try:
            dirs = {final.parent}
            try:
                if self._link(staged.tmp_path, final):
                    dirs.add(self.root)
            except FileExistsError:
                pass
            ino = os.stat(final).st_ino
            self.sync_dirs(dirs)
        except (OSError, StorageError):
            return
        staged.early_ino = ino
        staged.own_link = ino == tmp_ino

    # --- called by the backend while it holds its write lock ------------------------------

    def publish(self, staged: StagedBlob, dirs_to_sync: set[Path]) -> None:
        """Move a staged file to its final name (idempotent: the content is the same). The
        directory is added to `dirs_to_sync`; call `sync_dirs` before committing. Nothing is
        left to do when an early publication's entry is still there: only this lock's holder
        removes final names, and whoever links an inode anew fsyncs before it commits."""
        assert staged.tmp_path is not None, "an inline body is stored by the backend"
        final = self.path_for(staged.digest)
        if staged.early_ino is not None:
            try:
                if os.stat(final).st_ino == staged.early_ino:
                    return
            except OSError:
                pass
        try:
            if not final.exists():
                # A hard link, not a rename: the staged file stays valid until discard(), so
                # one staged body can be published again if a transaction is retried.
                if self._link(staged.tmp_path, final):
                    dirs_to_sync.add(self.root)   # synced with the rest before COMMIT
        except FileExistsError:
            pass
        except OSError as exc:
            raise _storage_error(exc, "store the message") from exc
        dirs_to_sync.add(final.parent)

    @staticmethod
    def sync_dirs(dirs: set[Path]) -> None:
        for d in dirs:
            try:
                fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise _storage_error(exc, "store the message") from exc

    def drop_unclaimed(self, referenced: Callable[[str], bool]) -> int:
        """Remove the early links of discarded, uncommitted staged blobs whose digest no row
        references (`referenced`), when the final name still holds that very inode. Returns
        how many were removed."""
        removed = 0
        while self.unclaimed:
            try:
                digest, ino = self.unclaimed.popleft()
            except IndexError:
                break
            if referenced(digest):
                continue
            path = self.path_for(digest)
            try:
                if os.stat(path).st_ino == ino:
                    os.unlink(path)
                    removed += 1
            except OSError:
                pass
        return removed

    def remove(self, digest: str) -> None:
        try:
            os.unlink(self.path_for(digest))
        except FileNotFoundError:
            pass

    def exists(self, digest: str) -> bool:
        return self.path_for(digest).exists()

    def iter_digests(self) -> Iterator[str]:
        """Every blob file's digest (for orphan cleanup)."""
        if not self.root.exists():
            return
        for sub in self.root.iterdir():
            if sub.name == "tmp" or not sub.is_dir() or len(sub.name) != 2:
                continue
            for f in sub.iterdir():
                if len(f.name) == 64:
                    yield f.name

    def usage(self) -> tuple[int, int]:
        """How many body files there are, and their bytes together."""
        count = total = 0
        if not self.root.exists():
            return 0, 0
        for sub in os.scandir(self.root):
            if sub.name == "tmp" or len(sub.name) != 2 or not sub.is_dir():
                continue
            for entry in os.scandir(sub.path):
                if len(entry.name) == 64:
                    try:
                        total += entry.stat().st_size
                    except FileNotFoundError:   # collected meanwhile
                        continue
                    count += 1
        return count, total

    def clean_tmp(self) -> int:
        """Remove unfinished writes left by a crash; returns how many."""
        n = 0
        if self.tmp_dir.exists():
            for f in self.tmp_dir.iterdir():
                try:
                    f.unlink()
                    n += 1
                except OSError:
                    pass
        return n
