"""A private Dovecot for the migration tests: Debian's dovecot binary with a config of its own
(base_dir, state, log, passwd-file and mail all under the test's directory), IMAP and POP3
on loopback ports, homes at MAIL/<domain>/<user> with `mail_location = maildir:~/Maildir`,
as a hosting company's Dovecot keeps them (bench/peers/dovecot.py runs one the same way).

Must never: read /etc/dovecot, touch the system service, or leave a process behind (stop()
asks the master to stop, waits, and kills what is left of its own process tree).
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MAIL_UID = 5000        # as root: the mail's owner (Dovecot refuses mail access as root)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def unavailable() -> str | None:
    """Why no private Dovecot can run here, or None."""
    if shutil.which("dovecot") is None or shutil.which("doveadm") is None:
        return "dovecot is not installed (Debian packages dovecot-imapd dovecot-pop3d)"
    if os.geteuid() == 0:
        for user in ("dovecot", "dovenull"):
            try:
                pwd.getpwnam(user)
            except KeyError:
                return f"the {user} user that Debian's dovecot-core creates is missing"
    return None


class PrivateDovecot:
    def __init__(self, work: Path, users: dict[str, str],
                 pop3_uidl_format: str = "%08Xu%08Xv", save_uidl: bool = False) -> None:
        """`users`: address -> argon2 hash (casella's own hashes work unchanged)."""
        self.work = work
        self.mail = work / "mail"
        self.imap_port = free_port()
        self.pop3_port = free_port()
        self.users_file = work / "users"
        self._pid = 0
        for sub in ("run", "state", "mail"):
            (work / sub).mkdir(parents=True, exist_ok=True)
        root = os.geteuid() == 0
        uid = MAIL_UID if root else os.getuid()
        gid = MAIL_UID if root else os.getgid()
        me = pwd.getpwuid(os.getuid()).pw_name
        internal = "dovecot" if root else me
        login = "dovenull" if root else me
        if root:
            os.chown(self.mail, uid, gid)
            # The mail user must pass through the directories above its mail (pytest's
            # temporary directories are 0700).
            for p in (work, *work.parents):
                if p == Path("/"):
                    break
                os.chmod(p, os.stat(p).st_mode | 0o011)
        self.users_file.write_text("".join(f"{a}:{{ARGON2ID}}{h}::::::\n"
                                           for a, h in users.items()))
        self.conf = work / "dovecot.conf"
        self.conf.write_text(f"""\
base_dir = {work}/run
state_dir = {work}/state
instance_name = casella-test-{os.getpid()}-{self.imap_port}
log_path = {work}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = username_format=%Lu {self.users_file}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.mail}/%Ld/%Ln
}}
mail_location = maildir:~/Maildir
first_valid_uid = {uid}
first_valid_gid = {gid}
default_internal_user = {internal}
default_internal_group = {internal}
default_login_user = {login}
protocol pop3 {{
  pop3_uidl_format = {pop3_uidl_format}
  pop3_save_uidl = {"yes" if save_uidl else "no"}
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.pop3_port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    port = 0
  }}
}}
service submission-login {{
  inet_listener submission {{
    port = 0
  }}
}}
""")

    def maildir(self, address: str) -> Path:
        user, domain = address.split("@")
        return self.mail / domain / user / "Maildir"

    def start(self, timeout: float = 30.0) -> None:
        out = self.work / "dovecot.start.log"
        with open(out, "wb") as f:
            done = subprocess.run(["dovecot", "-c", str(self.conf)], stdin=subprocess.DEVNULL,
                                  stdout=f, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"dovecot did not start: {out.read_text()[-400:]}")
        pidfile = self.work / "run" / "master.pid"
        deadline = time.monotonic() + timeout
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        self._pid = int(pidfile.read_text().strip())
        for port in (self.imap_port, self.pop3_port):
            if not wait_listening(port, deadline - time.monotonic()):
                self.stop()
                raise RuntimeError(f"dovecot is not listening on {port}: {self.log_tail()}")

    def log_tail(self) -> str:
        try:
            return " | ".join((self.work / "dovecot.log").read_text().splitlines()[-5:])
        except OSError:
            return ""

    def _tree(self) -> list[int]:
        """The master and every process below it."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat", "rb") as f:
                        ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self._pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, []))
        return out

    def stop(self, timeout: float = 20.0) -> None:
        if not self._pid:
            return
        tree = self._tree()
        subprocess.run(["doveadm", "-c", str(self.conf), "stop"], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and os.path.exists(f"/proc/{self._pid}"):
            try:
                with open(f"/proc/{self._pid}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                        break
            except OSError:
                break
            time.sleep(0.1)
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._pid = 0
