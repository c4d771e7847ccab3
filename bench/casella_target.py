"""casella as the bench runs it: a casella.toml on loopback high ports with a temporary
data_dir, seeded before start, started as a child process (`python -m casella serve`) that
inherits the raised file-descriptor limit, and stopped with SIGTERM.

Must never: use the developer's ./casella.toml or ./var, or leave the child running.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.netutil import free_port, wait_listening

REPO = Path(__file__).resolve().parent.parent
PROTOCOL_MODULES = {"smtp": "casella.smtp.server", "imap": "casella.imap.server",
                    "pop3": "casella.pop3.server"}


def snapshot(dest: Path) -> Path:
    """Copy the casella package as it is now into dest/casella and put dest first on this
    process's import path: the run measures one version of the code even while others edit
    the tree (casella imports some modules lazily, mid-run). Returns dest."""
    import shutil
    import sys

    if "casella" in sys.modules:
        raise RuntimeError("snapshot() must run before casella is imported")
    shutil.copytree(REPO / "casella", dest / "casella",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    sys.path.insert(0, str(dest))
    importlib.invalidate_caches()
    return dest


def has_protocol(name: str) -> bool:
    """Whether casella's listener module for this protocol exists in the tree."""
    try:
        return importlib.util.find_spec(PROTOCOL_MODULES[name]) is not None
    except ModuleNotFoundError:
        return False


class Casella:
    name = "casella"

    def __init__(self, work: Path, *, log_level: str = "info", workers: int | None = None,
                 source: Path | None = None, search_index: bool = True) -> None:
        self.work = work
        self.search_index = search_index
        self.source = source or REPO     # the directory holding the casella package to run
        self.data_dir = work / "data"
        self.config_path = work / "casella.toml"
        self.log_path = work / "casella.log"
        self.log_level = log_level
        self.workers = workers
        # A listener whose protocol package is not in the tree yet stays off (port None).
        self.smtp_port = free_port() if has_protocol("smtp") else None
        self.imap_port = free_port() if has_protocol("imap") else None
        self.pop3_port = free_port() if has_protocol("pop3") else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.notes: list[str] = []
        self.start_seconds = 0.0

    def wanted(self) -> dict[str, dict[str, object]]:
        """The bench's settings, section by section, each with the reason it is set."""
        want: dict[str, dict[str, object]] = {
            # TLS is off on both sides of the bench (the peers run with ssl = no).
            "auth": {"allow_plaintext_without_tls": True},
            # Thousands of clients from loopback addresses; no sending limit for the MX user.
            "limits": {"messages_per_hour": 0, "max_connections": 100_000,
                       "max_connections_per_ip": 100_000},
            # Like Dovecot's mail_max_userip_connections, raised the same way for IDLE.
            "imap": {"max_connections_per_user_ip": 100_000},
            # Postfix here runs no SPF/DKIM/DMARC milter, and the machine has no DNS.
            "inbound": {"checks": False},
            # Round five measures SEARCH TEXT with the index, and every write paying for it
            # (imaptest compares with Dovecot as installed, without an FTS plugin: off there).
            "store": {"search_index": self.search_index},
            "server": {},
        }
        if os.geteuid() == 0:
            want["server"]["allow_root"] = True    # loopback bench only
        if self.workers:
            want["server"]["workers"] = self.workers
        return want

    def configure(self) -> None:
        import typing

        from casella.config import Config

        hints = typing.get_type_hints(Config)
        lines = [
            'hostname = "mx.bench.test"',
            f'data_dir = "{self.data_dir}"',
            "[listen]",
            *(f'{name} = "127.0.0.1:{port}"' for name, port in self.ports().items()),
        ]
        for section, values in self.wanted().items():
            known = {f.name for f in dataclasses.fields(hints[section])} \
                if section in hints else set()
            lines.append(f"[{section}]")
            for key, value in values.items():
                if key not in known:
                    self.notes.append(f"casella has no setting {section}.{key} (yet): "
                                      f"the bench would set it to {value!r}")
                    continue
                text = str(value).lower() if isinstance(value, bool) else str(value)
                lines.append(f"{key} = {text}")
        self.work.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 600.0) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(self.source) + os.pathsep + env.get("PYTHONPATH", "")
        t = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "casella", "--config",
                 str(self.config_path), "serve", "--log-level", self.log_level],
                stdout=log, stderr=log, cwd=str(self.work), env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        for port in self.ports().values():
            while not wait_listening("127.0.0.1", port, 1.0):
                if self.proc.poll() is not None:
                    raise RuntimeError(f"casella exited with {self.proc.returncode}: "
                                       f"{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"casella did not listen on {port}: {self.log_tail()}")
        self.start_seconds = time.monotonic() - t

    def ports(self) -> dict[str, int]:
        ports = {"smtp": self.smtp_port, "imap": self.imap_port, "pop3": self.pop3_port}
        return {k: v for k, v in ports.items() if v is not None}

    def log_tail(self, n: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip()
                              .splitlines()[-n:])
        except OSError:
            return ""

    def pids(self) -> list[int]:
        if self.proc is None or self.proc.poll() is not None:
            return []
        return [self.proc.pid]

    async def inbox_count(self, address: str) -> int:
        """Messages in the INBOX of `address`, read through the store contract beside the
        running server, as `casella user show` does (no start-up repair)."""
        from casella.config import load_config
        from casella.server import open_store

        store = open_store(load_config(self.config_path))
        await store.open(repair=False)
        try:
            acct = await store.get_account(address)
            if acct is None:
                return -1
            mb = await store.get_mailbox(acct.id, "INBOX")
            return mb.messages if mb is not None else -1
        finally:
            await store.close()

    async def index_status(self) -> dict[str, int]:
        """The search index's counts and size (`casella index status`), read through the store
        contract beside the running server; {} for a casella without the index."""
        from casella.config import load_config
        from casella.server import open_store

        store = open_store(load_config(self.config_path))
        if not hasattr(store, "search_index_status"):
            return {}
        await store.open(repair=False)
        try:
            status = await store.search_index_status()
            return dataclasses.asdict(status)
        finally:
            await store.close()

    def errors(self) -> list[str]:
        """Tracebacks and error lines casella logged during the run (for the notes)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [ln for ln in lines if " error " in ln or "Traceback" in ln
                or " critical " in ln][:20]

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
