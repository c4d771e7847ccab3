"""Which asyncio event loop casella runs on: uvloop (libuv, written in Cython) when it is
installed and `[server] event_loop` allows it, else the standard library's.

Lives here: `new_event_loop` and `run`, used by every place that starts a serving loop (the
single process, each worker, the supervisor, the test servers). Must never: change behaviour
beyond speed (both loops run the same protocol code), or fail start-up when uvloop is absent
and the config said "auto".
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
CHOICES = ("auto", "uvloop", "asyncio")


def loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop]:
    if choice not in CHOICES:
        raise ValueError(f"unknown event loop {choice!r}")
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def loop_name(choice: str = "auto") -> str:
    return "uvloop" if loop_factory(choice) is not asyncio.new_event_loop else "asyncio"


def new_event_loop(choice: str = "auto") -> asyncio.AbstractEventLoop:
    return loop_factory(choice)()


def run(coro: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """`asyncio.run` on the chosen loop."""
    with asyncio.Runner(loop_factory=loop_factory(choice)) as runner:
        return runner.run(coro)
