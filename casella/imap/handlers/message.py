"""Selected-state commands on messages: CHECK, CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE, STORE,
COPY and MOVE (RFC 9051 §6.4; RFC 4315 UIDPLUS; RFC 6851 MOVE).

Every change is one store call; OK is sent after it returned (it is durable then). Must never:
touch SQL or files, or send EXPUNGE for a message this session has not seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from casella.imap import commands as c
from casella.imap import responses as r
from casella.imap import seqset
from casella.imap.errors import No
from casella.imap.handlers.mailbox import find_mailbox
from casella.imap.session import Done

if TYPE_CHECKING:
    from casella.imap.selected import SelectedView
    from casella.imap.session import Session


def _view(s: Session) -> SelectedView:
    assert s.selected is not None
    return s.selected


def _writable(view: SelectedView) -> None:
    if view.readonly:
        raise No("The mailbox is open read-only (EXAMINE)", "READ-ONLY")


async def check(s: Session, tag: str, cmd: c.Check) -> Done:
    return Done("CHECK completed")


async def close(s: Session, tag: str, cmd: c.Close) -> Done:
    """RFC 9051 §6.4.1: expunge silently (read-write only), then no mailbox is selected."""
    view = _view(s)
    if not view.readonly:
        await s.store.expunge(view.mailbox_id)
    s.leave_selected()
    return Done("CLOSE completed")


async def unselect(s: Session, tag: str, cmd: c.Unselect) -> Done:
    """RFC 3691 / RFC 9051 §6.4.2: like CLOSE without the expunge."""
    s.leave_selected()
    return Done("UNSELECT completed")


async def expunge(s: Session, tag: str, cmd: c.Expunge) -> Done:
    view = _view(s)
    _writable(view)
    if cmd.uids is None:
        result = await s.store.expunge(view.mailbox_id)
    else:
        # RFC 4315 §2.1: only the named UIDs this session knows about.
        uids = view.resolve(cmd.uids, uid=True, saved=s.saved_search)
        if not uids:
            return Done("EXPUNGE completed")
        result = await s.store.expunge(view.mailbox_id, seqset.ranges_of(uids))
    s.write(view.expunge_uids(result.uids))
    return Done("EXPUNGE completed")


async def store(s: Session, tag: str, cmd: c.Store) -> Done:
    """RFC 9051 §6.4.6. FETCH responses for every message addressed (unless .SILENT); none of
    them an EXPUNGE (X1)."""
    view = _view(s)
    _writable(view)
    uids = view.resolve(cmd.messages, cmd.uid, s.saved_search)
    live = [u for u in uids if u not in view.pending_expunge]
    if not live:
        return _store_done(cmd, len(uids) > 0)
    result = await s.store.store_flags(view.mailbox_id, seqset.ranges_of(live), cmd.mode,
                                       cmd.flags)
    view.note_own(result.changed)
    s.write(view.learn_keywords(cmd.flags))
    if not cmd.silent:
        metas = sorted(result.changed + result.unchanged, key=lambda m: m.uid)
        out = []
        for m in metas:
            seq = view.seq_of(m.uid)
            if seq is not None:
                out.append(view.fetch_flags_line(seq, m, with_uid=cmd.uid))
        s.write(b"".join(out))
    found = len(result.changed) + len(result.unchanged)
    return _store_done(cmd, found < len(uids))


def _store_done(cmd: c.Store, some_gone: bool) -> Done:
    if some_gone and not cmd.uid:
        # RFC 2180 §4.2.1: some messages were expunged by another session meanwhile.
        raise No("Some of the messages no longer exist", "EXPUNGEISSUED")
    return Done("STORE completed")


async def copy(s: Session, tag: str, cmd: c.Copy) -> Done:
    """RFC 9051 §6.4.7 with COPYUID (RFC 4315 §3)."""
    view = _view(s)
    dst = await find_mailbox(s, cmd.mailbox, missing_code="TRYCREATE")
    uids = view.resolve(cmd.messages, cmd.uid, s.saved_search)
    uids = [u for u in uids if u not in view.pending_expunge]
    if not uids:
        return Done("COPY completed (nothing to copy)")
    result = await s.store.copy(view.mailbox_id, seqset.ranges_of(uids), dst.id)
    if not result.pairs:
        if cmd.uid:
            return Done("COPY completed (nothing to copy)")
        raise No("The messages no longer exist", "EXPUNGEISSUED")
    src_set = seqset.compress_ordered([p[0] for p in result.pairs]).decode()
    dst_set = seqset.compress_ordered([p[1] for p in result.pairs]).decode()
    return Done("COPY completed", f"COPYUID {result.uidvalidity} {src_set} {dst_set}")


async def move(s: Session, tag: str, cmd: c.Move) -> Done:
    """RFC 6851 §3: COPYUID in an untagged OK, then EXPUNGE for each moved message."""
    view = _view(s)
    _writable(view)
    dst = await find_mailbox(s, cmd.mailbox, missing_code="TRYCREATE")
    uids = view.resolve(cmd.messages, cmd.uid, s.saved_search)
    uids = [u for u in uids if u not in view.pending_expunge]
    if not uids:
        return Done("MOVE completed (nothing to move)")
    result = await s.store.move(view.mailbox_id, seqset.ranges_of(uids), dst.id)
    if not result.pairs:
        if cmd.uid:
            return Done("MOVE completed (nothing to move)")
        raise No("The messages no longer exist", "EXPUNGEISSUED")
    src_set = seqset.compress_ordered([p[0] for p in result.pairs]).decode()
    dst_set = seqset.compress_ordered([p[1] for p in result.pairs]).decode()
    s.write(r.status("*", "OK", "Moved", f"COPYUID {result.uidvalidity} {src_set} {dst_set}"))
    s.write(view.expunge_uids(result.expunged))
    return Done("MOVE completed")
