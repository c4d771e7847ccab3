"""Metrics across worker processes (issue 18 §6): with `[server] workers = 2` every worker
writes its counts under data_dir/metrics, which the supervisor empties at start-up; the sum
over the files is what /metrics shows (casella.metrics.render_directory reads it the same
way). A worker that dies no longer counts for the open connections, and the counters it had
stay in the totals."""

from __future__ import annotations

import imaplib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from casella.metrics import render_directory
from tests.http.conftest import samples, value
from tests.test_workers import CASELLA, children, running, serving_pid


def test_counts_are_summed_over_workers_and_a_dead_worker_is_marked(tmp_path: Path) -> None:
    data = tmp_path / "var"
    cfg = tmp_path / "casella.toml"
    cfg.write_text(f'hostname = "mail.example.test"\ndata_dir = "{data}"\n'
                   '[server]\nallow_root = true\nworkers = 2\nshutdown_grace_seconds = 1\n'
                   '[auth]\nallow_plaintext_without_tls = true\n'
                   '[listen]\nimap = "127.0.0.1:0"\n')
    run = [CASELLA, "--config", str(cfg)]
    subprocess.run(run + ["domain", "add", "example.test"], check=True, capture_output=True)
    subprocess.run(run + ["user", "add", "w@example.test", "--password-stdin"], input=b"pw\n",
                   check=True, capture_output=True)
    stale = data / "metrics" / "counter_999999.db"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"left over from an earlier run")
    proc = subprocess.Popen(run + ["serve"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    clients: list[imaplib.IMAP4] = []
    try:
        port = 0
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.match(r"\s+imap\s+127\.0\.0\.1:(\d+)$", line.rstrip())
            if m:
                port = int(m.group(1))
            if line.startswith("Stop with"):
                break
        deadline = time.monotonic() + 30
        while len(children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = children(proc.pid)
        assert len(workers) == 2
        assert not stale.exists(), "the supervisor did not empty the metrics directory"

        # Connections until each worker serves two; one more to a worker that has its two is
        # logged out at once (the per-user limit of 10 connections per worker stays far).
        by_worker: dict[int, list[imaplib.IMAP4]] = {}
        opened = 0
        for _ in range(60):
            c = imaplib.IMAP4("127.0.0.1", port)
            c.login("w@example.test", "pw")
            opened += 1
            pid = serving_pid(c, workers)
            assert pid is not None
            if len(by_worker.setdefault(pid, [])) >= 2:
                c.logout()
            else:
                by_worker[pid].append(c)
                clients.append(c)
            if len(by_worker) == 2 and all(len(v) == 2 for v in by_worker.values()):
                break
        assert len(by_worker) == 2, "every connection went to the same worker"
        n = len(clients)

        def summed() -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
            return samples(render_directory(data / "metrics"))

        deadline = time.monotonic() + 30
        while value(found := summed(), "casella_connections_open", listener="imap") != n \
                and time.monotonic() < deadline:
            time.sleep(0.05)      # the logged-out ones end a moment after their BYE
        assert value(found, "casella_connections_open", listener="imap") == n
        assert value(found, "casella_connections_total", listener="imap") == opened
        assert value(found, "casella_commands_total", protocol="imap", command="LOGIN",
                     result="ok") == opened
        assert value(found, "casella_logins_total", protocol="imap", result="ok") == opened
        assert value(found, "casella_store_seconds_count", op="read") > 0

        victim, lost = next(iter(by_worker.items()))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            found = summed()
            if value(found, "casella_connections_open", listener="imap") == n - len(lost) \
                    and len(running(children(proc.pid))) == 2:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"open connections after the worker died: {found}")
        assert value(found, "casella_connections_total", listener="imap") == opened
        assert value(found, "casella_commands_total", protocol="imap", command="LOGIN",
                     result="ok") == opened
    finally:
        for c in clients:
            try:
                c.shutdown()
            except OSError:
                pass
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
