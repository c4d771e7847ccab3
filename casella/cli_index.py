"""Admin commands for the search index (issue 21): `index rebuild [--user ADDRESS]` and
`index status`.

Lives here: their argument parsers (added to casella.cli's parser) and actions, on the store
contract. A rebuild forgets the index of every body (or of one user's), then indexes them
again in bounded batches like the server's background backfill, printing its progress;
SEARCH stays correct meanwhile (it reads the messages the index does not hold yet), and a
running server may go on serving. Follows casella.cli's rules: exit 0 on success, UserError
(exit 1, one line) for a user error. Must never: run SQL.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

from casella.config import Config, human_size
from casella.errors import UserError

# Progress is printed at most this often (seconds).
_PROGRESS_EVERY = 2.0
# A batch four times the background backfill's (no pause between them: the admin asked for
# it): each holds the write lock for about ten milliseconds, so a running server's sessions
# still get their turn between two.
_BATCH_CHARS = 64 * 1024
_BATCH_BODIES = 100


async def index_command(store: Any, args: argparse.Namespace) -> int:
    if args.action == "status":
        s = await store.search_index_status()
        print("search index: " + ("on" if store.search_index_on else
                                  "off ([store] search_index = false)"))
        print(f"bodies indexed: {s.indexed}")
        print(f"waiting for the backfill: {s.pending}")
        print(f"left out (text too big; SEARCH reads them): {s.left_out}")
        print(f"size: trigrams {human_size(s.index_bytes)}, text {human_size(s.text_bytes)}")
        return 0
    if not store.search_index_on:
        raise UserError("the search index is off: set [store] search_index = true and restart "
                        "casella (it then indexes the stored mail in the background)")
    account_id = None
    who = "every user"
    if args.user is not None:
        acct = await store.get_account(args.user)
        if acct is None:
            raise UserError(f"user {args.user} does not exist")
        account_id, who = acct.id, acct.address
    handed = await store.search_index_reset(account_id)
    print(f"rebuilding the search index of {who}: {handed} bodies", flush=True)
    done = 0
    last = time.monotonic()
    while True:
        step, waiting = await store.search_index_backfill(_BATCH_CHARS, _BATCH_BODIES)
        done += step
        now = time.monotonic()
        if now - last >= _PROGRESS_EVERY or not waiting:
            print(f"indexed {done}, {waiting} waiting", flush=True)
            last = now
        if not waiting:
            break
        if not step:
            raise UserError(f"{waiting} bodies could not be indexed now; try again")
    s = await store.search_index_status()
    print(f"done: {s.indexed} bodies indexed, {s.left_out} left out; "
          f"trigrams {human_size(s.index_bytes)}, text {human_size(s.text_bytes)}")
    return 0


def add_parsers(sub: Any, parser_class: type[argparse.ArgumentParser],
                store_run: Callable[[Config, Callable[[Any], Any]], int]) -> None:
    s = sub.add_parser("index", help="the search index (IMAP SEARCH TEXT, BODY, headers)")
    ssub = s.add_subparsers(dest="action", required=True, parser_class=parser_class)
    x = ssub.add_parser("rebuild", help="index every body again (or one user's)")
    x.add_argument("--user", metavar="ADDRESS", help="only this user's messages")
    ssub.add_parser("status", help="how much is indexed, and the index's size")
    s.set_defaults(func=lambda config, args: store_run(
        config, lambda store: index_command(store, args)))
