"""SQLite backend: the open-connection counts the connection limits share across the processes
of this machine (the `connections_*` part of the store contract).

Lives here: the glue between the contract and casella.store.livecounts, the table every process
serving this data_dir maps (casella-live.counts beside the database): machine-local live state,
never fsynced, never in the mail database (so counting a connection never waits for its write
lock or group commit), empty again when the server starts (open with repair).

A count takes a few microseconds; the hop to a thread and back would cost several times that on
every connect, login, logout and disconnect. So it runs on the event loop thread when the
table's flock is free (taken without waiting); only when another process holds it does the count
go to the store's thread, which waits for it.

Must never: wait for a lock on the event loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from casella.errors import StorageError
from casella.store.livecounts import Contended, LiveCounts
from casella.store.sqlite_base import SQLiteBase

log = logging.getLogger("casella.store")

T = TypeVar("T")


class LiveOps(SQLiteBase):
    _live_exec: ThreadPoolExecutor | None = None
    _live_slow: LiveCounts | None = None    # the store thread's, waits for the lock
    _live_fast: LiveCounts | None = None    # the event loop thread's, never waits

    async def _live(self, fn: Callable[[LiveCounts, bool], T]) -> T:
        """`fn(table, blocking)` on the event loop thread if the table is free at once, else
        on the store's thread."""
        fast, slow, pool = self._live_fast, self._live_slow, self._live_exec
        if fast is None or slow is None or pool is None:
            raise StorageError("the connection counts are not available")
        try:
            return fn(fast, False)
        except Contended:
            pass
        return await asyncio.get_running_loop().run_in_executor(pool, fn, slow, True)

    # --- life cycle ------------------------------------------------------------------------

    async def open(self, repair: bool = True) -> None:
        if self._opened:
            return
        await super().open(repair)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-live")
        path = self.data_dir / "casella-live.counts"
        slow, fast = LiveCounts(path), LiveCounts(path)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(pool, slow.open, repair)
            await loop.run_in_executor(pool, fast.open, False)
        except (OSError, StorageError) as exc:
            # The mail goes on (a full disk must not stop the server, issue 7 §6); every count
            # is a StorageError, and the connection limits let connections in uncounted.
            log.error("the connection counts cannot be opened: %s", exc)
            slow.close()
            fast.close()
            pool.shutdown(wait=True)
            return
        self._live_exec, self._live_slow, self._live_fast = pool, slow, fast

    async def close(self) -> None:
        pool, self._live_exec = self._live_exec, None
        slow, self._live_slow = self._live_slow, None
        fast, self._live_fast = self._live_fast, None
        if pool is not None:
            for table in (slow, fast):
                if table is not None:
                    await asyncio.get_running_loop().run_in_executor(pool, table.close)
            pool.shutdown(wait=True)
        await super().close()

    # --- the contract ----------------------------------------------------------------------

    async def connections_acquire(self, owner: str,
                                  keys: Sequence[tuple[str, int]]) -> str | None:
        if not keys:
            return None
        return await self._live(lambda t, b: t.acquire(owner, keys, b))

    async def connections_release(self, owner: str, keys: Sequence[str]) -> None:
        if keys:
            await self._live(lambda t, b: t.release(owner, keys, b))

    async def connections_count(self, keys: Sequence[str]) -> dict[str, int]:
        if not keys:
            return {}
        return await self._live(lambda t, b: t.count(keys, b))

    async def connections_forget(self, owner: str) -> int:
        return await self._live(lambda t, b: t.forget(owner, b))
