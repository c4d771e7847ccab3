"""Admin commands for outbound mail: `queue list|show|flush|remove|hold|release`,
`limits set|show|reset`, `dkim generate|show`, `user hold-sending|release-sending`, and the
sending lines of `user show`.

Lives here: the argument parsers of those commands (added to casella.cli's parser by
`add_parsers`) and their actions, on the store contract and casella.limits.sendlimit. Follows
casella.cli's rules: exit 0 on success, UserError (exit 1, one line) for a user error, argparse
(exit 2) for bad usage. Must never: run SQL, print a private key, or touch a running server
other than through the store (the queue runner polls it).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from casella.config import Config
from casella.errors import UserError
from casella.limits import sendlimit
from casella.store.model import Account, QueueEntry
from casella.store.sending import LIMIT_KEYS


def _age(seconds: int) -> str:
    if seconds >= 86400:
        return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m"
    return f"{max(seconds, 0)}s"


def _when(ts: int, now: int) -> str:
    return "now" if ts <= now else f"in {_age(ts - now)}"


def _entry_lines(e: QueueEntry, now: int, detail: bool) -> list[str]:
    head = (f"{e.id:>6}  {_age(now - e.created):>6}  {e.size:>9}  {e.sender or '<>'}"
            f"{'  (held)' if e.held else ''}")
    out = [head]
    if detail:
        created = time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(e.created))
        out += [f"        created   {created} UTC",
                f"        envid     {e.envid or '-'}   ret {e.ret or '-'}",
                f"        account   {e.account_id if e.account_id is not None else '-'}"]
    for r in e.recipients:
        waiting = r.state in ("queued", "deferred")
        line = (f"{'':>8}-> {r.address}: {r.state}, {r.attempts} attempt"
                f"{'' if r.attempts == 1 else 's'}, next "
                f"{_when(r.next_attempt, now) if waiting else '-'}")
        if r.last_reply:
            line += f", last reply: {r.last_reply}"
        out.append(line)
    return out


async def queue_command(store: Any, args: argparse.Namespace) -> int:
    now = int(time.time())
    action = args.action
    if action == "list":
        entries = await store.list_queue()
        if not entries:
            print("the queue is empty")
            return 0
        print(f"{'id':>6}  {'age':>6}  {'bytes':>9}  sender, then each recipient: state, "
              "attempts, next attempt, last reply")
        for e in entries:
            print("\n".join(_entry_lines(e, now, False)))
        return 0
    if action == "show":
        entry = await store.get_queue_entry(args.id)
        if entry is None:
            raise UserError(f"queue entry {args.id} does not exist")
        print("\n".join(_entry_lines(entry, now, True)))
        static = (await store.fetch_static([entry.blob_id])).get(entry.blob_id)
        if static is not None:
            print("        header:")
            for line in static.header.decode("utf-8", "replace").splitlines()[:40]:
                print(f"          {line}")
        return 0
    if action == "flush":
        n = await store.queue_flush(args.id, now)
        print(f"{n} recipient{'' if n == 1 else 's'} will be tried at once")
        return 0
    if action == "remove":
        await store.queue_remove(args.id)
        print(f"queue entry {args.id} removed (no notice was sent)")
        return 0
    if action in ("hold", "release"):
        await store.queue_set_held(args.id, action == "hold")
        print(f"queue entry {args.id} {'held' if action == 'hold' else 'released'}")
        return 0
    raise UserError(f"unknown queue action {action}")


def _limit_value(text: str | None) -> int | None:
    if text is None:
        return None
    if text.lower() == "default":
        return -1
    try:
        value = int(text)
    except ValueError:
        raise UserError(f"bad limit {text!r}: give a whole number, 0 for unlimited, or "
                        "'default'") from None
    if value < 0:
        raise UserError(f"bad limit {text!r}: it cannot be negative")
    return value


async def _accounts_of(store: Any, name: str) -> tuple[list[Account], str]:
    if "@" in name:
        acct = await store.get_account(name)
        if acct is None:
            raise UserError(f"user {name} does not exist")
        return [acct], acct.address
    domain = await store.get_domain(name)
    if domain is None:
        raise UserError(f"domain {name} does not exist")
    return await store.list_accounts(domain.name), domain.name


async def usage_lines(store: Any, config: Config, acct: Account) -> list[str]:
    """The sending state of an account, for `limits show` and `user show`."""
    now = time.time()
    limits = await sendlimit.account_limits(store, config.limits, acct)
    usage = await sendlimit.account_usage(store, acct, now)

    def lim(n: int) -> str:
        return str(n) if n else "unlimited"
    state = "held by an admin" if acct.sending_held else "allowed"
    if sendlimit.guard_blocked(limits, usage):
        until = await store.get_send_guard(acct.id)
        state = "paused by the defers-and-failures guard" + \
            (f" until {time.strftime('%H:%M UTC', time.gmtime(until))}" if until else "")
    elif limits.messages_per_hour and usage.submitted >= limits.messages_per_hour:
        state = "paused: the hourly limit is used up"
    return [
        f"sending   {state}",
        f"  last hour: {usage.submitted} of {lim(limits.messages_per_hour)} recipients sent",
        (f"  defers and failures: {usage.defers_failures} of "
         f"{lim(limits.defers_failures_per_hour)} "
         f"({usage.defers_failures_pct}% of {usage.attempts} delivery attempts; blocks at "
         f"{limits.defers_failures_percent}%)"),
    ]


def _settings(obj: Any) -> str:
    parts = []
    for k in LIMIT_KEYS:
        value = getattr(obj, k)
        parts.append(f"{k.replace('_', '-')}={value if value is not None else 'default'}")
    return " ".join(parts)


async def limits_command(store: Any, config: Config, args: argparse.Namespace) -> int:
    name = args.target
    if args.action == "set":
        values: dict[str, int | None] = {}
        for key in LIMIT_KEYS:
            v = _limit_value(getattr(args, key))
            if v is not None:
                values[key] = None if v == -1 else v
        if not values:
            raise UserError("nothing to set: give --messages-per-hour, "
                            "--defers-failures-per-hour or --defers-failures-percent")
        await store.set_send_limits(name, values)
        target = await store.get_account(name) if "@" in name else await store.get_domain(name)
        print(f"limits of {name.lower()}: {_settings(target)}")
        return 0
    accounts, label = await _accounts_of(store, name)
    if args.action == "reset":
        n = await store.reset_send_usage([a.id for a in accounts])
        print(f"sending counters of {label} reset ({len(accounts)} account"
              f"{'' if len(accounts) == 1 else 's'}, {n} events forgotten)")
        return 0
    if "@" not in name:
        domain = await store.get_domain(name)
        print(f"domain {label}: {_settings(domain)}")
    for acct in accounts:
        print(f"{acct.address}: {_settings(acct)}")
        for line in await usage_lines(store, config, acct):
            print(f"  {line}")
    return 0


async def hold_command(store: Any, args: argparse.Namespace, held: bool) -> int:
    await store.set_sending_held(args.address, held)
    if held:
        print(f"outgoing mail of {args.address.lower()} is on hold (queued mail is kept)")
    else:
        print(f"outgoing mail of {args.address.lower()} is released")
    return 0


def dkim_command(config: Config, args: argparse.Namespace) -> int:
    from casella.smtp import dkim

    if args.action == "generate":
        keys = dkim.generate_keys(config.dkim_key_dir, args.domain, args.selector)
        print(f"DKIM keys created for {keys[0].domain} in {config.dkim_key_dir}; outgoing "
              "mail from it is signed with them from now on.")
    else:
        keys = dkim.find_keys_or_fail(config.dkim_key_dir, args.domain)
    print("Publish these DNS TXT records:")
    for line in dkim.dns_records(keys):
        print(line)
    return 0


def add_parsers(sub: Any, parser_class: type, with_store: Callable[..., int]) -> None:
    """Add `queue`, `limits` and `dkim` to casella's subcommands. `with_store(config, fn)`
    runs `fn(store)` with an opened store and returns its exit code."""
    q = sub.add_parser("queue", help="the outbound queue")
    qsub = q.add_subparsers(dest="action", required=True, parser_class=parser_class)
    qsub.add_parser("list", help="every queued message and each recipient's state")
    for name, text in (("show", "one entry in detail"), ("remove", "delete without notice"),
                       ("hold", "no delivery attempts until released"),
                       ("release", "deliver again")):
        x = qsub.add_parser(name, help=text)
        x.add_argument("id", type=int)
    x = qsub.add_parser("flush", help="try waiting recipients now")
    x.add_argument("id", type=int, nargs="?")
    q.set_defaults(func=lambda config, args: with_store(
        config, lambda store: queue_command(store, args)))

    lim = sub.add_parser("limits", help="sending limits of an account or a domain")
    lsub = lim.add_subparsers(dest="action", required=True, parser_class=parser_class)
    x = lsub.add_parser("set", help="N, 0 for unlimited, or 'default'")
    x.add_argument("target", metavar="ADDRESS|DOMAIN")
    x.add_argument("--messages-per-hour", dest="messages_per_hour", metavar="N")
    x.add_argument("--defers-failures-per-hour", dest="defers_failures_per_hour", metavar="N")
    x.add_argument("--defers-failures-percent", dest="defers_failures_percent", metavar="P")
    for name, text in (("show", "settings and the last hour's usage"),
                       ("reset", "forget the last hour (unblocks at once)")):
        x = lsub.add_parser(name, help=text)
        x.add_argument("target", metavar="ADDRESS|DOMAIN")
    lim.set_defaults(func=lambda config, args: with_store(
        config, lambda store: limits_command(store, config, args)))

    d = sub.add_parser("dkim", help="DKIM signing keys")
    dsub = d.add_subparsers(dest="action", required=True, parser_class=parser_class)
    x = dsub.add_parser("generate", help="create RSA-2048 and Ed25519 keys; print DNS records")
    x.add_argument("domain")
    x.add_argument("--selector", default="casella",
                   help="selector base (default casella): keys are <S>-rsa and <S>-ed25519")
    x = dsub.add_parser("show", help="print the DNS records of the keys in use")
    x.add_argument("domain")
    d.set_defaults(func=dkim_command)


def add_user_parsers(usub: Any) -> None:
    for name, text in (("hold-sending", "stop the account's outgoing mail (kept queued)"),
                       ("release-sending", "let the account send again")):
        x = usub.add_parser(name, help=text)
        x.add_argument("address")
