"""Message bodies as files: content-addressed, written durably, parsed once.

Lives here: `BlobStore` (paths, staging, publishing, removal, reads, orphan listing),
`BlobWriter` (streams a message into a temporary file while it arrives) and `StagedBlob` (a
body that is on disk, fsynced and parsed, waiting for a store transaction to publish it).

Durable write order (STYLE.md): temporary file inside data_dir → fsync(file) → rename into
place → fsync(directory) → the caller commits the metadata → the caller replies. Publishing and
removal are done only by the backend while it holds its write lock, so a blob can never be
unlinked between another delivery's rename and commit. Must never: write outside its root, or
leave a partial file under a final name.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator

from casella.errors import DiskFull, StorageError

_SPILL_THRESHOLD = 1024 * 1024  # above this a message is written to disk as it arrives
_io_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="blob-io")


def _storage_error(exc: OSError, what: str) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return DiskFull(f"no space left to {what}")
    return StorageError(f"could not {what}: {exc.strerror or exc}")


class ParsedData:
    """What the parser produced for a staged blob (see casella.mail.parse.ParsedMessage)."""

    __slots__ = ("header", "envelope", "bodystructure", "body", "parts", "preview")

    def __init__(self, header: bytes, envelope: bytes, bodystructure: bytes, body: bytes,
                 parts: str, preview: str) -> None:
        self.header = header
        self.envelope = envelope
        self.bodystructure = bodystructure
        self.body = body
        self.parts = parts
        self.preview = preview


def _default_parser(data: bytes | mmap.mmap) -> ParsedData:
    from casella.mail.parse import parse_message

    p = parse_message(data)
    return ParsedData(p.header, p.envelope, p.bodystructure, p.body, p.parts, p.preview)


class StagedBlob:
    """A message written to a temporary file, fsynced and parsed. Publish it through a store
    operation, then call `discard()` (which removes the temporary file if it is still there)."""

    __slots__ = ("tmp_path", "digest", "size", "parsed", "_store")

    def __init__(self, store: "BlobStore", tmp_path: Path, digest: str, size: int,
                 parsed: ParsedData) -> None:
        self._store = store
        self.tmp_path = tmp_path
        self.digest = digest
        self.size = size
        self.parsed = parsed

    def discard(self) -> None:
        try:
            os.unlink(self.tmp_path)
        except FileNotFoundError:
            pass

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

    async def finish(self) -> StagedBlob:
        """fsync the file, parse the message, and return it staged."""
        loop = asyncio.get_running_loop()
        chunks, self._chunks, self._buffered = self._chunks, [], 0
        try:
            return await loop.run_in_executor(_io_executor, self._finish_sync, chunks)
        except BaseException:
            self.abort()
            raise

    def _finish_sync(self, chunks: list[bytes]) -> StagedBlob:
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
        except OSError as exc:
            raise _storage_error(exc, "write the message") from exc
        finally:
            os.close(self._fd)
            self._fd = None
        self._done = True
        if data is not None:
            parsed = self._store.parser(data)
        else:
            parsed = self._store.parse_file(self._path)
        return StagedBlob(self._store, self._path, self._hash.hexdigest(), self._size, parsed)

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
                 parser: Callable[[bytes | mmap.mmap], ParsedData] | None = None) -> None:
        self.root = root
        self.tmp_dir = root / "tmp"
        self.parser = parser or _default_parser
        self._tmp_counter = 0

    def prepare(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp_dir.mkdir(exist_ok=True)

    def path_for(self, digest: str) -> Path:
        return self.root / digest[:2] / digest

    def new_tmp_path(self) -> Path:
        self._tmp_counter += 1
        return self.tmp_dir / f"{os.getpid()}.{self._tmp_counter}.{os.urandom(6).hex()}"

    def writer(self) -> BlobWriter:
        return BlobWriter(self)

    async def stage(self, data: bytes) -> StagedBlob:
        """Write `data` durably to a temporary file and parse it."""
        writer = BlobWriter(self)
        await writer.write(data)
        return await writer.finish()

    def parse_file(self, path: Path) -> ParsedData:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                return self.parser(b"")
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
                return self.parser(mm)

    # --- called by the backend while it holds its write lock ------------------------------

    def publish(self, staged: StagedBlob, dirs_to_sync: set[Path]) -> None:
        """Move a staged file to its final name (idempotent: the content is the same). The
        directory is added to `dirs_to_sync`; call `sync_dirs` before committing."""
        final = self.path_for(staged.digest)
        try:
            final.parent.mkdir(exist_ok=True)
            if not final.exists():
                # A hard link, not a rename: the staged file stays valid until discard(), so
                # one staged body can be published again if a transaction is retried.
                os.link(staged.tmp_path, final)
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

    # --- reads ---------------------------------------------------------------------------

    def read_sync(self, digest: str, offset: int = 0, length: int = -1) -> bytes:
        try:
            with open(self.path_for(digest), "rb") as f:
                if offset:
                    f.seek(offset)
                return f.read() if length < 0 else f.read(length)
        except FileNotFoundError:
            raise StorageError("a stored message is missing from the blob store") from None
        except OSError as exc:
            raise _storage_error(exc, "read the message") from exc

    async def read(self, digest: str, offset: int = 0, length: int = -1) -> bytes:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(_io_executor, self.read_sync, digest, offset, length)
