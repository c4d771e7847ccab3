"""What both imports share: which accounts to move, and bringing one mailbox of the store in
line with its source (`sync_mailbox`), resumably.

Lives here: `Selection`, `SourceMailbox` / `SourceMessage` (a mailbox and its messages as any
source describes them), `sync_mailbox`, `finish_account` (subscriptions, and the default
mailboxes the source does not have). Must never: reuse a UID below a mailbox's UIDNEXT (the
store refuses it anyway), or remove a message the source could not have had.

A re-run of an import continues where the last one stopped: `import_mailbox` takes the mailbox
of the same UIDVALIDITY, its UIDNEXT says which messages are in already, and only the rest is
imported. Messages the store has below the source's UIDNEXT get the source's flags, and those
the source no longer has are removed, so a last run after the old server was stopped leaves
the two alike (docs/export-format.md, README "Moving in").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from casella.errors import MailboxNotAllowed, MailboxNotFound, NotFound
from casella.mail.addresses import normalize_address, normalize_domain
from casella.move.progress import Progress
from casella.pop3.proto import uidl_string
from casella.store.base import Store
from casella.store.model import (
    DEFAULT_MAILBOXES,
    ImportItem,
    Mailbox,
    canonical_flag,
    valid_pop3_uidl,
)

BATCH_MESSAGES = 200             # messages per import transaction ...
BATCH_BYTES = 16 * 1024 * 1024   # ... or this many octets of bodies, whichever comes first


class Selection:
    """The accounts an export or import covers: those named, those of the domains named, or
    every one when nothing is named."""

    def __init__(self, accounts: Iterable[str] = (), domains: Iterable[str] = ()) -> None:
        self.accounts = {normalize_address(a) for a in accounts}
        self.domains = {normalize_domain(d) for d in domains}

    @property
    def everything(self) -> bool:
        return not self.accounts and not self.domains

    def account(self, address: str) -> bool:
        return self.everything or address in self.accounts or \
            address.rsplit("@", 1)[-1] in self.domains

    def domain(self, name: str) -> bool:
        """A domain goes with the selection when it is named or holds a named account."""
        return self.everything or name in self.domains or \
            any(a.rsplit("@", 1)[-1] == name for a in self.accounts)


@dataclass
class SourceMessage:
    uid: int
    modseq: int
    flags: tuple[str, ...]
    internaldate: int
    load: Callable[[], bytes]          # the body, as clients of the source saw it (CRLF)
    savedate: int | None = None
    pop3_uidl: str | None = None       # as the source's POP3 listed it; None: not known
    pop3_retrieved: int | None = None
    pop3_hidden: bool = False


@dataclass
class SourceMailbox:
    name: str                          # casella's form: Unicode, "/" between levels
    uidvalidity: int
    uidnext: int                       # above every UID the source gave out
    highestmodseq: int
    messages: list[SourceMessage]      # ascending by UID
    special_use: str | None = None
    selectable: bool = True
    expunged: Sequence[tuple[int, int]] = field(default_factory=tuple)


def flag_key(flags: Iterable[str]) -> frozenset[str]:
    """Flags as IMAP compares them: system flags case-insensitively, keywords too (RFC 9051
    §2.3.2), \\Recent left out."""
    return frozenset(canonical_flag(f).lower() for f in flags if f.lower() != "\\recent")


def stored_uidl(uid: int, uidvalidity: int, uidl: str | None) -> str | None:
    """The UIDL to keep with a message: None when POP3 would derive the same one anyway."""
    if uidl is None or uidl == uidl_string(uid, uidvalidity).decode("ascii"):
        return None
    return uidl


def choose_uidls(messages: Sequence[SourceMessage], uidvalidity: int,
                 taken: Iterable[str] = ()) -> tuple[dict[int, str], list[int]]:
    """The UIDLs to keep (by UID) for messages about to be imported, and the UIDs whose UIDL
    cannot be kept (PROMISES U5: unique in the maildrop): one already kept in the mailbox
    (`taken`) or given earlier in `messages`, one that is not 1-70 printable characters, or
    one of the form casella derives for another UID of this UIDVALIDITY (it would clash with
    that message's, now or once that UID is given out). Those get the derived UIDL."""
    derived_tail = f"{uidvalidity:08X}"
    used = set(taken)
    kept: dict[int, str] = {}
    dropped: list[int] = []
    for msg in messages:
        uidl = stored_uidl(msg.uid, uidvalidity, msg.pop3_uidl)
        if uidl is None:
            continue
        clash = (len(uidl) == 16 and uidl.endswith(derived_tail)
                 and all(c in "0123456789ABCDEF" for c in uidl))
        if clash or uidl in used or not valid_pop3_uidl(uidl):
            dropped.append(msg.uid)
            continue
        used.add(uidl)
        kept[msg.uid] = uidl
    return kept, dropped


async def sync_mailbox(store: Store, account_id: int, src: SourceMailbox,
                       progress: Progress) -> Mailbox:
    """Bring the store's mailbox `src.name` in line with `src` (see the module docstring)."""
    mb = await store.import_mailbox(account_id, src.name, src.uidvalidity,
                                    special_use=src.special_use)
    start = mb.uidnext
    below = [m for m in src.messages if m.uid < start]
    if below or start > 1:
        await _reconcile(store, mb, src, below, progress)
    todo = [m for m in src.messages if m.uid >= start]
    taken = (await store.pop3_uidls(mb.id)).values() if start > 1 else ()
    uidls, dropped = choose_uidls(todo, src.uidvalidity, taken)
    if dropped:
        progress.note(f"{src.name}: the POP3 UIDL of {len(dropped)} messages (UID "
                      f"{', '.join(map(str, dropped[:5]))}{' …' if len(dropped) > 5 else ''}) "
                      "is a duplicate or clashes with casella's own: POP3 clients see them as "
                      "new")
    for i in range(0, len(todo), BATCH_MESSAGES):
        await _import_batch(store, mb, todo[i:i + BATCH_MESSAGES], uidls, progress)
    return await store.import_mailbox(account_id, src.name, src.uidvalidity,
                                      uidnext=src.uidnext, highestmodseq=src.highestmodseq,
                                      expunged=src.expunged)


async def _import_batch(store: Store, mb: Mailbox, batch: list[SourceMessage],
                        uidls: dict[int, str], progress: Progress) -> None:
    """Stage and import `batch` in transactions of at most BATCH_BYTES of bodies."""
    items: list[ImportItem] = []
    size = 0
    try:
        for msg in batch:
            data = msg.load()
            items.append(ImportItem(
                await store.blobs.stage(data), uid=msg.uid, modseq=msg.modseq,
                flags=msg.flags, internaldate=msg.internaldate, savedate=msg.savedate,
                pop3_uidl=uidls.get(msg.uid),
                pop3_retrieved=msg.pop3_retrieved, pop3_hidden=msg.pop3_hidden))
            size += len(data)
            if size >= BATCH_BYTES:
                await store.import_messages(mb.id, items)
                progress.advance(len(items))
                _discard(items)
                items, size = [], 0
        if items:
            await store.import_messages(mb.id, items)
            progress.advance(len(items))
    finally:
        _discard(items)


def _discard(items: list[ImportItem]) -> None:
    for item in items:
        item.blob.discard()


async def _reconcile(store: Store, mb: Mailbox, src: SourceMailbox,
                     below: list[SourceMessage], progress: Progress) -> None:
    """The messages a previous run imported: the source's flags, and those it no longer has
    (below its UIDNEXT: anything above came to casella later and stays) removed."""
    have = {uid: flags for uid, _, flags in await store.fetch_flags(mb.id, [(1, mb.uidnext - 1)])}
    by_flags: dict[tuple[str, ...], list[int]] = {}
    missing = 0
    for msg in below:
        flags = have.get(msg.uid)
        if flags is None:
            missing += 1            # gone from casella since: a UID is never given again
        elif flag_key(flags) != flag_key(msg.flags):
            by_flags.setdefault(tuple(sorted(msg.flags)), []).append(msg.uid)
    for flags, uids in by_flags.items():
        await store.store_flags(mb.id, uid_ranges(uids), "replace", flags)
    source_uids = {m.uid for m in src.messages}
    gone = [uid for uid in have if uid < src.uidnext and uid not in source_uids]
    if gone:
        await store.remove_messages(mb.id, uid_ranges(gone))
    progress.skip(len(below))
    if by_flags or gone or missing:
        progress.note(f"{src.name}: {sum(map(len, by_flags.values()))} messages got the "
                      f"source's flags, {len(gone)} removed (no longer in the source), "
                      f"{missing} not brought back (removed from casella since)")


def uid_ranges(uids: Iterable[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for uid in sorted(set(uids)):
        if out and out[-1][1] + 1 == uid:
            out[-1] = (out[-1][0], uid)
        else:
            out.append((uid, uid))
    return out


async def finish_account(store: Store, account_id: int, source_names: Sequence[str],
                         placeholders: Sequence[str], subscriptions: Sequence[str]) -> None:
    """After an account's mailboxes: what the source shows as \\Noselect becomes a
    placeholder; casella's default mailboxes that the source does not have and that never
    held mail go (a client would see new folders otherwise); the subscriptions become
    exactly the source's."""
    names = set(source_names)
    defaults = {name for name, _ in DEFAULT_MAILBOXES}
    for mb in await store.list_mailboxes(account_id):
        has_children = any(n.startswith(mb.name + "/") for n in names)
        if mb.name in names and mb.name not in placeholders:
            continue
        if mb.name == "INBOX" or not mb.selectable:
            continue
        if mb.messages or (mb.uidnext > 1 and mb.name not in placeholders):
            continue                # it held mail: not ours to remove
        if has_children or mb.name in defaults:
            try:
                await store.delete_mailbox(account_id, mb.name)
            except (MailboxNotFound, MailboxNotAllowed):
                pass
    current = set(await store.list_subscriptions(account_id))
    wanted = set(subscriptions)
    for name in sorted(wanted - current):
        await store.subscribe(account_id, name)
    for name in sorted(current - wanted):
        try:
            await store.unsubscribe(account_id, name)
        except NotFound:
            pass
