"""A private Postfix instance for the bench: main.cf/master.cf from bench/peers/postfix/,
a virtual mailbox map for the bench users, start/stop with `postfix -c DIR`, process ids.

Postfix delivers into the same Maildirs Dovecot reads (virtual_mailbox_base = the bench's
mail root, one uid for both), so a message sent to Postfix shows up in Dovecot's IDLE.

Must never: touch /etc/postfix/main.cf or the system's instance; leave processes running.
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
from bench.seed import DOMAIN, MAIL_UID

TEMPLATES = Path(__file__).with_name("postfix")


class Postfix(PeerServer):
    warning_markers = ("warning:", "fatal:", "panic:")
    name = "postfix"

    def __init__(self, work: Path, mail_root: Path, smtp_port: int) -> None:
        super().__init__(work, mail_root, "postfix.log")
        self.smtp_port = smtp_port
        self.conf_dir = work / "conf"

    @staticmethod
    def available() -> str | None:
        for tool in ("postfix", "smtp-source"):
            if shutil.which(tool) is None:
                return f"{tool} not found"
        return None

    def configure(self, users: list[str]) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        for sub in ("queue", "data"):
            (self.work / sub).mkdir(parents=True, exist_ok=True)
        values = {"WORK": str(self.work), "MAIL": str(self.mail_root), "UID": str(MAIL_UID),
                  "SMTP_PORT": str(self.smtp_port)}
        for name in ("main.cf", "master.cf"):
            text = (TEMPLATES / name).read_text()
            for key, value in values.items():
                text = text.replace(f"@@{key}@@", value)
            (self.conf_dir / name).write_text(text)
        # texthash: needs no postmap. The trailing slash means Maildir (virtual(8)).
        (self.work / "vmailbox").write_text("".join(
            f"{u} {DOMAIN}/{u.split('@', 1)[0]}/Maildir/\n" for u in users))
        if os.geteuid() == 0:
            shutil.chown(self.work / "data", user="postfix")

    def start(self, timeout: float = 30.0) -> None:
        # Output to a file, never a pipe: the master inherits it and a pipe would never
        # reach end-of-file. (Postfix reports its errors in maillog_file.)
        with open(self.work / "postfix.start.log", "wb") as f:
            subprocess.run(["postfix", "-c", str(self.conf_dir), "check"], check=False,
                           stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
            r = subprocess.run(["postfix", "-c", str(self.conf_dir), "start"], check=False,
                               stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise RuntimeError(f"postfix did not start{self._log_tail()}")
        pidfile = self.work / "queue" / "pid" / "master.pid"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                self._pid = int(pidfile.read_text().strip())
                break
            except (OSError, ValueError):
                time.sleep(0.05)
        if not wait_listening("127.0.0.1", self.smtp_port, deadline - time.monotonic()):
            raise RuntimeError(f"postfix is not listening on {self.smtp_port}{self._log_tail()}")

    def stop(self, timeout: float = 20.0) -> None:
        if not self._pid:
            return
        tree = procmem.process_tree([self._pid])
        with open(self.work / "postfix.start.log", "ab") as f:
            subprocess.run(["postfix", "-c", str(self.conf_dir), "stop"], check=False,
                           stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and os.path.exists(f"/proc/{self._pid}"):
            time.sleep(0.1)
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._pid = 0
