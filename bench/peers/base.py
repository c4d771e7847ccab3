"""What the two peer servers have in common: a log file, a master process id, and reading both
back for the report. Must never: start or stop anything itself."""

from __future__ import annotations

from pathlib import Path


class PeerServer:
    # Substrings that mark a log line as a warning or an error, in the peer's own wording.
    warning_markers: tuple[str, ...] = ()

    def __init__(self, work: Path, mail_root: Path, log_name: str) -> None:
        self.work = work
        self.mail_root = mail_root
        self.log = work / log_name
        self._pid = 0

    def _log_tail(self) -> str:
        try:
            return "; log: " + " | ".join(self.log.read_text().strip().splitlines()[-4:])
        except OSError:
            return ""

    def pids(self) -> list[int]:
        return [self._pid] if self._pid else []

    def warnings(self) -> list[str]:
        try:
            return [line for line in self.log.read_text().splitlines()
                    if any(marker in line for marker in self.warning_markers)][:20]
        except OSError:
            return []
