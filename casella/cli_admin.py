"""Admin commands of issue 18: `token create|list|revoke`.

Lives here: their argument parsers (added to casella.cli's parser by `add_parsers`) and their
actions, on the store contract and casella.auth.tokens. Follows casella.cli's rules: exit 0
on success, UserError (exit 1, one line on stderr) for a user error, argparse (exit 2) for
bad usage. Must never: run SQL, or print a token other than the one `token create` has just
made.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any


async def token_command(store: Any, args: argparse.Namespace) -> int:
    from casella.auth import tokens

    if args.action == "create":
        token, record = await tokens.create(store, args.name, args.domain)
        scope = f"domain {record.domain} only" if record.domain else "every domain"
        print(f"token {record.name} (id {record.id}, {scope}) created; it is shown only "
              "this once:", file=sys.stderr)
        print(token)
        return 0
    if args.action == "revoke":
        await store.remove_api_token(args.name)
        print(f"token {args.name} revoked")
        return 0
    found = await store.list_api_tokens()
    if not found:
        print("no tokens; create one with casella token create --name NAME")
        return 0
    print(f"{'id':<12}  {'name':<24}  {'domain':<24}  created")
    for t in found:
        created = time.strftime("%Y-%m-%d %H:%M", time.gmtime(t.created))
        print(f"{t.id:<12}  {t.name:<24}  {t.domain or '(every domain)':<24}  {created} UTC")
    return 0


def add_parsers(sub: Any, parser_class: type, with_store: Callable[..., int]) -> None:
    """Add `token` to casella's subcommands. `with_store(config, fn)` runs
    `fn(store)` with an opened store and returns its exit code."""
    t = sub.add_parser("token", help="bearer tokens of the admin API")
    tsub = t.add_subparsers(dest="action", required=True, parser_class=parser_class)
    x = tsub.add_parser("create", help="make a token and print it (only this once)")
    x.add_argument("--name", required=True, help="names the token in list and revoke")
    x.add_argument("--domain", help="the only domain the token may see and change "
                                    "(default: every domain)")
    tsub.add_parser("list", help="every token: id, name, domain (never the token itself)")
    x = tsub.add_parser("revoke", help="the token stops working at once")
    x.add_argument("name", metavar="NAME|ID")
    t.set_defaults(func=lambda config, args: with_store(
        config, lambda store: token_command(store, args)))
