"""IDLE (RFC 2177, RFC 9051 §6.3.13): wait for DONE while pushing the selected mailbox's
changes as they are committed by other sessions (the store's change bus wakes us up). With
NOTIFY in effect, IDLE sends exactly what NOTIFY asked for (RFC 5465 §4).

Must never: poll the store on a timer, or leave a read or a bus wait running after it returns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any

from casella.imap import commands as c
from casella.imap.errors import Bad
from casella.imap.session import Done
from casella.imap.shared import shared_state

if TYPE_CHECKING:
    from casella.imap.session import Session


async def _push(s: Session) -> None:
    notifier = s.notifier
    if notifier is not None and notifier.active:
        s.write(await notifier.pushes(allow_expunge=True))
    elif s.selected is not None and s.subscription is not None:
        s.subscription.drain()
        out = await s.selected.sync(s.store, allow_expunge=True)
        s.write(out)


def _done(line: bytes) -> Done:
    if line.strip().upper() != b"DONE":
        raise Bad("Expected DONE to end IDLE")
    return Done("IDLE terminated")


async def _idle_selected(s: Session, reader: asyncio.Future[bytes]) -> Done:
    """IDLE without NOTIFY: the selected mailbox's changes (if any). The subscription and the
    reader only set a future, and the session waits on that one future: after a delivery,
    thousands of idle sessions each wake up once, with no task or asyncio.wait per event.
    A change event starts (or joins) the process's one store query for it and the session
    wakes when that is answered, so it does not wake, ask and sleep again."""
    loop = asyncio.get_running_loop()
    wake: list[asyncio.Future[None]] = [loop.create_future()]
    shared = shared_state(s.store)

    def kick(*_: object) -> None:
        if not wake[0].done():
            wake[0].set_result(None)

    def on_change() -> None:
        view = s.selected
        if wake[0].done() or view is None:
            kick()
            return
        query = shared.query(view.mailbox_id, view.modseq)
        if query.done():
            kick()
        else:
            waiting = wake[0]
            query.add_done_callback(lambda _: waiting.done() or waiting.set_result(None))

    reader.add_done_callback(kick)
    sub = s.subscription
    if sub is not None:
        sub.listener = on_change
    try:
        while True:
            wake[0] = loop.create_future()
            view = s.selected
            if sub is not None and sub.pending and view is not None:
                sub.drain()
                changes = shared.answered(view.mailbox_id, view.modseq)
                s.write(await view.sync(s.store, allow_expunge=True, changes=changes))
                await s.flush()
            elif reader.done():
                return _done(reader.result())
            else:
                await wake[0]
    finally:
        if sub is not None:
            sub.listener = None
        reader.remove_done_callback(kick)
        if not reader.done():
            reader.cancel()
            # Its outcome no longer matters; gather only waits for the cancellation.
            await asyncio.gather(reader, return_exceptions=True)


def _wait(s: Session) -> Awaitable[Any] | None:
    notifier = s.notifier
    if notifier is not None and notifier.active:
        return notifier.wait_event()
    if s.subscription is not None:
        return s.subscription.wait()
    return None


async def idle(s: Session, tag: str, cmd: c.Idle) -> Done:
    await _push(s)
    s.write(b"+ idling\r\n")
    await s.flush()
    reader = asyncio.ensure_future(s.read_line(float(s.cfg.idle_timeout)))
    if s.notifier is None or not s.notifier.active:
        return await _idle_selected(s, reader)
    waiter: asyncio.Future[Any] | None = None
    try:
        while True:
            wanted: set[asyncio.Future[Any]] = {reader}
            if waiter is None:
                wait = _wait(s)
                if wait is not None:
                    waiter = asyncio.ensure_future(wait)
            if waiter is not None:
                wanted.add(waiter)
            done, _ = await asyncio.wait(wanted, return_when=asyncio.FIRST_COMPLETED)
            if waiter is not None and waiter in done:
                waiter = None
                if s.notifier is None or not s.notifier.active:
                    # The subscription's wait drained the events; sync asks the store.
                    if s.selected is not None:
                        s.write(await s.selected.sync(s.store, allow_expunge=True))
                else:
                    s.write(await s.notifier.pushes(allow_expunge=True))
                await s.flush()
            if reader in done:
                return _done(reader.result())
    finally:
        pending = [t for t in (reader, waiter) if t is not None and not t.done()]
        for task in pending:
            task.cancel()
        # Their outcome no longer matters; gather only waits for the cancellation.
        await asyncio.gather(*pending, return_exceptions=True)
