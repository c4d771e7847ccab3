"""`casella export DIR`: the store (or some accounts of it) into the export format of
docs/export-format.md, whatever the backend.

Lives here: `export_store`. It reads only through the store contract. Each mailbox is read
from one SELECT snapshot (its UIDs and UIDNEXT), so mail arriving meanwhile is simply not in
the export; the manifest is written last, and an import refuses a directory without it. Must
never: write outside DIR, or into a DIR that holds anything already.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from casella.errors import UserError
from casella.move import format as fmt
from casella.move.common import Selection, uid_ranges
from casella.move.progress import Progress
from casella.pop3.proto import uidl_string
from casella.store.base import Store
from casella.store.model import Account, Mailbox

FETCH_CHUNK = 500                 # messages per metadata read
READ_PIECE = 4 * 1024 * 1024      # a bigger body is read and written in pieces of this size


def _append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


async def export_store(store: Store, root: Path, selection: Selection,
                       progress: Progress | None = None) -> tuple[int, int]:
    """Write the export; returns (accounts, messages) written."""
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise UserError(f"{root} is not an empty directory")
    accounts = [a for a in await store.list_accounts() if selection.account(a.address)]
    missing = selection.accounts - {a.address for a in accounts}
    if missing:
        raise UserError(f"no such user: {', '.join(sorted(missing))}")
    boxes = {a.id: await store.list_mailboxes(a.id) for a in accounts}
    total = sum(mb.messages for mbs in boxes.values() for mb in mbs)
    progress = progress or Progress("exported", total)
    progress.total = total
    root.mkdir(parents=True, exist_ok=True)
    domains = [d for d in await store.list_domains() if selection.domain(d.name)]
    _write_json(root / fmt.DOMAINS, [
        {"name": d.name, **{k: getattr(d, k) for k in fmt.LIMIT_KEYS}} for d in domains])
    names = {d.name for d in domains}
    _write_json(root / fmt.ALIASES, [
        {"source": a.source, "destinations": list(a.destinations)}
        for a in await store.list_aliases() if a.source.rsplit("@", 1)[1] in names])
    written = 0
    for acct in accounts:
        written += await _export_account(store, root, acct, boxes[acct.id], progress)
    _write_json(root / fmt.MANIFEST, {
        "format": fmt.FORMAT_NAME, "version": fmt.FORMAT_VERSION, "created": int(time.time()),
        "accounts": len(accounts), "messages": written, "complete": True})
    progress.finish()
    return len(accounts), written


async def _export_account(store: Store, root: Path, acct: Account, mailboxes: list[Mailbox],
                          progress: Progress) -> int:
    adir = root / fmt.ACCOUNTS / fmt.account_dir_name(acct.address)
    (adir / fmt.MAILBOXES).mkdir(parents=True)
    record = fmt.AccountRecord(
        address=acct.address, password_hash=acct.password_hash, quota_bytes=acct.quota_bytes,
        quota_messages=acct.quota_messages, sending_held=acct.sending_held,
        messages_per_hour=acct.messages_per_hour,
        defers_failures_per_hour=acct.defers_failures_per_hour,
        defers_failures_percent=acct.defers_failures_percent,
        subscriptions=tuple(await store.list_subscriptions(acct.id)), created=acct.created,
        pop3_delete=acct.pop3_delete, pop3_expire_days=acct.pop3_expire_days)
    (adir / fmt.ACCOUNT).write_text(fmt.to_json(record) + "\n", encoding="utf-8")
    written: dict[str, Path] = {}        # digest -> a file already holding that body
    count = 0
    for index, mb in enumerate(mailboxes, 1):
        mdir = adir / fmt.MAILBOXES / fmt.mailbox_dir_name(index)
        mdir.mkdir()
        progress.mailbox(f"{acct.address} {mb.name}")
        count += await _export_mailbox(store, mb, mdir, written, progress)
        progress.mailbox_done()
    return count


async def _export_mailbox(store: Store, mb: Mailbox, mdir: Path, written: dict[str, Path],
                          progress: Progress) -> int:
    if not mb.selectable:
        _write_json(mdir / fmt.MAILBOX, {
            "name": mb.name, "uidvalidity": mb.uidvalidity, "uidnext": mb.uidnext,
            "highestmodseq": mb.highestmodseq, "special_use": mb.special_use,
            "selectable": False, "messages": 0, "expunged": []})
        return 0
    snap = await store.select(mb.id)
    box = snap.mailbox
    pop3 = {meta.uid: first for meta, first in await store.pop3_list(mb.id)}
    stored_uidls = await store.pop3_uidls(mb.id)
    highest = box.highestmodseq
    count = 0
    uids = list(snap.uids)
    (mdir / fmt.MESSAGES).touch()
    for i in range(0, len(uids), FETCH_CHUNK):
        lines = []
        ranges = uid_ranges(uids[i:i + FETCH_CHUNK])
        for meta, static in await store.fetch_messages(mb.id, ranges, ()):
            if static is None:
                raise UserError(f"{box.name}: the body of UID {meta.uid} is missing")
            await _write_body(store, static.digest, static.size,
                              mdir / fmt.eml_name(meta.uid), written)
            uidl = stored_uidls.get(meta.uid)
            if uidl is None and box.name == "INBOX":
                uidl = uidl_string(meta.uid, box.uidvalidity).decode("ascii")
            lines.append(fmt.to_json(fmt.MessageRecord(
                uid=meta.uid, modseq=meta.modseq, flags=meta.flags,
                internaldate=meta.internaldate, savedate=meta.savedate, size=static.size,
                sha256=static.digest, pop3_uidl=uidl, pop3_retrieved=pop3.get(meta.uid),
                pop3_hidden=meta.uid not in pop3)))
            highest = max(highest, meta.modseq)
            progress.advance()
        _append(mdir / fmt.MESSAGES, "".join(line + "\n" for line in lines).encode())
        count += len(lines)
    expunged = await store.expunge_records(mb.id)
    highest = max([highest] + [m for _, m in expunged])
    _write_json(mdir / fmt.MAILBOX, {
        "name": box.name, "uidvalidity": box.uidvalidity, "uidnext": box.uidnext,
        "highestmodseq": highest, "special_use": box.special_use, "selectable": True,
        "messages": count, "expunged": [[u, m] for u, m in expunged if u < box.uidnext]})
    return count


async def _write_body(store: Store, digest: str, size: int, path: Path,
                      written: dict[str, Path]) -> None:
    """The body into `path`: a hard link to an earlier copy of the same body in this
    account's export when there is one, else read from the store (in pieces when big) and
    checked against its digest."""
    earlier = written.get(digest)
    if earlier is not None:
        try:
            os.link(earlier, path)
            return
        except OSError:
            pass
    sha = hashlib.sha256()
    offset = 0
    path.touch()
    while offset < size or size == 0:
        piece = await store.read_blob(digest) if size <= READ_PIECE else \
            await store.read_blob(digest, offset, min(READ_PIECE, size - offset))
        _append(path, piece)
        sha.update(piece)
        offset += len(piece)
        if not piece or size <= READ_PIECE:
            break
    if offset != size or sha.hexdigest() != digest:
        raise UserError(f"the stored body {digest} does not match its digest or size")
    written[digest] = path
