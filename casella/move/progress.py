"""Progress of an export or an import: a bar redrawn in place on a terminal, plain lines
(one per mailbox, and every so many messages) otherwise, so a log file stays readable.

Lives here: `Progress`. Must never: write to stdout (that is for results), or redraw more
often than a few times a second.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_BAR = 30
_REDRAW = 0.2          # seconds between two redraws of the bar
_LINE_EVERY = 10.0     # seconds between two "still going" lines without a terminal


class Progress:
    def __init__(self, verb: str, total: int, stream: TextIO | None = None,
                 tty: bool | None = None) -> None:
        self.verb = verb                  # "exported", "imported"
        self.total = total
        self.done = 0
        self.skipped = 0
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._where = ""
        self._drawn = 0.0
        self._lined = time.monotonic()
        self._box_start = 0

    def mailbox(self, where: str) -> None:
        """Work on a mailbox starts (`where`: "address mailbox")."""
        self._where = where
        self._box_start = self.done
        self._draw(force=True)

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._draw()

    def skip(self, n: int) -> None:
        """Messages already there (a re-run): counted as done, reported apart."""
        self.skipped += n
        self.advance(n)

    def mailbox_done(self, note: str = "") -> None:
        if not self.tty:
            count = self.done - self._box_start
            self.stream.write(f"{self._where}: {count} messages{note}\n")
            self.stream.flush()

    def note(self, text: str) -> None:
        """A line that must stay visible (a warning)."""
        if self.tty:
            self.stream.write("\r\033[K")
        self.stream.write(text + "\n")
        self.stream.flush()
        self._draw(force=True)

    def interrupt(self) -> None:
        """The work stopped with an error: end the bar's line, so the error line that follows
        starts on its own."""
        if self.tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()

    def finish(self) -> None:
        if self.tty:
            self._draw(force=True)
            self.stream.write("\n")
        skipped = f" ({self.skipped} were there already)" if self.skipped else ""
        self.stream.write(f"{self.verb} {self.done} of {self.total} messages{skipped}\n")
        self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.tty:
            if not force and now - self._drawn < _REDRAW:
                return
            self._drawn = now
            part = self.done / self.total if self.total else 1.0
            filled = int(_BAR * min(part, 1.0))
            bar = "#" * filled + "." * (_BAR - filled)
            self.stream.write(f"\r\033[K[{bar}] {self.done}/{self.total} {self._where}"[:200])
            self.stream.flush()
        elif now - self._lined >= _LINE_EVERY:
            self._lined = now
            self.stream.write(f"{self.done}/{self.total} messages ({self._where})\n")
            self.stream.flush()
