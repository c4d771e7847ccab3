"""The typed records the store hands out and takes in.

Lives here: frozen dataclasses for domains, accounts, mailboxes, messages, queue entries and the
results of store operations, plus flag helpers. Must never: import a backend, a protocol or
anything doing I/O. Protocol layers build their replies from these records only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from casella.store.blobs import StagedBlob

# System flags as RFC 9051 §2.3.2 spells them; the store keeps them as bits.
SEEN = "\\Seen"
ANSWERED = "\\Answered"
FLAGGED = "\\Flagged"
DELETED = "\\Deleted"
DRAFT = "\\Draft"
SYSTEM_FLAGS: tuple[str, ...] = (SEEN, ANSWERED, FLAGGED, DELETED, DRAFT)
FLAG_BITS: dict[str, int] = {SEEN: 1, ANSWERED: 2, FLAGGED: 4, DELETED: 8, DRAFT: 16}
_FLAG_BY_LOWER: dict[str, str] = {f.lower(): f for f in SYSTEM_FLAGS}

# The special-use attributes of RFC 6154 that casella knows.
SPECIAL_USES: tuple[str, ...] = ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk",
                                 "\\Sent", "\\Trash")

# What POP3 DELE does at QUIT (`[pop3] delete`, or an account's own choice).
POP3_DELETE_POLICIES: tuple[str, ...] = ("expunge", "move-to-trash", "hide")
POP3_MAX_EXPIRE_DAYS = 36500

# Mailboxes every new account gets (name, special-use).
DEFAULT_MAILBOXES: tuple[tuple[str, str | None], ...] = (
    ("INBOX", None),
    ("Drafts", "\\Drafts"),
    ("Sent", "\\Sent"),
    ("Trash", "\\Trash"),
    ("Junk", "\\Junk"),
    ("Archive", "\\Archive"),
)

HIERARCHY_DELIMITER = "/"


def canonical_flag(flag: str) -> str:
    """System flags in their canonical spelling; keywords unchanged."""
    return _FLAG_BY_LOWER.get(flag.lower(), flag)


def split_flags(flags: Sequence[str]) -> tuple[int, tuple[str, ...]]:
    """Split flag names into the system-flag bit mask and the sorted, de-duplicated keywords.
    Keywords compare case-insensitively; the first spelling seen wins. \\Recent and other
    backslash flags that are not system flags are dropped: they cannot be stored."""
    bits = 0
    keywords: dict[str, str] = {}
    for flag in flags:
        canon = canonical_flag(flag)
        if canon in FLAG_BITS:
            bits |= FLAG_BITS[canon]
        elif not flag.startswith("\\"):
            keywords.setdefault(flag.lower(), flag)
    return bits, tuple(sorted(keywords.values(), key=str.lower))


def join_flags(bits: int, keywords: Sequence[str]) -> tuple[str, ...]:
    """Flag names from the bit mask and keywords, system flags first."""
    out = [f for f in SYSTEM_FLAGS if bits & FLAG_BITS[f]]
    out.extend(keywords)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Domain:
    id: int
    name: str
    created: int
    messages_per_hour: int | None = None
    defers_failures_per_hour: int | None = None
    defers_failures_percent: int | None = None


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    address: str
    domain_id: int
    password_hash: str
    quota_bytes: int          # 0 = unlimited
    quota_messages: int       # 0 = unlimited
    used_bytes: int
    used_messages: int
    created: int
    sending_held: bool = False
    messages_per_hour: int | None = None
    defers_failures_per_hour: int | None = None
    defers_failures_percent: int | None = None
    # The account's own POP3 policy; None: `[pop3] delete` / `expire_days` of the config.
    pop3_delete: str | None = None
    pop3_expire_days: int | None = None

    @property
    def has_quota(self) -> bool:
        """Whether a size or message limit applies (only then can a warning be due)."""
        return self.quota_bytes > 0 or self.quota_messages > 0

    @property
    def domain(self) -> str:
        return self.address.rsplit("@", 1)[1]


@dataclass(frozen=True, slots=True)
class Alias:
    source: str               # "user@domain" or "@domain" (catch-all)
    destinations: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Mailbox:
    id: int
    account_id: int
    name: str                 # Unicode, "/"-delimited, INBOX in upper case
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None
    selectable: bool          # False: a \Noselect placeholder kept for its children
    messages: int
    unseen: int
    deleted: int
    size: int
    first_recent_uid: int
    created: int


@dataclass(frozen=True, slots=True)
class MessageMeta:
    """What a session needs about a message without reading its body."""
    uid: int
    modseq: int
    flags: tuple[str, ...]    # system flags first, then keywords
    internaldate: int         # seconds since the epoch, UTC
    size: int
    blob_id: int
    savedate: int

    def has(self, flag: str) -> bool:
        lower = flag.lower()
        return any(f.lower() == lower for f in self.flags)


@dataclass(frozen=True, slots=True)
class MessageStatic:
    """The data computed once when a message was stored (RFC 3501 static data, U4)."""
    blob_id: int
    digest: str               # sha256 hex of the bytes: the blob's name
    size: int
    header: bytes             # the top-level header block, including the blank line
    envelope: bytes           # IMAP ENVELOPE, rendered (casella.mail.envelope)
    bodystructure: bytes      # IMAP BODYSTRUCTURE (extensible form), rendered
    body: bytes               # IMAP BODY (non-extensible form), rendered
    parts: str                # JSON: the MIME part tree with byte offsets (casella.mail.parse)
    preview: str = ""


@dataclass(frozen=True, slots=True)
class SelectSnapshot:
    """A mailbox as SELECT sees it: the record, every UID in order, and the first unseen UID."""
    mailbox: Mailbox
    uids: Sequence[int]
    first_unseen_uid: int | None
    keywords: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AppendItem:
    blob: "StagedBlob"
    flags: tuple[str, ...] = ()
    internaldate: int | None = None


@dataclass(frozen=True, slots=True)
class AppendResult:
    uidvalidity: int
    uids: tuple[int, ...]
    highestmodseq: int
    recent: tuple[int, int] | None = None   # the \Recent claim, when asked for (Store.append)
    quota_warning: bool = False             # a quota warning waits for the account (take it)


@dataclass(frozen=True, slots=True)
class CopyResult:
    uidvalidity: int                       # of the destination
    pairs: tuple[tuple[int, int], ...]     # (source UID, destination UID)
    expunged: tuple[int, ...] = ()         # MOVE: source UIDs removed


@dataclass(frozen=True, slots=True)
class FlagsResult:
    changed: tuple[MessageMeta, ...]       # messages whose flags changed, with their new MODSEQ
    unchanged: tuple[MessageMeta, ...]     # addressed messages whose flags stayed the same
    modified: tuple[int, ...]              # UIDs refused by UNCHANGEDSINCE (RFC 7162 §3.2)
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class ExpungeResult:
    uids: tuple[int, ...]
    highestmodseq: int


@dataclass(frozen=True, slots=True)
class Changes:
    """What changed in a mailbox after a MODSEQ: new or changed messages, and expunged UIDs."""
    mailbox: Mailbox
    messages: tuple[MessageMeta, ...]
    expunged: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class DeliveryTarget:
    account_id: int
    mailbox: str = "INBOX"     # falls back to INBOX when it does not exist
    flags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    target: DeliveryTarget
    mailbox_id: int | None = None
    uid: int | None = None
    error: Exception | None = None   # QuotaExceeded, NotFound …; None on success
    quota_warning: bool = False      # a quota warning waits for the account (take it)


@dataclass(frozen=True, slots=True)
class QueueRecipient:
    address: str
    orcpt: str | None = None
    notify: tuple[str, ...] = ()        # DSN NOTIFY values, empty = default
    state: str = "queued"               # queued | deferred | delivered | failed | held
    attempts: int = 0
    next_attempt: int = 0
    last_reply: str = ""
    id: int = 0


@dataclass(frozen=True, slots=True)
class QueueEntry:
    id: int
    sender: str                         # "" for the null reverse path
    account_id: int | None
    blob_id: int
    size: int
    created: int
    envid: str | None
    ret: str | None                     # FULL | HDRS | None
    recipients: tuple[QueueRecipient, ...] = field(default_factory=tuple)
    held: bool = False


@dataclass(frozen=True, slots=True)
class MessageIds:
    """The object identifiers of one message (RFC 8474): its blob's digest (the EMAILID is
    derived from it, shared by copies of the same stored message) and its thread (0: none)."""
    uid: int
    digest: str
    thread_id: int


# --- moving data (casella export / import, issue 19) ------------------------------------------

POP3_UIDL_MAX = 70      # RFC 1939 §7: a unique-id is 1 to 70 characters in 0x21-0x7E


def valid_pop3_uidl(uidl: str) -> bool:
    """Whether `uidl` may be a POP3 unique-id (RFC 1939 §7, PROMISES U5)."""
    return 1 <= len(uidl) <= POP3_UIDL_MAX and all(0x21 <= ord(c) <= 0x7E for c in uidl)


@dataclass(frozen=True, slots=True)
class ImportItem:
    """One message for `Store.import_messages`: its body and the identity and state it had in
    the store it comes from (a casella export, a Dovecot Maildir)."""
    blob: "StagedBlob"
    uid: int
    modseq: int
    flags: tuple[str, ...] = ()
    internaldate: int = 0             # seconds since the epoch, UTC
    savedate: int | None = None       # None: the time of the import
    pop3_uidl: str | None = None      # None: POP3 derives it from UID and UIDVALIDITY
    pop3_retrieved: int | None = None  # first POP3 download, if any
    pop3_hidden: bool = False         # hidden from POP3 for ever (pop3.delete = "hide")


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An admin API token (issue 18). The token a client sends is `casella_<id>_<secret>`;
    only the SHA-256 of the secret is kept, so a copy of the store gives nobody access."""
    id: str                   # public, unique: names the token in logs and in `token list`
    name: str                 # unique, chosen by the admin
    domain: str | None        # None: every domain; else the only domain it may see and change
    secret_hash: str          # SHA-256 hex of the secret part
    created: int


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counts for /metrics, read in one go (issue 18)."""
    domains: int
    accounts: int
    accounts_sending_held: int
    queue_entries: int
    queue_recipients: int      # waiting: queued, deferred or being sent
    queue_oldest: int | None   # creation time of the oldest entry still waiting, if any


@dataclass(frozen=True, slots=True)
class AppliedStep:
    """One schema step `casella migrate` applied (the table schema_migrations)."""
    version: int
    applied_at: int
    casella_version: str


@dataclass(frozen=True, slots=True)
class SchemaStatus:
    """Where the store's schema stands against the version this casella works with."""
    version: int                            # 0: no database yet
    known: int                              # this casella's version
    pending: tuple[tuple[int, str], ...]    # (version, what it brings) still to apply
    applied: tuple[AppliedStep, ...]        # recorded steps (none before casella kept them)


@dataclass(frozen=True, slots=True)
class SpaceStats:
    """Where the store's disk space goes (`casella store stats`). Sizes in bytes."""
    database_bytes: int        # page count × page size: the file once the WAL is checkpointed
    used_bytes: int            # pages that hold data
    free_bytes: int            # pages on the free list: reused for new data, or given back
    reclaimable_bytes: int     # about what a full compact would give back: free pages plus the
    #                            unused room inside used pages
    wal_bytes: int             # the write-ahead log beside the database
    page_size: int
    auto_vacuum: str           # "none", "full" or "incremental"
    blob_files: int            # bodies over 64 KiB, one file each
    blob_bytes: int
    messages: int              # stored messages, counted once per mailbox that holds them
    schema_version: int


@dataclass(frozen=True, slots=True)
class VacuumStep:
    """What one online vacuum step gave back."""
    pages: int                 # pages given back to the file system
    free_pages: int            # pages still on the free list after it
    page_size: int
    online: bool               # whether the store can give pages back online at all


@dataclass(frozen=True, slots=True)
class CompactResult:
    """A full compact: the database's size before and after, and the mode it now has."""
    before_bytes: int
    after_bytes: int
    auto_vacuum: str


@dataclass(frozen=True, slots=True)
class IndexAnswer:
    """What the search index says about a mailbox's messages (Store.search_index): for each
    query, the UIDs it found among the indexed messages (None: a needle the index cannot look
    up), and the UIDs of the messages it does not hold (not indexed yet, or too big), which
    the caller must check itself."""
    found: tuple[frozenset[int] | None, ...]
    unindexed: frozenset[int]


@dataclass(frozen=True, slots=True)
class IndexStatus:
    """The search index's state (issue 21): bodies indexed, waiting for the backfill, and
    left out (too big: SEARCH reads them), and its size on disk: the trigram index and the
    stored texts."""
    indexed: int
    pending: int
    left_out: int
    index_bytes: int
    text_bytes: int
