"""Shared pieces of the SQLite backend: row converters, the write-transaction context, and
`SQLiteBase` (threads, group commit, garbage collection, start-up repair, helpers used inside
write jobs).

Lives here: everything the operation modules (sqlite_directory, sqlite_mail, sqlite_queue) build
on. Must never: run SQL on the event loop thread (except the statements of a light write
batch, see `_LoopHandoff`), fsync or COMMIT there, or report success before COMMIT.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from casella import metrics
from casella.errors import (
    DiskFull,
    MailboxNotFound,
    NotFound,
    QuotaExceeded,
    StorageError,
)
from casella.store import sqlite_schema, sqlite_versions
from casella.store.base import UidRanges
from casella.store.blobs import BlobStore, ParsedData, StagedBlob
from casella.store.changes import ChangeBus
from casella.store.model import (
    DELETED,
    FLAG_BITS,
    SEEN,
    Account,
    Domain,
    Mailbox,
    MessageMeta,
    join_flags,
)
from casella.store.sqlite_index_rows import forget_index, write_index

log = logging.getLogger("casella.store")

T = TypeVar("T")
_SEEN_BIT = FLAG_BITS[SEEN]
_DELETED_BIT = FLAG_BITS[DELETED]
_MAX_BATCH = 128
# A batch of at most this many light jobs runs its statements on the event loop thread; see
# `_LoopHandoff`. The writer takes a batch back if the loop has not started it in this time.
_LOOP_BATCH_MAX = 32
_LOOP_HANDOFF_TIMEOUT = 1.0
# A delivery to at most this many local and remote recipients together is a light job, and
# so is a change to at most this many messages named by UID, or an APPEND of this many.
_LIGHT_DELIVERY_RECIPIENTS = 8
_LIGHT_UIDS = 64
_LIGHT_APPENDS = 4


def _warning_waits_sql(account: str) -> str:
    """SQL that is true when a quota warning waits to be taken for `account` (a column or
    a parameter): the one test `_warning_waits` and a delivery's lookup share."""
    return f"EXISTS (SELECT 1 FROM quota_warnings WHERE account_id = {account})"


def _few_uids(uids: UidRanges) -> bool:
    """Whether the ranges name at most _LIGHT_UIDS UIDs: few enough for a light job."""
    total = 0
    for lo, hi in uids:
        total += abs(hi - lo) + 1
        if total > _LIGHT_UIDS:
            return False
    return True
# Blobs released by a write (expunge, delete) are collected in a transaction of their own when
# no other write is waiting, or once they have waited this long under constant load.
_GC_MAX_DEFER = 5.0
_GC_BATCH = 10000      # blobs collected per transaction
_READERS = 4

_MAILBOX_COLS = ("id, account_id, name, uidvalidity, uidnext, highestmodseq, special_use, "
                 "selectable, messages, unseen, deleted, size, first_recent_uid, created")
_ACCOUNT_COLS = ("id, address, domain_id, password_hash, quota_bytes, quota_messages, "
                 "used_bytes, used_messages, created, sending_held, messages_per_hour, "
                 "defers_failures_per_hour, defers_failures_percent, pop3_delete, "
                 "pop3_expire_days")
_DOMAIN_COLS = ("id, name, created, messages_per_hour, defers_failures_per_hour, "
                "defers_failures_percent")
_META_COLS = "uid, modseq, flags, keywords, internaldate, size, blob_id, savedate"


def _now() -> int:
    return int(time.time())


def _mailbox(row: Sequence[Any]) -> Mailbox:
    return Mailbox(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]),
                   row[8], row[9], row[10], row[11], row[12], row[13])


def _account(row: Sequence[Any]) -> Account:
    return Account(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8],
                   bool(row[9]), row[10], row[11], row[12], row[13], row[14])


def _domain(row: Sequence[Any]) -> Domain:
    return Domain(row[0], row[1], row[2], row[3], row[4], row[5])


_flag_cache: dict[tuple[int, str], tuple[str, ...]] = {}


def _flags(bits: int, keywords: str) -> tuple[str, ...]:
    key = (bits, keywords)
    cached = _flag_cache.get(key)
    if cached is None:
        cached = join_flags(bits, keywords.split(" ") if keywords else ())
        if len(_flag_cache) < 4096:
            _flag_cache[key] = cached
    return cached


def _meta(row: Sequence[Any]) -> MessageMeta:
    return MessageMeta(row[0], row[1], _flags(row[2], row[3]), row[4], row[5], row[6], row[7])


def _in_ranges(uids: UidRanges) -> list[tuple[int, int]]:
    out = []
    for lo, hi in uids:
        if lo > hi:
            lo, hi = hi, lo
        out.append((max(lo, 1), min(hi, 2**63 - 1)))
    return out


@dataclass
class _Txn:
    """What one write job may touch besides SQL: blob directories to fsync before COMMIT and
    change events to publish after it."""
    cur: sqlite3.Connection
    blobs: BlobStore
    dirs: set[Path] = field(default_factory=set)
    events: list[tuple[int, int, int]] = field(default_factory=list)
    released_blobs: bool = False
    staged: list[StagedBlob] = field(default_factory=list)  # referenced by this job
    # blob id -> (digest, header) of the bodies this job referenced, so that the insert hook
    # need not read back what the caller had in hand.
    known_blobs: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    quota_crossed: set[int] = field(default_factory=set)  # accounts that crossed a warning
    # The search index's share (sqlite_index_rows.write_index), written by the writer thread
    # after the batch's jobs: blobs this job stored (id, parsed, for a mailbox message) and
    # existing blobs its messages now reference.
    index_new: list[tuple[int, ParsedData, bool]] = field(default_factory=list)
    index_known: list[tuple[int, ParsedData]] = field(default_factory=list)


@dataclass
class _Job:
    fn: Callable[[_Txn], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    resolved: bool = False
    light: bool = False     # a few short statements (see _LoopHandoff)


class _LoopHandoff:
    """The statements of one light batch, handed to the event loop thread of its jobs while
    the writer thread holds the write locks.

    Why: SQLite's module lets go of the GIL around every statement. On the writer thread each
    statement then waits for the busy event loop to hand the GIL back, a few times the
    statement's own cost (measured: 45 to 200 µs of wall time against 10 to 50 µs of CPU per
    delivery statement under SMTP load), and every worker process waits for this write lock
    meanwhile. On the loop thread nobody competes for the GIL, so a delivery's dozen
    statements take their CPU time only. Only light jobs come here, each well under a
    millisecond: a delivery to a few recipients, an APPEND of a few messages, a flag change or
    an expunge of a few UIDs; BEGIN, COMMIT and its fsync stay on the writer.

    If the loop has not started the batch within `timeout` (it is stopping, or stalled), the
    writer takes it back and runs it itself; the state under `lock` makes sure exactly one of
    the two runs it."""

    def __init__(self, run: Callable[[], None]) -> None:
        self._run = run
        self._state = "queued"          # -> "running" (on the loop) or "taken back"
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._error: BaseException | None = None

    def on_loop(self) -> None:
        with self._lock:
            if self._state != "queued":
                return
            self._state = "running"
        try:
            self._run()
        except BaseException as exc:  # noqa: BLE001 - carried to the writer thread
            self._error = exc
        finally:
            self._done.set()

    def run(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        """On the writer thread: have the loop run the batch and wait for it; raise what it
        raised."""
        try:
            loop.call_soon_threadsafe(self.on_loop)
        except RuntimeError:            # the loop is closed: nothing was queued on it
            self._run()
            return
        while not self._done.wait(timeout):
            if self._take_back():
                # Each such wait held every worker's writes up: worth knowing about.
                log.warning("the event loop did not run a write batch within %.1f s (stalled "
                            "or stopping); the store's writer thread ran it", timeout)
                self._run()
                return
        if self._error is not None:
            raise self._error

    def _take_back(self) -> bool:
        """Claim the batch for the writer, unless the loop has started it."""
        with self._lock:
            if self._state != "queued":
                return False
            self._state = "taken back"
            return True


_SQLITE_FULL = 13
_SQLITE_BUSY = 5
_SQLITE_LOCKED = 6
# SQLite's busy handler (busy_timeout) waits for most locks; some it cannot wait for and
# answers SQLITE_BUSY at once (another process recovering the WAL or closing the last
# connection, a snapshot gone stale). Such a statement is tried again, in growing sleeps,
# for up to this long before the caller gets a StorageError.
_BUSY_RETRY_SECONDS = 10.0
_BUSY_TIMEOUT_MS = 30000


def _is_busy(exc: BaseException) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED, with any extended code (BUSY_RECOVERY, BUSY_SNAPSHOT)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
_BLOB_COLUMNS = ("digest", "size", "refcount", "header", "envelope", "bodystructure", "body",
                 "parts", "preview", *sqlite_schema.SEARCH_COLUMNS)
_INSERT_BLOB = (f"INSERT INTO blobs ({', '.join(_BLOB_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_BLOB_COLUMNS))}) ON CONFLICT(digest) DO NOTHING")


def _storage_error(exc: BaseException, verb: str) -> StorageError:
    """A database failure as the error protocols understand (disk full is DiskFull: SMTP 452
    4.3.1, IMAP NO, POP3 -ERR [SYS/TEMP])."""
    if getattr(exc, "sqlite_errorcode", None) == _SQLITE_FULL or "disk is full" in str(exc):
        return DiskFull(f"the mail store could not be {verb}: the disk is full")
    return StorageError(f"the mail store could not be {verb}: {exc}")


class SQLiteBase:
    def __init__(self, data_dir: Path, bus: ChangeBus | None = None,
                 blobs: BlobStore | None = None, search_index: bool = True) -> None:
        self.data_dir = Path(data_dir)
        # Off: nothing is written to the search index and SEARCH never asks it (its rows may
        # be stale); turned on again, start-up repair hands what it lacks to the backfill.
        self.search_index_on = search_index
        self.db_path = self.data_dir / "casella.db"
        self.blobs = blobs or BlobStore(self.data_dir / "blobs", index_texts=search_index)
        self.bus = bus or ChangeBus()
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._gc_since: float | None = None   # released blobs wait for collection since then
        self._writer: threading.Thread | None = None
        self._writer_conn: sqlite3.Connection | None = None    # the writer thread's
        self._checkpoint_wanted = False     # set by a write job, done after its batch
        self._readers = ThreadPoolExecutor(max_workers=_READERS, thread_name_prefix="sqlite-r")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._opened = False
        self.loop_handoff_timeout = _LOOP_HANDOFF_TIMEOUT
        self.busy_timeout_ms = _BUSY_TIMEOUT_MS
        self.busy_retry_seconds = _BUSY_RETRY_SECONDS

    # --- plumbing --------------------------------------------------------------------------

    def _connect(self, writer: bool) -> sqlite3.Connection:
        conn = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False,
                               timeout=self.busy_timeout_ms / 1000)
        sqlite_schema.configure(conn, writer, self.busy_timeout_ms)
        return conn

    def _retry_busy(self, conn: sqlite3.Connection, call: Callable[[], T], verb: str) -> T:
        """`call()` (statements on `conn`), tried again while the database is busy, for up to
        busy_retry_seconds; any other database error, or busy for longer, is a StorageError.
        Whatever a failed try left open is rolled back first, so a try starts clean."""
        deadline: float | None = None
        delay = 0.002
        while True:
            try:
                return call()
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                if not _is_busy(exc):
                    raise _storage_error(exc, verb) from exc
                now = time.monotonic()
                if deadline is None:
                    deadline = now + self.busy_retry_seconds
                    log.warning("the database is busy (%s); trying again for up to %.0f s",
                                exc, self.busy_retry_seconds)
                if now >= deadline:
                    raise _storage_error(exc, verb) from exc
                time.sleep(min(delay, deadline - now))
                delay = min(delay * 2, 0.1)

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._connect(writer=False)
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return conn

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            conn = self._reader()
            return self._retry_busy(conn, lambda: fn(conn), "read")
        started = time.perf_counter()
        try:
            return await asyncio.get_running_loop().run_in_executor(self._readers, run)
        finally:
            metrics.store_latency("read", time.perf_counter() - started)

    async def _read_snapshot(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A read that needs several consistent SELECTs."""
        def run(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")
        return await self._read(run)

    async def _write(self, fn: Callable[[_Txn], T], light: bool = False) -> T:
        """Run `fn` in a write transaction (grouped with others) and return its result after
        COMMIT. `light`: `fn` is a few short statements that may run on this event loop's
        thread (`_LoopHandoff`)."""
        if self._writer is None:
            raise StorageError("the store is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        started = time.perf_counter()
        self._jobs.put(_Job(fn, fut, loop, light=light))
        try:
            return await fut
        finally:
            metrics.store_latency("write", time.perf_counter() - started)

    def _open_write_lock(self) -> int | None:
        """The file whose flock(2) the writer threads of every process on this data_dir hold
        around each write transaction. SQLite's own busy handler waits for its lock in sleeps
        of 1 to 100 ms, so with several workers a writer often slept long after the other had
        committed; the kernel hands a flock over the moment it is released. Without the file
        (read-only directory) SQLite's busy handler alone serialises the writers, as before."""
        try:
            return os.open(self.data_dir / "casella.db-writer.lock", os.O_RDWR | os.O_CREAT,
                           0o600)
        except OSError as exc:
            log.warning("no writer lock file, SQLite's busy handler serialises writers: %s",
                        exc)
            return None

    def _writer_main(self) -> None:
        conn = self._connect(writer=True)
        self._writer_conn = conn
        lock_fd = self._open_write_lock()
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                locked: int | None = None
                if lock_fd is not None:
                    try:
                        fcntl.flock(lock_fd, fcntl.LOCK_EX)
                        locked = lock_fd
                    except OSError:
                        pass  # SQLite's busy handler still serialises the transaction
                # Jobs queued while the lock was awaited join this batch (group commit).
                batch = [job]
                stop = False
                while len(batch) < _MAX_BATCH:
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                try:
                    self._run_batch(conn, batch)
                    if self._gc_since is not None and (
                            self._jobs.empty() or
                            time.monotonic() - self._gc_since >= _GC_MAX_DEFER):
                        # Its own COMMIT (an fsync) and unlinks: not while writers wait.
                        self._gc_since = None
                        if self._collect_garbage(conn) >= _GC_BATCH:
                            # More wait: the next write's batch goes on with them.
                            self._gc_since = time.monotonic()
                finally:
                    if locked is not None:
                        fcntl.flock(locked, fcntl.LOCK_UN)
                if self._checkpoint_wanted:
                    self._checkpoint()
                if stop:
                    return
        finally:
            self._writer_conn = None
            conn.close()
            if lock_fd is not None:
                os.close(lock_fd)

    def _checkpoint(self) -> None:
        """Copy the WAL into the database now (PASSIVE: nobody waits for it), outside the
        write lock. SQLite's automatic checkpoints leave the file at its old length after
        pages were given back (sqlite_maint.vacuum_step); this one cuts it to size."""
        self._checkpoint_wanted = False
        conn = self._writer_conn
        if conn is None:
            return
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:
            log.warning("WAL checkpoint failed: %s", exc)

    def _run_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        """One transaction for the whole batch. Whatever happens, every job gets an answer and
        the writer thread lives on (a dead writer would hang every later write)."""
        try:
            self._run_batch_txn(conn, batch)
        except BaseException as exc:
            err = exc if isinstance(exc, StorageError) else _storage_error(exc, "written")
            log.error("write batch failed: %s", err)
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            for job in batch:
                if not job.resolved:
                    self._resolve(job, None, err, [])

    def _run_batch_txn(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None, list[tuple[int, int, int]]]] = []
        try:
            self._retry_busy(conn, lambda: conn.execute("BEGIN IMMEDIATE"), "written")
        except StorageError as err:
            for job in batch:
                self._resolve(job, None, err, [])
            return
        txn_dirs: set[Path] = set()
        txn_staged: list[StagedBlob] = []
        index_new: list[tuple[int, ParsedData, bool]] = []
        index_known: list[tuple[int, ParsedData]] = []
        released = False

        def run_jobs() -> None:
            nonlocal released
            for job in batch:
                txn = _Txn(conn, self.blobs)
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(txn)
                    conn.execute("RELEASE job")
                except BaseException as exc:
                    if isinstance(exc, sqlite3.Error):
                        exc = _storage_error(exc, "written")
                    if not conn.in_transaction:
                        # SQLite rolled the whole transaction back (e.g. disk full): every
                        # job of the batch failed with it.
                        raise exc
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job, None, exc, []))
                    continue
                txn_dirs.update(txn.dirs)
                txn_staged.extend(txn.staged)
                index_new.extend(txn.index_new)
                index_known.extend(txn.index_known)
                released |= txn.released_blobs
                outcomes.append((job, result, None, txn.events))

        loop = batch[0].loop
        if len(batch) <= _LOOP_BATCH_MAX and all(j.light and j.loop is loop for j in batch):
            _LoopHandoff(run_jobs).run(loop, self.loop_handoff_timeout)
        else:
            run_jobs()
        try:
            if self.search_index_on and (index_new or index_known):
                # Here, on the writer thread, whichever thread ran the jobs: tokenizing a
                # text is the costly part, and SQLite runs it without the GIL.
                write_index(conn, index_new, index_known)
            if self.blobs.unclaimed:
                self.blobs.drop_unclaimed(lambda d: conn.execute(
                    "SELECT 1 FROM blobs WHERE digest = ?", (d,)).fetchone() is not None)
            BlobStore.sync_dirs(txn_dirs)
            conn.execute("COMMIT")
        except (sqlite3.Error, StorageError) as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            err = exc if isinstance(exc, StorageError) else _storage_error(exc, "written")
            log.error("commit failed: %s", err)
            for job, _, job_err, _ in outcomes:
                self._resolve(job, None, job_err or err, [])
            return
        for staged in txn_staged:
            staged.committed = True
        for job, result, job_err, events in outcomes:
            self._resolve(job, result, job_err, events)
        if released and self._gc_since is None:
            self._gc_since = time.monotonic()

    def _resolve(self, job: _Job, result: Any, err: BaseException | None,
                 events: list[tuple[int, int, int]]) -> None:
        job.resolved = True
        def done() -> None:
            for account_id, mailbox_id, modseq in events:
                self.bus.publish(account_id, mailbox_id, modseq)
            if job.future.done():
                return
            if err is not None:
                job.future.set_exception(err)
            else:
                job.future.set_result(result)
        try:
            job.loop.call_soon_threadsafe(done)
        except RuntimeError:
            pass  # the caller's loop is gone

    def _collect_garbage(self, conn: sqlite3.Connection) -> int:
        """Delete up to _GC_BATCH blobs nobody references; how many went. The files are
        unlinked while the write lock is held, so no delivery can be publishing the same
        digest at that moment; if COMMIT then fails, the rows stay at refcount 0 and
        publishing re-links the file (inline bodies come back with the rollback)."""
        removed = 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            rows = conn.execute(
                "SELECT id, digest, EXISTS(SELECT 1 FROM blob_bodies WHERE blob_id = blobs.id) "
                f"FROM blobs WHERE refcount = 0 LIMIT {_GC_BATCH}").fetchall()
            for blob_id, digest, inline in rows:
                if inline:
                    conn.execute("DELETE FROM blob_bodies WHERE blob_id = ?", (blob_id,))
                forget_index(conn, blob_id)
                # An inline body may have a file beside it too: an early link of the same
                # content that drop_unclaimed kept because a row referenced the digest.
                self.blobs.remove(digest)
                conn.execute("DELETE FROM blobs WHERE id = ?", (blob_id,))
                removed += 1
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.warning("blob garbage collection failed: %s", exc)
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            return 0        # the rows are back: nothing was collected
        return removed

    # --- life cycle ------------------------------------------------------------------------

    async def open(self, repair: bool = True) -> None:
        if self._opened:
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.blobs.prepare()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._open_sync, repair)
        self._writer = threading.Thread(target=self._writer_main, name="sqlite-writer",
                                        daemon=True)
        self._writer.start()
        self._opened = True

    def _open_sync(self, repair: bool) -> None:
        conn = self._connect(writer=True)
        try:
            sqlite_versions.check(conn)
            if repair:
                self._startup_repair(conn)
        finally:
            conn.close()

    def _startup_repair(self, conn: sqlite3.Connection) -> None:
        """Crash recovery: unfinished writes, orphan blob files, and counters that must equal
        what the messages say. Runs under the write lock."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            cleaned = self.blobs.clean_tmp()
            known = {r[0] for r in conn.execute("SELECT digest FROM blobs")}
            orphans = [d for d in self.blobs.iter_digests() if d not in known]
            for digest in orphans:
                self.blobs.remove(digest)
            # Reference counts, mailbox counters and quota usage from the messages themselves.
            conn.execute("CREATE TEMP TABLE refs (blob_id INTEGER PRIMARY KEY, n INTEGER)")
            conn.execute("INSERT INTO refs SELECT blob_id, count(*) FROM (SELECT blob_id FROM "
                         "messages UNION ALL SELECT blob_id FROM queue) GROUP BY blob_id")
            conn.execute("UPDATE blobs SET refcount = coalesce((SELECT n FROM refs WHERE "
                         "refs.blob_id = blobs.id), 0) WHERE refcount != coalesce((SELECT n "
                         "FROM refs WHERE refs.blob_id = blobs.id), 0)")
            conn.execute("CREATE TEMP TABLE mbc (mailbox_id INTEGER PRIMARY KEY, n INTEGER, "
                         "unseen INTEGER, del INTEGER, sz INTEGER)")
            conn.execute("INSERT INTO mbc SELECT mailbox_id, count(*), sum((flags & 1) = 0), "
                         "sum((flags & 8) != 0), sum(size) FROM messages GROUP BY mailbox_id")
            fixed_mb = conn.execute("""
                UPDATE mailboxes SET messages = c.cn, unseen = c.cu, deleted = c.cd, size = c.cs
                FROM (SELECT m.id AS mid, coalesce(x.n, 0) AS cn, coalesce(x.unseen, 0) AS cu,
                             coalesce(x.del, 0) AS cd, coalesce(x.sz, 0) AS cs
                      FROM mailboxes m LEFT JOIN mbc x ON x.mailbox_id = m.id) AS c
                WHERE c.mid = mailboxes.id AND (mailboxes.messages != c.cn
                   OR mailboxes.unseen != c.cu OR mailboxes.deleted != c.cd
                   OR mailboxes.size != c.cs)""").rowcount
            fixed_acct = conn.execute("""
                UPDATE accounts SET used_messages = u.un, used_bytes = u.us
                FROM (SELECT a.id AS aid, coalesce(sum(m.messages), 0) AS un,
                             coalesce(sum(m.size), 0) AS us
                      FROM accounts a LEFT JOIN mailboxes m ON m.account_id = a.id
                      GROUP BY a.id) AS u
                WHERE u.aid = accounts.id AND (accounts.used_messages != u.un
                   OR accounts.used_bytes != u.us)""").rowcount
            # Every blob is indexed or said not to be (sqlite_schema.SCHEMA_V12); one that is
            # neither (derived data lost, PROMISES D11) is handed to the backfill.
            missing = 0 if not self.search_index_on else conn.execute(
                "INSERT INTO search_unindexed (blob_id, pending) SELECT id, 1 FROM blobs "
                "WHERE id NOT IN (SELECT blob_id FROM search_text) "
                "AND id NOT IN (SELECT blob_id FROM search_unindexed)").rowcount
            if missing:
                log.warning("start-up repair: %d bodies missing from the search index are "
                            "indexed again in the background", missing)
            conn.execute("DROP TABLE temp.refs")
            conn.execute("DROP TABLE temp.mbc")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        if cleaned or orphans or fixed_mb or fixed_acct:
            log.warning("start-up repair: %d unfinished writes, %d orphan blobs removed, "
                        "%d mailbox and %d account counters corrected",
                        cleaned, len(orphans), fixed_mb, fixed_acct)
        while self._collect_garbage(conn) >= _GC_BATCH:
            pass        # start-up may take its time: every body nobody holds goes now

    async def close(self) -> None:
        if self._writer is not None:
            self._jobs.put(None)
            writer, self._writer = self._writer, None
            await asyncio.get_running_loop().run_in_executor(None, writer.join)
        self._readers.shutdown(wait=True)
        with self._reader_lock:
            for conn in self._reader_conns:
                try:
                    conn.close()
                except sqlite3.Error:
                    pass
            self._reader_conns.clear()
        self._readers = ThreadPoolExecutor(max_workers=_READERS, thread_name_prefix="sqlite-r")
        self._local = threading.local()
        self._opened = False

    # --- shared write helpers (writer thread) ------------------------------------------------

    @staticmethod
    def _next_uidvalidity(cur: sqlite3.Connection) -> int:
        """Strictly increasing across the whole store, close to the clock (RFC 3501 §2.3.1.1,
        PROMISES U3)."""
        row = cur.execute("SELECT value FROM meta WHERE key = 'uidvalidity'").fetchone()
        value = max(_now(), (row[0] + 1) if row else 0) & 0xFFFFFFFF or 1
        cur.execute("INSERT INTO meta (key, value) VALUES ('uidvalidity', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (value,))
        return value

    def _blob_ref(self, txn: _Txn, staged: StagedBlob, count: int = 1,
                  for_message: bool = True) -> int:
        """Reference a staged body: store it (its bytes in blob_bodies when it is inline, else
        its file published) if this digest is new or its body was collected, add `count`
        references, return the blob id. New content, the common case, costs one statement per
        table: every statement hands the GIL to the event loop and back while this process
        holds the write lock that every worker waits for. `for_message`: a mailbox message
        references it (else the outbound queue): its text goes into the search index in
        this transaction."""
        cur = txn.cur
        txn.staged.append(staged)
        p = staged.parsed
        cursor = cur.execute(
            _INSERT_BLOB, (staged.digest, staged.size, count, p.header, p.envelope,
                           p.bodystructure, p.body, p.parts, p.preview, *p.search))
        if cursor.rowcount == 1:
            blob_id = int(cursor.lastrowid or 0)
            if staged.data is None:
                # Blob ids can be reused (INTEGER PRIMARY KEY): no bytes of an earlier blob
                # may stand for a file. They cannot be there (the collector deletes both rows
                # in one transaction); for a file of 64 KiB or more one more statement is
                # cheap insurance. Start-up does not look: that would read every body row.
                cur.execute("DELETE FROM blob_bodies WHERE blob_id = ?", (blob_id,))
            self._store_body(txn, staged, blob_id)
            txn.index_new.append((blob_id, p, for_message))
        else:
            row = cur.execute("SELECT id, refcount, EXISTS(SELECT 1 FROM blob_bodies WHERE "
                              "blob_id = blobs.id) FROM blobs WHERE digest = ?",
                              (staged.digest,)).fetchone()
            blob_id = int(row[0])
            # Bytes in blob_bodies go and come back with the transaction: if the row is
            # there, they are. A file may be missing: a collection whose COMMIT failed after
            # its unlinks leaves rows at refcount 0 (publishing a file again is idempotent).
            if not row[2] and (row[1] == 0 and staged.data is None
                               or not self.blobs.exists(staged.digest)):
                self._store_body(txn, staged, blob_id)
            cur.execute("UPDATE blobs SET refcount = refcount + ? WHERE id = ?",
                        (count, blob_id))
            if for_message:
                txn.index_known.append((blob_id, p))
        txn.known_blobs[blob_id] = (staged.digest, p.header)
        return blob_id

    def _store_body(self, txn: _Txn, staged: StagedBlob, blob_id: int) -> None:
        if staged.data is not None:
            txn.cur.execute("INSERT OR REPLACE INTO blob_bodies (blob_id, data) VALUES (?, ?)",
                            (blob_id, staged.data))
        else:
            self.blobs.publish(staged, txn.dirs)

    @staticmethod
    def _release_blobs(txn: _Txn, blob_counts: dict[int, int]) -> None:
        if blob_counts:
            txn.cur.executemany("UPDATE blobs SET refcount = refcount - ? WHERE id = ?",
                                [(n, b) for b, n in blob_counts.items()])
            txn.released_blobs = True

    @staticmethod
    def _mailbox_row(cur: sqlite3.Connection, mailbox_id: int) -> Mailbox:
        row = cur.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id = ?",
                          (mailbox_id,)).fetchone()
        if row is None:
            raise MailboxNotFound("the mailbox does not exist")
        return _mailbox(row)

    def _selectable(self, cur: sqlite3.Connection, mailbox_id: int) -> Mailbox:
        mb = self._mailbox_row(cur, mailbox_id)
        if not mb.selectable:
            raise MailboxNotFound(f"{mb.name} holds no messages (it only has children)")
        return mb

    @staticmethod
    def _warning_waits(cur: sqlite3.Connection, account_id: int) -> bool:
        """Whether a quota warning waits to be taken for this account."""
        return bool(cur.execute(f"SELECT {_warning_waits_sql('?')}",
                                (account_id,)).fetchone()[0])

    @classmethod
    def _quota_warning_waits(cls, cur: sqlite3.Connection, acct: Account) -> bool:
        """`_warning_waits` for an account that has a quota (no other can cross a threshold),
        answered inside the transaction that added mail, so that the caller need not ask the
        store again after every delivery."""
        if not acct.has_quota:
            return False
        return cls._warning_waits(cur, acct.id)

    @staticmethod
    def _account_row(cur: sqlite3.Connection, account_id: int) -> Account:
        row = cur.execute(f"SELECT {_ACCOUNT_COLS} FROM accounts WHERE id = ?",
                          (account_id,)).fetchone()
        if row is None:
            raise NotFound("the account does not exist")
        return _account(row)

    @staticmethod
    def _check_quota(acct: Account, add_bytes: int, add_messages: int) -> None:
        if add_bytes > 0 and acct.quota_bytes and acct.used_bytes + add_bytes > acct.quota_bytes:
            raise QuotaExceeded(f"the mailbox of {acct.address} is full "
                                f"({acct.used_bytes} of {acct.quota_bytes} bytes used)")
        if add_messages > 0 and acct.quota_messages and \
                acct.used_messages + add_messages > acct.quota_messages:
            raise QuotaExceeded(f"the mailbox of {acct.address} holds the most messages "
                                f"allowed ({acct.quota_messages})")

    @staticmethod
    def _register_keywords(cur: sqlite3.Connection, mailbox_id: int,
                           keywords: Sequence[str]) -> None:
        if keywords:
            cur.executemany("INSERT OR IGNORE INTO mailbox_keywords (mailbox_id, keyword) "
                            "VALUES (?, ?)", [(mailbox_id, k) for k in keywords])

    @staticmethod
    def _adjust(cur: sqlite3.Connection, mailbox_id: int, account_id: int, *, messages: int = 0,
                unseen: int = 0, deleted: int = 0, size: int = 0, uidnext: int | None = None,
                modseq: int | None = None) -> None:
        cur.execute(
            "UPDATE mailboxes SET messages = messages + ?, unseen = unseen + ?, "
            "deleted = deleted + ?, size = size + ?, uidnext = coalesce(?, uidnext), "
            "highestmodseq = coalesce(?, highestmodseq) WHERE id = ?",
            (messages, unseen, deleted, size, uidnext, modseq, mailbox_id))
        if messages or size:
            cur.execute("UPDATE accounts SET used_messages = used_messages + ?, "
                        "used_bytes = used_bytes + ? WHERE id = ?", (messages, size, account_id))

    def _insert_messages(self, txn: _Txn, mb: Mailbox,
                         rows: Sequence[tuple[int, str, int, int, int, int]],
                         acct: Account | None = None) -> tuple[int, ...]:
        """Insert (flags, keywords, internaldate, savedate, size, blob_id) rows with new UIDs
        and one new MODSEQ; update counters; queue the change event. `acct` is the mailbox's
        account as the caller read it in this transaction, when it did."""
        modseq = mb.highestmodseq + 1
        uid = mb.uidnext
        uids = tuple(range(uid, uid + len(rows)))
        txn.cur.executemany(
            "INSERT INTO messages (mailbox_id, uid, modseq, flags, keywords, internaldate, "
            "savedate, size, blob_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(mb.id, u, modseq, r[0], r[1], r[2], r[3], r[4], r[5]) for u, r in zip(uids, rows)])
        unseen = sum(1 for r in rows if not r[0] & _SEEN_BIT)
        deleted = sum(1 for r in rows if r[0] & _DELETED_BIT)
        size = sum(r[4] for r in rows)
        self._adjust(txn.cur, mb.id, mb.account_id, messages=len(rows), unseen=unseen,
                     deleted=deleted, size=size, uidnext=uid + len(rows), modseq=modseq)
        # IMAP extensions (sqlite_imapext.py): THREADID and quota-warning crossings, decided in
        # this same transaction.
        self._imapext_inserted(txn, mb, uids, rows, acct)  # type: ignore[attr-defined]
        txn.events.append((mb.account_id, mb.id, modseq))
        return uids

    def _remove_rows(self, txn: _Txn, mb: Mailbox,
                     rows: Sequence[tuple[int, int, int, int]]) -> int:
        """Remove (uid, flags, size, blob_id) rows, record them as expunged with a new MODSEQ,
        release their blobs and quota. Returns the new MODSEQ."""
        cur = txn.cur
        modseq = mb.highestmodseq + 1
        cur.executemany("DELETE FROM messages WHERE mailbox_id = ? AND uid = ?",
                        [(mb.id, r[0]) for r in rows])
        cur.executemany("INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) "
                        "VALUES (?, ?, ?)", [(mb.id, r[0], modseq) for r in rows])
        blob_counts: dict[int, int] = {}
        for r in rows:
            blob_counts[r[3]] = blob_counts.get(r[3], 0) + 1
        self._release_blobs(txn, blob_counts)
        self._adjust(cur, mb.id, mb.account_id, messages=-len(rows),
                     unseen=-sum(1 for r in rows if not r[1] & _SEEN_BIT),
                     deleted=-sum(1 for r in rows if r[1] & _DELETED_BIT),
                     size=-sum(r[2] for r in rows), modseq=modseq)
        txn.events.append((mb.account_id, mb.id, modseq))
        return modseq

    @staticmethod
    def _select_ranges(cur: sqlite3.Connection, columns: str, mailbox_id: int,
                       uids: UidRanges, extra: str = "") -> list[Any]:
        out: list[Any] = []
        for lo, hi in _in_ranges(uids):
            out.extend(cur.execute(
                f"SELECT {columns} FROM messages WHERE mailbox_id = ? AND uid BETWEEN ? AND ?"
                f"{extra} ORDER BY uid", (mailbox_id, lo, hi)))
        if len(uids) > 1:
            # Overlapping ranges must not address a message twice.
            seen: set[int] = set()
            unique = []
            for row in sorted(out, key=lambda r: r[0]):
                if row[0] not in seen:
                    seen.add(row[0])
                    unique.append(row)
            out = unique
        return out
