"""`python -m bench.imaptest` (`make imaptest`): Dovecot's imaptest against casella, and against
a private Dovecot in the same run when Dovecot is installed.

Two parts, as issue 17 asks:
  scripted  every test group of imaptest's scripted suite, one group at a time, so each is
            counted as passed, failed, or skipped (a group whose required capability the
            server does not announce runs no command: imaptest itself reports it as neither)
  stress    imaptest's stress mode (its default mix of commands with state tracking: LOGIN,
            LIST, STATUS, SELECT, FETCH, STORE, EXPUNGE, APPEND, LOGOUT) for --secs seconds at
            each --clients count, after an untimed 10-second run that fills the mailboxes;
            every "Error:" line is an error, and the Totals line gives the commands per second

imaptest is not part of casella (it links Dovecot's libraries): when it is not on PATH the run
says so and exits 0. The suite is found in $IMAPTEST_TESTS, else ~/.cache/imaptest/tests.

Lives here: the runner and its report. Must never: touch the system's Dovecot service or
casella's data outside its own temporary work directory, or leave a server running.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import corpus
from bench.casella_target import Casella
from bench.netutil import free_port, raise_nofile

DOMAIN = "example.test"
PASSWORD = "imaptest-Password-1"
SCRIPT_USER = "testuser"
STRESS_USERS = 5
STRESS_MESSAGES = 1000      # messages in the mbox that APPEND draws from
GROUP_TIMEOUT = 120.0
WARM_UP_SECS = 10

_SUMMARY = re.compile(rb"(\d+)/(\d+) individual commands failed")
_TOTALS = re.compile(rb"Totals:\s*\n(.*)\n(.*)\n(.*)\n(.*)\n", re.MULTILINE)


def _log(msg: str) -> None:
    print(f"[imaptest {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def tests_dir() -> Path:
    return Path(os.environ.get("IMAPTEST_TESTS") or Path.home() / ".cache/imaptest/tests")


@dataclass
class GroupResult:
    name: str
    commands: int
    failed: int
    detail: str = ""

    @property
    def status(self) -> str:
        if self.commands == 0 and not self.detail:
            return "skipped"
        return "failed" if self.failed or self.detail else "passed"


@dataclass
class StressResult:
    clients: int
    secs: int
    commands: int
    errors: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.commands / self.secs if self.secs else 0.0


def groups(directory: Path) -> list[Path]:
    """The scripted suite's test files (an .mbox beside a file is its input, not a test)."""
    return sorted(p for p in directory.iterdir()
                  if p.is_file() and p.suffix != ".mbox" and not p.name.startswith("."))


def run_group(port: int, path: Path) -> GroupResult:
    cmd = ["imaptest", "host=127.0.0.1", f"port={port}", f"user={SCRIPT_USER}@{DOMAIN}",
           f"pass={PASSWORD}", f"test={path}"]
    try:
        r = subprocess.run(cmd, capture_output=True, timeout=GROUP_TIMEOUT, check=False,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return GroupResult(path.name, 0, 0, f"no answer within {GROUP_TIMEOUT:.0f} s")
    out = r.stdout + r.stderr
    counts = _SUMMARY.findall(out)
    if len(counts) != 2:
        return GroupResult(path.name, 0, 0, "imaptest printed no summary: " +
                           out.decode(errors="replace")[-300:])
    failed = sum(int(f) for f, _ in counts)
    total = sum(int(t) for _, t in counts)
    detail = ""
    if failed or b"failed:" in out:
        detail = "\n".join(line for line in out.decode(errors="replace").splitlines()
                           if line.startswith(("*** Test", " - ", "Error:")))[:2000]
    return GroupResult(path.name, total, failed, detail)


def write_mbox(path: Path, count: int) -> Path:
    """The messages APPEND draws from in stress mode: bench.corpus, as an mbox."""
    with open(path, "wb") as f:
        for i in range(count):
            data = corpus.to_lf(corpus.message(f"u1@{DOMAIN}", i).data)
            lines = [b">" + ln if ln.lstrip(b">").startswith(b"From ") else ln
                     for ln in data.split(b"\n")]
            f.write(b"From MAILER-DAEMON Mon Jan  1 00:00:00 2024\n" + b"\n".join(lines) +
                    b"\n\n")
    return path


def run_stress(port: int, mbox: Path, clients: int, secs: int) -> StressResult:
    cmd = ["imaptest", "host=127.0.0.1", f"port={port}", f"user=u%d@{DOMAIN}",
           f"users=1-{STRESS_USERS}", f"pass={PASSWORD}", f"mbox={mbox}",
           f"clients={clients}", f"secs={secs}"]
    r = subprocess.run(cmd, capture_output=True, timeout=secs + 120, check=False,
                       stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    errors = [line.decode(errors="replace") for line in out.splitlines()
              if line.startswith((b"Error:", b"Panic:", b"Fatal:"))]
    commands = 0
    m = _TOTALS.search(out)
    if m:
        commands = sum(int(n) for n in m.group(4).split() if n.isdigit())
    elif not errors:
        errors.append("imaptest printed no Totals: " + out.decode(errors="replace")[-300:])
    return StressResult(clients, secs, commands, errors)


# --- the servers --------------------------------------------------------------------------------

class CasellaServer:
    label = "casella"

    def __init__(self, work: Path, workers: int | None) -> None:
        # casella's defaults (no search index), as Dovecot runs without an FTS plugin.
        self.target = Casella(work / "casella", workers=workers, log_level="warning",
                              search_index=False)
        self.port = 0

    def start(self) -> None:
        t = self.target
        t.configure()
        env = dict(os.environ, PYTHONPATH=str(t.source))
        base = [sys.executable, "-m", "casella", "--config", str(t.config_path)]
        subprocess.run(base + ["domain", "add", DOMAIN], env=env, check=True,
                       capture_output=True)
        for local in [SCRIPT_USER] + [f"u{i}" for i in range(1, STRESS_USERS + 1)]:
            subprocess.run(base + ["user", "add", f"{local}@{DOMAIN}", "--password-stdin"],
                           input=PASSWORD.encode() + b"\n", env=env, check=True,
                           capture_output=True)
        t.start()
        assert t.imap_port is not None
        self.port = t.imap_port

    def stop(self) -> None:
        self.target.stop()

    def problems(self) -> list[str]:
        return self.target.errors()


class DovecotServer:
    label = "dovecot"

    def __init__(self, work: Path) -> None:
        from bench.peers.dovecot import Dovecot
        from bench.seed import MAIL_UID

        self.mail_root = work / "dovecot-mail"
        self.mail_root.mkdir(parents=True)
        if os.geteuid() == 0:
            os.chown(self.mail_root, MAIL_UID, MAIL_UID)
        self.port = free_port()
        self.peer = Dovecot(work / "dovecot", self.mail_root, self.port, free_port())

    def start(self) -> None:
        users = [f"{local}@{DOMAIN}"
                 for local in [SCRIPT_USER] + [f"u{i}" for i in range(1, STRESS_USERS + 1)]]
        self.peer.work.mkdir(parents=True, exist_ok=True)
        self.peer.configure({u: "" for u in users})
        # Stress mode logs in and out all the time. Dovecot runs argon2 on every login (its
        # auth cache keeps the hash, not the verification) and would measure little else, so
        # its passdb holds the password in PLAIN here. casella keeps its argon2id hashes and
        # verifies each user once (auth.verified_cache_ttl): if anything, the advantage is
        # Dovecot's.
        (self.peer.work / "users").write_text(
            "".join(f"{u}:{{PLAIN}}{PASSWORD}::::::\n" for u in users))
        self.peer.start()

    def stop(self) -> None:
        self.peer.stop()

    def problems(self) -> list[str]:
        return self.peer.warnings()


# --- the run ------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.imaptest",
                                description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", default="10,50", help="stress client counts (default 10,50)")
    p.add_argument("--secs", type=int, default=30, help="seconds per stress run (default 30)")
    p.add_argument("--rounds", type=int, default=1, help="stress runs per client count")
    p.add_argument("--only", choices=["scripted", "stress"], help="one part only")
    p.add_argument("--group", action="append", default=[],
                   help="run only this scripted group (repeatable)")
    p.add_argument("--peer", choices=["auto", "dovecot", "none"], default="auto",
                   help="also run Dovecot (auto: when installed)")
    p.add_argument("--workers", type=int, help="casella's [server] workers")
    p.add_argument("--markdown", type=Path, metavar="FILE",
                   help="also write the report as Markdown")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if shutil.which("imaptest") is None:
        print("imaptest: skipped, imaptest is not installed (it is Dovecot's tool and links "
              "Dovecot's libraries: build it from github.com/dovecot/imaptest and put it on "
              "PATH)")
        return 0
    suite = tests_dir()
    if args.only != "stress" and not suite.is_dir():
        print(f"imaptest: skipped, its scripted tests are not in {suite} (set IMAPTEST_TESTS)")
        return 0
    clients = [int(c) for c in args.clients.split(",") if c.strip()]
    raise_nofile()
    work = Path(tempfile.mkdtemp(prefix="casella-imaptest-"))
    work.chmod(0o755)       # Dovecot's auth and mail processes run as other users
    servers: list[CasellaServer | DovecotServer] = [CasellaServer(work, args.workers)]
    peer_note = ""
    if args.peer != "none":
        if shutil.which("dovecot") is not None:
            servers.append(DovecotServer(work))
        elif args.peer == "dovecot":
            raise SystemExit("imaptest: --peer dovecot, but dovecot is not installed")
        else:
            peer_note = "Dovecot is not installed: casella only"
    mbox = write_mbox(work / "stress.mbox", STRESS_MESSAGES)
    scripted: dict[str, list[GroupResult]] = {}
    stress: dict[str, list[StressResult]] = {}
    problems: dict[str, list[str]] = {}
    try:
        for server in servers:
            _log(f"starting {server.label}")
            server.start()
            try:
                if args.only != "stress":
                    paths = groups(suite)
                    if args.group:
                        paths = [p for p in paths if p.name in args.group]
                    scripted[server.label] = []
                    for path in paths:
                        res = run_group(server.port, path)
                        scripted[server.label].append(res)
                        if res.status == "failed":
                            _log(f"  {server.label} {path.name}: FAILED")
                if args.only != "scripted":
                    # Untimed: imaptest first fills each mailbox up to its target size (30
                    # messages), mostly with APPEND; measured runs then start alike on both
                    # servers, whichever ran its scripted suite or stress before.
                    run_stress(server.port, mbox, max(clients), WARM_UP_SECS)
                    stress[server.label] = []
                    for n in clients:
                        for _ in range(args.rounds):
                            res = run_stress(server.port, mbox, n, args.secs)
                            stress[server.label].append(res)
                            _log(f"  {server.label} stress {n} clients: {res.per_second:.0f} "
                                 f"commands/s, {len(res.errors)} errors")
                problems[server.label] = server.problems()
            finally:
                server.stop()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = report(scripted, stress, problems, peer_note, args)
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    ours_scripted = scripted.get("casella", [])
    ours_stress = stress.get("casella", [])
    bad = any(g.status == "failed" for g in ours_scripted) or any(s.errors for s in ours_stress)
    return 1 if bad else 0


def report(scripted: dict[str, list[GroupResult]], stress: dict[str, list[StressResult]],
           problems: dict[str, list[str]], peer_note: str, args: argparse.Namespace) -> str:
    lines = ["# imaptest", "",
             f"Command: `python -m bench.imaptest {' '.join(sys.argv[1:])}`".rstrip(), ""]
    if peer_note:
        lines += [peer_note, ""]
    labels = list(dict.fromkeys(list(scripted) + list(stress)))
    if scripted:
        lines += ["## Scripted suite", "",
                  "| server | groups | passed | failed | skipped | commands failed |",
                  "|---|---:|---:|---:|---:|---:|"]
        for label, res in scripted.items():
            count = {s: sum(1 for g in res if g.status == s)
                     for s in ("passed", "failed", "skipped")}
            lines.append(f"| {label} | {len(res)} | {count['passed']} | {count['failed']} | "
                         f"{count['skipped']} | {sum(g.failed for g in res)}/"
                         f"{sum(g.commands for g in res)} |")
        lines.append("")
        for label, res in scripted.items():
            skipped = [g.name for g in res if g.status == "skipped"]
            if skipped:
                lines.append(f"{label} skipped (capability not announced): "
                             f"{', '.join(skipped)}")
            for g in res:
                if g.status == "failed":
                    lines += ["", f"{label} FAILED {g.name}:", "```", g.detail, "```"]
        lines.append("")
    if stress:
        title = (f"## Stress (imaptest's default command mix, {STRESS_USERS} users, "
                 f"{args.secs} s per run)")
        lines += [title, "",
                  "| server | clients | commands/s | errors |", "|---|---:|---:|---:|"]
        for label in labels:
            for s in stress.get(label, []):
                lines.append(f"| {label} | {s.clients} | {s.per_second:.0f} | "
                             f"{len(s.errors)} |")
        lines.append("")
        for label in labels:
            errs = [e for s in stress.get(label, []) for e in s.errors]
            if errs:
                lines += [f"{label} stress errors (first 20 of {len(errs)}):", "```",
                          *errs[:20], "```", ""]
    for label, found in problems.items():
        if found:
            lines += [f"{label} logged (first 20):", "```", *found[:20], "```", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
