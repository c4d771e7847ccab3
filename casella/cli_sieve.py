"""Admin commands for what happens to a user's mail as it arrives (issue 20):
`sieve put|get|list|activate|deactivate|delete USER [NAME] [FILE]` and
`user forward ADDRESS DEST...|--off [--keep]`.

Lives here: their argument parsers (added to casella.cli's parser) and actions, on the store
contract; scripts are checked with the server's own bounds before they are stored. Follows
casella.cli's rules: exit 0 on success, UserError (exit 1, one line) for a user error, argparse
(exit 2) for bad usage. Must never: run SQL or store a script that does not compile.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from casella.config import Config
from casella.delivery.filtering import Filtering
from casella.delivery.sieve import SieveError
from casella.errors import UserError
from casella.store.model import Account


async def _account(store: Any, address: str) -> Account:
    acct = await store.get_account(address)
    if acct is None:
        raise UserError(f"user {address} does not exist")
    return acct  # type: ignore[no-any-return]


def _read_script(path: str | None) -> bytes:
    if path is None or path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None


async def sieve_command(store: Any, config: Config, args: argparse.Namespace) -> int:
    acct = await _account(store, args.user)
    action = args.action
    if action == "list":
        for s in await store.sieve_list(acct.id):
            print(f"{s.name}\t{s.size} bytes{'  (active)' if s.active else ''}")
    elif action == "put":
        data = _read_script(args.file)
        try:
            Filtering(store, config).compile(data)
        except SieveError as exc:
            raise UserError(f"the script does not compile: {exc}") from None
        await store.sieve_put(acct.id, args.name, data.decode("utf-8"),
                              max_scripts=config.sieve.max_scripts)
        print(f"script {args.name} stored for {acct.address}")
    elif action == "get":
        found = await store.sieve_get(acct.id, args.name)
        if found is None:
            raise UserError(f"{acct.address} has no script {args.name}")
        sys.stdout.write(found.content)
    elif action == "activate":
        await store.sieve_set_active(acct.id, args.name)
        print(f"script {args.name} is active for {acct.address}")
    elif action == "deactivate":
        await store.sieve_set_active(acct.id, None)
        print(f"no script is active for {acct.address}")
    elif action == "delete":
        await store.sieve_delete(acct.id, args.name)
        print(f"script {args.name} of {acct.address} deleted")
    return 0


async def forward_command(store: Any, config: Config, args: argparse.Namespace) -> None:
    acct = await _account(store, args.address)
    if args.off:
        if args.dest:
            raise UserError("give destinations or --off, not both")
        await store.set_forward(acct.address, [], keep=True)
        print(f"forwarding of {acct.address} turned off")
        return
    if not args.dest:
        raise UserError("give the addresses to forward to, or --off")
    limit = config.forwarding.max_destinations
    if len(args.dest) > limit:
        raise UserError(f"at most {limit} forwarding addresses (forwarding.max_destinations)")
    if any(d.strip().lower() == acct.address for d in args.dest):
        raise UserError("an account cannot forward to itself")
    await store.set_forward(acct.address, args.dest, keep=args.keep)
    copy = "a copy is kept" if args.keep else "no copy is kept"
    print(f"mail for {acct.address} is forwarded to {', '.join(args.dest)} ({copy})")


def add_parsers(sub: Any, parser_class: type[argparse.ArgumentParser],
                store_run: Callable[[Config, Callable[[Any], Any]], int]) -> None:
    s = sub.add_parser("sieve", help="users' Sieve filters (as ManageSieve sees them)")
    ssub = s.add_subparsers(dest="action", required=True, parser_class=parser_class)
    x = ssub.add_parser("list", help="the user's scripts")
    x.add_argument("user")
    x = ssub.add_parser("put", help="store a script (checked first) from FILE or stdin")
    x.add_argument("user")
    x.add_argument("name")
    x.add_argument("file", nargs="?", help="the script; - or nothing for standard input")
    for name, text in (("get", "print a script"), ("activate", "make a script the active one"),
                       ("delete", "delete a script (not the active one)")):
        x = ssub.add_parser(name, help=text)
        x.add_argument("user")
        x.add_argument("name")
    x = ssub.add_parser("deactivate", help="no script runs for the user")
    x.add_argument("user")
    s.set_defaults(func=lambda config, args: store_run(
        config, lambda store: sieve_command(store, config, args)))


def add_user_parsers(usub: Any) -> None:
    x = usub.add_parser("forward", help="send every message on to other addresses")
    x.add_argument("address")
    x.add_argument("dest", nargs="*", metavar="DEST")
    x.add_argument("--off", action="store_true", help="stop forwarding")
    x.add_argument("--keep", action="store_true", help="keep a copy in the mailbox too")
