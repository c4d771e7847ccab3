"""`python -m bench` (`make bench`): choose scenarios, prepare casella and the peers, run every
case against each, print one table.

Two ways to run:
  managed (default)  the runner seeds a temporary work directory, starts casella (and, unless
                     --no-peers, its own Dovecot and Postfix, installed from Debian's packages
                     when missing), runs each case on casella then on the peers, stops them.
  --host/--port      run the selected scenarios against a server that is already running, with
                     the given user(s) and password (no seeding, no peers).

Lives here: argument parsing and the run loop. Must never: touch the system's dovecot or
postfix services, or casella's data outside the work directory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from bench import procmem, report
from bench.endpoint import Context, Endpoint
from bench.netutil import free_port, raise_nofile
from bench.profile import Profiler, summarize
from bench.scenarios import registry
from bench.seed import PASSWORD, Plan, make_hashes, seed
from bench.stats import Result, failed

PEER_LABEL = "peers"


def _log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    names = [m.NAME for m in registry()]
    p.add_argument("--only", metavar="NAMES", help="comma-separated scenarios: " +
                   ", ".join(names))
    p.add_argument("--clients", metavar="N[,N]", help="client/connection counts for the "
                   "selected scenarios (SMTP: concurrency; IDLE: connections)")
    p.add_argument("--sizes", metavar="KB[,KB]", help="message sizes in KB for smtp-ingest "
                   "(default 1,10,100)")
    p.add_argument("--duration", type=float, default=8.0,
                   help="seconds per timed load case (default 8)")
    p.add_argument("--quick", action="store_true", help="smoke run: ~1 s per case, small "
                   "mailboxes (under 2 minutes)")
    p.add_argument("--no-peers", action="store_true", help="casella only")
    p.add_argument("--no-casella", action="store_true", help="peers only")
    p.add_argument("--no-install", action="store_true",
                   help="never apt-get the peers; skip them if missing")
    p.add_argument("--workdir", type=Path, help="work directory (default: a new temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", type=Path, metavar="FILE", help="write every result as JSON")
    p.add_argument("--markdown", type=Path, metavar="FILE",
                   help="write the report (machine, command, table, notes) as Markdown")
    p.add_argument("--casella-log-level", default="info",
                   choices=["debug", "info", "warning", "error"])
    p.add_argument("--casella-workers", type=int, help="[server] workers for casella")
    p.add_argument("--profile", metavar="NAMES",
                   help="comma-separated scenarios during which py-spy records casella "
                   "(pip install py-spy); the summary is printed after the table")
    ext = p.add_argument_group("an already running server (no seeding, no peers)")
    ext.add_argument("--host", help="server address; selects this mode")
    ext.add_argument("--port", type=int, help="the scenario's own protocol port")
    ext.add_argument("--imap-port", type=int)
    ext.add_argument("--pop3-port", type=int)
    ext.add_argument("--smtp-port", type=int)
    ext.add_argument("--user", help='one user for everything, or a template: {n} is the '
                     'client number (empty for one-user scenarios), {nn} the same in two '
                     'digits, {kind} the bench user kind (e.g. "{kind}{nn}@example.com")')
    ext.add_argument("--password", help="password of the user(s)")
    ext.add_argument("--tls", action="store_true", help="implicit TLS (default off)")
    ext.add_argument("--pid", type=int, action="append", default=[],
                     help="server process id(s) to read memory from")
    ext.add_argument("--label", default="server", help="column name")
    return p


def select(only: str | None) -> list[ModuleType]:
    mods = registry()
    if not only:
        return mods
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    by_name = {m.NAME: m for m in mods}
    unknown = [w for w in wanted if w not in by_name]
    if unknown:
        raise SystemExit(f"bench: unknown scenario(s): {', '.join(unknown)}; "
                         f"choose from {', '.join(by_name)}")
    return [m for m in mods if m.NAME in wanted]


async def run_case(mod: ModuleType, ep: Endpoint, case: Any, ctx: Context,
                   profile: Any = None) -> list[Result]:
    sampler = procmem.PeakSampler(lambda: ep.pids(mod.ROLES), 0.5).start()
    t = time.monotonic()
    if profile is not None:
        profile.start(mod.NAME, case.label)
    try:
        results = await mod.run(ep, case, ctx)
    except Exception as exc:  # noqa: BLE001 - any failure is counted, not fatal
        why = f"{type(exc).__name__}: {exc}"
        results = [failed(mod.NAME, label, ep.server(mod.ROLES[0]), metric, why, higher)
                   for label, metric, higher in mod.rows(case, ctx)]
    finally:
        peak = await asyncio.to_thread(sampler.stop)
        if profile is not None:
            profile.stop()
    for r in results:
        r.detail["_column"] = ep.label
        r.detail["case_seconds"] = time.monotonic() - t
        r.detail.setdefault("peak_rss_sum", sampler.peak_rss)
        r.detail.setdefault("peak_processes", sampler.processes)
        if not r.peak_pss:
            r.peak_pss = peak
    for r in results:
        status = "" if r.ok else "  [!]"
        _log(f"  {ep.label:<8} {r.case}: {report.fmt_value(r.value)} {r.metric}"
             f"{'' if math.isnan(r.p50_ms) else f'  p50 {r.p50_ms:.1f} ms p99 {r.p99_ms:.1f} ms'}"
             f"{status}{'  ' + r.note[:160] if r.note else ''}")
    return results


def external_endpoint(args: argparse.Namespace, mods: list[ModuleType]) -> Endpoint:
    if args.password is None:
        raise SystemExit("bench: --host needs --password")
    roles = {r for m in mods for r in m.ROLES}
    imap = args.imap_port
    pop3 = args.pop3_port
    smtp = args.smtp_port
    if args.port:
        first = mods[0].ROLES[0]
        if first == "imap":
            imap = imap or args.port
        elif first == "pop3":
            pop3 = pop3 or args.port
        else:
            smtp = smtp or args.port
    pids = list(args.pid)
    return Endpoint(label=args.label, host=args.host, password=args.password, imap_port=imap,
                    pop3_port=pop3, smtp_port=smtp, tls=args.tls, user_template=args.user,
                    pid_sources={r: (lambda: pids) for r in roles})


async def managed(args: argparse.Namespace, mods: list[ModuleType], ctx: Context,
                  meta: dict[str, Any], results: list[Result],
                  labels: list[str]) -> None:
    """Run everything; `results` and `labels` fill up as it goes, so an interrupted run still
    has its table."""
    from bench.casella_target import Casella, snapshot
    from bench.peers import install
    from bench.peers.dovecot import Dovecot
    from bench.peers.postfix import Postfix

    # SIGTERM/SIGINT cancel the run; the finally below then stops every server it started.
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    if task is not None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, task.cancel)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="casella-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)   # Dovecot's and Postfix's unprivileged processes traverse it
    meta["workdir"] = str(work)
    notes: list[str] = meta.setdefault("notes", [])
    plan = Plan()
    for m in mods:
        m.needs(plan, ctx)

    peers_ok = not args.no_peers
    if peers_ok:
        why = install.ensure(install.DOVECOT_PACKAGES + install.POSTFIX_PACKAGES, _log,
                             allow_install=not args.no_install)
        why = why or Dovecot.available() or Postfix.available()
        if why:
            peers_ok = False
            notes.append(f"peer column skipped: {why}")
            _log(f"peers skipped: {why}")
    ctx.smtp_source = shutil.which("smtp-source")
    if ctx.smtp_source is None:
        notes.append("smtp-source (package postfix) is not installed: SMTP ingest ran with "
                     "the bench's asyncio client only")

    source = None
    if not args.no_casella and "casella" not in sys.modules:
        source = snapshot(work / "src")
        _log(f"measuring a snapshot of casella/ in {source}")
    casella = None if args.no_casella else Casella(work / "casella",
                                                    log_level=args.casella_log_level,
                                                    workers=args.casella_workers,
                                                    source=source)
    mail_root = work / "peers" / "mail" if peers_ok else None
    if casella is not None:
        casella.configure()
    hashes = make_hashes()
    timings = await seed(plan, hashes, casella_data=casella.data_dir if casella else None,
                         mail_root=mail_root, log=_log)
    meta["seed"] = timings
    _log(f"seeded in {timings['seed_total_s']:.0f} s")

    endpoints: list[Endpoint] = []
    dovecot = postfix = None
    profiler = None
    try:
        if casella is not None:
            casella.start()
            _log(f"casella listening (start-up {casella.start_seconds:.1f} s): smtp "
                 f"{casella.smtp_port}, imap {casella.imap_port}, pop3 {casella.pop3_port}")
            notes.extend(casella.notes)
            endpoints.append(Endpoint(
                label="casella", host="127.0.0.1", password=PASSWORD,
                imap_port=casella.imap_port, pop3_port=casella.pop3_port,
                smtp_port=casella.smtp_port,
                servers={"smtp": "casella", "imap": "casella", "pop3": "casella"},
                pid_sources={r: casella.pids for r in ("smtp", "imap", "pop3")},
                synchronous_delivery=True, count_inbox=casella.inbox_count,
                index_status=casella.index_status))
            if args.profile:
                profiler = Profiler(args.profile, casella.pids, work)
        if peers_ok and mail_root is not None:
            users = list(plan.boxes)
            dovecot = Dovecot(work / "peers" / "dovecot", mail_root, free_port(), free_port())
            postfix = Postfix(work / "peers" / "postfix", mail_root, free_port())
            try:
                dovecot.configure({u: hashes[plan.hash_kind(u)] for u in users})
                dovecot.start()
                postfix.configure(users)
                postfix.start()
                notes.extend(dovecot.notes)
                _log(f"dovecot listening: imap {dovecot.imap_port}, pop3 {dovecot.pop3_port}; "
                     f"postfix smtp {postfix.smtp_port}")
                endpoints.append(Endpoint(
                    label=PEER_LABEL, host="127.0.0.1", password=PASSWORD,
                    imap_port=dovecot.imap_port, pop3_port=dovecot.pop3_port,
                    smtp_port=postfix.smtp_port,
                    servers={"smtp": "postfix", "imap": "dovecot", "pop3": "dovecot"},
                    pid_sources={"smtp": postfix.pids, "imap": dovecot.pids,
                                 "pop3": dovecot.pids},
                    maildir_root=mail_root))
            except Exception as exc:  # noqa: BLE001 - any failure is counted, not fatal
                notes.append(f"peer column skipped: {exc}")
                _log(f"peers skipped: {exc}")
        if not endpoints:
            raise SystemExit("bench: nothing to run against")
        labels.extend(e.label for e in endpoints)
        for m in mods:
            _log(f"{m.NAME}: {m.TITLE}")
            if getattr(m, "FRESH_SERVER", False):
                # Memory per connection is a difference: start from fresh servers, not from
                # what earlier scenarios left (a Python heap's high-water mark, Dovecot
                # processes still exiting).
                for server in (casella, dovecot):
                    if server is not None and server.pids():
                        server.stop()
                        server.start()
            for case in m.cases(ctx):
                for ep in endpoints:
                    prof = profiler if ep.label == "casella" else None
                    results.extend(await run_case(m, ep, case, ctx, prof))
    finally:
        if casella is not None:
            errors = casella.errors()
            if errors:
                notes.append(f"casella logged {len(errors)}+ error lines, first: "
                             f"{errors[0][:200]}")
            casella.stop()
        for peer in (dovecot, postfix):
            if peer is not None:
                warn = peer.warnings()
                if warn:
                    meta.setdefault("peer_warnings", {})[peer.name] = warn
                peer.stop()
        if profiler is not None:
            meta["profiles"] = {str(f): summarize(f) for f in profiler.files if f.exists()}
        if not args.keep and not args.workdir and not profiler:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    mods = select(args.only)
    soft, hard = raise_nofile()
    clients = [int(x) for x in args.clients.split(",")] if args.clients else None
    sizes = [int(x) * 1024 for x in args.sizes.split(",")] if args.sizes else None
    ctx = Context(quick=args.quick, duration=args.duration, clients=clients, sizes=sizes,
                  log=_log)
    started = time.monotonic()
    meta: dict[str, Any] = {
        "started": report.now_utc(), "mode": "quick" if args.quick else "full",
        "command": "python -m bench " + " ".join(shlex.quote(a) for a in (argv if argv is not
                                                                           None else sys.argv[1:])),
        "machine": report.machine(), "load_start": report.loadavg(),
        "nofile": [soft, hard], "notes": [],
    }
    if soft < 10_500 and any(m.NAME == "imap-idle" for m in mods):
        meta["notes"].append(f"open-file limit is only {soft}: the bench and each server need "
                             "one descriptor per IDLE connection (10,000)")
    if args.host:
        ep = external_endpoint(args, mods)
        ctx.smtp_source = shutil.which("smtp-source")

        async def ext() -> list[Result]:
            out: list[Result] = []
            for m in mods:
                for case in m.cases(ctx):
                    out.extend(await run_case(m, ep, case, ctx))
            return out
        results = asyncio.run(ext())
        labels = [ep.label]
    else:
        results = []
        labels = []
        try:
            asyncio.run(managed(args, mods, ctx, meta, results, labels))
        except (asyncio.CancelledError, KeyboardInterrupt):
            meta["notes"].insert(0, "INTERRUPTED: the table is incomplete")
            meta["mode"] += ", interrupted"
        if not labels:
            return 1
    meta["wall_s"] = time.monotonic() - started
    meta["load_end"] = report.loadavg()
    print()
    print(f"casella bench, {meta['started']}, {meta['mode']} run, "
          f"{meta['wall_s'] / 60:.1f} min; load {meta['load_start']} -> {meta['load_end']}")
    print("×peer: how many times better casella is (rates: casella/peer; times and memory: "
          "peer/casella); '!' marks a failed or unverified case")
    print()
    print(report.text_table(results, labels))
    notes = report.notes_of(results, meta)
    if notes:
        print("\nNotes:")
        for n in notes:
            print(f"  - {n}")
    for path, summary in meta.get("profiles", {}).items():
        print(f"\npy-spy profile of casella ({path}):\n{summary}")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "labels": labels,
                                         "results": [r.as_dict() for r in results]},
                                        indent=1, default=str))
    if args.markdown:
        args.markdown.write_text(report.markdown_report(results, labels, meta))
    # A peer's failed case (say Dovecot not reaching every IDLE client) is its result, shown
    # with '!' and a note; the exit status says whether casella's own cases all held.
    ours = [r for r in results if r.server not in ("dovecot", "postfix")]
    return 0 if ours and all(r.ok for r in ours) else 1
