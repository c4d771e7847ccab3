"""The embedded store: SQLite (WAL, synchronous=FULL) plus the file blob store.

Lives here: `SQLiteStore`, the default backend of the store contract, assembled from the
operation modules: sqlite_directory (domains, accounts, aliases), sqlite_mail (mailboxes,
messages, POP3), sqlite_queue (outbound queue), sqlite_limits (sending limits),
sqlite_auth (failed-login counters), on sqlite_base (threads, group commit, repair).
Writes run on one writer thread that groups the jobs queued at the same moment into one
transaction, each job in its own SAVEPOINT; reads run on a pool of reader threads. Must never:
run SQL on the event loop thread, or report success before COMMIT.
"""

from __future__ import annotations

from casella.store.base import Store
from casella.store.sqlite_auth import AuthOps
from casella.store.sqlite_directory import DirectoryOps
from casella.store.sqlite_limits import LimitOps
from casella.store.sqlite_mail import MailOps
from casella.store.sqlite_queue import QueueOps


class SQLiteStore(DirectoryOps, MailOps, QueueOps, LimitOps, AuthOps, Store):
    """The default backend (see the module docstring)."""
