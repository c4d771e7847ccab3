"""SharedMailboxState (casella/imap/shared.py) on a real event loop, with a store that answers
at once: the orders in which sessions of one process meet each other's claims of \\Recent."""

from __future__ import annotations

import asyncio
import threading

from casella.imap.shared import SharedMailboxState


class InstantStore:
    """Only what SharedMailboxState calls: a claim that finishes on its first step."""

    def __init__(self) -> None:
        self.claims = 0
        self.highest = 0

    async def claim_recent(self, mailbox_id: int) -> tuple[int, int]:
        self.claims += 1
        first = self.highest + 1
        self.highest += 10
        return first, self.highest


def test_claim_meeting_a_finished_claim_whose_callback_has_not_run() -> None:
    """A session that asks while another session's claim has finished but its done-callback
    still waits on the loop must not spin: under load this once hung a worker at 100 % CPU
    (found by imaptest's stress mode)."""
    store = InstantStore()
    outcome: list[object] = []

    async def scenario() -> None:
        state = SharedMailboxState(store)   # type: ignore[arg-type]
        first = asyncio.ensure_future(state.claim_recent(1, 7, 5))
        await asyncio.sleep(0)      # `first` started the claim task; its step is queued
        # Queued right behind the claim's step: runs after the claim finished and before
        # the claim's done-callback.
        second = asyncio.ensure_future(state.claim_recent(1, 7, 15))
        outcome.extend(await asyncio.gather(first, second))

    thread = threading.Thread(target=lambda: asyncio.run(scenario()), daemon=True)
    thread.start()
    thread.join(10.0)
    assert not thread.is_alive(), "claim_recent spun on a finished claim"
    assert outcome[0] == (1, 10)
    # UID 15 was not covered by the first claim (it took up to 10): a second claim runs.
    assert outcome[1] == (11, 20) and store.claims == 2
