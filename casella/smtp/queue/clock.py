"""The queue runner's clock: real time in production, a hand-moved one in tests.

Lives here: `Clock` (now() in seconds since the epoch) and `ManualClock` (starts at the real
time, moves only with `advance`). Must never: sleep; the runner sleeps on real time and asks
the clock only what time it is for scheduling.
"""

from __future__ import annotations

import time


class Clock:
    def now(self) -> float:
        return time.time()


class ManualClock(Clock):
    """A clock tests move forward: `advance(seconds)`."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        self._now += seconds
        return self._now
