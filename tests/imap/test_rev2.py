"""IMAP4rev2 after `ENABLE IMAP4rev2` (RFC 9051 Appendix E): no RECENT and no \\Recent, no
UNSEEN code on SELECT but a LIST response, ESEARCH answers, `OK [CLOSED]` when a mailbox is
replaced, STATUS SIZE/DELETED; IMAP4rev1 stays the default."""

from __future__ import annotations

import imaplib

from tests.imap.util import Raw, deliver, fetch_map, imaplib_login, message, new_user


def rev2_session(srv, acct) -> Raw:
    raw = Raw(srv)
    raw.login(acct)
    assert raw.ok("ENABLE IMAP4rev2") == [b"* ENABLED IMAP4rev2"]
    return raw


def test_select_in_rev2(srv) -> None:
    acct = new_user(srv)
    deliver(srv, acct, message("one"))
    raw = rev2_session(srv, acct)
    lines, tagged = raw.command("SELECT INBOX")
    assert tagged.endswith(b"OK [READ-WRITE] SELECT completed")
    assert b"* 1 EXISTS" in lines
    assert not any(b"RECENT" in x or b"[UNSEEN" in x for x in lines)
    assert b'* LIST (\\HasNoChildren) "/" INBOX' in lines
    got = fetch_map(raw.ok("FETCH 1 FLAGS"))
    assert got[1] == b"FLAGS ()"
    lines = raw.ok("EXAMINE Sent")
    assert lines[0] == b"* OK [CLOSED] Previous mailbox closed"
    assert b'* LIST (\\HasNoChildren \\Sent) "/" Sent' in lines
    deliver(srv, acct, message("two"), mailbox="Sent")
    lines = raw.ok("NOOP")
    assert lines == [b"* 1 EXISTS"]              # no RECENT in IMAP4rev2
    raw.close()


def test_esearch_is_the_default_answer(srv) -> None:
    acct = new_user(srv)
    for i in range(3):
        deliver(srv, acct, message(f"s{i}"), flags=("\\Seen",) if i else ())
    raw = rev2_session(srv, acct)
    raw.ok("SELECT INBOX")
    assert raw.ok("SEARCH SEEN") == [b'* ESEARCH (TAG "t4") ALL 2:3']
    assert raw.ok("UID SEARCH DRAFT") == [b'* ESEARCH (TAG "t5") UID']
    assert raw.ok("SEARCH RETURN (COUNT MAX) ALL") == [b'* ESEARCH (TAG "t6") MAX 3 COUNT 3']
    raw.close()


def test_status_and_expunge_in_rev2(srv) -> None:
    acct = new_user(srv)
    for i in range(3):
        deliver(srv, acct, message(f"d{i}"), flags=("\\Deleted",) if i == 1 else ())
    raw = rev2_session(srv, acct)
    (line,) = raw.ok("STATUS INBOX (MESSAGES SIZE DELETED UNSEEN)")
    assert line.startswith(b"* STATUS INBOX (MESSAGES 3 SIZE ") and \
        line.endswith(b" DELETED 1 UNSEEN 3)")
    raw.ok("SELECT INBOX")
    assert raw.ok("EXPUNGE") == [b"* 2 EXPUNGE"]
    assert raw.ok("UNSELECT") == []
    raw.close()


def test_rev1_is_the_default(srv) -> None:
    acct = new_user(srv)
    deliver(srv, acct, message("r"))
    raw = Raw(srv)
    raw.login(acct)
    lines = raw.ok("SELECT INBOX")
    assert b"* 1 RECENT" in lines and not any(x.startswith(b"* LIST") for x in lines)
    assert raw.ok("SEARCH ALL") == [b"* SEARCH 1"]
    raw.close()


def test_imaplib_rev2_session(srv) -> None:
    """imaplib with ENABLE IMAP4rev2: the commands work, ESEARCH arrives as untagged data."""
    acct = new_user(srv)
    deliver(srv, acct, message("a"))
    deliver(srv, acct, message("b"), flags=("\\Flagged",))
    m = imaplib_login(srv, acct)
    typ, data = m.enable("IMAP4rev2")
    assert typ == "OK" and m.untagged_responses.get("ENABLED") == [b"IMAP4rev2"]
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"2"]
    typ, _ = m._simple_command("SEARCH", "FLAGGED")  # type: ignore[attr-defined]
    typ, data = m._untagged_response(typ, _, "ESEARCH")  # type: ignore[attr-defined]
    assert data[0].endswith(b"ALL 2")
    typ, data = m.fetch("1:2", "(FLAGS)")
    assert data == [b"1 (FLAGS ())", b"2 (FLAGS (\\Flagged))"]
    assert m.store("1", "+FLAGS", "\\Seen")[0] == "OK"
    assert m.uid("MOVE", "1", "Archive")[0] == "OK"
    assert m.close()[0] == "OK"
    with_error = False
    try:
        m.enable("IMAP4rev2")
    except imaplib.IMAP4.error:
        with_error = True
    assert not with_error
    m.logout()
