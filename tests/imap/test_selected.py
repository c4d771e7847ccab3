"""The selected-mailbox view without sockets: how store changes become untagged responses
(RFC 9051 §7.5.1, PROMISES X1/X3), sequence numbers, \\Recent and keyword announcements."""

from __future__ import annotations

import pytest

from casella.imap import seqset
from casella.imap.errors import Bad
from casella.imap.selected import SelectedView
from casella.store.model import Changes, Mailbox, MessageMeta, SelectSnapshot


def mailbox(modseq: int = 10, uidnext: int = 6, first_recent: int = 4) -> Mailbox:
    return Mailbox(id=1, account_id=1, name="INBOX", uidvalidity=7, uidnext=uidnext,
                   highestmodseq=modseq, special_use=None, selectable=True, messages=5,
                   unseen=5, deleted=0, size=0, first_recent_uid=first_recent, created=0)


def meta(uid: int, modseq: int, *flags: str) -> MessageMeta:
    return MessageMeta(uid, modseq, tuple(flags), 0, 100, uid, 0)


def view(rev2: bool = False, recent: tuple[int, int] | None = (4, 6),
         readonly: bool = False) -> SelectedView:
    snap = SelectSnapshot(mailbox(), [1, 2, 3, 4, 5], 1, ("$Old",))
    return SelectedView(snap, readonly=readonly, rev2=rev2, recent=recent)


def test_resolve_sequence_and_uid_sets() -> None:
    v = view()
    assert v.resolve(seqset.parse(b"2:3,5"), uid=False) == [2, 3, 5]
    assert v.resolve(seqset.parse(b"*"), uid=False) == [5]
    assert v.resolve(seqset.parse(b"3:9"), uid=True) == [3, 4, 5]
    assert v.resolve(seqset.parse(b"9:*"), uid=True) == [5]
    with pytest.raises(Bad):
        v.resolve(seqset.parse(b"6"), uid=False)
    assert v.resolve(seqset.parse(b"$"), uid=False, saved=[5, 2, 99]) == [2, 5]


def test_expunge_is_held_back_until_allowed() -> None:
    v = view()
    changes = Changes(mailbox(modseq=12), (), (2, 4))
    assert v.apply(changes, allow_expunge=False) == b""
    assert v.exists == 5 and v.seq_of(5) == 5 and v.pending_expunge == {2, 4}
    out = v.apply(Changes(mailbox(modseq=12), (), ()), allow_expunge=True)
    assert out == b"* 2 EXPUNGE\r\n* 3 EXPUNGE\r\n"
    assert list(v.uids) == [1, 3, 5] and v.seq_of(5) == 3


def test_flag_changes_new_messages_and_recent() -> None:
    v = view()
    changes = Changes(mailbox(modseq=15, uidnext=8),
                      (meta(2, 11, "\\Seen"), meta(3, 12, "\\Flagged", "$New"),
                       meta(6, 13), meta(7, 14)), ())
    out = v.apply(changes, allow_expunge=True, claim=(6, 8))
    assert out.startswith(b"* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $New $Old)")
    assert b"* 2 FETCH (UID 2 FLAGS (\\Seen))\r\n" in out
    assert b"* 3 FETCH (UID 3 FLAGS (\\Flagged $New))\r\n" in out
    assert out.endswith(b"* 7 EXISTS\r\n* 4 RECENT\r\n")     # 4, 5 claimed at SELECT + 6, 7
    assert v.modseq == 15 and v.uidnext == 8


def test_own_changes_are_not_reported_twice() -> None:
    v = view()
    v.note_own([meta(1, 11, "\\Seen")])
    out = v.apply(Changes(mailbox(modseq=12), (meta(1, 11, "\\Seen"), meta(2, 12, "x")), ()),
                  allow_expunge=True)
    assert b"* 1 FETCH" not in out and b"* 2 FETCH (UID 2 FLAGS (x))" in out


def test_rev2_has_no_recent() -> None:
    v = view(rev2=True, recent=None)
    out = v.apply(Changes(mailbox(modseq=12, uidnext=7), (meta(6, 12),), ()), True)
    assert out == b"* 6 EXISTS\r\n"
    assert v.flags_of(meta(6, 12)) == ()


def test_read_only_recent_and_flags() -> None:
    v = view(recent=None, readonly=True)
    assert v.recent_count() == 2                 # UIDs from first_recent_uid = 4
    assert v.flags_of(meta(4, 1, "\\Seen")) == ("\\Seen", "\\Recent")
    assert b"PERMANENTFLAGS ()" in v.flags_responses()


def test_expunge_uids_for_own_expunge() -> None:
    v = view()
    assert v.expunge_uids([5, 1, 3]) == b"* 1 EXPUNGE\r\n* 2 EXPUNGE\r\n* 3 EXPUNGE\r\n"
    assert list(v.uids) == [2, 4]
    assert v.expunge_uids([99]) == b""


def test_deleted_or_recreated_mailbox_ends_the_session() -> None:
    from dataclasses import replace

    from casella.imap.errors import Bye

    v = view()
    with pytest.raises(Bye):
        v.apply(Changes(replace(mailbox(), selectable=False), (), ()), True)
    with pytest.raises(Bye):
        v.apply(Changes(replace(mailbox(), uidvalidity=8), (), ()), True)
