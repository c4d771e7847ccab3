"""`casella import DIR`: an export (docs/export-format.md) into this store, whatever its
backend, keeping every UIDVALIDITY, UID, MODSEQ and POP3 UIDL.

Lives here: `import_export` and the shared account set-up (`ensure_account`). The export is
checked as it is read (records, sizes and SHA-256 of bodies); a re-run continues where the
last stopped (casella.move.common). Must never: write anything but through the store
contract, or import from an export that did not finish.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from casella.errors import UserError
from casella.move import format as fmt
from casella.move.common import (
    Selection,
    SourceMailbox,
    SourceMessage,
    finish_account,
    sync_mailbox,
)
from casella.move.progress import Progress
from casella.store.base import Store
from casella.store.model import Account


async def ensure_domain(store: Store, name: str) -> None:
    if await store.get_domain(name) is None:
        await store.add_domain(name)


async def ensure_account(store: Store, address: str, password_hash: str, quota_bytes: int,
                         quota_messages: int = 0, replace: bool = True) -> Account:
    """The account, created when missing; with `replace` its password and quota become the
    given ones when it exists (a re-run sets the same again)."""
    await ensure_domain(store, address.rsplit("@", 1)[1])
    acct = await store.get_account(address)
    if acct is None:
        return await store.add_account(address, password_hash, quota_bytes, quota_messages)
    if replace:
        await store.set_password(address, password_hash)
        await store.set_quota(address, quota_bytes, quota_messages)
    return acct


class _Export:
    """One export directory, read lazily account by account."""

    def __init__(self, root: Path) -> None:
        self.root = root
        fmt.check_manifest(root / fmt.MANIFEST)
        where = root / fmt.DOMAINS
        self.domains = [fmt.domain_from(str(where), d) for d in _list(where)]
        where = root / fmt.ALIASES
        self.aliases = [fmt.alias_from(str(where), a) for a in _list(where)]
        self.accounts: list[tuple[Path, fmt.AccountRecord]] = []
        accounts_dir = root / fmt.ACCOUNTS
        for adir in sorted(accounts_dir.iterdir()) if accounts_dir.is_dir() else []:
            where = adir / fmt.ACCOUNT
            self.accounts.append((adir, fmt.account_from(str(where), fmt.load_json(where))))

    @staticmethod
    def mailboxes(adir: Path) -> list[tuple[Path, fmt.MailboxRecord]]:
        out = []
        for mdir in sorted((adir / fmt.MAILBOXES).iterdir()):
            where = mdir / fmt.MAILBOX
            out.append((mdir, fmt.mailbox_from(str(where), fmt.load_json(where))))
        # Parents before children, as the names sort.
        return sorted(out, key=lambda p: p[1].name)

    @staticmethod
    def messages(mdir: Path, record: fmt.MailboxRecord) -> list[SourceMessage]:
        where = mdir / fmt.MESSAGES
        out: list[SourceMessage] = []
        try:
            text = where.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise fmt.FormatError(f"{where} is missing") from None
        previous = 0
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            m = fmt.message_from(f"{where} line {n}", line)
            if m.uid <= previous or m.uid >= record.uidnext:
                raise fmt.FormatError(f"{where} line {n}: UID {m.uid} is out of order or not "
                                      f"below UIDNEXT {record.uidnext}")
            previous = m.uid
            out.append(SourceMessage(
                uid=m.uid, modseq=m.modseq, flags=m.flags, internaldate=m.internaldate,
                load=_loader(mdir / fmt.eml_name(m.uid), m.size, m.sha256),
                savedate=m.savedate, pop3_uidl=m.pop3_uidl, pop3_retrieved=m.pop3_retrieved,
                pop3_hidden=m.pop3_hidden))
        return out


def _list(path: Path) -> list[object]:
    value = fmt.load_json(path)
    if not isinstance(value, list):
        raise fmt.FormatError(f"{path}: expected a JSON list")
    return value


def _loader(path: Path, size: int, sha256: str) -> Callable[[], bytes]:
    def load() -> bytes:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise fmt.FormatError(f"{path}: {exc.strerror or exc}") from None
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
            raise fmt.FormatError(f"{path}: the body does not match its size and sha256")
        return data
    return load


async def import_export(store: Store, root: Path, selection: Selection,
                        progress: Progress | None = None) -> tuple[int, int]:
    """Import the selected accounts of the export at `root`, with their domains and the
    aliases of those domains; returns (accounts, messages imported)."""
    export = _Export(root)
    chosen = [(adir, rec) for adir, rec in export.accounts if selection.account(rec.address)]
    missing = selection.accounts - {rec.address for _, rec in chosen}
    if missing:
        raise UserError(f"not in the export: {', '.join(sorted(missing))}")
    boxes = {adir: export.mailboxes(adir) for adir, _ in chosen}
    total = sum(r.messages for mbs in boxes.values() for _, r in mbs)
    progress = progress or Progress("imported", total)
    progress.total = total
    domains = {d.name for d in export.domains if selection.domain(d.name)}
    for d in export.domains:
        if d.name in domains:
            await ensure_domain(store, d.name)
            await store.set_send_limits(d.name, {k: getattr(d, k) for k in fmt.LIMIT_KEYS})
    for adir, rec in chosen:
        acct = await ensure_account(store, rec.address, rec.password_hash, rec.quota_bytes,
                                    rec.quota_messages)
        await store.set_send_limits(rec.address, {k: getattr(rec, k) for k in fmt.LIMIT_KEYS})
        await store.set_sending_held(rec.address, rec.sending_held)
        await store.set_pop3_policy(rec.address, rec.pop3_delete, rec.pop3_expire_days)
        placeholders = []
        for mdir, mrec in boxes[adir]:
            if not mrec.selectable:
                # No client sees a placeholder's UIDVALIDITY; it is kept all the same.
                await store.import_mailbox(acct.id, mrec.name, mrec.uidvalidity,
                                           uidnext=mrec.uidnext,
                                           highestmodseq=mrec.highestmodseq)
                placeholders.append(mrec.name)
                continue
            progress.mailbox(f"{rec.address} {mrec.name}")
            await sync_mailbox(store, acct.id, SourceMailbox(
                name=mrec.name, uidvalidity=mrec.uidvalidity, uidnext=mrec.uidnext,
                highestmodseq=mrec.highestmodseq, messages=export.messages(mdir, mrec),
                special_use=mrec.special_use, expunged=mrec.expunged), progress)
            progress.mailbox_done()
        await finish_account(store, acct.id, [r.name for _, r in boxes[adir]], placeholders,
                             rec.subscriptions)
    for alias in export.aliases:
        if alias.source.rsplit("@", 1)[1] not in domains:
            continue
        existing = await store.get_alias(alias.source)
        if existing is not None and existing.destinations != alias.destinations:
            await store.remove_alias(alias.source)
            existing = None
        if existing is None:
            await store.add_alias(alias.source, alias.destinations)
    progress.finish()
    return len(chosen), progress.done - progress.skipped
