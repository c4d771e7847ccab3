"""The search index's background backfill (issue 21): bodies stored before the index existed
(schema version 12), or handed back by `casella index rebuild`, are indexed a small batch at
a time while the server runs.

Lives here: `SearchIndexer`, a background service (start/stop) that worker 0 runs: it asks
the store contract for one bounded batch (`Store.search_index_backfill`: decoding on a reader
thread, one short write) and for one batch of the trigrams of collected bodies to remove
(`Store.search_index_purge`), pauses, and goes on until nothing waits; then it looks again now and
then (a rebuild from the CLI, bodies found missing at start-up). SEARCH is correct whatever
the backfill has reached: it reads the messages the index does not hold. Must never: touch SQL,
or hold the write lock for more than one batch at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time

from casella.errors import StorageError
from casella.store.base import Store

log = logging.getLogger("casella.store")

# Between two batches the write lock, a reader thread and the GIL are free for the sessions:
# at least this long, and at least as long as the batch took (so the backfill has at most half
# of the time, whatever the load).
PAUSE = 0.02
# A batch: about two or three typical messages, a few milliseconds of the write lock.
BATCH_CHARS = 16 * 1024
BATCH_BODIES = 20
# Collected bodies whose trigrams one batch removes (as dear as indexing them).
PURGE_ROWS = 10
# With nothing waiting (or nothing that could be indexed now): the next look.
IDLE = 60.0


class SearchIndexer:
    def __init__(self, store: Store, pause: float = PAUSE, idle: float = IDLE) -> None:
        self.store = store
        self.pause = pause
        self.idle = idle
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="search-index-backfill")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    async def _run(self) -> None:
        done = 0
        started = 0.0
        while True:
            began = time.monotonic()
            try:
                step, waiting = await self.store.search_index_backfill(BATCH_CHARS,
                                                                       BATCH_BODIES)
            except StorageError as exc:
                log.warning("search index backfill: %s; trying again in %.0f s", exc, self.idle)
                await asyncio.sleep(self.idle)
                continue
            try:
                purged, dead = await self.store.search_index_purge(PURGE_ROWS)
            except StorageError as exc:
                log.warning("search index purge: %s", exc)
                purged = dead = 0
            if purged:
                step += purged
                waiting += dead
            if step and not done:
                started = time.monotonic()
                log.info("search index: %d stored or collected bodies to index or purge in the "
                         "background",
                         step + waiting)
            done += step
            if waiting and step:
                await asyncio.sleep(max(self.pause, time.monotonic() - began))
                continue
            if done:
                log.info("search index: %d bodies indexed or purged in %.0f s", done,
                         time.monotonic() - started)
                done = 0
            await asyncio.sleep(self.idle)
