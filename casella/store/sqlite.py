"""The embedded store: SQLite (WAL, synchronous=FULL; the bodies of small messages in the
table blob_bodies) plus the file blob store for the bigger ones.

Lives here: `SQLiteStore`, the default backend of the store contract, assembled from the
operation modules: sqlite_directory (domains, accounts, aliases), sqlite_mail (mailboxes,
messages, POP3), sqlite_queue (outbound queue), sqlite_limits (sending limits),
sqlite_auth (failed-login counters), sqlite_reads (IMAP's bulk reads), sqlite_search (the
search index), sqlite_move (export
and import), sqlite_live (the open-connection counts, in a table every process maps:
livecounts), sqlite_sieve (Sieve scripts, forwards, vacation replies), sqlite_admin (admin API
tokens, counts for /metrics), sqlite_maint (schema version, disk space), on sqlite_base
(threads, group commit, repair).
Writes run on one writer thread that groups the jobs queued at the same moment into one
transaction, each job in its own SAVEPOINT; the statements of a batch of small writes (a
delivery to a few recipients, a flag change of a few messages...) run on the event loop thread
meanwhile (sqlite_base._LoopHandoff says why); reads run on a pool of reader threads.
Must never: run other SQL, an fsync or a COMMIT on the event loop thread, or report success
before COMMIT.
"""

from __future__ import annotations

from typing import Sequence

from casella.store.base import Store
from casella.store.blobs import StagedBlob
from casella.store.model import DeliveryOutcome, DeliveryTarget, QueueRecipient
from casella.store.sqlite_admin import AdminOps
from casella.store.sqlite_auth import AuthOps
from casella.store.sqlite_base import _LIGHT_DELIVERY_RECIPIENTS, _Txn
from casella.store.sqlite_directory import DirectoryOps
from casella.store.sqlite_imapext import ImapExtOps
from casella.store.sqlite_limits import LimitOps
from casella.store.sqlite_live import LiveOps
from casella.store.sqlite_mail import MailOps
from casella.store.sqlite_maint import MaintenanceOps
from casella.store.sqlite_move import MoveOps
from casella.store.sqlite_queue import QueueOps
from casella.store.sqlite_reads import ReadOps
from casella.store.sqlite_search import SearchOps
from casella.store.sqlite_sieve import SieveOps


class SQLiteStore(MoveOps, DirectoryOps, MailOps, ReadOps, SearchOps, QueueOps, LimitOps,
                  AuthOps, ImapExtOps, LiveOps, SieveOps, AdminOps, MaintenanceOps, Store):
    """The default backend (see the module docstring)."""

    async def deliver_and_enqueue(
            self, local_blob: StagedBlob | None, targets: Sequence[DeliveryTarget],
            queue_blob: StagedBlob | None, sender: str, recipients: Sequence[QueueRecipient],
            account_id: int | None = None, envid: str | None = None,
            ret: str | None = None) -> tuple[list[DeliveryOutcome], int | None]:
        if targets and local_blob is None or recipients and queue_blob is None:
            raise ValueError("a blob is needed for the local targets and for the queue")

        def op(txn: _Txn) -> tuple[list[DeliveryOutcome], int | None]:
            outcomes = self._deliver_txn(txn, local_blob, targets) if targets else []
            queue_id = self._enqueue_txn(txn, queue_blob, sender, recipients, account_id,
                                         envid, ret) if recipients else None
            return outcomes, queue_id
        # A delivery to a few recipients is light (see sqlite_base._LoopHandoff).
        light = len(targets) + len(recipients) <= _LIGHT_DELIVERY_RECIPIENTS
        return await self._write(op, light=light)
