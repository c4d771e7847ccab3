"""Admin commands of issue 18: `dns DOMAIN [--check]` and `token create|list|revoke`.

Lives here: their argument parsers (added to casella.cli's parser by `add_parsers`) and their
actions, on the store contract, casella.dnsrecords and casella.auth.tokens. Follows
casella.cli's rules: exit 0 on success, UserError (exit 1, one line on stderr) for a user
error, argparse (exit 2) for bad usage; `dns --check` also exits 1 (and says so in one line
on stderr) when a record is missing or different. Must never: run SQL, print a token other
than the one `token create` has just made, or print a private key.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

from casella import dnsrecords
from casella.config import Config
from casella.errors import UserError


async def dns_command(store: Any, config: Config, args: argparse.Namespace) -> int:
    from casella.smtp import dkim

    domain = await store.get_domain(args.domain)
    if domain is None:
        raise UserError(f"domain {args.domain} is not hosted here; add it first")
    recs = dnsrecords.records(config, domain.name, dkim.load_keys(config.dkim_key_dir,
                                                                   domain.name))
    if not args.check:
        sys.stdout.write(dnsrecords.zone_text(config, domain.name, recs))
        return 0
    try:
        lookup = dnsrecords.dns_lookup(config)
    except LookupError as exc:
        raise UserError(str(exc)) from None
    try:
        results = dnsrecords.check(config, domain.name, recs, lookup)
    except LookupError as exc:
        raise UserError(f"cannot ask the DNS: {exc}") from None
    wrong = 0
    for res in results:
        rec = res.record
        value = dnsrecords.zone_line(rec).split(None, 4)[-1] if rec.rtype != "A/AAAA" \
            else rec.value
        line = f"{res.status:<10}  {rec.label:<16}  {rec.name}. {rec.rtype} {value}"
        if res.found:
            line += f"\n{'':>30}found: {res.found}"
        print(line)
        wrong += res.status != dnsrecords.OK
    if wrong:
        print(f"casella: {wrong} of {len(results)} DNS records are missing or different",
              file=sys.stderr)
        return 1
    print(f"all {len(results)} DNS records of {domain.name} are published")
    return 0


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
    """Add `dns` and `token` to casella's subcommands. `with_store(config, fn)` runs
    `fn(store)` with an opened store and returns its exit code."""
    d = sub.add_parser("dns", help="the DNS records a hosted domain publishes")
    d.add_argument("domain")
    d.add_argument("--check", action="store_true",
                   help="ask the DNS ([dns] resolver, else the system's) whether each record "
                        "is published; exit 1 when one is missing or different")
    d.set_defaults(func=lambda config, args: with_store(
        config, lambda store: dns_command(store, config, args)))

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
