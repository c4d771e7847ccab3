"""What the IMAP sessions of one process share about a mailbox: one `changes_since` answer per
(mailbox, MODSEQ) at a time, and which UIDs a session of this process has already claimed as
\\Recent (RFC 3501 §2.3.2).

Why: after one delivery, every session with that mailbox selected wakes up (IDLE, issue 8's
fan-out: 10,000 of them) and asks the store what changed since the MODSEQ it last saw, and
almost all of them ask the very same question. The first asker's query is shared by every
session that asks the same (mailbox, MODSEQ) while it runs, provided no change event was
published since it began: its snapshot then holds every change the joining session was woken
for. Likewise, when one session's claim of \\Recent is in flight or done, the others learn that
those UIDs are taken instead of each writing a claim that would come back empty.

A finished answer is kept until the next change event, but handed out (`answered`) only to
sessions woken by the event its query was started for: after a delivery, IDLE sessions wait
for that one query before they wake (casella.imap.handlers.idle), so each wakes once.

Must never: hand a session an answer that began before a change it was told about, hand a
finished answer to a session that asks on its own, or let one session's cancellation fail
the others' wait.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

from casella.store.base import Store
from casella.store.model import Changes

_MAX_CLAIMED = 10_000     # mailboxes whose claimed UID range is remembered (then forgotten)
_MAX_QUERIES = 1_000      # (mailbox, MODSEQ) queries kept before the stale ones are dropped


def _retrieve(task: asyncio.Future[Any]) -> None:
    """Mark a task's exception as seen: every waiter may have gone."""
    if not task.cancelled():
        task.exception()


class SharedMailboxState:
    """One per store (so per process)."""

    def __init__(self, store: Store) -> None:
        self._store = weakref.ref(store)
        self._changes: dict[tuple[int, int], tuple[int, asyncio.Task[Changes]]] = {}
        # (mailbox id, UIDVALIDITY) -> every UID below this one has been claimed as \Recent.
        self._claimed: dict[tuple[int, int], int] = {}
        # Claims in flight: (mailbox id, UIDVALIDITY) -> (the highest UID they surely take,
        # the claim).
        self._claiming: dict[tuple[int, int], tuple[int, asyncio.Task[tuple[int, int]]]] = {}
        self.queries = 0          # store queries actually made (tests look)

    @property
    def store(self) -> Store:
        store = self._store()
        assert store is not None
        return store

    def query(self, mailbox_id: int, modseq: int) -> asyncio.Task[Changes]:
        """The store's `changes_since(mailbox_id, modseq)` as one task per process: the one
        running, if it began after the last change event, else a new one."""
        store = self.store
        key = (mailbox_id, modseq)
        entry = self._changes.get(key)
        if entry is not None and entry[0] == store.bus.published and not entry[1].done():
            return entry[1]
        task = asyncio.ensure_future(store.changes_since(mailbox_id, modseq))
        self.queries += 1
        if len(self._changes) >= _MAX_QUERIES:
            self._prune()
        self._changes[key] = (store.bus.published, task)
        task.add_done_callback(_retrieve)
        return task

    def answered(self, mailbox_id: int, modseq: int) -> Changes | None:
        """The answer of a `query` for (mailbox_id, modseq) that began after the last change
        event and has finished, else None. Only for a session that was woken by that very
        event (IDLE): a session asking on its own may have heard of a commit, from another
        worker, whose event has not reached this process yet, and must ask the store."""
        entry = self._changes.get((mailbox_id, modseq))
        if entry is None or entry[0] != self.store.bus.published:
            return None
        task = entry[1]
        if not task.done() or task.cancelled() or task.exception() is not None:
            return None
        return task.result()

    def _prune(self) -> None:
        """Drop the queries a change event has made stale; if that is not enough, the
        finished ones too (a session then asks again)."""
        published = self.store.bus.published
        for key, (count, _) in list(self._changes.items()):
            if count != published:
                del self._changes[key]
        if len(self._changes) >= _MAX_QUERIES:
            for key, (_, task) in list(self._changes.items()):
                if task.done():
                    del self._changes[key]

    async def changes_since(self, mailbox_id: int, modseq: int) -> Changes:
        return await asyncio.shield(self.query(mailbox_id, modseq))

    async def claim_recent(self, mailbox_id: int, uidvalidity: int,
                           highest_new: int) -> tuple[int, int] | None:
        """Claim \\Recent (Store.claim_recent) for new messages up to UID `highest_new`; None
        when another session of this process has claimed them already, or is claiming them
        now (the claim would come back empty for them)."""
        key = (mailbox_id, uidvalidity)
        while True:
            if highest_new < self._claimed.get(key, 0):
                return None
            running = self._claiming.get(key)
            if running is None:
                break
            if highest_new <= running[0]:
                # That claim was asked for after UID `highest_new` was committed, so it takes
                # everything up to it: no need to wait for its answer.
                return None
            if running[1].done():
                # Finished, its done callback not run yet (this session's step was queued
                # before it): awaiting it would not yield, and this loop would spin for ever
                # without letting the callback run. Take its outcome now.
                self._claim_done(key, running[1])
                continue
            try:
                await asyncio.shield(running[1])
            except Exception:       # noqa: BLE001 - the claimer reports it; look again
                pass
        task = asyncio.ensure_future(self.store.claim_recent(mailbox_id))
        self._claiming[key] = (highest_new, task)
        task.add_done_callback(lambda t: self._claim_done(key, t))
        return await asyncio.shield(task)

    def _claim_done(self, key: tuple[int, int], t: asyncio.Task[tuple[int, int]]) -> None:
        """A claim finished: it is no longer in flight, and the UIDs it took are claimed.
        Idempotent (claim_recent may take the outcome before the done callback runs)."""
        if self._claiming.get(key, (0, None))[1] is t:
            del self._claiming[key]
        _retrieve(t)
        if t.cancelled() or t.exception() is not None:
            return
        if len(self._claimed) >= _MAX_CLAIMED and key not in self._claimed:
            self._claimed.clear()     # forgetting only costs a claim that comes back empty
        self._claimed[key] = max(self._claimed.get(key, 0), t.result()[1])

    def note_claim(self, mailbox_id: int, uidvalidity: int, claim: tuple[int, int]) -> None:
        """A claim made another way (APPEND's, in its own transaction)."""
        key = (mailbox_id, uidvalidity)
        if len(self._claimed) >= _MAX_CLAIMED and key not in self._claimed:
            self._claimed.clear()
        self._claimed[key] = max(self._claimed.get(key, 0), claim[1])


_states: weakref.WeakKeyDictionary[Store, SharedMailboxState] = weakref.WeakKeyDictionary()


def shared_state(store: Store) -> SharedMailboxState:
    state = _states.get(store)
    if state is None:
        state = _states[store] = SharedMailboxState(store)
    return state
