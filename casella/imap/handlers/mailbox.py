"""Mailbox commands: NAMESPACE, SELECT and EXAMINE (with CONDSTORE and QRESYNC, RFC 7162
§3.1.8, §3.2.5), CREATE (with USE, RFC 6154 §3), DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE, LIST
(with RFC 5258 / RFC 5819 / RFC 6154 options), LSUB and STATUS (RFC 9051 §6.3; HIGHESTMODSEQ,
DELETED-STORAGE, MAILBOXID, APPENDLIMIT items). APPEND is in append.py.

Mailbox names arrive as modified UTF-7 (UTF-8 after ENABLE UTF8=ACCEPT) and are decoded here; a
name that is not valid is refused with NO, never re-encoded (PROMISES N2). Must never: touch
SQL or files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from casella.errors import StorageError
from casella.imap import commands as c
from casella.imap import responses as r
from casella.imap import seqset
from casella.imap.errors import Bad, No
from casella.imap.selected import SelectedView
from casella.imap.session import Done
from casella.imap.shared import shared_state
from casella.store.model import HIERARCHY_DELIMITER, Mailbox

if TYPE_CHECKING:
    from casella.imap.session import Session

DELIM = HIERARCHY_DELIMITER


# Special-use attributes a real mailbox may carry (\\All and \\Flagged name virtual mailboxes,
# which casella does not have).
CREATE_USES = ("\\Archive", "\\Drafts", "\\Junk", "\\Sent", "\\Trash")


def mailbox_id_of(mb: Mailbox) -> str:
    """MAILBOXID (RFC 8474 §4): UIDVALIDITY is allocated strictly increasing store-wide, so it
    names one incarnation of a mailbox: kept by RENAME, new after DELETE and CREATE."""
    return f"F{mb.uidvalidity:08x}"


def mailbox_name(s: Session, raw: bytes) -> str:
    """Decode a wire mailbox name (RFC 3501 §5.1.3); NO [CANNOT] when it is not valid."""
    name = s.decode_name(raw)
    if name.upper() == "INBOX":
        return "INBOX"
    if name[:6].upper() == "INBOX" + DELIM:
        return "INBOX" + name[5:]
    return name


async def find_mailbox(s: Session, raw: bytes, missing_code: str = "NONEXISTENT") -> Mailbox:
    assert s.account is not None
    name = mailbox_name(s, raw)
    mb = await s.store.get_mailbox(s.account.id, name)
    if mb is None:
        raise No(f"Mailbox {name} does not exist", missing_code)
    return mb


async def namespace(s: Session, tag: str, cmd: c.Namespace) -> Done:
    s.write(b'* NAMESPACE (("" "/")) NIL NIL\r\n')
    return Done("NAMESPACE completed")


async def select(s: Session, tag: str, cmd: c.Select) -> Done:
    """RFC 9051 §6.3.2 / RFC 3501 §6.3.1. A failed SELECT leaves no mailbox selected."""
    if cmd.qresync is not None and not s.qresync:
        # RFC 7162 §3.2.5: only after ENABLE QRESYNC.
        raise Bad("QRESYNC is not enabled (ENABLE QRESYNC first)")
    had_selected = s.selected is not None
    s.leave_selected()
    if cmd.condstore:
        s.enable_condstore()     # after leaving: the new mailbox's HIGHESTMODSEQ follows
    if had_selected and (s.rev2 or s.qresync):
        # RFC 9051 §7.1, RFC 7162 §3.2.11: the old mailbox's updates end here.
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
            recent = (0, 0)
            box = snap.mailbox
            # Only when something is left to claim: the claim is a write (and a commit).
            if box.first_recent_uid < box.uidnext:
                try:
                    recent = await shared_state(s.store).claim_recent(
                        box.id, box.uidvalidity, box.uidnext - 1) or (0, 0)
                except StorageError:
                    # Issue 7 §6: a full disk must not stop reading; nothing is \Recent then.
                    pass
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
    # RFC 7162 §3.1.2.1: every mailbox keeps MODSEQs, so HIGHESTMODSEQ always (never NOMODSEQ).
    out.append(r.status("*", "OK", "Highest", f"HIGHESTMODSEQ {mailbox.highestmodseq}"))
    out.append(r.status("*", "OK", "Ok", f"MAILBOXID ({mailbox_id_of(mailbox)})"))
    if s.rev2:
        # RFC 9051 §6.3.2: a LIST response with the mailbox name.
        attrs = _attributes(mailbox, await _children(s), set())
        out.append(b"* LIST " + r.flag_list(attrs) + b' "/" ' + s.mbox(mailbox.name) +
                   b"\r\n")
    s.write(b"".join(out))
    s.enter_selected(view, sub)
    if cmd.qresync is not None and cmd.qresync.uidvalidity == mailbox.uidvalidity:
        # RFC 7162 §3.2.5.1; a stale UIDVALIDITY gets no VANISHED and no FETCH: full resync.
        s.write(await _qresync_changes(s, view, cmd.qresync))
    if cmd.readonly:
        return Done("EXAMINE completed", "READ-ONLY")
    return Done("SELECT completed", "READ-WRITE")


async def _qresync_changes(s: Session, view: SelectedView, q: c.QresyncParams) -> bytes:
    """VANISHED (EARLIER) then FETCH (UID FLAGS MODSEQ) for what changed since the client's
    MODSEQ, limited to its known UIDs (RFC 7162 §3.2.5.1: as `UID FETCH known (FLAGS)
    (CHANGEDSINCE modseq VANISHED)`). Every expunge is remembered, so the sequence match data
    is not needed to narrow anything. Only UIDs this view no longer holds are reported
    vanished: a message expunged after the snapshot is announced by the next update instead,
    so sequence numbers stay in step."""
    largest = max(view.uidnext - 1, 0)
    known = q.known_uids.resolve(largest) if q.known_uids is not None else \
        ([(1, largest)] if largest else [])
    out: list[bytes] = []
    gone = [u for u in await s.store.vanished_since(view.mailbox_id, q.modseq)
            if view.seq_of(u) is None and _in(known, u)]
    if gone:
        out.append(b"* VANISHED (EARLIER) " + seqset.compress(gone) + b"\r\n")
    changes = await s.store.changes_since(view.mailbox_id, q.modseq)
    for meta in changes.messages:
        seq = view.seq_of(meta.uid)
        if seq is None or not _in(known, meta.uid) or meta.modseq > view.modseq:
            continue
        out.append(view.fetch_flags_line(seq, meta, with_uid=True))
    return b"".join(out)


def _in(ranges: Sequence[tuple[int, int]], uid: int) -> bool:
    return any(lo <= uid <= hi for lo, hi in ranges)


async def create(s: Session, tag: str, cmd: c.Create) -> Done:
    assert s.account is not None
    name = mailbox_name(s, cmd.mailbox)
    # RFC 9051 §6.3.4: a trailing delimiter only says the name will have children.
    if name.endswith(DELIM) and len(name) > 1:
        name = name[:-1]
    if name == "INBOX":
        raise No("INBOX always exists", "ALREADYEXISTS")
    use = None
    if cmd.special_use:
        # RFC 6154 §3: an attribute the server cannot give is NO [USEATTR].
        by_upper = {u.upper(): u for u in CREATE_USES}
        wanted = [by_upper.get(u.upper()) for u in cmd.special_use]
        if None in wanted or len(wanted) > 1:
            raise No("casella gives a mailbox one special-use attribute of "
                     + " ".join(CREATE_USES), "USEATTR")
        use = wanted[0]
    mb = await s.store.create_mailbox(s.account.id, name, use)
    await s.absorb_own(names=True)
    return Done("CREATE completed", f"MAILBOXID ({mailbox_id_of(mb)})")


async def delete(s: Session, tag: str, cmd: c.Delete) -> Done:
    assert s.account is not None
    name = mailbox_name(s, cmd.mailbox)
    if name == "INBOX":
        raise No("INBOX cannot be deleted", "CANNOT")
    await s.store.delete_mailbox(s.account.id, name)
    await s.absorb_own(names=True)
    return Done("DELETE completed")


async def rename(s: Session, tag: str, cmd: c.Rename) -> Done:
    assert s.account is not None
    old = mailbox_name(s, cmd.old)
    new = mailbox_name(s, cmd.new)
    if new.endswith(DELIM) and len(new) > 1:
        new = new[:-1]
    await s.store.rename_mailbox(s.account.id, old, new)
    await s.absorb_own(names=True)
    return Done("RENAME completed")


async def subscribe(s: Session, tag: str, cmd: c.Subscribe) -> Done:
    assert s.account is not None
    await s.store.subscribe(s.account.id, mailbox_name(s, cmd.mailbox))
    await s.absorb_own(names=True)
    return Done("SUBSCRIBE completed")


async def unsubscribe(s: Session, tag: str, cmd: c.Unsubscribe) -> Done:
    assert s.account is not None
    await s.store.unsubscribe(s.account.id, mailbox_name(s, cmd.mailbox))
    await s.absorb_own(names=True)
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


def _full_pattern(s: Session, reference: bytes, pattern: bytes) -> str | None:
    """Reference and pattern taken together (RFC 9051 §6.3.9), decoded; None if invalid."""
    try:
        ref = s.decode_name(reference) if reference else ""
        pat = s.decode_name(pattern) if pattern else ""
    except No:
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
        full = _full_pattern(s, cmd.reference, pattern)
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
            # RFC 5258 §3: a parent that matches, is not itself listed, and has a subscribed
            # descendant that does not match the patterns (one that matches is listed itself
            # and needs no CHILDINFO).
            for name in names:
                if name in shown:
                    continue
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
        out.append(b"* LIST " + r.flag_list(attrs) + b' "/" ' + s.mbox(name) + extra +
                   b"\r\n")
        if cmd.status_items and mb is not None and mb.selectable:
            out.append(await status_line(s, mb, cmd.status_items))
    s.write(b"".join(out))
    return Done("LIST completed")


async def lsub(s: Session, tag: str, cmd: c.Lsub) -> Done:
    """RFC 3501 §6.3.9 (kept in IMAP4rev2 servers for old clients)."""
    assert s.account is not None
    full = _full_pattern(s, cmd.reference, cmd.pattern)
    if full:
        rx = _pattern_regex(full)
        subscribed = sorted(await s.store.list_subscriptions(s.account.id))
        shown: set[str] = set()
        out = []
        for name in subscribed:
            if rx.fullmatch(name):
                shown.add(name)
                out.append(b"* LSUB () \"/\" " + s.mbox(name) + b"\r\n")
        # A `%` that stops above a subscribed child lists the parent as \Noselect.
        for name in subscribed if "%" in full else ():
            for parent in _parents(name):
                if parent not in shown and rx.fullmatch(parent):
                    shown.add(parent)
                    out.append(b"* LSUB (\\Noselect) \"/\" " + s.mbox(parent) + b"\r\n")
        s.write(b"".join(out))
    return Done("LSUB completed")


# --- STATUS --------------------------------------------------------------------------------

async def _recent_count(s: Session, mb: Mailbox) -> int:
    if mb.first_recent_uid >= mb.uidnext:
        return 0
    metas = await s.store.fetch_meta(mb.id, [(max(mb.first_recent_uid, 1), mb.uidnext - 1)])
    return len(metas)


async def status_line(s: Session, mb: Mailbox, items: Sequence[str]) -> bytes:
    values: list[bytes] = []
    for item in items:
        if item == "MAILBOXID":
            values.append(f"MAILBOXID ({mailbox_id_of(mb)})".encode("ascii"))
            continue
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
        elif item == "HIGHESTMODSEQ":
            n = mb.highestmodseq
        elif item == "DELETED-STORAGE":
            # RFC 9208 §4.3: what EXPUNGE would give back, in the STORAGE unit (1024 octets).
            n = (await s.store.deleted_storage(mb.id) + 1023) // 1024
        elif item == "APPENDLIMIT":
            n = s.app.config.limits.max_message_size     # RFC 7889 §3.2
        else:  # DELETED
            n = mb.deleted
        values.append(b"%s %d" % (item.encode("ascii"), n))
    return b"* STATUS " + s.mbox(mb.name) + b" (" + b" ".join(values) + b")\r\n"


async def status(s: Session, tag: str, cmd: c.Status) -> Done:
    """RFC 9051 §6.3.11: from the mailbox record, never from message bodies."""
    if "HIGHESTMODSEQ" in cmd.items:
        s.enable_condstore()          # RFC 7162 §3.1: a CONDSTORE enabling command
    mb = await find_mailbox(s, cmd.mailbox)
    if not mb.selectable:
        raise No(f"{mb.name} holds no messages (it only has children)", "NONEXISTENT")
    s.write(await status_line(s, mb, cmd.items))
    return Done("STATUS completed")
