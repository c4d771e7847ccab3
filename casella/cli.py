"""The admin command line: `casella [--config FILE] serve | domain | user | alias | queue |
sieve | index` (and the commands of casella.cli_outbound, casella.cli_move, casella.cli_admin,
casella.cli_store and casella.cli_index).

Lives here: argument parsing, the exit-code rules of DESIGN.md (0 ok; 1 and one line on stderr
for a user error; 2 for bad usage) and plain-text output for an admin. Every command goes
through the store contract, never SQL. Must never: print a password or a traceback for a user
error, or run the store's start-up repair (a live server may be writing beside it).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import secrets
import sys
import time
from typing import Any, Awaitable, Callable

from casella import cli_admin, cli_index, cli_move, cli_outbound, cli_sieve, cli_store
from casella.config import Config, format_size, human_size, load_config, parse_size
from casella.errors import CasellaError, UserError


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2 with one line, as argparse does
        self.print_usage(sys.stderr)
        print(f"casella: {message}", file=sys.stderr)
        raise SystemExit(2)


def _read_password(args: argparse.Namespace, required: bool = True) -> str | None:
    if getattr(args, "password_stdin", False):
        line = sys.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise UserError("no password on standard input")
        return password
    if getattr(args, "password", None) is not None:
        if not args.password:
            raise UserError("the password is empty")
        return str(args.password)
    if not required:
        return None
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Again: "):
            raise UserError("the passwords differ")
        if not first:
            raise UserError("the password is empty")
        return first
    raise UserError("give --password-stdin (recommended) or --password")


async def _with_store(config: Config, fn: Callable[[Any], Awaitable[int]]) -> int:
    from casella.server import open_store
    store = open_store(config)
    await store.open(repair=False)
    try:
        return await fn(store)
    finally:
        await store.close()


# --- commands ------------------------------------------------------------------------------

def cmd_serve(config: Config, args: argparse.Namespace) -> int:
    from casella import workers
    from casella.log import setup_logging

    setup_logging(args.log_level)

    def ready(bound: dict[str, Any]) -> None:
        print(f"casella is running: data in {config.data_dir.resolve()}", flush=True)
        for name, address in bound.items():
            print(f"  {name:<12} {address}", flush=True)
        from casella.eventloop import loop_name
        processes = (f"{config.server.workers} worker processes"
                     if config.server.workers > 1 else "one process")
        print(f"  ({processes}, {loop_name(config.server.event_loop)} event loop)", flush=True)
        print("Stop with Ctrl-C.", flush=True)

    if args.demo:
        asyncio.run(_ensure_demo(config))
    return workers.serve(config, ready)


async def _ensure_demo(config: Config) -> None:
    """First run of `make serve`: a demo domain and user on loopback, and how to connect."""
    from casella.auth.passwords import hash_password
    from casella.server import open_store

    store = open_store(config)
    await store.open(repair=False)
    creds = config.data_dir / "demo-credentials.txt"
    try:
        if await store.get_account("demo@example.test") is None:
            password = secrets.token_urlsafe(12)
            if await store.get_domain("example.test") is None:
                await store.add_domain("example.test")
            await store.add_account("demo@example.test", hash_password(password),
                                    config.limits.default_quota)
            fd = os.open(creds, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(f"demo@example.test {password}\n")
        text = creds.read_text().strip() if creds.exists() else "demo@example.test (password set earlier)"
    finally:
        await store.close()
    user, _, password = text.partition(" ")
    listen = config.listen
    print("Demo account (first run created it):", flush=True)
    print(f"  user {user}  password {password or '(see ' + str(creds) + ')'}", flush=True)
    if "imaps" in listen:
        print(f"  IMAP  {listen['imaps']} (TLS, self-signed certificate in "
              f"{config.tls_cert_path})", flush=True)
    if "submission" in listen:
        print(f"  SMTP submission {listen['submission']} (STARTTLS)", flush=True)
    if "smtp" in listen:
        print(f"  try: swaks --server {listen['smtp']} --to {user}", flush=True)
    if "http" in listen:
        print(f"  customer page http://{listen['http']}/ (log in as the demo user)", flush=True)


def cmd_domain(config: Config, args: argparse.Namespace) -> int:
    async def run(store: Any) -> int:
        if args.action == "add":
            domain = await store.add_domain(args.name)
            print(f"domain {domain.name} added")
        elif args.action == "remove":
            await store.remove_domain(args.name, force=args.force)
            print(f"domain {args.name.lower()} removed")
        else:
            for d in await store.list_domains():
                users = len(await store.list_accounts(d.name))
                print(f"{d.name}\t{users} users")
        return 0
    return asyncio.run(_with_store(config, run))


def cmd_user(config: Config, args: argparse.Namespace) -> int:
    from casella.auth.passwords import hash_password

    async def run(store: Any) -> int:
        action = args.action
        if action == "add":
            password = _read_password(args)
            quota = parse_size_arg(args.quota) if args.quota else config.limits.default_quota
            acct = await store.add_account(args.address, hash_password(password or ""), quota)
            print(f"user {acct.address} added (quota {format_size(quota)})")
        elif action == "passwd":
            password = _read_password(args)
            if await store.get_account(args.address) is None:
                raise UserError(f"user {args.address} does not exist")
            await store.set_password(args.address, hash_password(password or ""))
            print(f"password of {args.address.lower()} changed")
        elif action == "quota":
            await store.set_quota(args.address, parse_size_arg(args.size))
            print(f"quota of {args.address.lower()} set to {format_size(parse_size_arg(args.size))}")
        elif action == "show":
            acct = await store.get_account(args.address)
            if acct is None:
                raise UserError(f"user {args.address} does not exist")
            print(f"user      {acct.address}")
            print(f"created   {time.strftime('%Y-%m-%d %H:%M', time.gmtime(acct.created))} UTC")
            if acct.quota_bytes:
                pct = 100.0 * acct.used_bytes / acct.quota_bytes
                print(f"quota     {human_size(acct.used_bytes)} of {human_size(acct.quota_bytes)} "
                      f"used ({pct:.1f}%)")
            else:
                print(f"quota     {human_size(acct.used_bytes)} used (unlimited)")
            print(f"messages  {acct.used_messages}")
            if acct.pop3_delete is not None or acct.pop3_expire_days is not None:
                days = acct.pop3_expire_days if acct.pop3_expire_days is not None \
                    else config.pop3.expire_days
                print(f"pop3      delete = {acct.pop3_delete or config.pop3.delete}, "
                      f"expire_days = {days} (the account's own choice)")
            for line in await cli_outbound.usage_lines(store, config, acct):
                print(line)
            print("mailboxes")
            print(f"  {'name':<24} {'messages':>8} {'unseen':>7} {'size':>11}  special-use")
            for mb in await store.list_mailboxes(acct.id):
                print(f"  {mb.name:<24} {mb.messages:>8} {mb.unseen:>7} {human_size(mb.size):>11}"
                      f"  {mb.special_use or ''}{'' if mb.selectable else ' (no messages: parent only)'}")
        elif action == "list":
            for acct in await store.list_accounts(args.domain):
                quota = human_size(acct.quota_bytes) if acct.quota_bytes else "unlimited"
                print(f"{acct.address}\t{human_size(acct.used_bytes)} of {quota}\t"
                      f"{acct.used_messages} messages")
        elif action == "forward":
            await cli_sieve.forward_command(store, config, args)
        elif action in ("hold-sending", "release-sending"):
            await cli_outbound.hold_command(store, args, action == "hold-sending")
        elif action == "remove":
            await store.remove_account(args.address)
            print(f"user {args.address.lower()} removed with all its mail")
        return 0
    return asyncio.run(_with_store(config, run))


def cmd_alias(config: Config, args: argparse.Namespace) -> int:
    async def run(store: Any) -> int:
        if args.action == "add":
            alias = await store.add_alias(args.source, args.dest)
            print(f"alias {alias.source} -> {', '.join(alias.destinations)}")
        elif args.action == "remove":
            await store.remove_alias(args.source)
            print(f"alias {args.source.lower()} removed")
        else:
            for alias in await store.list_aliases():
                print(f"{alias.source}\t{', '.join(alias.destinations)}")
        return 0
    return asyncio.run(_with_store(config, run))


def _store_run(config: Config, fn: Callable[[Any], Awaitable[int]]) -> int:
    return asyncio.run(_with_store(config, fn))


def cmd_auth(config: Config, args: argparse.Namespace) -> int:
    import ipaddress

    async def run(store: Any) -> int:
        target = args.target.strip()
        try:
            key = f"ip:{ipaddress.ip_address(target)}"
        except ValueError:
            from casella.mail.addresses import normalize_address
            key = f"user:{normalize_address(target)}"
        if await store.auth_clear([key]):
            print(f"{target}: failed logins forgotten, block lifted")
        else:
            print(f"{target}: nothing to unblock")
        return 0
    return asyncio.run(_with_store(config, run))


def parse_size_arg(value: str) -> int:
    try:
        return parse_size(value)
    except ValueError:
        raise UserError(f"bad size {value!r}: use 512K, 50M, 1G or a byte count") from None


# --- parser --------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="casella", description="casella mail server")
    p.add_argument("--config", metavar="FILE", help="config file (default: $CASELLA_CONFIG, "
                   "./casella.toml, or development defaults)")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    s = sub.add_parser("serve", help="run the server")
    s.add_argument("--demo", action="store_true",
                   help="create a demo domain and user on first run and print how to connect")
    s.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    s.set_defaults(func=cmd_serve)

    d = sub.add_parser("domain", help="hosted domains")
    dsub = d.add_subparsers(dest="action", required=True, parser_class=_Parser)
    x = dsub.add_parser("add")
    x.add_argument("name")
    x = dsub.add_parser("remove")
    x.add_argument("name")
    x.add_argument("--force", action="store_true", help="also remove its users and aliases")
    dsub.add_parser("list")
    d.set_defaults(func=cmd_domain)

    u = sub.add_parser("user", help="mail accounts")
    usub = u.add_subparsers(dest="action", required=True, parser_class=_Parser)
    for name in ("add", "passwd"):
        x = usub.add_parser(name)
        x.add_argument("address")
        g = x.add_mutually_exclusive_group()
        g.add_argument("--password", metavar="PW", help="visible to other local users in ps; "
                       "prefer --password-stdin")
        g.add_argument("--password-stdin", action="store_true",
                       help="read the password from the first line of standard input")
        if name == "add":
            x.add_argument("--quota", metavar="SIZE", help="e.g. 1G (default: limits.default_quota)")
    x = usub.add_parser("quota")
    x.add_argument("address")
    x.add_argument("size", help="512M, 1G … or 0 for unlimited")
    x = usub.add_parser("show")
    x.add_argument("address")
    x = usub.add_parser("list")
    x.add_argument("domain", nargs="?")
    x = usub.add_parser("remove")
    x.add_argument("address")
    cli_outbound.add_user_parsers(usub)
    cli_sieve.add_user_parsers(usub)
    u.set_defaults(func=cmd_user)

    a = sub.add_parser("alias", help="aliases and catch-alls (@domain)")
    asub = a.add_subparsers(dest="action", required=True, parser_class=_Parser)
    x = asub.add_parser("add")
    x.add_argument("source", help="user@domain, or @domain for a catch-all")
    x.add_argument("dest", nargs="+")
    asub.add_parser("list")
    x = asub.add_parser("remove")
    x.add_argument("source")
    a.set_defaults(func=cmd_alias)

    au = sub.add_parser("auth", help="the brute-force defence")
    ausub = au.add_subparsers(dest="action", required=True, parser_class=_Parser)
    x = ausub.add_parser("unblock", help="forget failed logins of an IP or an address")
    x.add_argument("target", metavar="IP|ADDRESS")
    au.set_defaults(func=cmd_auth)

    # queue, limits, dkim (issue 6)
    cli_outbound.add_parsers(sub, _Parser, _store_run)
    # export, import (issue 19)
    cli_move.add_parsers(sub, _Parser, _store_run)
    # sieve (issue 20)
    cli_sieve.add_parsers(sub, _Parser, _store_run)
    # dns, token (issue 18)
    cli_admin.add_parsers(sub, _Parser, _store_run)
    # migrate (issue 19), store stats|compact (issue 21)
    cli_store.add_parsers(sub, _Parser, _store_run)
    # index (issue 21)
    cli_index.add_parsers(sub, _Parser, _store_run)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
        return int(args.func(config, args))
    except (CasellaError, UsageError) as exc:
        print(f"casella: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
