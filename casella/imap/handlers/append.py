"""APPEND (RFC 9051 §6.3.12) with MULTIAPPEND (RFC 3502: several messages, all or none),
literal8 (RFC 3516 §4.4, stored as casella.mail.storeform says), CATENATE (RFC 4469, the
message built by handlers/catenate.py), the UTF8 data extension (RFC 6855 §4), APPENDUID
(RFC 4315 §3), the keyword bounds of issue 7, and the quota warnings of issue 9.

OK only after the store committed every message. Must never: touch SQL or files, or keep a
staged body after the command.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from casella.delivery.quotawarn import send_quota_warnings
from casella.imap import commands as c
from casella.imap import seqset
from casella.imap.errors import No
from casella.imap.handlers.catenate import assemble
from casella.imap.handlers.mailbox import find_mailbox, mailbox_name
from casella.imap.session import Done
from casella.imap.shared import shared_state
from casella.mail.storeform import binary_form, text_form
from casella.store.blobs import StagedBlob
from casella.store.model import AppendItem

if TYPE_CHECKING:
    from casella.imap.selected import SelectedView
    from casella.imap.session import Session

MAX_KEYWORDS_PER_MESSAGE = 64     # PROMISES P1: keywords one message may carry
MAX_KEYWORDS_PER_MAILBOX = 256    # distinct keywords in one mailbox's FLAGS


def check_keywords(view: SelectedView | None, flags: tuple[str, ...],
                   known: set[str] | None = None) -> None:
    """NO [LIMIT] when `flags` would give a message or the mailbox too many keywords."""
    keywords = [f for f in flags if not f.startswith("\\")]
    if len(keywords) > MAX_KEYWORDS_PER_MESSAGE:
        raise No(f"A message can carry at most {MAX_KEYWORDS_PER_MESSAGE} keywords", "LIMIT")
    have = known if known is not None else (view.keywords if view is not None else set())
    lower = {k.lower() for k in have}
    new = {k.lower() for k in keywords} - lower
    if new and len(lower) + len(new) > MAX_KEYWORDS_PER_MAILBOX:
        raise No(f"A mailbox can have at most {MAX_KEYWORDS_PER_MAILBOX} keywords", "LIMIT")


async def append(s: Session, tag: str, cmd: c.Append) -> Done:
    view = s.selected
    if view is not None and view.name == "INBOX" and mailbox_name(s, cmd.mailbox) == "INBOX":
        # INBOX can be neither deleted nor renamed away (RFC 3501 §6.3.5): the selected one
        # is the one to append to.
        mailbox_id = view.mailbox_id
    else:
        mb = await find_mailbox(s, cmd.mailbox, missing_code="TRYCREATE")
        if not mb.selectable:
            raise No(f"{mb.name} cannot hold messages", "CANNOT")
        mailbox_id = mb.id
        view = view if view is not None and view.mailbox_id == mb.id else None
    known: set[str] | None = None
    if view is None and any(not f.startswith("\\") for m in cmd.messages for f in m.flags):
        known = set((await s.store.select(mailbox_id)).keywords)
    all_flags: list[str] = []
    for msg in cmd.messages:
        all_flags.extend(msg.flags)
        if not msg.catenate and not isinstance(msg.message, c.ExternalLiteral) and \
                not msg.message:
            raise No("Cannot store an empty message", "CANNOT")
    check_keywords(view, tuple(dict.fromkeys(all_flags)), known)
    staged: list[StagedBlob] = []
    try:
        items = []
        for msg in cmd.messages:
            if msg.catenate:
                # RFC 4469 §3; the assembled message counts against size and quota.
                blob = await assemble(s, msg.catenate)
                staged.append(blob)
            elif isinstance(msg.message, c.ExternalLiteral):
                assert isinstance(msg.message.handle, StagedBlob)
                blob = msg.message.handle
            else:
                # RFC 3516 §4.4, §6: a literal8's binary parts are stored base64-encoded.
                # Linked and its directory fsynced now, so the store's write lock (which every
                # worker's writes wait for) is not held through that fsync.
                data = binary_form(msg.message) if msg.binary else text_form(msg.message)
                blob = await s.store.blobs.stage(data, publish_early=True)
                staged.append(blob)
            internaldate = int(msg.date.timestamp()) if msg.date is not None else None
            items.append(AppendItem(blob, msg.flags, internaldate))
        # RFC 3502 §6.3.11: one transaction, so either every message is there or none is.
        # Appending to the selected mailbox, this session is the first to hear of the new
        # messages: they are \Recent here (RFC 3501 §6.3.11), claimed in the same transaction.
        claim = view is not None and view.claims_recent
        result = await s.store.append(mailbox_id, items, claim_recent=claim)
    finally:
        for blob in staged:
            blob.discard()
    if view is not None:
        s.write(view.learn_keywords(tuple(all_flags)))
        view.own_new.update(result.uids)
        if result.recent is not None:
            shared_state(s.store).note_claim(mailbox_id, view.uidvalidity, result.recent)
        if view.appended_next(result.highestmodseq):
            # Nothing else changed since the view's MODSEQ: announce the new messages without
            # asking the store what changed.
            s.write(view.own_append(result.uids, result.highestmodseq, result.recent))
        elif result.recent is not None:
            view.add_claim(result.recent)
    else:
        await s.absorb_own(mailbox_id)
    assert s.account is not None
    if result.quota_warning:
        await send_quota_warnings(s.store, s.app.hostname, [s.account.id])
    return Done("APPEND completed",
                f"APPENDUID {result.uidvalidity} {seqset.compress(result.uids).decode()}")
