"""Admin commands for the store itself: `migrate [--status]` (issue 19) and
`store stats [--json]`, `store compact` (issue 21).

Lives here: their argument parsers (added to casella.cli's parser by `add_parsers`) and their
output, on the store contract. `migrate` and `store compact` work on a store that is not
open, since opening refuses a schema at another version. Follows casella.cli's rules: exit 0
on success, one line on stderr and exit 1 for a user error (a schema newer than this casella,
too little free disk), 2 for bad usage. Must never: run SQL or touch the store's files itself.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from casella.config import Config, human_size


async def migrate_command(store: Any, args: argparse.Namespace) -> int:
    status = await store.schema_status()
    if args.status:
        _print_status(status)
        return 0
    if status.version == status.known:
        print(f"the database schema is at version {status.version}, as this casella needs: "
              "nothing to do")
        return 0
    if status.version == 0:
        print(f"no database yet: creating it at version {status.known}", flush=True)
    elif status.version < status.known:
        print(f"the database schema is version {status.version}, this casella needs "
              f"{status.known}: {len(status.pending)} steps in one transaction (if one fails, "
              "nothing changes)", flush=True)
    started = time.monotonic()

    def progress(version: int, title: str) -> None:
        print(f"  step {version} of {status.known}: {title}", flush=True)

    applied = await store.migrate(progress)
    print(f"the database schema is now version {status.known} ({len(applied)} steps applied "
          f"in {time.monotonic() - started:.1f} s)")
    return 0


def _print_status(status: Any) -> None:
    if status.version == 0:
        print(f"no database yet; this casella creates it at version {status.known}")
        return
    print(f"database schema version {status.version}; this casella knows version "
          f"{status.known}")
    if status.version > status.known:
        print("the database is newer than this casella: upgrade casella")
    elif status.pending:
        print(f"{len(status.pending)} steps pending; run `casella migrate`:")
        for version, title in status.pending:
            print(f"  {version:>3}  {title}")
    else:
        print("nothing pending")
    if status.applied:
        print("applied:")
        print(f"  {'step':>4}  {'when (UTC)':<16}  by casella")
        for step in status.applied:
            when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(step.applied_at))
            print(f"  {step.version:>4}  {when:<16}  {step.casella_version}")
    else:
        print("no steps recorded (they were applied before casella kept a record)")


async def stats_command(store: Any, config: Config, args: argparse.Namespace) -> int:
    s = await store.space_stats()
    if args.json:
        print(json.dumps(dataclasses.asdict(s), indent=2))
        return 0
    online = {
        "incremental": "the server gives free pages back by itself",
        "none": "free pages are reused, but only `casella store compact` gives them back",
        "full": "free pages go back at every commit",
    }.get(s.auto_vacuum, "")
    print(f"data_dir        {config.data_dir}")
    print(f"database        {human_size(s.database_bytes)} ({s.database_bytes} bytes, pages of "
          f"{s.page_size})")
    print(f"  used          {human_size(s.used_bytes)}")
    print(f"  free          {human_size(s.free_bytes)} (pages on the free list)")
    print(f"  reclaimable   {human_size(s.reclaimable_bytes)} (about what `casella store compact` "
          "gives back)")
    print(f"  WAL           {human_size(s.wal_bytes)}")
    print(f"  auto_vacuum   {s.auto_vacuum}: {online}")
    print(f"  schema        version {s.schema_version}")
    print(f"body files      {s.blob_files} ({human_size(s.blob_bytes)})")
    print(f"messages        {s.messages}")
    return 0


async def compact_command(store: Any, config: Config) -> int:
    def starting(size: int) -> None:
        print(f"compacting the database in {config.data_dir} ({human_size(size)}): this needs "
              "about that much free disk while it runs (a temporary copy, and the write-ahead "
              "log beside the database), and every write (deliveries, IMAP and POP3 changes) "
              "waits until it ends", flush=True)

    started = time.monotonic()
    result = await store.compact(starting)
    print(f"compacted in {time.monotonic() - started:.1f} s: {human_size(result.before_bytes)} -> "
          f"{human_size(result.after_bytes)} "
          f"({human_size(max(result.before_bytes - result.after_bytes, 0))} given back); "
          f"auto_vacuum is now {result.auto_vacuum}")
    return 0


def _closed_store(config: Config, fn: Callable[[Any], Any]) -> int:
    """Run `fn(store)` on a store that is not opened (see the module docstring)."""
    from casella.server import open_store

    return int(asyncio.run(fn(open_store(config))))


def add_parsers(sub: Any, parser_class: type, with_store: Callable[..., int]) -> None:
    """Add `migrate` and `store` to casella's subcommands. `with_store(config, fn)` runs
    `fn(store)` with an opened store and returns its exit code."""
    m = sub.add_parser("migrate", help="bring the database schema up to this casella's version")
    m.add_argument("--status", action="store_true",
                   help="show the schema's version, this casella's, and the steps pending "
                        "and applied; change nothing")
    m.set_defaults(func=lambda config, args: _closed_store(
        config, lambda store: migrate_command(store, args)))

    s = sub.add_parser("store", help="the store's disk space")
    ssub = s.add_subparsers(dest="action", required=True, parser_class=parser_class)
    x = ssub.add_parser("stats", help="database size, used, free and reclaimable, WAL, body "
                                      "files, messages")
    x.add_argument("--json", action="store_true", help="print the numbers as JSON")
    x.set_defaults(func=lambda config, args: with_store(
        config, lambda store: stats_command(store, config, args)))
    x = ssub.add_parser("compact", help="rewrite the database without its free space and "
                                        "switch it to giving space back by itself (needs the "
                                        "database's size in free disk; blocks writers)")
    x.set_defaults(func=lambda config, args: _closed_store(
        config, lambda store: compact_command(store, config)))
