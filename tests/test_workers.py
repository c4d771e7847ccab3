"""`[server] workers = N` (issue 8 §3): N processes share the listening sockets; a change
committed in one worker reaches IDLE sessions in the others; a worker that dies is replaced;
SIGTERM stops them all and the supervisor exits 0."""

from __future__ import annotations

import imaplib
import os
import poplib
import re
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

CASELLA = str(Path(sys.executable).parent / "casella")


def children(pid: int) -> set[int]:
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry))
    return out


def serving_pid(client: imaplib.IMAP4 | poplib.POP3, pids: set[int]) -> int | None:
    """Which worker holds the server side of this client's connection (via /proc)."""
    client_port = client.sock.getsockname()[1]
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[2].split(":")[1], 16) == client_port:
            inodes.add(fields[9])
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return pid
        except OSError:
            continue
    return None


def running(pids: set[int]) -> list[int]:
    """The pids still running (a zombie waiting for init to reap it has stopped)."""
    out = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            out.append(pid)
    return out


def idle(client: imaplib.IMAP4) -> None:
    client.send(client._new_tag() + b" IDLE\r\n")
    assert client.readline().startswith(b"+")


def test_workers_share_sockets_and_changes(tmp_path: Path) -> None:
    cfg = tmp_path / "casella.toml"
    cfg.write_text(f'hostname = "mail.example.test"\ndata_dir = "{tmp_path / "var"}"\n'
                   '[server]\nallow_root = true\nworkers = 2\nshutdown_grace_seconds = 1\n'
                   '[auth]\nallow_plaintext_without_tls = true\n'
                   '[listen]\nimap = "127.0.0.1:0"\nsmtp = "127.0.0.1:0"\n'
                   'pop3 = "127.0.0.1:0"\n')
    run = [CASELLA, "--config", str(cfg)]
    subprocess.run(run + ["domain", "add", "example.test"], check=True, capture_output=True)
    subprocess.run(run + ["user", "add", "w@example.test", "--password-stdin"], input=b"pw\n",
                   check=True, capture_output=True)
    proc = subprocess.Popen(run + ["serve"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True)
    clients: list[imaplib.IMAP4] = []
    try:
        ports = {}
        assert proc.stdout is not None
        for line in proc.stdout:
            m = re.match(r"\s+(\w+)\s+127\.0\.0\.1:(\d+)$", line.rstrip())
            if m:
                ports[m.group(1)] = int(m.group(2))
            if line.startswith("Stop with"):
                break
        deadline = time.monotonic() + 30
        while len(children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = children(proc.pid)
        assert len(workers) == 2

        by_worker: dict[int, imaplib.IMAP4] = {}
        for _ in range(40):
            c = imaplib.IMAP4("127.0.0.1", ports["imap"])
            c.login("w@example.test", "pw")
            c.select("INBOX")
            clients.append(c)
            pid = serving_pid(c, workers)
            assert pid is not None
            by_worker.setdefault(pid, c)
            if len(by_worker) == 2:
                break
        assert len(by_worker) == 2, "every connection went to the same worker"
        first, second = by_worker.values()

        idle(second)
        first.append("INBOX", None, None, b"Subject: from worker one\r\n\r\nhello\r\n")
        second.sock.settimeout(10)
        assert second.readline() == b"* 1 EXISTS\r\n"
        second.send(b"DONE\r\n")
        while not (line := second.readline()).split(b" ", 2)[1:2] == [b"OK"]:
            assert line.startswith(b"* "), line

        idle(first)
        idle(second)
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=30) as s:
            s.sendmail("x@remote.example", ["w@example.test"], b"Subject: mx\r\n\r\nbody\r\n")
        for c in (first, second):
            c.sock.settimeout(10)
            assert c.readline() == b"* 2 EXISTS\r\n"

        # One POP3 session per maildrop, whichever worker serves it (RFC 1939 §8).
        pops: dict[int, poplib.POP3] = {}
        for _ in range(40):
            p = poplib.POP3("127.0.0.1", ports["pop3"], timeout=10)
            pid = serving_pid(p, workers)
            if pid in pops:
                p.quit()
                continue
            pops[pid] = p
            if len(pops) == 2:
                break
        assert len(pops) == 2
        holder, other = pops.values()
        holder.user("w@example.test")
        holder.pass_("pw")
        other.user("w@example.test")
        try:
            other.pass_("pw")
            raise AssertionError("a second POP3 session got the maildrop")
        except poplib.error_proto as exc:
            assert b"[IN-USE]" in exc.args[0]
        holder.quit()
        other.close()

        # A worker that dies is replaced, and service goes on.
        victim = next(iter(workers))
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = children(proc.pid)
            if len(now) == 2 and victim not in now:
                break
            time.sleep(0.1)
        assert len(children(proc.pid)) == 2 and victim not in children(proc.pid)
        fresh = imaplib.IMAP4("127.0.0.1", ports["imap"])
        fresh.login("w@example.test", "pw")
        assert fresh.select("INBOX")[1] == [b"2"]
        fresh.logout()
    finally:
        for c in clients:
            try:
                c.sock.close()
            except OSError:
                pass
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
            proc.wait()
    assert not children(proc.pid)


def test_workers_stop_when_the_supervisor_is_killed(tmp_path: Path) -> None:
    """A worker never outlives its supervisor (nobody would stop or restart it)."""
    cfg = tmp_path / "casella.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "var"}"\n[server]\nallow_root = true\nworkers = 2\n'
                   '[listen]\nimap = "127.0.0.1:0"\n')
    proc = subprocess.Popen([CASELLA, "--config", str(cfg), "serve"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("Stop with"):
                break
        deadline = time.monotonic() + 30
        while len(children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = children(proc.pid)
        assert len(workers) == 2
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and running(workers):
            time.sleep(0.1)
        alive = running(workers)
        for p in alive:
            os.kill(p, signal.SIGKILL)
        assert not alive, f"workers {alive} outlived the supervisor"
    finally:
        proc.kill()
        proc.wait()
