"""`casella import --from-dovecot MAILDIR_ROOT`: the Maildirs of a Dovecot server into this
store, so that IMAP and POP3 clients that synced against Dovecot find nothing new.

Lives here: finding the users' Maildirs (ROOT/<domain>/<user>[/Maildir], as a Dovecot with
`mail_location = maildir:~/Maildir` and homes under ROOT/%d/%n keeps them, or a mapping file of
`address path` lines), reading each folder (dovecot-uidlist, dovecot-keywords, file names,
mtimes) into a casella.move.common.SourceMailbox, passwords from a Dovecot passwd-file, and
`import_dovecot`. What is kept: UIDVALIDITY and UIDs (from dovecot-uidlist), flags and
keywords, the INTERNALDATE (the file's mtime), POP3 UIDLs (the uidlist's P field, else what
`pop3_uidl_format` gives), subscriptions. Bodies are stored with CRLF line ends, as Dovecot
sends them. Must never: write to the Maildir tree, or follow a path out of MAILDIR_ROOT that
the mapping file did not name.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from casella.errors import UserError
from casella.mail.addresses import normalize_address
from casella.move.common import (
    Selection,
    SourceMailbox,
    SourceMessage,
    finish_account,
    sync_mailbox,
)
from casella.move.dovecot import (
    DEFAULT_UIDL_FORMAT,
    expand_uidl_format,
    folder_name,
    maildir_flags,
    parse_keywords,
    parse_subscriptions,
    parse_uidlist,
    split_filename,
)
from casella.move.importer import ensure_account
from casella.move.progress import Progress
from casella.store.base import Store

# Dovecot's MODSEQs live in its index files, which this import does not read. Every imported
# message gets this MODSEQ, as its mailbox's HIGHESTMODSEQ: above anything a Dovecot mailbox
# reaches in practice, so a CONDSTORE client that cached Dovecot's value asks for changes
# since it, is told every message's flags once (no bodies), and sees every later change.
DOVECOT_MODSEQ = 2**32
LOCKED_PASSWORD = "!"          # no password verifies against it (casella.auth.passwords)
_BARE_LF = re.compile(rb"(?<!\r)\n")


@dataclass(frozen=True)
class DovecotUser:
    address: str
    maildir: Path


def _maildir_of(home: Path) -> Path | None:
    if (home / "Maildir").is_dir():
        return home / "Maildir"
    if (home / "cur").is_dir() or (home / "dovecot-uidlist").is_file():
        return home
    return None


def find_users(root: Path, mapping: Path | None = None) -> list[DovecotUser]:
    """The Maildirs under `root`: <domain>/<user> (a Maildir there or in its Maildir/), or the
    `address path` lines of `mapping` (paths relative to root; # starts a comment)."""
    if not root.is_dir():
        raise UserError(f"{root} is not a directory")
    users: list[DovecotUser] = []
    if mapping is not None:
        try:
            text = mapping.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot read {mapping}: {exc.strerror or exc}") from None
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = line.split(None, 1)
            if len(parts) != 2:
                raise UserError(f"{mapping} line {n}: expected `address path`")
            home = root / parts[1]
            maildir = _maildir_of(home)
            if maildir is None:
                raise UserError(f"{mapping} line {n}: no Maildir in {home}")
            users.append(DovecotUser(normalize_address(parts[0]), maildir))
        return users
    for domain_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for user_dir in sorted(p for p in domain_dir.iterdir() if p.is_dir()):
            maildir = _maildir_of(user_dir)
            if maildir is not None:
                users.append(DovecotUser(
                    normalize_address(f"{user_dir.name}@{domain_dir.name}"), maildir))
    return users


def read_passwd_file(path: Path) -> dict[str, str]:
    """address -> password hash casella can verify, from a Dovecot passwd-file (`user:
    {SCHEME}hash:…`): argon2 hashes ({ARGON2ID}, {ARGON2I}, or a bare $argon2…$ string).
    Users with another scheme are left out; they get a password with `casella user passwd`."""
    out: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        user, _, rest = line.partition(":")
        password = rest.split(":", 1)[0]
        m = re.fullmatch(r"(?:\{(ARGON2ID|ARGON2I)\})?(\$argon2(?:id|i)\$\S+)", password)
        if m and "@" in user:
            out[user.strip().lower()] = m.group(2)
    return out


def _message_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """base name -> (file, info letters) of the messages in cur/ and new/ (cur/ wins)."""
    files: dict[str, tuple[Path, str]] = {}
    for sub in ("new", "cur"):
        try:
            names = os.listdir(folder / sub)
        except FileNotFoundError:
            continue
        for name in names:
            if name.startswith("."):
                continue
            base, info = split_filename(name)
            files[base] = (folder / sub / name, info)
    return files


def _loader(path: Path) -> Callable[[], bytes]:
    def load() -> bytes:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise UserError(f"{path}: {exc.strerror or exc}") from None
        return _BARE_LF.sub(b"\r\n", data)
    return load


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None


def read_folder(folder: Path, name: str, uidl_format: str,
                uidvalidity_if_new: int) -> SourceMailbox:
    """One Maildir++ folder. Files the uidlist does not name yet (mail Dovecot has not seen)
    get the next UIDs, oldest first, as Dovecot would give them."""
    text = _read_text(folder / "dovecot-uidlist")
    try:
        uidlist = parse_uidlist(text) if text is not None else None
    except UserError as exc:
        raise UserError(f"{folder}: {exc}") from None
    uidvalidity = uidlist.uidvalidity if uidlist else uidvalidity_if_new
    next_uid = uidlist.next_uid if uidlist else 1
    keywords = parse_keywords(_read_text(folder / "dovecot-keywords") or "")
    files = _message_files(folder)
    inbox = name == "INBOX"
    messages: list[SourceMessage] = []

    def add(uid: int, base: str, guid: str | None, uidl: str | None) -> None:
        path, info = files.pop(base)
        try:
            mtime = int(path.stat().st_mtime)
        except FileNotFoundError:
            return              # expunged meanwhile
        if inbox and uidl is None:
            uidl = expand_uidl_format(uidl_format, uid, uidvalidity, base, guid)
        messages.append(SourceMessage(
            uid=uid, modseq=DOVECOT_MODSEQ, flags=maildir_flags(info, keywords),
            internaldate=mtime, load=_loader(path), pop3_uidl=uidl if inbox else None))

    for entry in uidlist.entries if uidlist else ():
        if entry.filename in files:
            add(entry.uid, entry.filename, entry.fields.get("G"), entry.fields.get("P"))
    unlisted = sorted(files, key=lambda b: (_mtime(files[b][0]), b))
    for base in unlisted:
        add(next_uid, base, None, None)
        next_uid += 1
    return SourceMailbox(name=name, uidvalidity=uidvalidity, uidnext=next_uid,
                         highestmodseq=DOVECOT_MODSEQ, messages=messages)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def folders(maildir: Path) -> list[tuple[str, Path]]:
    """(casella name, directory) of INBOX and every Maildir++ folder, parents first."""
    out = [("INBOX", maildir)]
    for entry in sorted(os.listdir(maildir)):
        path = maildir / entry
        if entry.startswith(".") and entry not in (".", "..") and path.is_dir() and (
                (path / "cur").is_dir() or (path / "dovecot-uidlist").is_file()):
            out.append((folder_name(entry), path))
    return sorted(out, key=lambda p: (p[0] != "INBOX", p[0]))


def _count(maildir: Path) -> int:
    return sum(len(_message_files(path)) for _, path in folders(maildir))


async def import_dovecot(store: Store, root: Path, selection: Selection, *,
                         default_quota: int, mapping: Path | None = None,
                         passwd_file: Path | None = None,
                         uidl_format: str = DEFAULT_UIDL_FORMAT,
                         progress: Progress | None = None) -> tuple[int, int, list[str]]:
    """Import the selected users; returns (accounts, messages imported, addresses left
    without a password casella can check)."""
    expand_uidl_format(uidl_format, 1, 1, "f")      # a bad format fails before any work
    users = [u for u in find_users(root, mapping) if selection.account(u.address)]
    missing = selection.accounts - {u.address for u in users}
    if missing:
        raise UserError(f"no Maildir for {', '.join(sorted(missing))} under {root}")
    passwords = read_passwd_file(passwd_file) if passwd_file is not None else {}
    progress = progress or Progress("imported", 0)
    progress.total = sum(_count(u.maildir) for u in users)
    locked: list[str] = []
    for user in users:
        hash_ = passwords.get(user.address)
        exists = await store.get_account(user.address) is not None
        acct = await ensure_account(store, user.address, hash_ or LOCKED_PASSWORD,
                                    default_quota, replace=False)
        if hash_ is not None and exists:
            await store.set_password(user.address, hash_)
        elif hash_ is None and not exists:
            locked.append(user.address)
        names = []
        for name, path in folders(user.maildir):
            existing = await store.get_mailbox(acct.id, name)
            src = read_folder(path, name, uidl_format, existing.uidvalidity if existing
                              else int(time.time()))
            progress.mailbox(f"{user.address} {name}")
            await sync_mailbox(store, acct.id, src, progress)
            progress.mailbox_done()
            names.append(name)
        subscriptions = parse_subscriptions(_read_text(user.maildir / "subscriptions") or "")
        await finish_account(store, acct.id, names, [], subscriptions)
    progress.finish()
    return len(users), progress.done - progress.skipped, locked
