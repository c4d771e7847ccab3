"""Logging set-up: one line per event, with connection id, protocol, remote address and user.

Lives here: the formatter and `setup_logging`. Every module logs through
`logging.getLogger("casella.<area>")` and passes `extra=conn.describe()` for session events.
Must never: format a password or a message body (callers never pass them).
"""

from __future__ import annotations

import logging
import sys

_FIELDS = ("conn", "proto", "remote", "user")
_process_label = ""


def set_process_label(label: str) -> None:
    """Name this process in every line (worker processes: `worker=1`)."""
    global _process_label
    _process_label = label


class LineFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), record.levelname.lower(),
                 record.name]
        if _process_label:
            parts.append(_process_label)
        for name in _FIELDS:
            value = record.__dict__.get(name)
            if value not in (None, "", "-"):
                parts.append(f"{name}={value}")
        message = record.getMessage().replace("\r", "\\r").replace("\n", "\\n")
        line = " ".join(parts) + " " + message
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def setup_logging(level: str = "info", stream: object = None) -> None:
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(LineFormatter())
    root = logging.getLogger("casella")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
