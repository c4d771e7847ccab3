"""Open-connection counts shared by the processes of one machine: a small hash table in a file
that each of them maps into memory (mmap, MAP_SHARED), changed only under an flock(2) of the
file.

Why not a database table: a connection is counted four times in its life (connect, login,
logout, disconnect), and a SQLite transaction costs 25 to 40 µs of CPU when its caches are cold,
as they are between two connections of a busy server: a sixth of an IMAP login's CPU. A look-up
here is a hash, a few slots read and one written, about a tenth of that. The counts are live
state, not data: nothing is ever fsynced, the table starts empty when the server starts, and a
table a crash left damaged is made anew then.

Layout: a header (magic, capacity, slots in use, live slots), a table of up to MAX_OWNERS owner
names (the index of its entry + 1 stands for an owner in the slots), then `capacity` slots of
(128-bit hash of the key, owner index, count). Linear probing; a slot whose count drops to zero
becomes a tombstone (owner TOMB) so that chains stay whole; the table is rebuilt, bigger when
it must be, once used slots would pass 60%. The file only ever grows, so a process whose mapping
is smaller than the file just maps it again, and no mapping reaches past its end; its blocks are
allocated before use, so that a write to the mapping never needs a block of a full disk (either
would be a SIGBUS).

Lives here: `LiveCounts`, one open file, mapped; `Contended` when a non-blocking call would wait.
Must never: fsync, import anything of casella but the errors, or be used by two threads at once
(each thread opens its own: the flock of one open file does not exclude another thread using
the same file).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

from casella.errors import StorageError

MAGIC = b"CASLIVE1"
_HEADER = struct.Struct("<8sIII")          # magic, capacity, used slots, live slots
HEADER_SIZE = 64
MAX_OWNERS = 256
OWNER_SIZE = 128
_OWNERS_AT = HEADER_SIZE
_SLOTS_AT = HEADER_SIZE + MAX_OWNERS * OWNER_SIZE
_SLOT = struct.Struct("<16sII")            # key hash, owner index (+1), count
SLOT_SIZE = _SLOT.size
INITIAL_CAPACITY = 4096
TOMB = 0xFFFFFFFF
_EMPTY = bytes(16)


class Contended(Exception):
    """Another process (or thread) holds the table: a non-blocking call did nothing."""


def _allocate(fd: int, size: int) -> None:
    """Blocks for the first `size` bytes of the file (which grows to that size if shorter)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        raise StorageError(f"no room for the connection counts: {exc.strerror or exc}") from exc


def _hash(key: str) -> bytes:
    h = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=16).digest()
    return h if h != _EMPTY else b"\x01" + h[1:]


class LiveCounts:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._map: mmap.mmap | None = None
        self._capacity = 0
        self._owners: dict[str, int] = {}     # name -> index + 1, checked before each use

    # --- life cycle --------------------------------------------------------------------------

    def open(self, reset: bool) -> None:
        """Map the table; with `reset` (server start-up: no connection is open) empty it. A
        table that is not one (a crash left it damaged) is emptied too. The file is never made
        shorter (another mapping of it would fault past the end) and its blocks are allocated
        before they are mapped (a write to an unallocated page of a full disk faults too):
        StorageError when there is no room."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self._fd = fd
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            size = os.fstat(fd).st_size
            head = os.pread(fd, _HEADER.size, 0)
            magic, capacity = _HEADER.unpack(head)[:2] if len(head) == _HEADER.size \
                else (b"", 0)
            valid = magic == MAGIC and capacity > 0 and \
                size >= _SLOTS_AT + capacity * SLOT_SIZE
            if reset or not valid:
                if not valid:
                    capacity = INITIAL_CAPACITY
                end = _SLOTS_AT + capacity * SLOT_SIZE
                _allocate(fd, max(end, size))
                for at in range(0, end, 1 << 20):
                    os.pwrite(fd, bytes(min(1 << 20, end - at)), at)
                os.pwrite(fd, _HEADER.pack(MAGIC, capacity, 0, 0), 0)
            self._remap()
        except BaseException:
            fcntl.flock(fd, fcntl.LOCK_UN)
            self.close()
            raise
        fcntl.flock(fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _remap(self) -> mmap.mmap:
        """Map the whole file again if it grew (another process rebuilt the table bigger: the
        header, which every mapping holds, says so)."""
        assert self._fd is not None
        m = self._map
        if m is not None and _HEADER.unpack_from(m, 0)[1] == self._capacity:
            return m
        capacity = _HEADER.unpack(os.pread(self._fd, _HEADER.size, 0))[1]
        if self._map is None or capacity != self._capacity:
            if self._map is not None:
                self._map.close()
            self._map = mmap.mmap(self._fd, _SLOTS_AT + capacity * SLOT_SIZE)
            self._capacity = capacity
        return self._map

    @contextlib.contextmanager
    def _locked(self, blocking: bool) -> Iterator[mmap.mmap]:
        """The table, mapped whole, under the flock."""
        fd = self._fd
        if fd is None:
            raise StorageError("the connection counts are closed")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Contended() from None
        try:
            yield self._remap()
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    # --- owners ------------------------------------------------------------------------------

    def _owner(self, m: mmap.mmap, name: str, add: bool) -> int:
        """The index (+ 1) of owner `name`, registered if `add`; 0 when it has none."""
        raw = name.encode("utf-8")[:OWNER_SIZE]
        entry = raw.ljust(OWNER_SIZE, b"\0")
        idx = self._owners.get(name)
        if idx is not None and m[_OWNERS_AT + (idx - 1) * OWNER_SIZE:
                                 _OWNERS_AT + idx * OWNER_SIZE] == entry:
            return idx
        free = 0
        for i in range(MAX_OWNERS):
            at = _OWNERS_AT + i * OWNER_SIZE
            got = m[at:at + OWNER_SIZE]
            if got == entry:
                self._owners[name] = i + 1
                return i + 1
            if not free and got[0] == 0:
                free = i + 1
        if not add:
            return 0
        if not free:
            raise StorageError(f"more than {MAX_OWNERS} server processes count connections")
        m[_OWNERS_AT + (free - 1) * OWNER_SIZE:_OWNERS_AT + free * OWNER_SIZE] = entry
        self._owners[name] = free
        return free

    def _owners_under(self, m: mmap.mmap, name: str) -> set[int]:
        """`name` and every owner below it (`name/...`)."""
        out = set()
        exact = name.encode("utf-8")
        below = exact + b"/"
        for i in range(MAX_OWNERS):
            at = _OWNERS_AT + i * OWNER_SIZE
            got = bytes(m[at:at + OWNER_SIZE]).rstrip(b"\0")
            if got and (got == exact or got.startswith(below)):
                out.add(i + 1)
        return out

    # --- slots -------------------------------------------------------------------------------

    def _scan(self, m: mmap.mmap, h: bytes, owner: int) -> tuple[int, int, int]:
        """For key hash `h`: (its count over all owners, the slot of `owner`'s count or -1,
        the first slot free for it)."""
        capacity = self._capacity
        i = int.from_bytes(h[:8], "little") % capacity
        total = 0
        mine = -1
        free = -1
        unpack = _SLOT.unpack_from
        for _ in range(capacity):
            kh, ow, n = unpack(m, _SLOTS_AT + i * SLOT_SIZE)
            if kh == _EMPTY:
                if ow != TOMB:
                    if free < 0:
                        free = i
                    break
                if free < 0:
                    free = i
            elif kh == h:
                total += n
                if ow == owner:
                    mine = i
            i += 1
            if i == capacity:
                i = 0
        return total, mine, free

    def _header(self, m: mmap.mmap) -> tuple[int, int]:
        _, _, used, live = _HEADER.unpack_from(m, 0)
        return used, live

    def _set_header(self, m: mmap.mmap, used: int, live: int) -> None:
        _HEADER.pack_into(m, 0, MAGIC, self._capacity, used, live)

    def _rebuild(self, m: mmap.mmap, adding: int) -> mmap.mmap:
        """Drop the tombstones, with room for `adding` more entries: at least four slots per
        entry, the file grown if need be (never shrunk). Without room on disk to grow, in the
        slots there are if the entries fit; else StorageError, nothing changed."""
        entries = [e for e in _SLOT.iter_unpack(m[_SLOTS_AT:_SLOTS_AT + self._capacity *
                                                   SLOT_SIZE]) if e[0] != _EMPTY]
        capacity = self._capacity
        while capacity < 4 * (len(entries) + adding):
            capacity *= 2
        assert self._fd is not None
        if capacity != self._capacity:
            try:
                _allocate(self._fd, _SLOTS_AT + capacity * SLOT_SIZE)
            except StorageError:
                if (len(entries) + adding) * 10 > self._capacity * 6:
                    raise
                capacity = self._capacity
        _HEADER.pack_into(m, 0, MAGIC, capacity, 0, 0)
        m = self._remap()
        m[_SLOTS_AT:_SLOTS_AT + capacity * SLOT_SIZE] = bytes(capacity * SLOT_SIZE)
        for kh, ow, n in entries:
            _, _, free = self._scan(m, kh, ow)
            _SLOT.pack_into(m, _SLOTS_AT + free * SLOT_SIZE, kh, ow, n)
        self._set_header(m, len(entries), len(entries))
        return m

    # --- operations (each under the lock; blocking=False raises Contended at once) ------------

    def acquire(self, owner: str, keys: Sequence[tuple[str, int]],
                blocking: bool = True) -> str | None:
        with self._locked(blocking) as m:
            me = self._owner(m, owner, add=True)
            found = []
            for key, limit in keys:
                h = _hash(key)
                total, mine, free = self._scan(m, h, me)
                if total >= limit:
                    return key
                found.append((h, mine, free))
            used, live = self._header(m)
            adding = sum(1 for f in found if f[1] < 0)
            if (used + adding) * 10 > self._capacity * 6:
                # Room first (the only step that can fail), then the slots as they now are.
                m = self._rebuild(m, adding)
                found = [(h, *self._scan(m, h, me)[1:]) for h, _, _ in found]
                used, live = self._header(m)
            for n, (h, mine, free) in enumerate(found):
                if n and h in [f[0] for f in found[:n]]:
                    _, mine, free = self._scan(m, h, me)     # the same key twice
                if mine >= 0:
                    at = _SLOTS_AT + mine * SLOT_SIZE
                    _SLOT.pack_into(m, at, h, me, _SLOT.unpack_from(m, at)[2] + 1)
                    continue
                at = _SLOTS_AT + free * SLOT_SIZE
                if _SLOT.unpack_from(m, at)[1] != TOMB:
                    used += 1
                _SLOT.pack_into(m, at, h, me, 1)
                live += 1
            self._set_header(m, used, live)
            return None

    def release(self, owner: str, keys: Sequence[str], blocking: bool = True) -> None:
        with self._locked(blocking) as m:
            me = self._owner(m, owner, add=False)
            if not me:
                return
            used, live = self._header(m)
            for key in keys:
                h = _hash(key)
                _, mine, _ = self._scan(m, h, me)
                if mine < 0:
                    continue
                at = _SLOTS_AT + mine * SLOT_SIZE
                n = _SLOT.unpack_from(m, at)[2]
                if n > 1:
                    _SLOT.pack_into(m, at, h, me, n - 1)
                else:
                    _SLOT.pack_into(m, at, _EMPTY, TOMB, 0)
                    live -= 1
            self._set_header(m, used, live)

    def count(self, keys: Sequence[str], blocking: bool = True) -> dict[str, int]:
        with self._locked(blocking) as m:
            out = {}
            for key in keys:
                total = self._scan(m, _hash(key), 0)[0]
                if total > 0:
                    out[key] = total
            return out

    def forget(self, owner: str, blocking: bool = True) -> int:
        with self._locked(blocking) as m:
            owners = self._owners_under(m, owner)
            if not owners:
                return 0
            dropped = 0
            used, live = self._header(m)
            for i, (kh, ow, n) in enumerate(_SLOT.iter_unpack(
                    m[_SLOTS_AT:_SLOTS_AT + self._capacity * SLOT_SIZE])):
                if kh != _EMPTY and ow in owners:
                    _SLOT.pack_into(m, _SLOTS_AT + i * SLOT_SIZE, _EMPTY, TOMB, 0)
                    dropped += n
                    live -= 1
            for idx in owners:
                at = _OWNERS_AT + (idx - 1) * OWNER_SIZE
                m[at:at + OWNER_SIZE] = bytes(OWNER_SIZE)
            self._owners = {k: v for k, v in self._owners.items() if v not in owners}
            self._set_header(m, used, live)
            return dropped
