"""The change bus: "mailbox M of account A changed (modseq N)", published after commit.

Lives here: `ChangeBus`, an in-process publish/subscribe keyed by mailbox and by account, used
by IMAP IDLE/NOOP, NOTIFY and POP3 to wake up; sessions then ask the store what changed since
the MODSEQ they last saw. Events carry no data a session could trust instead of the store, so a
PostgreSQL LISTEN/NOTIFY or cross-process bus can replace this one. Must never: be published to
before the change is committed, or block the publisher.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    account_id: int
    mailbox_id: int
    modseq: int


class Subscription:
    """Wakes its owner when a matching change is published. Events are coalesced: `wait()`
    returns the events seen since the last call (at least one)."""

    def __init__(self, bus: "ChangeBus", mailbox_id: int | None, account_id: int | None) -> None:
        self._bus = bus
        self.mailbox_id = mailbox_id
        self.account_id = account_id
        # Coalesced per mailbox: a session that does not read its events for a while (selected
        # without IDLE on a busy mailbox) keeps one entry per mailbox, not one per change.
        self._pending: dict[int, ChangeEvent] = {}
        self._event = asyncio.Event()
        self.closed = False
        # Called (on the loop, by publish) after each event: a cheaper way to be woken than a
        # task in wait() for a session that waits for other things too (IMAP IDLE).
        self.listener: Callable[[], object] | None = None

    def _deliver(self, event: ChangeEvent) -> None:
        seen = self._pending.get(event.mailbox_id)
        if seen is None or event.modseq >= seen.modseq:
            self._pending[event.mailbox_id] = event
        self._event.set()
        if self.listener is not None:
            self.listener()

    @property
    def pending(self) -> bool:
        return bool(self._pending)

    def pending_after(self, modseq: int) -> bool:
        """Whether an event waits that may say more than MODSEQ `modseq` already does. An
        event without a MODSEQ (0: a rename) always may."""
        return any(e.modseq > modseq or e.modseq == 0 for e in self._pending.values())

    async def wait(self) -> list[ChangeEvent]:
        """The latest event per mailbox since the last call (waits for at least one)."""
        await self._event.wait()
        return self.drain()

    def drain(self) -> list[ChangeEvent]:
        """Events seen so far without waiting (may be empty)."""
        events = list(self._pending.values())
        self._pending = {}
        self._event.clear()
        return events

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._bus._remove(self)

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ChangeBus:
    """In-process bus. Call `publish` on the event loop thread, after commit."""

    def __init__(self) -> None:
        self._by_mailbox: dict[int, set[Subscription]] = defaultdict(set)
        self._by_account: dict[int, set[Subscription]] = defaultdict(set)
        # Counts every event (local or relayed from another worker): a reader that began after
        # the count last moved saw every change published so far (casella.imap.shared).
        self.published = 0

    def subscribe(self, mailbox_id: int) -> Subscription:
        sub = Subscription(self, mailbox_id, None)
        self._by_mailbox[mailbox_id].add(sub)
        return sub

    def subscribe_account(self, account_id: int) -> Subscription:
        """Every change in any mailbox of the account (NOTIFY, POP3 housekeeping)."""
        sub = Subscription(self, None, account_id)
        self._by_account[account_id].add(sub)
        return sub

    def publish(self, account_id: int, mailbox_id: int, modseq: int) -> None:
        event = ChangeEvent(account_id, mailbox_id, modseq)
        self.published += 1
        for sub in self._by_mailbox.get(mailbox_id, ()):
            sub._deliver(event)
        for sub in self._by_account.get(account_id, ()):
            sub._deliver(event)

    def _remove(self, sub: Subscription) -> None:
        if sub.mailbox_id is not None:
            subs = self._by_mailbox.get(sub.mailbox_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_mailbox[sub.mailbox_id]
        if sub.account_id is not None:
            subs = self._by_account.get(sub.account_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_account[sub.account_id]

    @property
    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._by_mailbox.values()) + \
            sum(len(s) for s in self._by_account.values())
