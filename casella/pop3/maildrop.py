"""The POP3 maildrop of one session: a fixed snapshot of INBOX, its lock, and the DELE policies.

Lives here: `MaildropLocks` (one POP3 session per account, RFC 1939 §8 "exclusive-access
lock"), `Maildrop` (opened at login: retention first, then the snapshot whose message numbers
and sizes never change for the session, PROMISES U6; deletion marks; the scan and UIDL
listings; streaming RETR/TOP bodies; noticing messages IMAP expunged meanwhile, PROMISES X8;
recording first downloads; applying `pop3.delete` at QUIT, RFC 1939 §6 UPDATE), and the
few errors the session maps to replies. Must never: write to the socket, parse commands, or
touch SQL or files (everything goes through the store contract).
"""

from __future__ import annotations

import fcntl
import logging
import os
import weakref
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path
from typing import Any

from casella.errors import MailboxExists, MailboxNotFound, StorageError
from casella.pop3 import proto
from casella.store.base import Store
from casella.store.changes import Subscription
from casella.store.model import Account, Mailbox

log = logging.getLogger("casella.pop3")

# Bodies are read from the blob store in pieces of this size, so a 50 MB message never sits in
# memory whole and the socket's flow control paces the reads.
READ_CHUNK = 256 * 1024
# TOP usually needs only the header: read smaller pieces first.
TOP_CHUNK = 64 * 1024
# Blob digests are looked up for this many upcoming messages at once (one store round trip
# per window instead of one per RETR).
DIGEST_WINDOW = 256
# A client downloading its maildrop RETRs one message after the other: RETR reads the message
# asked for and the ones after it, whole, up to this many octets in one store round trip, so
# most RETRs wait for no store read at all. Messages above READ_CHUNK are streamed instead.
# This is also the most one session holds read ahead.
READ_AHEAD = 256 * 1024
DAY = 86400


class Pop3Error(Exception):
    """A command failed in a way the client is told about; the session goes on.
    `code` is an RFC 2449 §8 / RFC 3206 response code (IN-USE, AUTH, SYS/TEMP, SYS/PERM)."""

    def __init__(self, text: str, code: str | None = None) -> None:
        super().__init__(text)
        self.code = code


class MessageGone(Pop3Error):
    """The message was expunged or moved away by another session (IMAP) after the snapshot."""

    def __init__(self, msg: int) -> None:
        super().__init__(f"Message {msg} was deleted by another session after you logged in; "
                         "it can no longer be retrieved.")


class MaildropLocks:
    """Which accounts have a POP3 session open: an flock(2) on one file per account under
    data_dir/run/pop3, so the lock holds across worker processes and is released by the
    kernel if a process dies (RFC 1939 §8: one session per maildrop)."""

    def __init__(self, directory: Path) -> None:
        self._dir = directory
        self._held: dict[int, int] = {}  # account id -> locked file descriptor

    def acquire(self, account_id: int) -> bool:
        if account_id in self._held:
            return False
        self._dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._dir / f"{account_id}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._held[account_id] = fd
        return True

    def release(self, account_id: int) -> None:
        fd = self._held.pop(account_id, None)
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def held(self, account_id: int) -> bool:
        return account_id in self._held


_locks_by_app: dict[int, MaildropLocks] = {}


def locks_for(app: Any) -> MaildropLocks:
    """The one lock registry of a running App, shared by its `pop3` and `pop3s` listeners."""
    key = id(app)
    locks = _locks_by_app.get(key)
    if locks is None:
        locks = _locks_by_app[key] = MaildropLocks(app.config.data_dir / "run" / "pop3")
        weakref.finalize(app, _locks_by_app.pop, key, None)
    return locks


def uid_ranges(uids: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted UIDs as inclusive ranges. Only numerically consecutive UIDs are joined, so a range
    never covers a UID outside the given set (a message hidden from POP3, for instance)."""
    ranges: list[tuple[int, int]] = []
    for uid in sorted(uids):
        if ranges and ranges[-1][1] + 1 == uid:
            ranges[-1] = (ranges[-1][0], uid)
        elif not ranges or ranges[-1][1] != uid:
            ranges.append((uid, uid))
    return ranges


class Maildrop:
    """One session's view of the account's INBOX. Message numbers are 1-based indexes into the
    snapshot taken at login."""

    def __init__(self, store: Store, account: Account, inbox: Mailbox, sub: Subscription,
                 uids: list[int], sizes: list[int], blob_ids: list[int],
                 retrieved: list[bool], policy: str,
                 uidls: dict[int, str] | None = None) -> None:
        self.store = store
        self.account = account
        self.inbox = inbox
        self.policy = policy
        self._sub = sub
        self.uids = uids
        self.sizes = sizes
        self._blob_ids = blob_ids
        self._retrieved = retrieved          # first download already recorded in the store
        self._deleted = bytearray(len(uids))
        self.deleted_count = 0
        self.count = len(uids)               # not deleted
        self.octets = sum(sizes)             # not deleted
        self._downloaded: set[int] = set()   # UIDs fully sent in this session, not yet recorded
        self._gone: set[int] = set()
        self._seen_modseq = inbox.highestmodseq
        # No need to look before the first RETR: `open` subscribes before it reads the listing,
        # so whatever is expunged after the listing was read is announced on the bus (and
        # what was expunged before is not in it).
        self._dirty = False
        self._digests: dict[int, str] = {}
        self._ahead: dict[int, bytes] = {}   # snapshot index -> the whole message, read ahead
        self._read_ahead_ok = True
        self._scan: list[bytes] | None = None
        self._uidl: list[bytes] | None = None
        # UIDLs a message brought from another server (casella import): they stay what that
        # server's clients have seen (PROMISES U5).
        self._stored_uidls = {uid: u.encode("ascii") for uid, u in (uidls or {}).items()}
        self.expired = 0

    # --- opening and closing -------------------------------------------------------------

    @classmethod
    async def open(cls, store: Store, account: Account, *, policy: str, expire_days: int,
                   now: int, log_extra: dict[str, object] | None = None) -> Maildrop:
        """Apply retention (`pop3.expire_days`), then take the snapshot."""
        inbox = await store.get_mailbox(account.id, "INBOX")
        if inbox is None or not inbox.selectable:
            raise MailboxNotFound(f"{account.address} has no INBOX")
        sub = store.bus.subscribe(inbox.id)
        try:
            listing = await store.pop3_list(inbox.id)
            expired_uids: set[int] = set()
            if expire_days > 0:
                cutoff = now - expire_days * DAY
                expired = [m.uid for m, first in listing if first is not None and first <= cutoff]
                if expired:
                    expired_uids = await cls._expire(store, inbox, expired, policy,
                                                      log_extra or {})
            uids: list[int] = []
            sizes: list[int] = []
            blob_ids: list[int] = []
            retrieved: list[bool] = []
            for meta, first in listing:
                if meta.uid in expired_uids:
                    continue
                uids.append(meta.uid)
                sizes.append(meta.size)
                blob_ids.append(meta.blob_id)
                retrieved.append(first is not None)
            uidls = await store.pop3_uidls(inbox.id)
        except BaseException:
            sub.close()
            raise
        drop = cls(store, account, inbox, sub, uids, sizes, blob_ids, retrieved, policy, uidls)
        drop.expired = len(expired_uids)
        return drop

    @staticmethod
    async def _expire(store: Store, inbox: Mailbox, uids: list[int], policy: str,
                      log_extra: dict[str, object]) -> set[int]:
        """RFC 2449 §6.7 EXPIRE: remove (or, with delete = "hide", hide from POP3) messages
        first downloaded more than expire_days ago. A failure leaves them for the next login
        rather than refusing this one."""
        try:
            if policy == "hide":
                await store.pop3_hide(inbox.id, uids)
            else:
                # Retention exists to keep the quota from filling: moving to Trash would not.
                await store.remove_messages(inbox.id, uid_ranges(uids))
        except StorageError as exc:
            log.warning("pop3 retention of %d messages failed: %s", len(uids), exc,
                        extra=log_extra)
            return set()
        log.info("pop3 retention: %d messages %s", len(uids),
                 "hidden" if policy == "hide" else "removed", extra=log_extra)
        return set(uids)

    def close(self) -> None:
        self._sub.close()

    # --- numbers, deletion marks, listings -----------------------------------------------

    def index(self, msg: int, *, allow_deleted: bool = False) -> int:
        """The snapshot index of message number `msg`, or a Pop3Error (RFC 1939 §5: deleted
        messages may not be referred to)."""
        if not 1 <= msg <= len(self.uids):
            raise Pop3Error(f"There is no message {msg}.")
        i = msg - 1
        if self._deleted[i] and not allow_deleted:
            raise Pop3Error(f"Message {msg} is marked as deleted.")
        return i

    def delete(self, msg: int) -> None:
        i = self.index(msg, allow_deleted=True)
        if self._deleted[i]:
            raise Pop3Error(f"Message {msg} is already deleted.")
        self._deleted[i] = 1
        self._ahead.pop(i, None)
        self.deleted_count += 1
        self.count -= 1
        self.octets -= self.sizes[i]

    def reset(self) -> None:
        """RFC 1939 §5 RSET: unmark every deleted message."""
        self._deleted = bytearray(len(self.uids))
        self.deleted_count = 0
        self.count = len(self.uids)
        self.octets = sum(self.sizes)

    def _live(self, lines: list[bytes]) -> bytes:
        if not self.deleted_count:
            return b"".join(lines)
        d = self._deleted
        return b"".join([line for i, line in enumerate(lines) if not d[i]])

    def scan_listing(self) -> bytes:
        if self._scan is None:
            self._scan = [b"%d %d\r\n" % (i + 1, s) for i, s in enumerate(self.sizes)]
        return self._live(self._scan)

    def uidl_listing(self) -> bytes:
        if self._uidl is None:
            v = self.inbox.uidvalidity
            stored = self._stored_uidls
            self._uidl = [proto.uidl_line(i + 1, u, v) if u not in stored
                          else b"%d %s\r\n" % (i + 1, stored[u])
                          for i, u in enumerate(self.uids)]
        return self._live(self._uidl)

    def uidl(self, i: int) -> bytes:
        uid = self.uids[i]
        stored = self._stored_uidls.get(uid)
        return stored if stored is not None else proto.uidl_string(uid, self.inbox.uidvalidity)

    # --- reading messages ----------------------------------------------------------------

    async def _refresh_gone(self) -> None:
        """Learn which snapshot messages other sessions expunged, only when the change bus
        said something changed (one store read, not one per RETR)."""
        if not (self._dirty or self._sub.pending):
            return
        self._sub.drain()
        self._dirty = False
        changes = await self.store.changes_since(self.inbox.id, self._seen_modseq)
        self._gone.update(changes.expunged)
        self._seen_modseq = max(self._seen_modseq, changes.mailbox.highestmodseq)

    async def _digest(self, i: int) -> str | None:
        """The blob digest of snapshot message i, None when the message is no longer in the
        mailbox. Looked up by UID for a window of upcoming messages at once (the metadata
        query alone, none of the parsed data)."""
        blob_id = self._blob_ids[i]
        digest = self._digests.get(blob_id)
        if digest is not None:
            return digest
        window: list[int] = []
        for j in range(i, len(self.uids)):
            if len(window) >= DIGEST_WINDOW:
                break
            if not self._deleted[j] and self._blob_ids[j] not in self._digests:
                window.append(self.uids[j])
        if self.uids[i] not in window:
            window.append(self.uids[i])
        found = await self.store.fetch_messages(self.inbox.id, uid_ranges(window), ())
        for meta, static in found:
            if static is not None:
                self._digests[meta.blob_id] = static.digest
        return self._digests.get(blob_id)

    async def _read_ahead(self, i: int) -> None:
        """Read message i and the small ones after it whole, up to READ_AHEAD octets, in one
        store round trip (their digests are known: `_digest(i)` looked up a window). What was
        read ahead before is dropped, so a session never holds more than one such window."""
        self._ahead.clear()
        picks: list[tuple[int, str, int]] = []
        total = 0
        for j in range(i, len(self.uids)):
            if self._deleted[j] or self.uids[j] in self._gone:
                continue
            size = self.sizes[j]
            if not 0 < size <= READ_CHUNK:
                continue  # streamed when its turn comes
            digest = self._digests.get(self._blob_ids[j])
            if digest is None or (picks and total + size > READ_AHEAD):
                break
            picks.append((j, digest, size))
            total += size
        if not picks:
            return
        try:
            bodies = await self.store.read_blobs([(d, 0, n) for _, d, n in picks])
        except StorageError:
            # A file is missing or unreadable: read one by one from now on, so the message
            # concerned gets its own answer (see open_message).
            self._read_ahead_ok = False
            return
        for (j, _, n), body in zip(picks, bodies):
            if len(body) == n:
                self._ahead[j] = body

    async def _still_there(self, i: int) -> bool:
        metas = await self.store.fetch_meta(self.inbox.id, [(self.uids[i], self.uids[i])])
        return bool(metas)

    async def open_message(self, msg: int, first_chunk: int = READ_CHUNK,
                           read_ahead: bool = False) -> OpenMessage:
        """Check message `msg` can be read and read its first piece, so that a failure is still
        a -ERR before any +OK was sent. With `read_ahead` (RETR) the messages that follow
        are read too, whole (see READ_AHEAD); a message read ahead is used up by a RETR."""
        i = self.index(msg)
        await self._refresh_gone()
        if self.uids[i] in self._gone:
            raise MessageGone(msg)
        size = self.sizes[i]
        body = self._ahead.pop(i, None) if read_ahead else self._ahead.get(i)
        if body is not None:
            # Content-addressed: the bytes read ahead are this message's for ever (U4).
            return OpenMessage(self.store, i, "", size, body, size)
        digest = await self._digest(i)
        if digest is None:
            # Not in the mailbox any more (or no blob record): it was expunged after the
            # last change event was read.
            raise MessageGone(msg)
        if read_ahead and self._read_ahead_ok and 0 < size <= READ_CHUNK:
            await self._read_ahead(i)
            body = self._ahead.pop(i, None)
            if body is not None:
                return OpenMessage(self.store, i, digest, size, body, size)
        want = min(size, first_chunk) if size > 0 else first_chunk
        try:
            first = await self.store.read_blob(digest, 0, want)
        except StorageError:
            if not await self._still_there(i):
                self._gone.add(self.uids[i])
                raise MessageGone(msg) from None
            raise
        return OpenMessage(self.store, i, digest, size, first, want)

    def downloaded(self, i: int) -> None:
        """Message i was sent whole (RETR, or TOP that reached its end)."""
        if not self._retrieved[i]:
            self._downloaded.add(self.uids[i])

    # --- ending --------------------------------------------------------------------------

    async def record_downloads(self, now: int, skip_deleted: bool) -> int:
        """Record first-download times in one store write. Called at QUIT and when the
        connection ends any other way, so a completed download counts for `expire_days` even
        if the client never says QUIT (Dovecot-like); batching avoids one durable write per
        RETR. A crash before this only makes retention start later, never earlier."""
        uids = self._downloaded
        if skip_deleted and self.deleted_count:
            deleted = {self.uids[i] for i, d in enumerate(self._deleted) if d}
            uids = uids - deleted
        if not uids:
            return 0
        await self.store.pop3_mark_retrieved(self.inbox.id, sorted(uids), now)
        n = len(uids)
        self._downloaded.clear()
        return n

    def deleted_uids(self) -> list[int]:
        return [self.uids[i] for i, d in enumerate(self._deleted) if d]

    async def update(self) -> int:
        """RFC 1939 §6 UPDATE state: apply `pop3.delete` to the messages marked deleted.
        Returns how many were deleted. Store errors propagate: nothing is reported as done
        before the store call that persists it returned."""
        uids = self.deleted_uids()
        if not uids:
            return 0
        if self.policy == "hide":
            await self.store.pop3_hide(self.inbox.id, uids)
        elif self.policy == "move-to-trash":
            trash = await self._trash()
            await self.store.move(self.inbox.id, uid_ranges(uids), trash.id)
        else:
            await self.store.remove_messages(self.inbox.id, uid_ranges(uids))
        return len(uids)

    async def _trash(self) -> Mailbox:
        """The account's \\Trash mailbox, else one named Trash, created if missing."""
        mailboxes = await self.store.list_mailboxes(self.account.id)
        for mb in mailboxes:
            if mb.special_use == "\\Trash" and mb.selectable:
                return mb
        for mb in mailboxes:
            if mb.name == "Trash" and mb.selectable:
                return mb
        try:
            return await self.store.create_mailbox(self.account.id, "Trash", "\\Trash")
        except MailboxExists:
            existing = await self.store.get_mailbox(self.account.id, "Trash")
            if existing is None or not existing.selectable:
                raise
            return existing


class OpenMessage:
    """A message being sent: its first piece is already read."""

    __slots__ = ("_asked", "digest", "first", "index", "size", "store")

    def __init__(self, store: Store, index: int, digest: str, size: int, first: bytes,
                 asked: int) -> None:
        self.store = store
        self.index = index
        self.digest = digest
        self.size = size
        self.first = first
        self._asked = asked

    @property
    def complete(self) -> bool:
        """`first` is the whole message: the size the store recorded, or a short read."""
        return len(self.first) >= self.size or len(self.first) < self._asked

    async def pieces(self, chunk: int = READ_CHUNK) -> AsyncGenerator[bytes, None]:
        """The message bytes in pieces, the first one included. Stops at the size the store
        recorded (static for ever, PROMISES U4) or at a short read, so a small message costs
        one read."""
        piece = self.first
        offset = len(piece)
        if piece:
            yield piece
        if len(piece) < self._asked:
            return
        while offset < self.size:
            piece = await self.store.read_blob(self.digest, offset, min(chunk, self.size - offset))
            if not piece:
                return
            yield piece
            offset += len(piece)
