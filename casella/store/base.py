"""The store contract: every persistent operation casella performs, as one async interface.

Lives here: the abstract `Store` that protocol sessions, the CLI and services call, and the
rules each backend must keep (DESIGN.md "Store contract"). Must never: contain SQL, touch files,
or know any protocol. Every mutating method is one transaction: UIDs, MODSEQs and quota are
decided inside it, it returns only once the change is durable, and subscribers of the change
bus hear of it only after commit.

UID ranges are passed as sequences of inclusive (low, high) pairs with low <= high; sequence
numbers never reach the store (sessions map them to UIDs).
"""

from __future__ import annotations

import abc
from typing import Callable, Collection, Mapping, Sequence

from casella.store.blobs import BlobStore, StagedBlob
from casella.store.changes import ChangeBus
from casella.store.model import (
    Account,
    Alias,
    ApiToken,
    AppendItem,
    AppendResult,
    Changes,
    CompactResult,
    CopyResult,
    DeliveryOutcome,
    DeliveryTarget,
    Domain,
    ExpungeResult,
    FlagsResult,
    ImportItem,
    IndexAnswer,
    IndexStatus,
    Mailbox,
    MessageIds,
    MessageMeta,
    MessageStatic,
    QueueEntry,
    QueueRecipient,
    SchemaStatus,
    SelectSnapshot,
    SpaceStats,
    StoreStats,
    VacuumStep,
)
from casella.store.sending import PendingNotice, RecipientResult, SendEvent
from casella.store.sieverules import DeliveryRules, SieveScript

UidRanges = Sequence[tuple[int, int]]


class Store(abc.ABC):
    """One mail store. Methods raise casella.errors classes: NotFound/MailboxNotFound,
    AlreadyExists/MailboxExists, InvalidName, MailboxNotAllowed, QuotaExceeded, StorageError
    (BodyGone, DiskFull). A busy database is waited for inside the store, for a bounded time,
    before it becomes a StorageError."""

    blobs: BlobStore
    bus: ChangeBus

    # --- life cycle ------------------------------------------------------------------------

    @abc.abstractmethod
    async def open(self, repair: bool = True) -> None:
        """Open the store; a new, empty store is created at the current schema version. A
        schema at another version raises SchemaMismatch, whose sentence says what to run
        (`casella migrate` is `migrate`). With `repair` (the server at start-up, never a CLI
        running beside a live server): clean orphan blobs and unfinished writes, and check the
        per-mailbox counters and quota usage against the messages and repair them."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    # --- domains ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_domain(self, name: str) -> Domain: ...

    @abc.abstractmethod
    async def remove_domain(self, name: str, force: bool = False) -> None:
        """Refuse (UserError) while accounts or aliases exist, unless force removes them."""

    @abc.abstractmethod
    async def get_domain(self, name: str) -> Domain | None: ...

    @abc.abstractmethod
    async def list_domains(self) -> list[Domain]: ...

    # --- accounts --------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_account(self, address: str, password_hash: str, quota_bytes: int,
                          quota_messages: int = 0) -> Account:
        """Create the account and its default mailboxes (INBOX, Drafts, Sent, Trash, Junk,
        Archive with special-use flags, all subscribed)."""

    @abc.abstractmethod
    async def get_account(self, address: str) -> Account | None: ...

    @abc.abstractmethod
    async def get_account_by_id(self, account_id: int) -> Account | None: ...

    @abc.abstractmethod
    async def list_accounts(self, domain: str | None = None) -> list[Account]: ...

    @abc.abstractmethod
    async def set_password(self, address: str, password_hash: str) -> None: ...

    @abc.abstractmethod
    async def set_quota(self, address: str, quota_bytes: int,
                        quota_messages: int | None = None) -> None: ...

    @abc.abstractmethod
    async def set_pop3_policy(self, address: str, delete: str | None,
                              expire_days: int | None) -> None:
        """The account's own POP3 policy: `delete` one of model.POP3_DELETE_POLICIES,
        `expire_days` 0 (never) to model.POP3_MAX_EXPIRE_DAYS; None for either means the
        config's value applies. UserError for anything else, NotFound for no such account."""

    @abc.abstractmethod
    async def remove_account(self, address: str) -> None:
        """Remove the account, its mailboxes and messages (blobs are released)."""

    # --- aliases ---------------------------------------------------------------------------

    @abc.abstractmethod
    async def add_alias(self, source: str, destinations: Sequence[str]) -> Alias:
        """`source` is `user@domain` or `@domain` (catch-all) in a hosted domain."""

    @abc.abstractmethod
    async def get_alias(self, source: str) -> Alias | None: ...

    @abc.abstractmethod
    async def list_aliases(self, domain: str | None = None) -> list[Alias]: ...

    @abc.abstractmethod
    async def remove_alias(self, source: str) -> None: ...

    async def resolve_address(self, address: str) -> tuple[bool, Alias | None, Account | None]:
        """What SMTP asks about each recipient, at once: whether the address's domain is
        hosted, the alias whose source is exactly the address, and the address's account
        (`get_domain`, `get_alias`, `get_account`). A backend answers in one round trip where
        it can; this default asks three times."""
        domain = address.rpartition("@")[2]
        return (await self.get_domain(domain) is not None, await self.get_alias(address),
                await self.get_account(address))

    # --- mailboxes -------------------------------------------------------------------------

    @abc.abstractmethod
    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        """All mailboxes of the account (including \\Noselect placeholders), sorted by name."""

    @abc.abstractmethod
    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        """By name; `inbox` in any case means INBOX. Placeholders are returned too."""

    @abc.abstractmethod
    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None: ...

    @abc.abstractmethod
    async def create_mailbox(self, account_id: int, name: str,
                             special_use: str | None = None) -> Mailbox:
        """Create the mailbox and any missing parents. A \\Noselect placeholder of that name
        becomes selectable with a new UIDVALIDITY. MailboxExists when it exists."""

    @abc.abstractmethod
    async def delete_mailbox(self, account_id: int, name: str) -> None:
        """Delete the mailbox and its messages. With children it stays as a \\Noselect
        placeholder (RFC 3501 §6.3.4); a placeholder with children cannot be deleted; INBOX
        cannot be deleted."""

    @abc.abstractmethod
    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        """Rename with all children, keeping UIDVALIDITY and UIDs; subscriptions follow.
        Renaming INBOX moves its messages into a new mailbox (new UIDVALIDITY) and leaves
        INBOX empty, its children untouched (RFC 3501 §6.3.5)."""

    @abc.abstractmethod
    async def set_special_use(self, mailbox_id: int, special_use: str | None) -> None: ...

    @abc.abstractmethod
    async def subscribe(self, account_id: int, name: str) -> None: ...

    @abc.abstractmethod
    async def unsubscribe(self, account_id: int, name: str) -> None: ...

    @abc.abstractmethod
    async def list_subscriptions(self, account_id: int) -> list[str]: ...

    # --- messages: reads -------------------------------------------------------------------

    @abc.abstractmethod
    async def select(self, mailbox_id: int) -> SelectSnapshot:
        """The mailbox record, all UIDs ascending, the first unseen UID, the keywords in use.
        Never reads message bodies."""

    @abc.abstractmethod
    async def fetch_meta(self, mailbox_id: int, uids: UidRanges) -> list[MessageMeta]:
        """Metadata of the messages in the UID ranges, ascending by UID."""

    @abc.abstractmethod
    async def fetch_static(self, blob_ids: Sequence[int]) -> dict[int, MessageStatic]:
        """The parsed, precomputed data of these blobs."""

    @abc.abstractmethod
    async def search_uids(self, mailbox_id: int, max_uid: int, *,
                          with_flags: Sequence[str] = (), without_flags: Sequence[str] = (),
                          since: int | None = None, before: int | None = None,
                          larger: int | None = None, smaller: int | None = None,
                          header_contains: Sequence[tuple[str, str]] = ()) -> list[int]:
        """UIDs up to `max_uid`, ascending, of the messages that have every flag of
        `with_flags` and none of `without_flags` (system flags, or keywords compared without
        regard to ASCII case), an INTERNALDATE in [since, before) (seconds since the epoch),
        a size above `larger` and below `smaller`, and for each (field, needle) of
        `header_contains` a value of that header field holding the needle (IMAP SEARCH,
        RFC 9051 §6.4.4). The field is one of casella.mail.text.SEARCH_FIELDS and the needle
        a non-empty casefolded string without LF, compared with the field's values as
        `search_values` gives them; anything else raises ValueError."""

    # --- the search index (issue 21) -------------------------------------------------------

    @abc.abstractmethod
    async def search_index(self, mailbox_id: int, max_uid: int,
                           queries: Sequence[tuple[str, str]]) -> IndexAnswer:
        """The search index's answer, from one snapshot, for the messages with UIDs up to
        `max_uid`. Each query is (scope, needle), the needle casefolded: scope "text" finds
        the messages whose decoded headers or body text (casella.mail.text.index_texts) hold
        the needle, "body" those whose body text does (both exactly: IMAP SEARCH TEXT and
        BODY), and "any" a superset of the messages holding the needle in any header value
        or in the body (for the header keys, which the caller then checks). A needle shorter
        than 3 characters, or holding NUL, is not looked up (None)."""

    @abc.abstractmethod
    async def search_index_backfill(self, max_chars: int = 64 * 1024,
                                    max_bodies: int = 100) -> tuple[int, int]:
        """Index some of the bodies waiting for it (up to `max_bodies`, and stopping once
        `max_chars` characters of text are read), in one short write; returns (how many
        were indexed or found too big now, how many still wait)."""

    @abc.abstractmethod
    async def search_index_purge(self, max_rows: int = 20) -> tuple[int, int]:
        """Remove from the index the trigrams of up to `max_rows` bodies collected since (their
        rows no longer answer any search: this only gives the space back), in one short
        write; returns (how many were purged, how many still wait)."""

    @abc.abstractmethod
    async def search_index_reset(self, account_id: int | None = None) -> int:
        """Forget the index of every body (or of the bodies of one account's messages) and
        hand them to the backfill; returns how many. SEARCH stays correct meanwhile."""

    @abc.abstractmethod
    async def search_index_status(self) -> IndexStatus:
        """Counts and size of the search index."""

    @abc.abstractmethod
    async def fetch_messages(self, mailbox_id: int, uids: UidRanges,
                             static_fields: Collection[str]
                             ) -> list[tuple[MessageMeta, MessageStatic | None]]:
        """`fetch_meta` and `fetch_static` in one: the metadata of the messages in the UID
        ranges, ascending by UID, each with its static data, of which only `static_fields`
        (names of MessageStatic fields among header, envelope, bodystructure, body, parts,
        preview) are read, the others left empty; blob_id, digest and size always."""

    @abc.abstractmethod
    async def fetch_flags(self, mailbox_id: int, uids: UidRanges
                          ) -> list[tuple[int, int, tuple[str, ...]]]:
        """(uid, modseq, flags) of the messages in the UID ranges, ascending, as plain tuples:
        what a client's flag resync of a whole mailbox reads (FETCH 1:* (UID FLAGS))."""

    @abc.abstractmethod
    async def read_blobs(self, pieces: Sequence[tuple[str, int, int]]) -> list[bytes]:
        """`read_blob(digest, offset, length)` for each piece, in one go (BodyGone when any
        of them is gone)."""

    @abc.abstractmethod
    async def read_blob(self, digest: str, offset: int = 0, length: int = -1) -> bytes:
        """Bytes of a stored message; read large ones in pieces to stream them. A body no
        message holds any more (all of them removed since the caller read their metadata, and
        the body collected) raises BodyGone; a body a message still holds that cannot be read
        raises StorageError."""

    @abc.abstractmethod
    async def stored_bodies(self) -> list[str]:
        """The digest of every message body the store keeps, once per copy (wherever the
        backend keeps it: a database row, a file): what "stored once" and "nothing left
        behind" are checked against."""

    @abc.abstractmethod
    async def changes_since(self, mailbox_id: int, modseq: int) -> Changes:
        """Messages whose MODSEQ is above `modseq` (new or changed) and UIDs expunged above it."""

    @abc.abstractmethod
    async def claim_recent(self, mailbox_id: int) -> tuple[int, int]:
        """Claim \\Recent for the caller (RFC 3501 §2.3.2): returns (low, high) such that UIDs
        low <= uid < high are recent in this session only; later callers get none of them."""

    # --- messages: writes ------------------------------------------------------------------

    @abc.abstractmethod
    async def append(self, mailbox_id: int, items: Sequence[AppendItem],
                     claim_recent: bool = False) -> AppendResult:
        """Append all items atomically (MULTIAPPEND): UIDs assigned in order, quota checked
        for the total. QuotaExceeded changes nothing. With `claim_recent`, `claim_recent` is
        done in the same transaction, after the insert, and its answer is the result's
        `recent` (IMAP: a session appending to the mailbox it has selected)."""

    @abc.abstractmethod
    async def deliver(self, blob: StagedBlob,
                      targets: Sequence[DeliveryTarget]) -> list[DeliveryOutcome]:
        """Deliver one message to several accounts in one transaction, the body stored once.
        Each target succeeds or fails on its own (quota); failures change nothing for it."""

    @abc.abstractmethod
    async def deliver_and_enqueue(
            self, local_blob: StagedBlob | None, targets: Sequence[DeliveryTarget],
            queue_blob: StagedBlob | None, sender: str, recipients: Sequence[QueueRecipient],
            account_id: int | None = None, envid: str | None = None,
            ret: str | None = None) -> tuple[list[DeliveryOutcome], int | None]:
        """`deliver(local_blob, targets)` and `enqueue(queue_blob, sender, recipients, …)` in
        ONE transaction (PROMISES D12: one DATA is accepted or refused as a whole): per-target
        quota failures as in deliver; the successful targets and the queue entry (when there
        are recipients) commit together or not at all. Returns (outcomes, queue id or None)."""

    @abc.abstractmethod
    async def copy(self, src_mailbox_id: int, uids: UidRanges,
                   dst_mailbox_id: int) -> CopyResult:
        """Copy with flags (and a fresh \\Recent); quota checked for the whole set."""

    @abc.abstractmethod
    async def move(self, src_mailbox_id: int, uids: UidRanges,
                   dst_mailbox_id: int) -> CopyResult:
        """Copy then expunge from the source in one transaction (RFC 6851). The target may be
        the source itself: the messages get new UIDs, the expunge a higher MODSEQ."""

    @abc.abstractmethod
    async def store_flags(self, mailbox_id: int, uids: UidRanges, mode: str,
                          flags: Sequence[str], unchangedsince: int | None = None) -> FlagsResult:
        """mode is 'add', 'remove' or 'replace'. Only messages whose flags really change get
        a new MODSEQ; with `unchangedsince`, messages with a higher MODSEQ are left alone and
        listed in `modified`."""

    @abc.abstractmethod
    async def expunge(self, mailbox_id: int, uids: UidRanges | None = None) -> ExpungeResult:
        """Remove \\Deleted messages (only those in `uids` when given); record them for
        VANISHED; release quota and blobs."""

    @abc.abstractmethod
    async def remove_messages(self, mailbox_id: int, uids: UidRanges) -> ExpungeResult:
        """Remove these messages whatever their flags (POP3 DELE at QUIT, retention)."""

    # --- POP3 bookkeeping ------------------------------------------------------------------

    @abc.abstractmethod
    async def pop3_list(self, mailbox_id: int) -> list[tuple[MessageMeta, int | None]]:
        """Messages of the maildrop not hidden from POP3, with the time of their first POP3
        download (None if never)."""

    @abc.abstractmethod
    async def pop3_mark_retrieved(self, mailbox_id: int, uids: Sequence[int], when: int) -> None:
        """Record the first POP3 download time of these messages (kept if already set)."""

    @abc.abstractmethod
    async def pop3_hide(self, mailbox_id: int, uids: Sequence[int]) -> None:
        """Hide these messages from POP3 for ever; IMAP still sees them."""

    @abc.abstractmethod
    async def pop3_uidls(self, mailbox_id: int) -> dict[int, str]:
        """The POP3 UIDLs stored with messages of the mailbox (`import_messages` keeps the ones
        a message had elsewhere), by UID. POP3 uses them instead of the UIDL it derives from
        UID and UIDVALIDITY. Usually empty."""

    # --- moving data (casella export / import) ---------------------------------------------
    # What `casella import` and `casella import --from-dovecot` write through (casella.move),
    # so that clients that synced before a move see nothing new after it: UIDVALIDITY, UIDs,
    # MODSEQs and POP3 UIDLs are kept. The account is expected not to be in use meanwhile.

    @abc.abstractmethod
    async def import_mailbox(self, account_id: int, name: str, uidvalidity: int, *,
                             uidnext: int = 1, highestmodseq: int = 1,
                             special_use: str | None = None,
                             expunged: Sequence[tuple[int, int]] = ()) -> Mailbox:
        """Create the mailbox `name` (missing parents as create_mailbox makes them) with this
        UIDVALIDITY, or take the existing one of that name when it has the same UIDVALIDITY or
        never held a message (UIDNEXT 1: a default mailbox of a new account, a placeholder),
        which then gets this UIDVALIDITY and becomes selectable. Then UIDNEXT and HIGHESTMODSEQ
        are raised to at least the given values (never lowered), `special_use` is set when
        given, and the expunge records (uid, modseq) are added for UIDs that hold no message
        (QRESYNC VANISHED). The store's UIDVALIDITY counter is raised to at least this value,
        so a mailbox created later still gets a greater one (PROMISES U3). One transaction.
        MailboxExists when the mailbox has another UIDVALIDITY and has held mail; UserError
        for a UIDVALIDITY or UIDNEXT outside 1..2^32-1, a MODSEQ below 1, an unknown
        special-use, or an expunge record at or above UIDNEXT or above HIGHESTMODSEQ."""

    @abc.abstractmethod
    async def import_messages(self, mailbox_id: int, items: Sequence[ImportItem]) -> Mailbox:
        """Insert messages with the UIDs, MODSEQs, flags, dates and POP3 state they had
        elsewhere, all or nothing, each body stored once. The UIDs ascend strictly and the
        first is at least the mailbox's UIDNEXT, so a UID that may have been given out is
        never used again (PROMISES U1); UIDNEXT becomes the last UID + 1 and HIGHESTMODSEQ the
        greatest of itself and the items' MODSEQs. The messages are not \\Recent. Counters
        and quota usage count them; the quota is not enforced (the mail already belongs to
        the account). A `pop3_uidl` must be valid (model.valid_pop3_uidl) and unique among the
        stored POP3 UIDLs of the mailbox. UserError (nothing written) when a rule is broken.
        Returns the mailbox after the insert."""

    @abc.abstractmethod
    async def expunge_records(self, mailbox_id: int) -> list[tuple[int, int]]:
        """(uid, modseq) of every expunge record of the mailbox (what `vanished_since`
        answers from), ascending by UID: `casella export` carries them."""

    # --- authentication defence ------------------------------------------------------------

    @abc.abstractmethod
    async def auth_record_failure(self, keys: Sequence[str], now: int, window: int,
                                  block_after: int, block_for: int) -> dict[str, int]:
        """Count one failed login against each key (`ip:<addr>`, `user:<address>`); counts
        older than `window` seconds start again. An `ip:` key reaching `block_after` failures
        is blocked until now + block_for (accounts are never blocked: that would let anyone
        lock a customer out). Returns each key's failure count."""

    @abc.abstractmethod
    async def auth_status(self, keys: Sequence[str], now: int) -> dict[str, tuple[int, int]]:
        """(failures in the current window, blocked_until) per key that has a record."""

    @abc.abstractmethod
    async def auth_clear(self, keys: Sequence[str]) -> int:
        """Forget the failures and blocks of these keys; returns how many were cleared."""

    # --- open connections ------------------------------------------------------------------
    # What the connection limits count (casella.limits.connections): open connections per key
    # (`ip:<addr>`, `imap-user-ip:<address> <addr>`), each held by an owner, one per server
    # process: "<node>/<worker>". The counts are shared by every worker and every node (DESIGN:
    # counters that limits depend on live where all of them see them) and need not survive a
    # restart: a backend keeps them without an fsync (sqlite: a table in shared memory, mapped
    # from a file by every process of the machine; postgres: an UNLOGGED table), and
    # `open(repair=True)` may start a machine-local backend's from zero. Each call is on the
    # path of every connect, login, logout and disconnect: a backend keeps it to microseconds.
    # The server forgets a node's counts when the node starts and a worker's when the worker
    # is replaced, so a crash never leaves connections counted that are gone.

    @abc.abstractmethod
    async def connections_acquire(self, owner: str,
                                  keys: Sequence[tuple[str, int]]) -> str | None:
        """Count one more open connection against each (key, limit), held by `owner`, if every
        key's count over all owners is below its limit; else count nothing and return the
        first key that is at its limit. Atomic against every other caller, on every node."""

    @abc.abstractmethod
    async def connections_release(self, owner: str, keys: Sequence[str]) -> None:
        """One connection fewer against each key, of those `owner` holds (never below zero)."""

    @abc.abstractmethod
    async def connections_count(self, keys: Sequence[str]) -> dict[str, int]:
        """The open connections counted per key over all owners (a key with none is absent)."""

    @abc.abstractmethod
    async def connections_forget(self, owner: str) -> int:
        """Drop every count held by `owner` and by the owners under it (`owner/...`): the
        counts of a worker that died, forgotten by its replacement before it serves, or of a
        whole node starting up. Returns how many connections were dropped."""

    # --- outbound queue --------------------------------------------------------------------

    @abc.abstractmethod
    async def enqueue(self, blob: StagedBlob, sender: str, recipients: Sequence[QueueRecipient],
                      account_id: int | None = None, envid: str | None = None,
                      ret: str | None = None, count: bool = False) -> int:
        """Write a message for outbound delivery durably; returns the queue id. With `count`
        the "submitted" send event is recorded for `account_id` even with the null sender
        (an automatic reply the account's script sent, RFC 3834 §3.3, issue 20)."""

    @abc.abstractmethod
    async def list_queue(self) -> list[QueueEntry]: ...

    @abc.abstractmethod
    async def get_queue_entry(self, queue_id: int) -> QueueEntry | None: ...

    # --- outbound delivery and sending limits ------------------------------------------------
    # The queue runner (casella.smtp.queue) and the sending limits (casella.limits.sendlimit)
    # build on these. `enqueue` above also records a "submitted" send event of
    # len(recipients) for `account_id` (when given and the sender is not null), in the same
    # transaction, so the hourly limit counts exactly what was queued.

    @abc.abstractmethod
    async def queue_due(self, now: int, limit: int = 200) -> list[QueueEntry]:
        """Entries with recipients due for an attempt: state queued (due at once) or
        deferred with next_attempt <= now, the entry not held and its account's sending not
        held. Each
        entry carries only its due recipients. Oldest first, at most `limit` entries."""

    @abc.abstractmethod
    async def queue_claim(self, recipient_ids: Sequence[int]) -> list[int]:
        """Move these recipients from queued/deferred to 'sending' (an attempt is in flight);
        returns the ids actually claimed (another runner may have taken some)."""

    @abc.abstractmethod
    async def queue_record(self, results: Sequence[RecipientResult], now: int) -> None:
        """Write attempt outcomes in one transaction: state, last reply, next attempt, remote
        MTA, the DSN owed (dsn_pending), attempts + 1 and a delivered/deferred/failed send
        event for the entry's account when `attempted`. Entries whose recipients are all final
        with no DSN owed are removed and their blob released."""

    @abc.abstractmethod
    async def queue_recover(self, now: int) -> int:
        """Start-up: recipients left in 'sending' by a stopped or crashed runner become
        deferred, due now (PROMISES D5: delivered at least once). Returns how many."""

    @abc.abstractmethod
    async def queue_pending_notices(self, limit: int = 100) -> list[PendingNotice]:
        """Entries with recipients whose DSN is still owed, with those recipients."""

    @abc.abstractmethod
    async def queue_notices_sent(self, recipient_ids: Sequence[int]) -> None:
        """The owed DSNs of these recipients were sent: clear them (a sent delay notice is
        remembered: there is only one per recipient); remove entries that are finished."""

    @abc.abstractmethod
    async def queue_set_held(self, queue_id: int, held: bool) -> None:
        """Hold (no attempts) or release one entry. NotFound when it does not exist."""

    @abc.abstractmethod
    async def queue_remove(self, queue_id: int) -> None:
        """Delete an entry without any notice (admin action) and release its blob."""

    @abc.abstractmethod
    async def queue_flush(self, queue_id: int | None, now: int) -> int:
        """Make the waiting recipients (of one entry, or of all) due now; returns how many."""

    @abc.abstractmethod
    async def set_sending_held(self, address: str, held: bool) -> None:
        """Stop (held) or restart an account's outbound mail; its queued mail stays."""

    @abc.abstractmethod
    async def set_send_limits(self, name: str, values: Mapping[str, int | None]) -> None:
        """Set limit keys (casella.store.sending.LIMIT_KEYS) of an account (`user@domain`) or
        a domain; None clears a key (the default applies). NotFound / UserError."""

    @abc.abstractmethod
    async def send_events(self, account_id: int, since: int) -> list[SendEvent]:
        """The account's send events with at > since, oldest first."""

    @abc.abstractmethod
    async def add_send_events(self, account_id: int, events: Sequence[SendEvent]) -> None:
        """Record send events the queue does not write itself, in one transaction: e.g. a
        "failed" event per recipient of a message refused at submission as spam (issue 20),
        which then counts against the account's defers-and-failures guard. NotFound when the
        account does not exist."""

    @abc.abstractmethod
    async def reset_send_usage(self, account_ids: Sequence[int]) -> int:
        """Forget the send events and guard state of these accounts (admin reset)."""

    @abc.abstractmethod
    async def prune_send_events(self, before: int) -> int:
        """Remove send events at or before `before` (they are outside every window)."""

    @abc.abstractmethod
    async def get_send_guard(self, account_id: int) -> int | None:
        """Until when the defers-and-failures guard last said the account is blocked."""

    @abc.abstractmethod
    async def set_send_guard(self, account_id: int, blocked_until: int | None) -> None: ...

    # --- IMAP extensions -------------------------------------------------------------------
    # Issue 9 (casella/store/sqlite_imapext.py). THREADIDs are assigned when a message is
    # inserted (delivery, APPEND, COPY, MOVE), from its Message-ID, In-Reply-To and References,
    # per account; quota-warning crossings are recorded in the same transaction.

    QUOTA_WARNING_THRESHOLDS: tuple[int, ...] = (80, 95)

    @abc.abstractmethod
    async def fetch_ids(self, mailbox_id: int, uids: UidRanges) -> list[MessageIds]:
        """The blob digest and thread of the messages in the UID ranges, ascending by UID
        (FETCH EMAILID / THREADID, RFC 8474)."""

    @abc.abstractmethod
    async def fetch_headers(self, blob_ids: Sequence[int]) -> dict[int, bytes]:
        """The stored top-level header block of these blobs, and nothing else (SORT, THREAD)."""

    @abc.abstractmethod
    async def vanished_since(self, mailbox_id: int, modseq: int) -> list[int]:
        """UIDs expunged with a MODSEQ above `modseq`, ascending (RFC 7162 VANISHED (EARLIER))."""

    @abc.abstractmethod
    async def deleted_storage(self, mailbox_id: int) -> int:
        """Octets of the messages flagged \\Deleted (STATUS DELETED-STORAGE, RFC 9208)."""

    @abc.abstractmethod
    async def take_quota_warnings(self, account_id: int) -> list[int]:
        """The thresholds of QUOTA_WARNING_THRESHOLDS (percent of the storage or message
        quota) that the account's usage crossed upwards since the last call and still reaches,
        ascending. A crossing is recorded by the transaction that added the mail and is handed
        to exactly one caller, so concurrent deliveries never warn twice."""

    # --- Sieve scripts, forwarding, vacation (issue 20) -------------------------------------
    # casella/store/sqlite_sieve.py. Script names follow casella.store.sieverules
    # (InvalidName otherwise); an account has any number of named scripts, at most one active.

    @abc.abstractmethod
    async def sieve_list(self, account_id: int) -> list[SieveScript]:
        """The account's scripts sorted by name, without their content."""

    @abc.abstractmethod
    async def sieve_get(self, account_id: int, name: str) -> SieveScript | None: ...

    @abc.abstractmethod
    async def sieve_put(self, account_id: int, name: str, content: str,
                        max_scripts: int = 0) -> None:
        """Create or replace a script (an active one stays active). With `max_scripts` > 0, a
        new script beyond that many raises QuotaExceeded and changes nothing. NotFound when
        the account does not exist."""

    @abc.abstractmethod
    async def sieve_set_active(self, account_id: int, name: str | None) -> None:
        """Make this script the active one (None: no script is active). NotFound when there
        is no such script."""

    @abc.abstractmethod
    async def sieve_delete(self, account_id: int, name: str) -> None:
        """NotFound when there is no such script; UserError for the active script (RFC 5804
        §2.10: it must be deactivated first)."""

    @abc.abstractmethod
    async def sieve_rename(self, account_id: int, old: str, new: str) -> None:
        """Keeps the active mark. NotFound / AlreadyExists."""

    @abc.abstractmethod
    async def set_forward(self, address: str, destinations: Sequence[str],
                          keep: bool) -> None:
        """The account's forward: every message delivered to it is also sent on to these
        addresses (kept in INBOX too when `keep`). No destinations turns it off. NotFound for
        an unknown account, InvalidName for a bad destination."""

    @abc.abstractmethod
    async def delivery_rules(self, account_ids: Sequence[int]) -> dict[int, DeliveryRules]:
        """For each of these accounts that has an active script or a forward, what delivery
        must apply, in one read (accounts without either are left out)."""

    @abc.abstractmethod
    async def vacation_note(self, account_id: int, key: str, now: int, period: int) -> bool:
        """RFC 5230 §4.2: was no vacation reply recorded under `key` (the reply's handle and
        the sender) within `period` seconds before `now`? Then record one at `now` and return
        True, in one transaction, so concurrent deliveries answer once; else False. Records
        older than `period` are forgotten."""

    # --- admin API tokens and metrics ------------------------------------------------------
    # Issue 18 (casella/store/sqlite_admin.py): the tokens of the admin API (casella.auth.tokens
    # makes and checks them) and the counts /metrics reads at each scrape.

    @abc.abstractmethod
    async def add_api_token(self, token_id: str, name: str, domain: str | None,
                            secret_hash: str) -> ApiToken:
        """Record a token. AlreadyExists when its name or id is taken; NotFound when `domain`
        is given and not hosted; InvalidName for a bad domain."""

    @abc.abstractmethod
    async def get_api_token(self, token_id: str) -> ApiToken | None: ...

    @abc.abstractmethod
    async def list_api_tokens(self) -> list[ApiToken]:
        """Every token, by name."""

    @abc.abstractmethod
    async def remove_api_token(self, name: str) -> None:
        """Revoke the token with this name (or id). NotFound when there is none."""

    @abc.abstractmethod
    async def stats(self) -> StoreStats:
        """Domains, accounts, accounts whose sending is held, and the outbound queue's size
        and oldest waiting entry, from one consistent read."""

    # --- schema and disk space (issues 19 and 21) ---------------------------------------------

    @abc.abstractmethod
    async def schema_status(self) -> SchemaStatus:
        """The schema's version, this casella's, the steps pending and those recorded. Called
        on a store that is not open (and may be at another version)."""

    @abc.abstractmethod
    async def migrate(self, progress: Callable[[int, str], None] | None = None) -> list[int]:
        """Apply every pending schema step, all in one transaction, each recorded with the
        time and casella's version; `progress(version, title)` before each (from another
        thread). Returns the versions applied. Called on a store that is not open."""

    @abc.abstractmethod
    async def space_stats(self) -> SpaceStats:
        """Where the disk space goes: database used, free and reclaimable, the WAL, the body
        files, the number of messages."""

    @abc.abstractmethod
    async def vacuum_step(self, max_pages: int) -> VacuumStep:
        """Give at most `max_pages` free pages back to the file system, in a step short enough
        (a few ms) to run beside live sessions. Gives nothing back when the store cannot do it
        online (SpaceStats.auto_vacuum is not "incremental": `compact` first)."""

    @abc.abstractmethod
    async def compact(self, starting: Callable[[int], None] | None = None) -> CompactResult:
        """Rewrite the whole database without its free space and switch it to giving space
        back online; `starting(size)` once the database's size is known. Needs about that size
        in free disk and blocks every writer until it ends. Called on a store that is not
        open."""
