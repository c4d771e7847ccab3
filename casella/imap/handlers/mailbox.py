"""Mailbox commands: NAMESPACE, SELECT, EXAMINE, CREATE, DELETE, RENAME, SUBSCRIBE,
UNSUBSCRIBE, LIST (with RFC 5258 / RFC 5819 / RFC 6154 options), LSUB, STATUS and APPEND
(RFC 9051 §6.3, RFC 4315 APPENDUID).

Mailbox names arrive as modified UTF-7 and are decoded here; a name that is not valid mUTF-7
is refused with NO, never re-encoded (PROMISES N2). Must never: touch SQL or files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from casella.imap import commands as c
from casella.imap import responses as r
from casella.imap import utf7
from casella.imap.errors import No
from casella.imap.selected import SelectedView
from casella.imap.session import Done, to_crlf
from casella.store.blobs import StagedBlob
from casella.store.model import HIERARCHY_DELIMITER, AppendItem, Mailbox

if TYPE_CHECKING:
    from casella.imap.session import Session

DELIM = HIERARCHY_DELIMITER


def mailbox_name(raw: bytes) -> str:
    """Decode a wire mailbox name (RFC 3501 §5.1.3); NO [CANNOT] when it is not mUTF-7."""
    try:
        name = utf7.decode(raw)
    except utf7.Utf7Error as exc:
        raise No(f"Invalid mailbox name: {exc}", "CANNOT") from None
    if name.upper() == "INBOX":
        return "INBOX"
    if name[:6].upper() == "INBOX" + DELIM:
        return "INBOX" + name[5:]
    return name


async def find_mailbox(s: Session, raw: bytes, missing_code: str = "NONEXISTENT") -> Mailbox:
    assert s.account is not None
    name = mailbox_name(raw)
    mb = await s.store.get_mailbox(s.account.id, name)
    if mb is None:
        raise No(f"Mailbox {name} does not exist", missing_code)
    return mb


async def namespace(s: Session, tag: str, cmd: c.Namespace) -> Done:
    s.write(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
    return Done("NAMESPACE completed")


async def select(s: Session, tag: str, cmd: c.Select) -> Done:
    """RFC 9051 §6.3.2 / RFC 3501 §6.3.1. A failed SELECT leaves no mailbox selected."""
    had_selected = s.selected is not None
    s.leave_selected()
    if had_selected and s.rev2:
        s.write(r.status("*", "OK", "Previous mailbox closed", "CLOSED"))
    mb = await find_mailbox(s, cmd.mailbox)
    if not mb.selectable:
        raise No(f"{mb.name} cannot be selected (it only holds other mailboxes)", "CANNOT")
    # Subscribe before the snapshot so that no change after it goes unnoticed.
    sub = s.store.bus.subscribe(mb.id)
    try:
        snap = await s.store.select(mb.id)
        recent = None
        if not s.rev2 and not cmd.readonly:
            recent = await s.store.claim_recent(mb.id)
    except BaseException:
        sub.close()
        raise
    view = SelectedView(snap, readonly=cmd.readonly, rev2=s.rev2, recent=recent)
    out = [view.flags_responses(), b"* %d EXISTS\r\n" % view.exists]
    if not s.rev2:
        out.append(b"* %d RECENT\r\n" % view.recent_count())
        if snap.first_unseen_uid is not None:
            seq = view.seq_of(snap.first_unseen_uid)
            if seq is not None:
                out.append(r.status("*", "OK", f"Message {seq} is first unseen", f"UNSEEN {seq}"))
    mailbox = snap.mailbox
    out.append(r.status("*", "OK", "UIDs valid", f"UIDVALIDITY {mailbox.uidvalidity}"))
    out.append(r.status("*", "OK", "Predicted next UID", f"UIDNEXT {mailbox.uidnext}"))
    if s.rev2:
        # RFC 9051 §6.3.2: a LIST response with the mailbox name.
        attrs = _attributes(mailbox, await _children(s), set())
        out.append(b"* LIST " + r.flag_list(attrs) + b' "/" ' + r.mailbox(mailbox.name) +
                   b"\r\n")
    s.write(b"".join(out))
    s.enter_selected(view, sub)
    if cmd.readonly:
        return Done("EXAMINE completed", "READ-ONLY")
    return Done("SELECT completed", "READ-WRITE")


async def create(s: Session, tag: str, cmd: c.Create) -> Done:
    assert s.account is not None
    name = mailbox_name(cmd.mailbox)
    # RFC 9051 §6.3.4: a trailing delimiter only says the name will have children.
    if name.endswith(DELIM) and len(name) > 1:
        name = name[:-1]
    if name == "INBOX":
        raise No("INBOX always exists", "ALREADYEXISTS")
    await s.store.create_mailbox(s.account.id, name)
    return Done("CREATE completed")


async def delete(s: Session, tag: str, cmd: c.Delete) -> Done:
    assert s.account is not None
    name = mailbox_name(cmd.mailbox)
    if name == "INBOX":
        raise No("INBOX cannot be deleted", "CANNOT")
    await s.store.delete_mailbox(s.account.id, name)
    return Done("DELETE completed")


async def rename(s: Session, tag: str, cmd: c.Rename) -> Done:
    assert s.account is not None
    old = mailbox_name(cmd.old)
    new = mailbox_name(cmd.new)
    if new.endswith(DELIM) and len(new) > 1:
        new = new[:-1]
    await s.store.rename_mailbox(s.account.id, old, new)
    return Done("RENAME completed")


async def subscribe(s: Session, tag: str, cmd: c.Subscribe) -> Done:
    assert s.account is not None
    await s.store.subscribe(s.account.id, mailbox_name(cmd.mailbox))
    return Done("SUBSCRIBE completed")


async def unsubscribe(s: Session, tag: str, cmd: c.Unsubscribe) -> Done:
    assert s.account is not None
    await s.store.unsubscribe(s.account.id, mailbox_name(cmd.mailbox))
    return Done("UNSUBSCRIBE completed")


# --- LIST ----------------------------------------------------------------------------------

def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """RFC 9051 §6.3.9: `*` matches anything, `%` anything but the delimiter. INBOX is
    case-insensitive."""
    if pattern[:5].upper() == "INBOX" and (len(pattern) == 5 or pattern[5] in DELIM + "*%"):
        pattern = "INBOX" + pattern[5:]
    out = []
    for ch in pattern:
        if ch == "*":
            out.append(".*")
        elif ch == "%":
            out.append(f"[^{re.escape(DELIM)}]*")
        else:
            out.append(re.escape(ch))
    return re.compile("".join(out), re.DOTALL)


def _full_pattern(reference: bytes, pattern: bytes) -> str | None:
    """Reference and pattern taken together (RFC 9051 §6.3.9), decoded; None if invalid."""
    try:
        ref = utf7.decode(reference) if reference else ""
        pat = utf7.decode(pattern) if pattern else ""
    except utf7.Utf7Error:
        return None
    if ref and pat.startswith(DELIM) and ref.endswith(DELIM):
        pat = pat[1:]
    return ref + pat


async def _children(s: Session) -> set[str]:
    """Names that have at least one child mailbox."""
    assert s.account is not None
    names = [m.name for m in await s.store.list_mailboxes(s.account.id)]
    return {n.rsplit(DELIM, 1)[0] for n in names if DELIM in n} | \
        {p for n in names for p in _parents(n)}


def _parents(name: str) -> list[str]:
    parts = name.split(DELIM)
    return [DELIM.join(parts[:i]) for i in range(1, len(parts))]


def _attributes(mb: Mailbox | None, parents: set[str], subscribed: set[str],
                name: str | None = None, want_subscribed: bool = False) -> list[str]:
    name = mb.name if mb is not None else name
    assert name is not None
    attrs: list[str] = []
    if mb is None:
        attrs.append("\\NonExistent")
    elif not mb.selectable:
        attrs.append("\\Noselect")
    if mb is not None:
        attrs.append("\\HasChildren" if name in parents else "\\HasNoChildren")
        if mb.special_use:
            attrs.append(mb.special_use)
    if want_subscribed and name in subscribed:
        attrs.append("\\Subscribed")
    return attrs


async def list_(s: Session, tag: str, cmd: c.List) -> Done:
    assert s.account is not None
    if len(cmd.patterns) == 1 and cmd.patterns[0] == b"" and not cmd.selection:
        # RFC 9051 §6.3.9: the hierarchy delimiter and the root name.
        s.write(b'* LIST (\\Noselect) "/" ""\r\n')
        return Done("LIST completed")
    regexes = []
    for pattern in cmd.patterns:
        full = _full_pattern(cmd.reference, pattern)
        if full is not None and full != "":
            regexes.append(_pattern_regex(full))
    mailboxes = await s.store.list_mailboxes(s.account.id)
    by_name = {m.name: m for m in mailboxes}
    parents = {p for m in mailboxes for p in _parents(m.name)}
    sel = cmd.selection
    want_sub = "SUBSCRIBED" in sel or "SUBSCRIBED" in cmd.returns
    subscribed = set(await s.store.list_subscriptions(s.account.id)) if want_sub else set()

    def matches(name: str) -> bool:
        return any(rx.fullmatch(name) for rx in regexes)

    lines: list[tuple[str, Mailbox | None, bytes]] = []
    if "SUBSCRIBED" in sel:
        names = sorted(subscribed)
        shown = set()
        for name in names:
            if matches(name):
                shown.add(name)
                lines.append((name, by_name.get(name), b""))
        if "RECURSIVEMATCH" in sel:
            # RFC 5258 §3: parents that match, with a subscribed child that does not show.
            for name in names:
                for parent in _parents(name):
                    if parent not in shown and matches(parent):
                        shown.add(parent)
                        lines.append((parent, by_name.get(parent),
                                      b' ("CHILDINFO" ("SUBSCRIBED"))'))
        lines.sort(key=lambda x: x[0])
    else:
        for box in mailboxes:
            if not matches(box.name):
                continue
            if "SPECIAL-USE" in sel and not box.special_use:
                continue
            lines.append((box.name, box, b""))
    out: list[bytes] = []
    for name, mb, extra in lines:
        attrs = _attributes(mb, parents, subscribed, name, want_sub)
        out.append(b"* LIST " + r.flag_list(attrs) + b' "/" ' + r.mailbox(name) + extra +
                   b"\r\n")
        if cmd.status_items and mb is not None and mb.selectable:
            out.append(await _status_line(s, mb, cmd.status_items))
    s.write(b"".join(out))
    return Done("LIST completed")


async def lsub(s: Session, tag: str, cmd: c.Lsub) -> Done:
    """RFC 3501 §6.3.9 (kept in IMAP4rev2 servers for old clients)."""
    assert s.account is not None
    full = _full_pattern(cmd.reference, cmd.pattern)
    if full:
        rx = _pattern_regex(full)
        subscribed = sorted(await s.store.list_subscriptions(s.account.id))
        shown: set[str] = set()
        out = []
        for name in subscribed:
            if rx.fullmatch(name):
                shown.add(name)
                out.append(b"* LSUB () \"/\" " + r.mailbox(name) + b"\r\n")
        # A `%` that stops above a subscribed child lists the parent as \Noselect.
        for name in subscribed if "%" in full else ():
            for parent in _parents(name):
                if parent not in shown and rx.fullmatch(parent):
                    shown.add(parent)
                    out.append(b"* LSUB (\\Noselect) \"/\" " + r.mailbox(parent) + b"\r\n")
        s.write(b"".join(out))
    return Done("LSUB completed")


# --- STATUS --------------------------------------------------------------------------------

async def _recent_count(s: Session, mb: Mailbox) -> int:
    if mb.first_recent_uid >= mb.uidnext:
        return 0
    metas = await s.store.fetch_meta(mb.id, [(max(mb.first_recent_uid, 1), mb.uidnext - 1)])
    return len(metas)


async def _status_line(s: Session, mb: Mailbox, items: Sequence[str]) -> bytes:
    values: list[bytes] = []
    for item in items:
        if item == "MESSAGES":
            n = mb.messages
        elif item == "RECENT":
            n = await _recent_count(s, mb)
        elif item == "UIDNEXT":
            n = mb.uidnext
        elif item == "UIDVALIDITY":
            n = mb.uidvalidity
        elif item == "UNSEEN":
            n = mb.unseen
        elif item == "SIZE":
            n = mb.size
        else:  # DELETED
            n = mb.deleted
        values.append(b"%s %d" % (item.encode("ascii"), n))
    return b"* STATUS " + r.mailbox(mb.name) + b" (" + b" ".join(values) + b")\r\n"


async def status(s: Session, tag: str, cmd: c.Status) -> Done:
    """RFC 9051 §6.3.11: from the mailbox record, never from message bodies."""
    mb = await find_mailbox(s, cmd.mailbox)
    if not mb.selectable:
        raise No(f"{mb.name} holds no messages (it only has children)", "NONEXISTENT")
    s.write(await _status_line(s, mb, cmd.items))
    return Done("STATUS completed")


# --- APPEND --------------------------------------------------------------------------------

async def append(s: Session, tag: str, cmd: c.Append) -> Done:
    """RFC 9051 §6.3.12; APPENDUID from RFC 4315 §3. OK only after the store committed."""
    mb = await find_mailbox(s, cmd.mailbox, missing_code="TRYCREATE")
    if not mb.selectable:
        raise No(f"{mb.name} cannot hold messages", "CANNOT")
    staged: StagedBlob
    if isinstance(cmd.message, c.ExternalLiteral):
        assert isinstance(cmd.message.handle, StagedBlob)
        staged = cmd.message.handle
    else:
        if not cmd.message:
            raise No("Cannot store an empty message", "CANNOT")
        staged = await s.store.blobs.stage(to_crlf(cmd.message))
    try:
        internaldate = int(cmd.date.timestamp()) if cmd.date is not None else None
        result = await s.store.append(mb.id, [AppendItem(staged, cmd.flags, internaldate)])
    finally:
        staged.discard()
    if s.selected is not None and s.selected.mailbox_id == mb.id:
        s.write(s.selected.learn_keywords(cmd.flags))
    return Done("APPEND completed",
                f"APPENDUID {result.uidvalidity} {result.uids[0]}")

