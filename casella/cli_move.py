"""The admin commands that move mail in and out: `casella export DIR` and `casella import DIR`
or `casella import --from-dovecot MAILDIR_ROOT` (issue 19; casella.move does the work).

Lives here: their argument parsing and one-line results. Must never: print a password hash,
or run the store's start-up repair.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from casella.config import Config
from casella.errors import UserError


def _selection(args: argparse.Namespace) -> Any:
    from casella.move.common import Selection
    return Selection(args.account or (), args.domain or ())


async def _guarded(progress: Any, work: Awaitable[int]) -> int:
    """Run an export or import: a file the system refuses (permissions, a full disk) is a
    one-line error, and the progress bar's line is ended before it."""
    try:
        return await work
    except OSError as exc:
        progress.interrupt()
        where = f"{exc.filename}: " if exc.filename else ""
        raise UserError(f"{where}{exc.strerror or exc}") from None
    except BaseException:
        progress.interrupt()
        raise


def export_command(store: Any, args: argparse.Namespace) -> Any:
    from casella.move.exporter import export_store
    from casella.move.progress import Progress

    progress = Progress("exported", 0)

    async def run() -> int:
        accounts, messages = await export_store(store, Path(args.dir), _selection(args),
                                                progress)
        print(f"exported {accounts} accounts, {messages} messages to {args.dir}")
        return 0
    return _guarded(progress, run())


def import_command(store: Any, config: Config, args: argparse.Namespace) -> Any:
    from casella.move.progress import Progress

    progress = Progress("imported", 0)

    async def run() -> int:
        if args.from_dovecot is None:
            from casella.move.importer import import_export

            accounts, messages = await import_export(store, Path(args.dir), _selection(args),
                                                     progress)
            print(f"imported {accounts} accounts, {messages} new messages from {args.dir}")
            return 0
        from casella.cli import parse_size_arg
        from casella.move.dovecot_import import import_dovecot

        quota = parse_size_arg(args.quota) if args.quota else config.limits.default_quota
        accounts, messages, locked = await import_dovecot(
            store, Path(args.from_dovecot), _selection(args), default_quota=quota,
            mapping=Path(args.map) if args.map else None,
            passwd_file=Path(args.passwd_file) if args.passwd_file else None,
            uidl_format=args.pop3_uidl_format, progress=progress)
        print(f"imported {accounts} accounts, {messages} new messages from "
              f"{args.from_dovecot}")
        for address in locked:
            print(f"{address} has no password yet: casella user passwd {address}")
        return 0
    return _guarded(progress, run())


def add_parsers(sub: Any, parser_class: type, with_store: Callable[..., int]) -> None:
    """Add `export` and `import` to casella's subcommands."""
    from casella.move.dovecot import DEFAULT_UIDL_FORMAT

    def selection_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--account", action="append", metavar="ADDRESS",
                       help="only this account (repeatable)")
        p.add_argument("--domain", action="append", metavar="DOMAIN",
                       help="only the accounts of this domain (repeatable)")

    e = sub.add_parser("export", help="write accounts, mailboxes and mail to a directory "
                       "(docs/export-format.md)")
    e.add_argument("dir", metavar="DIR", help="an empty or new directory")
    selection_options(e)
    e.set_defaults(func=lambda config, args: with_store(
        config, lambda store: export_command(store, args)))

    i = sub.add_parser("import", help="read an export, or a Dovecot Maildir tree; a re-run "
                       "continues where the last one stopped")
    i.add_argument("dir", metavar="DIR", nargs="?", help="a directory `casella export` wrote")
    i.add_argument("--from-dovecot", metavar="MAILDIR_ROOT",
                   help="import Dovecot Maildirs: MAILDIR_ROOT/<domain>/<user>[/Maildir]")
    i.add_argument("--map", metavar="FILE", help="with --from-dovecot: `address path` lines "
                   "naming each user's home or Maildir (relative to MAILDIR_ROOT)")
    i.add_argument("--passwd-file", metavar="FILE", help="with --from-dovecot: Dovecot's "
                   "passwd-file; its argon2 hashes become the accounts' passwords")
    i.add_argument("--pop3-uidl-format", default=DEFAULT_UIDL_FORMAT, metavar="FORMAT",
                   help="with --from-dovecot: Dovecot's pop3_uidl_format (default "
                   f"{DEFAULT_UIDL_FORMAT.replace('%', '%%')})")
    i.add_argument("--quota", metavar="SIZE", help="with --from-dovecot: the quota of new "
                   "accounts (default: limits.default_quota)")
    selection_options(i)

    def run_import(config: Config, args: argparse.Namespace) -> int:
        if (args.dir is None) == (args.from_dovecot is None):
            i.print_usage(sys.stderr)
            print("casella: import: give DIR or --from-dovecot MAILDIR_ROOT", file=sys.stderr)
            return 2
        if args.from_dovecot is None and (args.map or args.passwd_file or args.quota):
            raise UserError("--map, --passwd-file and --quota go with --from-dovecot")
        return with_store(config, lambda store: import_command(store, config, args))
    i.set_defaults(func=run_import)
