"""The online vacuum: gives the space of deleted mail back to the file system, a short step at
a time, beside live sessions (issue 21).

Lives here: `VacuumRunner`, a background service of the server run by one process per data_dir
(the one that runs the background services: worker 0, or the only process). Every
`check_interval` it asks the store how much of the database is free; once that is at least
`threshold`, it runs steps of at most `step_pages` pages, `interval` apart, until nothing is
free. Must never: stop the server when the store fails (it logs and looks again later), or hold
the write lock itself (each step is one store write, bounded there to a few ms).
"""

from __future__ import annotations

import asyncio
import logging

from casella.errors import StorageError
from casella.store.base import Store

log = logging.getLogger("casella.store")


class VacuumRunner:
    def __init__(self, store: Store, *, threshold: int, step_pages: int, interval: float,
                 check_interval: float) -> None:
        self.store = store
        self.threshold = threshold
        self.step_pages = step_pages
        self.interval = interval
        self.check_interval = check_interval
        self._task: asyncio.Task[None] | None = None
        self._warned_offline = False

    async def start(self) -> None:
        if self.step_pages > 0:
            self._task = asyncio.create_task(self._loop(), name="vacuum")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def run_once(self) -> int:
        """Look at the free space and, if there is enough, give it back in steps until none
        is left; the pages given back. The loop's body, callable on its own."""
        probe = await self.store.vacuum_step(0)
        if not probe.online:
            if probe.free_pages * probe.page_size >= self.threshold and not self._warned_offline:
                self._warned_offline = True
                log.warning("%d MiB of the database are free but this database cannot give "
                            "them back while casella runs (it was made before casella did "
                            "that); run `casella store compact` once",
                            probe.free_pages * probe.page_size // 1024**2)
            return 0
        if probe.free_pages * probe.page_size < self.threshold:
            return 0
        given = 0
        free = probe.free_pages
        while free:
            step = await self.store.vacuum_step(self.step_pages)
            given += step.pages
            free = step.free_pages
            if not step.pages:
                break
            if free:
                await asyncio.sleep(self.interval)
        log.info("gave %d MiB of free database pages back to the file system",
                 given * probe.page_size // 1024**2)
        return given

    async def _loop(self) -> None:
        while True:
            try:
                await self.run_once()
            except StorageError as exc:
                log.warning("the online vacuum failed, trying again later: %s", exc)
            await asyncio.sleep(self.check_interval)
