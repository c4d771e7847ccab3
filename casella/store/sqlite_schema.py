"""The SQLite schema and its migrations.

Lives here: the DDL of every table, one list of migration steps keyed by `PRAGMA user_version`
(with the steps that must compute data: filling version 5's search columns from the stored
headers, and again at version 7; version 6 adds the table of small message bodies, version 8 an
account's own POP3 policy, version 9 the POP3 UIDLs kept from another store, version 10 Sieve
scripts, forwards and vacation replies, version 11 the admin API's tokens, version 12 the
search index), and the connection
settings (WAL, synchronous=FULL). Must never: hold any other data logic; the operations live in
casella.store.sqlite.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);

CREATE TABLE domains (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL,
    messages_per_hour INTEGER,
    defers_failures_per_hour INTEGER,
    defers_failures_percent INTEGER
);

CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    address TEXT NOT NULL UNIQUE,
    domain_id INTEGER NOT NULL,
    password_hash TEXT NOT NULL,
    quota_bytes INTEGER NOT NULL,
    quota_messages INTEGER NOT NULL DEFAULT 0,
    used_bytes INTEGER NOT NULL DEFAULT 0,
    used_messages INTEGER NOT NULL DEFAULT 0,
    created INTEGER NOT NULL,
    sending_held INTEGER NOT NULL DEFAULT 0,
    messages_per_hour INTEGER,
    defers_failures_per_hour INTEGER,
    defers_failures_percent INTEGER
);
CREATE INDEX accounts_domain ON accounts(domain_id);

CREATE TABLE aliases (
    source TEXT PRIMARY KEY,
    domain_id INTEGER NOT NULL,
    destinations TEXT NOT NULL
);
CREATE INDEX aliases_domain ON aliases(domain_id);

CREATE TABLE mailboxes (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL DEFAULT 1,
    highestmodseq INTEGER NOT NULL DEFAULT 1,
    special_use TEXT,
    selectable INTEGER NOT NULL DEFAULT 1,
    messages INTEGER NOT NULL DEFAULT 0,
    unseen INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL DEFAULT 0,
    first_recent_uid INTEGER NOT NULL DEFAULT 1,
    created INTEGER NOT NULL,
    UNIQUE (account_id, name)
);

CREATE TABLE subscriptions (
    account_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    PRIMARY KEY (account_id, name)
) WITHOUT ROWID;

CREATE TABLE mailbox_keywords (
    mailbox_id INTEGER NOT NULL,
    keyword TEXT NOT NULL COLLATE NOCASE,
    PRIMARY KEY (mailbox_id, keyword)
) WITHOUT ROWID;

CREATE TABLE blobs (
    id INTEGER PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    refcount INTEGER NOT NULL,
    header BLOB NOT NULL,
    envelope BLOB NOT NULL,
    bodystructure BLOB NOT NULL,
    body BLOB NOT NULL,
    parts TEXT NOT NULL,
    preview TEXT NOT NULL
);
CREATE INDEX blobs_unreferenced ON blobs(id) WHERE refcount = 0;

-- Clustered by (mailbox, uid): SELECT, FETCH ranges and seq<->UID maps are range scans.
CREATE TABLE messages (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    keywords TEXT NOT NULL DEFAULT '',
    internaldate INTEGER NOT NULL,
    savedate INTEGER NOT NULL,
    size INTEGER NOT NULL,
    blob_id INTEGER NOT NULL,
    pop3_hidden INTEGER NOT NULL DEFAULT 0,
    pop3_retrieved INTEGER,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX messages_modseq ON messages(mailbox_id, modseq);
CREATE INDEX messages_unseen ON messages(mailbox_id, uid) WHERE (flags & 1) = 0;

CREATE TABLE expunged (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX expunged_modseq ON expunged(mailbox_id, modseq);

CREATE TABLE queue (
    id INTEGER PRIMARY KEY,
    sender TEXT NOT NULL,
    account_id INTEGER,
    blob_id INTEGER NOT NULL,
    size INTEGER NOT NULL,
    created INTEGER NOT NULL,
    envid TEXT,
    ret TEXT,
    held INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE queue_recipients (
    id INTEGER PRIMARY KEY,
    queue_id INTEGER NOT NULL,
    address TEXT NOT NULL,
    orcpt TEXT,
    notify TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,
    last_reply TEXT NOT NULL DEFAULT '',
    updated INTEGER NOT NULL
);
CREATE INDEX queue_recipients_queue ON queue_recipients(queue_id);
CREATE INDEX queue_recipients_due ON queue_recipients(state, next_attempt);
"""

# Failed logins per remote IP ("ip:…") and per account ("user:…"), shared by every protocol
# and every process (and later every cluster node).
SCHEMA_V2 = """
CREATE TABLE auth_failures (
    key TEXT PRIMARY KEY,
    failures INTEGER NOT NULL,
    first_failure INTEGER NOT NULL,
    last_failure INTEGER NOT NULL,
    blocked_until INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""

# Outbound delivery and sending limits (issue 6): per-recipient notice bookkeeping, the
# timestamped send events the hourly limits count, and the defers-and-failures guard state.
SCHEMA_V3 = """
ALTER TABLE queue_recipients ADD COLUMN dsn_pending TEXT NOT NULL DEFAULT '';
ALTER TABLE queue_recipients ADD COLUMN delay_notified INTEGER NOT NULL DEFAULT 0;
ALTER TABLE queue_recipients ADD COLUMN remote_mta TEXT NOT NULL DEFAULT '';
CREATE INDEX queue_recipients_notice ON queue_recipients(queue_id) WHERE dsn_pending != '';

CREATE TABLE send_events (
    id INTEGER PRIMARY KEY,
    account_id INTEGER NOT NULL,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    count INTEGER NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX send_events_account ON send_events(account_id, at);
CREATE INDEX send_events_at ON send_events(at);

CREATE TABLE send_guard (
    account_id INTEGER PRIMARY KEY,
    blocked_until INTEGER NOT NULL
);
"""

# IMAP extensions (issue 9, casella/store/sqlite_imapext.py): the THREADID of each stored message
# content per account (blob_threads, keyed by digest so copies cost nothing and a collected
# blob's row stays true for the same content), assigned at delivery/APPEND from Message-ID /
# In-Reply-To / References through thread_keys (no row: stored before threads existed,
# THREADID NIL); quota-warning thresholds crossed upwards, written in the transaction that added
# the mail and handed out once by take_quota_warnings.
SCHEMA_V4 = """
CREATE TABLE blob_threads (
    account_id INTEGER NOT NULL,
    digest TEXT NOT NULL,
    thread_id INTEGER NOT NULL,
    PRIMARY KEY (account_id, digest)
) WITHOUT ROWID;

CREATE TABLE thread_keys (
    account_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    thread_id INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
) WITHOUT ROWID;

CREATE TABLE quota_warnings (
    account_id INTEGER NOT NULL,
    threshold INTEGER NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (account_id, threshold)
) WITHOUT ROWID;
"""

# Version 5 (issue 8): what SEARCH FROM/TO/CC/BCC/SUBJECT compare with, per blob, so that
# SQLite answers those keys (casella.mail.text.search_values: the field's values decoded,
# casefolded, joined with LF; "" when absent). Rows stored before it are filled in by
# `migrate` in the same transaction.
SCHEMA_V5 = """
ALTER TABLE blobs ADD COLUMN search_from TEXT;
ALTER TABLE blobs ADD COLUMN search_to TEXT;
ALTER TABLE blobs ADD COLUMN search_cc TEXT;
ALTER TABLE blobs ADD COLUMN search_bcc TEXT;
ALTER TABLE blobs ADD COLUMN search_subject TEXT
"""

#: The columns of SCHEMA_V5, in the order of casella.mail.text.SEARCH_FIELDS.
SEARCH_COLUMNS = ("search_from", "search_to", "search_cc", "search_bcc", "search_subject")

# Version 6 (issue 8): the bytes of the bodies small enough to be kept in the database
# (casella.store.blobs.INLINE_MAX), one row per blob that has them, written in the transaction
# that first references the blob and deleted with its `blobs` row. A blob without a row here
# is a file under blobs/. A table of its own keeps `blobs` rows small, so the FETCH and
# SEARCH reads of metadata do not wade through message bytes.
SCHEMA_V6 = """
CREATE TABLE blob_bodies (
    blob_id INTEGER PRIMARY KEY,
    data BLOB NOT NULL
)
"""

# Version 7 (issue 17): SEARCH FROM/TO/CC/BCC compare with the address list in normal form
# (casella.mail.address.format_addresses), as Dovecot does; no table changes, but `migrate`
# works the search columns of every stored blob out again.
SCHEMA_V7 = "-- refill the search columns"

# Version 8 (issue 18): an account's own POP3 policy, chosen on the customer page; NULL means
# the config's `[pop3] delete` / `expire_days`.
SCHEMA_V8 = """
ALTER TABLE accounts ADD COLUMN pop3_delete TEXT;
ALTER TABLE accounts ADD COLUMN pop3_expire_days INTEGER
"""

# Version 9 (issue 19, casella/store/sqlite_move.py): the POP3 UIDL a message brought from
# another store (casella import, a Dovecot uidlist), used instead of the one derived from UID
# and UIDVALIDITY; NULL for nearly every message. The partial index keeps them unique per
# mailbox (PROMISES U5) and finds a maildrop's few of them at login.
SCHEMA_V9 = """
ALTER TABLE messages ADD COLUMN pop3_uidl TEXT;
CREATE UNIQUE INDEX messages_pop3_uidl ON messages(mailbox_id, pop3_uidl)
    WHERE pop3_uidl IS NOT NULL
"""

# Version 10 (issue 20): Sieve scripts (several per account, at most one active), the account
# forward, and when a vacation reply last went to a sender (RFC 5230 §4.2).
SCHEMA_V10 = """
CREATE TABLE sieve_scripts (
    account_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    content TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0,
    size INTEGER NOT NULL,
    updated INTEGER NOT NULL,
    PRIMARY KEY (account_id, name)
);
CREATE INDEX sieve_scripts_active ON sieve_scripts(account_id) WHERE active = 1;

CREATE TABLE forwards (
    account_id INTEGER PRIMARY KEY,
    destinations TEXT NOT NULL,
    keep INTEGER NOT NULL
);

CREATE TABLE vacation_replies (
    account_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (account_id, key)
) WITHOUT ROWID
"""

# Version 11 (issue 18): the admin API's tokens. Only the SHA-256 of each token's secret is
# kept (casella.auth.tokens); `domain` is NULL for a token that may touch every domain.
SCHEMA_V11 = """
CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    domain TEXT,
    secret_hash TEXT NOT NULL,
    created INTEGER NOT NULL
) WITHOUT ROWID
"""

# Version 12 (issue 21): the search index, per blob (a body shared by many messages is indexed
# once). `search_text` holds what SEARCH compares a needle with (casella.mail.text.index_texts:
# the decoded headers and body text, casefolded; `fields`: the SCHEMA_V5 values, for the header
# keys), as UTF-8 (lone surrogates passed through, NUL written as U+DFFF: the trigram tokenizer
# stops at a NUL, and no needle holds a surrogate), each zlib-compressed. `search_fts` indexes
# the same texts by trigram (SQLite FTS5, contentless, detail=none: which rows hold a trigram,
# not where; about a quarter of the text's size), under the row's own `fts_rowid`, never reused
# (AUTOINCREMENT). Forgetting a row's trigrams means telling FTS5 its text again, which costs
# about as much as indexing it: a collected blob's row moves to `search_dead` in the
# collecting transaction (cheap; its stale trigrams then match no search_text row, so SEARCH
# never sees them) and the background indexer purges the trigrams later, a paced batch at a
# time, off the sessions' path. Every blob has a row either there or in
# `search_unindexed`: `pending` 1 for a body the background backfill is to index (stored before
# version 12, handed back by `casella index rebuild`, or found missing at start-up); 0 for one
# left out: its text is too big (casella.mail.text.INDEX_MAX_TEXT_BYTES), or it is only queued
# for sending (indexed when a mailbox message comes to hold it). SEARCH reads the messages of
# unindexed bodies as before. The rows go with the blob's own when it is collected.
SCHEMA_V12 = """
CREATE TABLE search_text (
    fts_rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    blob_id INTEGER NOT NULL UNIQUE,
    headers BLOB NOT NULL,
    body BLOB NOT NULL,
    fields BLOB NOT NULL
);
CREATE TABLE search_dead (
    fts_rowid INTEGER PRIMARY KEY,
    headers BLOB NOT NULL,
    body BLOB NOT NULL,
    fields BLOB NOT NULL
);
CREATE VIRTUAL TABLE search_fts USING fts5(
    headers, body, fields,
    content='', tokenize='trigram', detail='none'
);
CREATE TABLE search_unindexed (
    blob_id INTEGER PRIMARY KEY,
    pending INTEGER NOT NULL
);
CREATE INDEX search_unindexed_pending ON search_unindexed(blob_id) WHERE pending = 1;
INSERT INTO search_unindexed (blob_id, pending) SELECT id, 1 FROM blobs
"""

# Each entry upgrades the schema from version i to i+1. Append; never edit a released step.
MIGRATIONS: list[str] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6,
                         SCHEMA_V7, SCHEMA_V8, SCHEMA_V9, SCHEMA_V10, SCHEMA_V11, SCHEMA_V12]
#: The steps after which the search columns are (re)computed from the stored headers (once,
#: however many of them one upgrade crosses).
_REFILL_SEARCH = (SCHEMA_V5, SCHEMA_V7)


def _fill_search_columns(conn: sqlite3.Connection, batch: int = 1000) -> None:
    """Work out the SCHEMA_V5 columns of every stored blob from its header."""
    from casella.mail.text import search_values

    sets = ", ".join(f"{c} = ?" for c in SEARCH_COLUMNS)
    last = 0
    while True:
        rows = conn.execute("SELECT id, header FROM blobs WHERE id > ? ORDER BY id LIMIT ?",
                            (last, batch)).fetchall()
        if not rows:
            return
        conn.executemany(f"UPDATE blobs SET {sets} WHERE id = ?",
                         [(*search_values(bytes(header)), blob_id) for blob_id, header in rows])
        last = rows[-1][0]


def configure(conn: sqlite3.Connection, writer: bool, busy_timeout_ms: int = 30000) -> None:
    """Connection settings. synchronous=FULL: a commit is on disk when COMMIT returns."""
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    conn.execute("PRAGMA foreign_keys=OFF")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute("PRAGMA cache_size=-65536")
    # After a burst (a big import, a compact) the WAL file shrinks back to this once a
    # checkpoint has emptied it, instead of keeping its largest size for ever.
    conn.execute("PRAGMA journal_size_limit=16777216")
    if not writer:
        conn.execute("PRAGMA mmap_size=268435456")


def migrate(conn: sqlite3.Connection, progress: Callable[[int], None] | None = None) -> int:
    """Bring the schema up to date inside one write transaction; returns the version.
    `progress(version)` is called in that transaction before the step to `version` runs
    (casella.store.sqlite_versions records the step there and reports it)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise RuntimeError(f"the database schema (version {version}) is newer than this "
                               f"casella ({len(MIGRATIONS)}); upgrade casella")
        refill = False
        for step in range(version, len(MIGRATIONS)):
            if progress is not None:
                progress(step + 1)
            for statement in MIGRATIONS[step].split(";"):
                if statement.strip():
                    conn.execute(statement)
            refill = refill or any(MIGRATIONS[step] is s for s in _REFILL_SEARCH)
        if refill:
            _fill_search_columns(conn)
        conn.execute(f"PRAGMA user_version={len(MIGRATIONS)}")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return len(MIGRATIONS)
