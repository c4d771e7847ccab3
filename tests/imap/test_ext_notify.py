"""NOTIFY (RFC 5465) over real sockets: the RFC's §3.1 example adapted (STATUS for a subtree,
new mail in the selected mailbox pushed with the asked-for FETCH items between commands),
SELECTED-DELAYED (expunges wait for a command), personal FlagChange with CONDSTORE, MailboxName
(LIST, OLDNAME, \\NonExistent), SubscriptionChange, IDLE sending NOTIFY's events, own changes not
echoed, NOTIFY NONE, and the refusals (BADEVENT, bad event groups)."""

from __future__ import annotations

import time

from tests.imap.util import Raw, deliver, message, new_user

WAIT = 10.0


def pushed(raw: Raw, count: int, timeout: float = WAIT) -> list[bytes]:
    """The next `count` lines the server sends without being asked."""
    raw.sock.settimeout(timeout)
    try:
        return [raw.line() for _ in range(count)]
    finally:
        raw.sock.settimeout(timeout)


def pushed_until(raw: Raw, wanted: bytes, timeout: float = WAIT) -> list[bytes]:
    """Unasked lines up to and including `wanted`. Changes another session makes in a row may
    reach this session one by one or together (a flag change on a message expunged by the time
    it is reported is rightly left out), so only the line that must come is waited for."""
    raw.sock.settimeout(timeout)
    lines: list[bytes] = []
    try:
        while wanted not in lines:
            lines.append(raw.line())
        return lines
    finally:
        raw.sock.settimeout(timeout)


def quiet(raw: Raw, seconds: float = 0.5) -> bool:
    """True when the server sends nothing for a while."""
    raw.sock.settimeout(seconds)
    try:
        return not raw.buf and not raw.sock.recv(65536)
    except TimeoutError:
        return True
    finally:
        raw.sock.settimeout(WAIT)


def other(srv, acct) -> Raw:
    raw = Raw(srv)
    raw.login(acct)
    return raw


def test_rfc5465_example(srv) -> None:
    """RFC 5465 §3.1: NOTIFY SET STATUS (selected MessageNew (uid body.peek[header.fields
    (from to subject)]) MessageExpunge) (subtree Lists MessageNew MessageExpunge)."""
    acct = new_user(srv)
    raw = other(srv, acct)
    raw.ok("CREATE Lists/Lemonade")
    raw.ok("CREATE Lists/Im2000")
    deliver(srv, acct, message("old list mail"), mailbox="Lists/Lemonade")
    lines = raw.ok("NOTIFY SET STATUS (selected MessageNew (uid body.peek[header.fields "
                   "(from to subject)]) MessageExpunge) (subtree Lists MessageNew "
                   "MessageExpunge)")
    assert any(x.startswith(b"* STATUS Lists/Lemonade (MESSAGES 1 UIDNEXT 2 UIDVALIDITY ")
               for x in lines)
    assert any(x.startswith(b"* STATUS Lists/Im2000 (MESSAGES 0 UIDNEXT 1 ") for x in lines)
    raw.ok("SELECT INBOX")
    deliver(srv, acct, message("to the list"), mailbox="Lists/Lemonade")
    assert pushed(raw, 1) == [b"* STATUS Lists/Lemonade (UIDNEXT 3 MESSAGES 2)"]
    deliver(srv, acct, message("good morning"))
    exists, recent, fetch = pushed(raw, 3)
    assert (exists, recent) == (b"* 1 EXISTS", b"* 1 RECENT")
    assert fetch.startswith(b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (from to subject)] {")
    assert b"Subject: good morning" in fetch
    deliver(srv, acct, message("not watched"), mailbox="Sent")
    assert quiet(raw)
    raw.ok("NOOP")
    raw.close()


def test_selected_delayed_and_expunge(srv) -> None:
    """RFC 5465 §6.1.2: with SELECTED-DELAYED an expunge by another session waits for a
    command that may report it; with SELECTED it is pushed at once (§5.3)."""
    acct = new_user(srv)
    for i in range(3):
        deliver(srv, acct, message(f"x{i}"))
    raw = other(srv, acct)
    raw.ok("SELECT INBOX")
    raw.ok("NOTIFY SET (selected-delayed (MessageNew MessageExpunge FlagChange))")
    b = other(srv, acct)
    b.ok("SELECT INBOX")
    b.ok("STORE 1 +FLAGS (\\Deleted)")
    assert pushed(raw, 1)[0].startswith(b"* 1 FETCH (UID 1 FLAGS (\\Deleted")
    b.ok("EXPUNGE")
    assert quiet(raw)
    assert raw.ok("NOOP") == [b"* 1 EXPUNGE"]
    raw.ok("NOTIFY SET (selected (MessageNew MessageExpunge))")
    b.ok("STORE 1 +FLAGS (\\Deleted)")
    b.ok("EXPUNGE")
    lines = pushed_until(raw, b"* 1 EXPUNGE")
    assert all(x.startswith(b"* 1 FETCH (UID ") for x in lines[:-1]), lines
    b.close()
    raw.close()


def test_personal_flagchange_with_condstore(srv) -> None:
    """RFC 5465 §5.1: a flag change in another mailbox is STATUS (HIGHESTMODSEQ UIDVALIDITY)
    when CONDSTORE is on, plus UNSEEN when that changed."""
    acct = new_user(srv)
    deliver(srv, acct, message("flag me"), mailbox="Archive")
    raw = other(srv, acct)
    raw.ok("ENABLE CONDSTORE")
    raw.ok("NOTIFY SET (personal (MessageNew MessageExpunge FlagChange))")
    b = other(srv, acct)
    b.ok("SELECT Archive")
    b.ok("STORE 1 +FLAGS (\\Seen)")
    (line,) = pushed(raw, 1)
    assert line.startswith(b"* STATUS Archive (HIGHESTMODSEQ ") and line.endswith(b" UNSEEN 0)")
    b.close()
    raw.close()


def test_mailboxname_and_subscriptionchange(srv) -> None:
    """RFC 5465 §5.4, §5.5: another session's CREATE, RENAME, DELETE and SUBSCRIBE arrive as
    LIST responses; this session's own are not echoed back."""
    acct = new_user(srv)
    raw = other(srv, acct)
    raw.ok("NOTIFY SET (personal (MailboxName SubscriptionChange))")
    b = other(srv, acct)
    b.ok("CREATE Projects")
    assert pushed(raw, 1) == [b'* LIST () "/" Projects']
    b.ok("SUBSCRIBE Projects")
    assert pushed(raw, 1) == [b'* LIST (\\Subscribed) "/" Projects']
    b.ok("RENAME Projects Work")
    assert pushed(raw, 1) == [b'* LIST (\\Subscribed) "/" Work ("OLDNAME" (Projects))']
    b.ok("DELETE Work")
    assert pushed(raw, 1) == [b'* LIST (\\NonExistent) "/" Work']
    raw.ok("CREATE Mine")
    raw.ok("SUBSCRIBE Mine")
    assert quiet(raw)
    b.close()
    raw.close()


def test_idle_sends_notify_events_and_none_stops(srv) -> None:
    """RFC 5465 §4: during IDLE the NOTIFY events arrive; NOTIFY NONE ends them; own APPEND
    into a watched mailbox is not echoed (§5)."""
    acct = new_user(srv)
    raw = other(srv, acct)
    raw.ok("NOTIFY SET (personal (MessageNew MessageExpunge))")
    raw.send(b"i1 IDLE\r\n")
    assert raw.line() == b"+ idling"
    deliver(srv, acct, message("while idling"), mailbox="Drafts")
    assert pushed(raw, 1) == [b"* STATUS Drafts (UIDNEXT 2 MESSAGES 1)"]
    raw.send(b"DONE\r\n")
    assert raw.line().startswith(b"i1 OK")
    data = message("own")
    raw.send(b"a1 APPEND Drafts {%d+}\r\n" % len(data) + data + b"\r\n")
    assert raw.line().startswith(b"a1 OK")
    assert quiet(raw)
    raw.ok("NOTIFY NONE")
    deliver(srv, acct, message("after none"), mailbox="Drafts")
    assert quiet(raw)
    raw.close()


def test_notify_refusals(srv) -> None:
    """RFC 5465 §3.1, §5: unsupported events are NO [BADEVENT (...)], malformed groups BAD;
    the session goes on."""
    acct = new_user(srv)
    raw = other(srv, acct)
    _, tagged = raw.command("NOTIFY SET (personal (MessageNew MessageExpunge "
                            "AnnotationChange))")
    assert b"NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName " \
        b"SubscriptionChange)]" in tagged
    for command in ("NOTIFY SET (selected (MessageNew))",
                    "NOTIFY SET (selected (FlagChange))",
                    ("NOTIFY SET (selected (MessageNew MessageExpunge)) (selected-delayed "
                     "(MessageNew MessageExpunge))"),
                    "NOTIFY SET (selected (MailboxName))",
                    "NOTIFY SET (personal (MessageNew (UID) MessageExpunge))",
                    "NOTIFY SET (elsewhere (MessageNew MessageExpunge))",
                    "NOTIFY SET", "NOTIFY MAYBE"):
        _, tagged = raw.command(command)
        assert b" BAD " in tagged, command
    raw.ok("NOOP")
    time.sleep(0.05)
    raw.close()


def test_notify_status_for_single_events(srv) -> None:
    """RFC 5465 §3.1 with Dovecot's reading: outside the selected mailbox one event alone is
    accepted (it picks what STATUS reports): MessageExpunge gives MESSAGES, MessageNew
    MESSAGES UIDNEXT UIDVALIDITY, FlagChange UIDVALIDITY HIGHESTMODSEQ; the session goes on."""
    acct = new_user(srv)
    raw = other(srv, acct)
    raw.ok("CREATE Box2")
    deliver(srv, acct, message("one"), mailbox="Box2")
    (line,) = raw.ok("STATUS Box2 (UIDNEXT UIDVALIDITY HIGHESTMODSEQ)")
    values = line.split(b"(")[1].rstrip(b")").split()
    uidnext, uidvalidity, hms = values[1], values[3], values[5]
    assert raw.ok("NOTIFY SET STATUS (mailboxes Box2 (MessageExpunge))") == \
        [b"* STATUS Box2 (MESSAGES 1)"]
    assert raw.ok("NOTIFY SET STATUS (mailboxes Box2 (MessageNew))") == \
        [b"* STATUS Box2 (MESSAGES 1 UIDNEXT %s UIDVALIDITY %s)" % (uidnext, uidvalidity)]
    assert raw.ok("NOTIFY SET STATUS (mailboxes Box2 (FlagChange))") == \
        [b"* STATUS Box2 (UIDVALIDITY %s HIGHESTMODSEQ %s)" % (uidvalidity, hms)]
    assert raw.ok("NOTIFY SET (mailboxes Box2 (MessageNew MessageExpunge FlagChange))") == []
    raw.ok("NOOP")
    raw.close()
