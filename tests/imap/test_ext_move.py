"""MOVE and COPY into the selected mailbox itself, over real sockets: RFC 6851 §3.3 (MOVE is
COPY, then the expunge of the originals; nothing excludes the selected mailbox as the target),
RFC 4315 §3 (COPYUID), RFC 9051 §7.5.1 (EXPUNGE, EXISTS), RFC 7162 §3.2.10 (VANISHED once
QRESYNC is on). A second session sees the same mailbox."""

from __future__ import annotations

from tests.imap.util import Raw, deliver, get_mailbox, message, new_user, store_state


def test_move_into_the_selected_mailbox(srv) -> None:
    """RFC 6851 §3.3: `MOVE 1 INBOX` with INBOX selected gives the message a new UID: the
    untagged OK [COPYUID v old new], EXPUNGE of its old sequence number, then EXISTS for its
    new one, before the tagged OK; flags travel with it; the other session sees the expunge
    and the new message at its next NOOP."""
    acct = new_user(srv)
    for i in range(3):
        deliver(srv, acct, message(f"m{i}"), flags=("\\Flagged",) if i == 0 else ())
    v = get_mailbox(srv, acct).uidvalidity
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("ENABLE IMAP4rev2")          # no \Recent: the exact lines do not depend on it
    other = Raw(srv)
    other.login(acct)
    other.ok("ENABLE IMAP4rev2")
    raw.ok("SELECT INBOX")
    other.ok("SELECT INBOX")
    lines, tagged = raw.command("MOVE 1 INBOX")
    assert lines == [b"* OK [COPYUID %d 1 4] Moved" % v, b"* 1 EXPUNGE", b"* 3 EXISTS"]
    assert tagged.endswith(b" OK MOVE completed")
    assert store_state(srv, acct) == [(2, frozenset()), (3, frozenset()),
                                      (4, frozenset({"\\Flagged"}))]
    assert raw.ok("FETCH 3 (UID FLAGS)") == [b"* 3 FETCH (UID 4 FLAGS (\\Flagged))"]
    lines = other.ok("NOOP")
    assert lines == [b"* 1 EXPUNGE", b"* 3 EXISTS"]
    assert other.ok("FETCH 1:* UID") == [b"* 1 FETCH (UID 2)", b"* 2 FETCH (UID 3)",
                                         b"* 3 FETCH (UID 4)"]
    # UID MOVE of several, with the set out of order: pairs follow ascending source UIDs.
    lines, tagged = raw.command("UID MOVE 3,2 INBOX")
    assert lines == [b"* OK [COPYUID %d 2:3 5:6] Moved" % v, b"* 1 EXPUNGE", b"* 1 EXPUNGE",
                     b"* 3 EXISTS"]
    assert [u for u, _ in store_state(srv, acct)] == [4, 5, 6]
    status = raw.ok("STATUS INBOX (MESSAGES UIDNEXT)")
    assert status == [b"* STATUS INBOX (MESSAGES 3 UIDNEXT 7)"]
    assert other.ok("NOOP") == [b"* 1 EXPUNGE", b"* 1 EXPUNGE", b"* 3 EXISTS"]
    raw.close()
    other.close()


def test_move_into_the_selected_mailbox_with_qresync(srv) -> None:
    """RFC 7162 §3.2.10 / RFC 6851 §4.4: once QRESYNC is on, the old UID is reported with
    VANISHED; the HIGHESTMODSEQ after the move is above the one before (PROMISES U7)."""
    acct = new_user(srv)
    deliver(srv, acct, message("a"))
    deliver(srv, acct, message("b"))
    v = get_mailbox(srv, acct).uidvalidity
    before = get_mailbox(srv, acct).highestmodseq
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("ENABLE QRESYNC IMAP4rev2")
    raw.ok("SELECT INBOX")
    lines, tagged = raw.command("UID MOVE 1 INBOX")
    assert lines == [b"* OK [COPYUID %d 1 3] Moved" % v, b"* VANISHED 1", b"* 2 EXISTS"]
    assert b" OK " in tagged
    assert get_mailbox(srv, acct).highestmodseq > before
    assert raw.ok("UID FETCH 3 (MODSEQ)")[0].startswith(b"* 2 FETCH (UID 3 MODSEQ (")
    raw.close()


def test_copy_into_the_selected_mailbox(srv) -> None:
    """RFC 9051 §6.4.7 with RFC 4315 §3: COPY into the selected mailbox announces the copies
    with EXISTS before the tagged OK [COPYUID ...]; the originals stay; a second session sees
    the new messages."""
    acct = new_user(srv)
    deliver(srv, acct, message("a"), flags=("\\Seen",))
    deliver(srv, acct, message("b"))
    v = get_mailbox(srv, acct).uidvalidity
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("ENABLE IMAP4rev2")
    other = Raw(srv)
    other.login(acct)
    other.ok("ENABLE IMAP4rev2")
    raw.ok("SELECT INBOX")
    other.ok("SELECT INBOX")
    lines, tagged = raw.command("COPY 1:2 INBOX")
    assert lines == [b"* 4 EXISTS"]
    assert tagged.endswith(b" OK [COPYUID %d 1:2 3:4] COPY completed" % v)
    assert store_state(srv, acct) == [(1, frozenset({"\\Seen"})), (2, frozenset()),
                                      (3, frozenset({"\\Seen"})), (4, frozenset())]
    assert other.ok("NOOP") == [b"* 4 EXISTS"]
    raw.close()
    other.close()
