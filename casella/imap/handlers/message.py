"""Selected-state commands on messages: CHECK, CLOSE, UNSELECT, EXPUNGE, UID EXPUNGE, STORE,
COPY and MOVE (RFC 9051 §6.4; RFC 4315 UIDPLUS; RFC 6851 MOVE), with CONDSTORE (STORE
UNCHANGEDSINCE and MODIFIED, MODSEQ in FETCH responses, HIGHESTMODSEQ after EXPUNGE and CLOSE:
RFC 7162 §3.1.3, §3.2.7-3.2.9), VANISHED instead of EXPUNGE once QRESYNC is on, the keyword
bounds of issue 7 and the quota warnings of issue 9.

Every change is one store call; OK is sent after it returned (it is durable then). Must never:
touch SQL or files, or send EXPUNGE for a message this session has not seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from casella.delivery.quotawarn import send_quota_warnings
from casella.delivery.spam import train_after_copy
from casella.imap import commands as c
from casella.imap import responses as r
from casella.imap import seqset
from casella.imap.errors import No
from casella.imap.handlers.append import MAX_KEYWORDS_PER_MESSAGE, check_keywords
from casella.imap.handlers.mailbox import find_mailbox
from casella.imap.session import Done
from casella.store.model import CopyResult

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
    """RFC 9051 §6.4.1: expunge silently (read-write only), then no mailbox is selected. With
    CONDSTORE, HIGHESTMODSEQ in the OK when something went (RFC 7162 §3.2.8)."""
    view = _view(s)
    code = None
    if not view.readonly:
        result = await s.store.expunge(view.mailbox_id)
        if result.uids and s.condstore:
            code = f"HIGHESTMODSEQ {result.highestmodseq}"
    s.leave_selected()
    return Done("CLOSE completed", code)


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
    if result.uids:
        view.own_change(result.highestmodseq)
    if result.uids and s.condstore:
        # RFC 7162 §3.2.7: the new HIGHESTMODSEQ when at least one message went.
        return Done("EXPUNGE completed", f"HIGHESTMODSEQ {result.highestmodseq}")
    return Done("EXPUNGE completed")


async def store(s: Session, tag: str, cmd: c.Store) -> Done:
    """RFC 9051 §6.4.6. FETCH responses for every message addressed that still exists (unless
    .SILENT); none of them an EXPUNGE (X1). With UNCHANGEDSINCE (RFC 7162 §3.1.3) messages
    changed since are left alone and named in `OK [MODIFIED set]`; with CONDSTORE on, each
    FETCH carries UID and MODSEQ, and .SILENT still reports the new MODSEQ of the messages
    that changed."""
    view = _view(s)
    _writable(view)
    if cmd.unchangedsince is not None:
        s.enable_condstore()
    uids = view.resolve(cmd.messages, cmd.uid, s.saved_search)
    live = [u for u in uids if u not in view.pending_expunge]
    if not live:
        return _store_done(cmd, len(uids) > 0)
    await _check_store_keywords(s, view, cmd, live)
    result = await s.store.store_flags(view.mailbox_id, seqset.ranges_of(live), cmd.mode,
                                       cmd.flags, cmd.unchangedsince)
    view.note_own(result.changed)
    if result.changed:
        view.own_change(result.highestmodseq)
    s.write(view.learn_keywords(cmd.flags))
    out = []
    if not cmd.silent:
        metas = sorted(result.changed + result.unchanged, key=lambda m: m.uid)
        for m in metas:
            seq = view.seq_of(m.uid)
            if seq is not None:
                out.append(view.fetch_flags_line(seq, m, with_uid=cmd.uid))
    elif s.condstore:
        for m in result.changed:
            seq = view.seq_of(m.uid)
            if seq is not None:
                out.append(view.fetch_flags_line(seq, m, with_uid=True, with_flags=False))
    s.write(b"".join(out))
    found = len(result.changed) + len(result.unchanged) + len(result.modified)
    if result.modified:
        if cmd.uid:
            numbers = sorted(result.modified)
        else:
            numbers = sorted(n for n in (view.seq_of(u) for u in result.modified)
                             if n is not None)
        return Done("Conditional STORE failed for some messages",
                    "MODIFIED " + seqset.compress(numbers).decode())
    return _store_done(cmd, found < len(uids))


async def _check_store_keywords(s: Session, view: SelectedView, cmd: c.Store,
                                uids: list[int]) -> None:
    """Issue 7: keywords per message and per mailbox are bounded (NO [LIMIT])."""
    keywords = [f for f in cmd.flags if not f.startswith("\\")]
    if not keywords or cmd.mode == "remove":
        return
    check_keywords(view, cmd.flags)
    if cmd.mode == "add":
        most = 0
        for start in range(0, len(uids), 2000):
            chunk = uids[start:start + 2000]
            for meta in await s.store.fetch_meta(view.mailbox_id, seqset.ranges_of(chunk)):
                have = {f.lower() for f in meta.flags if not f.startswith("\\")}
                most = max(most, len(have | {k.lower() for k in keywords}))
        if most > MAX_KEYWORDS_PER_MESSAGE:
            raise No(f"A message can carry at most {MAX_KEYWORDS_PER_MESSAGE} keywords",
                     "LIMIT")


def _store_done(cmd: c.Store, some_gone: bool) -> Done:
    if some_gone and not cmd.uid:
        # Some messages were expunged by another session meanwhile: the others' flags changed
        # and only they got FETCH responses. OK, as RFC 2180 §4.2.1 asks for .SILENT and as
        # Dovecot answers either way (§4.2.2/§4.2.3 allow NO, which clients take for a
        # failure of the whole STORE); EXPUNGEISSUED (RFC 5530 §3) tells the client to NOOP.
        return Done("STORE completed; some of the messages no longer exist", "EXPUNGEISSUED")
    return Done("STORE completed")


async def _after_copy(s: Session, dst_id: int, result: CopyResult) -> None:
    view = _view(s)
    if view.mailbox_id == dst_id:
        view.own_new.update(p[1] for p in result.pairs)
    else:
        await s.absorb_own(dst_id)
    assert s.account is not None
    await send_quota_warnings(s.store, s.app.hostname, [s.account.id])


async def _announce_copies_here(s: Session, dst_id: int) -> None:
    """The copies went into the selected mailbox itself: announce them (EXISTS) before the
    tagged OK, from the store, instead of waiting for the change event to come back."""
    view = _view(s)
    if view.mailbox_id == dst_id:
        s.write(await view.sync(s.store, allow_expunge=True))


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
    await _after_copy(s, dst.id, result)
    await _announce_copies_here(s, dst.id)
    # Issue 20: into Junk trains Rspamd, in the background, after this command's OK.
    train_after_copy(s.app.spam, s.store, s.account, view.mailbox_id, dst, result, moved=False)
    src_set = seqset.compress_ordered([p[0] for p in result.pairs]).decode()
    dst_set = seqset.compress_ordered([p[1] for p in result.pairs]).decode()
    return Done("COPY completed", f"COPYUID {result.uidvalidity} {src_set} {dst_set}")


async def move(s: Session, tag: str, cmd: c.Move) -> Done:
    """RFC 6851 §3: COPYUID in an untagged OK, then EXPUNGE (VANISHED with QRESYNC, §4.3) for
    each moved message. The target may be the selected mailbox itself (RFC 6851 §3.3: MOVE is
    COPY, then the expunge of the originals; COPY into the selected mailbox is allowed, RFC
    9051 §6.4.7): each message gets a new UID, and its new sequence number follows in EXISTS."""
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
    await _after_copy(s, dst.id, result)
    src_set = seqset.compress_ordered([p[0] for p in result.pairs]).decode()
    dst_set = seqset.compress_ordered([p[1] for p in result.pairs]).decode()
    s.write(r.status("*", "OK", "Moved", f"COPYUID {result.uidvalidity} {src_set} {dst_set}"))
    s.write(view.expunge_uids(result.expunged))
    await _announce_copies_here(s, dst.id)
    train_after_copy(s.app.spam, s.store, s.account, view.mailbox_id, dst, result, moved=True)
    return Done("MOVE completed")
