"""A private Dovecot instance for the bench: config from bench/peers/dovecot.conf, a
passwd-file with the same argon2id hashes as casella, start, stop, process ids.

Must never: use /etc/dovecot or the system service; leave its processes running (stop() waits
for the master to exit and kills what is left of its own process tree).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from bench import procmem
from bench.netutil import wait_listening
from bench.peers.base import PeerServer
from bench.seed import MAIL_UID

TEMPLATE = Path(__file__).with_name("dovecot.conf")
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")
INOTIFY_NEEDED = 16384


class Dovecot(PeerServer):
    warning_markers = ("Warning", "Error", "Fatal")
    name = "dovecot"

    def __init__(self, work: Path, mail_root: Path, imap_port: int, pop3_port: int) -> None:
        super().__init__(work, mail_root, "dovecot.log")
        self.imap_port = imap_port
        self.pop3_port = pop3_port
        self.conf = work / "dovecot.conf"
        self._inotify_was: int | None = None
        self.notes: list[str] = []

    @staticmethod
    def available() -> str | None:
        if shutil.which("dovecot") is None:
            return "dovecot not found"
        return None

    def configure(self, users: dict[str, str]) -> None:
        """Write dovecot.conf and the passwd-file: {address: argon2id hash as casella stores
        it}."""
        for sub in ("run", "state"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        text = TEMPLATE.read_text()
        for key, value in {"WORK": str(self.work), "MAIL": str(self.mail_root),
                           "UID": str(MAIL_UID), "IMAP_PORT": str(self.imap_port),
                           "POP3_PORT": str(self.pop3_port),
                           "CORES": str(os.cpu_count() or 1)}.items():
            text = text.replace(f"@@{key}@@", value)
        self.conf.write_text(text)
        lines = [f"{u}:{{ARGON2ID}}{h}::::::\n" for u, h in users.items()]
        users_file = self.work / "users"
        users_file.write_text("".join(lines))
        users_file.chmod(0o644)

    def _raise_inotify(self) -> None:
        """Dovecot watches each IDLE mailbox with one inotify instance per imap process (and
        hibernation needs it); the kernel's default of 128 instances per user makes it fall
        back to polling. Dovecot's documentation tells admins to raise the limit; the bench
        raises it for the run and restores it in stop()."""
        try:
            current = int(INOTIFY_INSTANCES.read_text())
            if current < INOTIFY_NEEDED:
                INOTIFY_INSTANCES.write_text(str(INOTIFY_NEEDED))
                self._inotify_was = current
                self.notes.append(f"fs.inotify.max_user_instances raised from {current} to "
                                  f"{INOTIFY_NEEDED} for Dovecot's IDLE during the run "
                                  "(restored afterwards)")
        except (OSError, ValueError) as exc:
            self.notes.append(f"could not raise fs.inotify.max_user_instances ({exc}): "
                              "Dovecot's IDLE falls back to polling beyond 128 processes")

    def start(self, timeout: float = 30.0) -> None:
        self._raise_inotify()
        # Output to a file, never a pipe: the daemon's children inherit it and a pipe would
        # never reach end-of-file.
        out = self.work / "dovecot.start.log"
        with open(out, "wb") as f:
            r = subprocess.run(["dovecot", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                               stdout=f, stderr=subprocess.STDOUT, check=False)
        if r.returncode != 0:
            raise RuntimeError(f"dovecot did not start: {out.read_text().strip()[-400:]}"
                               f"{self._log_tail()}")
        pidfile = self.work / "run" / "master.pid"
        deadline = time.monotonic() + timeout
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._pid = int(pidfile.read_text().strip()) if pidfile.exists() else 0
        for port in (self.imap_port, self.pop3_port):
            if not wait_listening("127.0.0.1", port, deadline - time.monotonic()):
                raise RuntimeError(f"dovecot is not listening on {port}{self._log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        try:
            self._stop(timeout)
        finally:
            if self._inotify_was is not None:
                try:
                    INOTIFY_INSTANCES.write_text(str(self._inotify_was))
                except OSError:
                    pass
                self._inotify_was = None

    def _stop(self, timeout: float) -> None:
        if not self._pid:
            return
        tree = procmem.process_tree([self._pid])
        subprocess.run(["doveadm", "-c", str(self.conf), "stop"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and os.path.exists(f"/proc/{self._pid}"):
            try:
                os.waitpid(self._pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if _zombie(self._pid):
                break
            time.sleep(0.1)
        for pid in tree:  # only processes of this instance's own tree
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._pid = 0


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return True
