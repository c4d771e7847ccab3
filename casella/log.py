"""Logging set-up: one line per event, with connection id, protocol, remote address and user.

Lives here: the formatter, the batching handler and `setup_logging`. Every module logs
through `logging.getLogger("casella.<area>")` and passes `extra=conn.describe()` for session
events. Lines are written in batches: an info line reaches the log within `FLUSH_INTERVAL`,
a warning or error at once, and everything pending at exit and before a fork. Must never:
format a password or a message body (callers never pass them).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import TextIO

_FIELDS = ("conn", "proto", "remote", "user")
_process_label = ""

#: Longest time an info line waits in memory before it is written.
FLUSH_INTERVAL = 0.2
#: Pending text that is written at once, whatever its age.
_MAX_PENDING = 64 * 1024


def set_process_label(label: str) -> None:
    """Name this process in every line (worker processes: `worker=1`)."""
    global _process_label
    _process_label = label


class LineFormatter(logging.Formatter):
    # A busy server logs thousands of lines a second: the timestamp is formatted once per
    # second rather than once per line.
    _stamp_second = -1
    _stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._stamp_second:
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(second))
            self._stamp_second = second
        parts = [self._stamp, record.levelname.lower(), record.name]
        if _process_label:
            parts.append(_process_label)
        fields = record.__dict__
        for name in _FIELDS:
            value = fields.get(name)
            if value not in (None, "", "-"):
                parts.append(f"{name}={value}")
        message = record.getMessage()
        if "\r" in message or "\n" in message:
            message = message.replace("\r", "\\r").replace("\n", "\\n")
        parts.append(message)
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class BatchingHandler(logging.Handler):
    """Writes formatted lines to a text stream a batch at a time, one write per batch
    instead of one per line: under load the per-line write was a real share of a session's
    cost. A daemon thread writes what an info line left pending after `interval`; warnings
    and errors, a full buffer, `flush()` (at exit: logging.shutdown) and a fork write at once.
    """

    def __init__(self, stream: TextIO, interval: float = FLUSH_INTERVAL) -> None:
        super().__init__()
        self.stream = stream
        self.interval = interval
        self._pending: list[str] = []
        self._size = 0
        self._wake = threading.Event()
        self._thread_pid = 0          # the process whose flusher thread is running
        os.register_at_fork(before=self.flush, after_in_child=self._after_fork)

    def emit(self, record: logging.LogRecord) -> None:
        # Handler.handle holds self.lock around this call.
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        self._pending.append(line)
        self._size += len(line)
        if record.levelno >= logging.WARNING or self._size >= _MAX_PENDING:
            self._write_pending()
            return
        if self._thread_pid != os.getpid():
            self._thread_pid = os.getpid()
            threading.Thread(target=self._flusher, name="log-flush", daemon=True).start()
        self._wake.set()

    def _write_pending(self) -> None:
        if not self._pending:
            return
        text = "".join(self._pending)
        self._pending.clear()
        self._size = 0
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass   # the log went away (closed pipe, full disk): serving goes on

    def flush(self) -> None:
        self.acquire()
        try:
            self._write_pending()
        finally:
            self.release()

    def _flusher(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(self.interval)
            self._wake.clear()
            self.flush()

    def _after_fork(self) -> None:
        # Lines another thread added between the parent's flush and the fork are the
        # parent's to write; the child starts its own flusher on its first line.
        self._pending.clear()
        self._size = 0
        self._wake = threading.Event()
        self._thread_pid = 0


def setup_logging(level: str = "info", stream: TextIO | None = None) -> None:
    # No caller lookup, thread or process names: the format uses none of them, and working
    # them out was most of the cost of a log call.
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BatchingHandler(stream or sys.stderr)
    handler.setFormatter(LineFormatter())
    root = logging.getLogger("casella")
    for old in root.handlers:
        old.flush()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
