"""Searching on the server: ESEARCH (RFC 4731), SEARCHRES (RFC 5182), WITHIN (RFC 5032),
SAVEDATE search keys (RFC 8514), SORT with every key and REVERSE (RFC 5256) and the DISPLAY keys
(RFC 5957), THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256), with the RFCs' examples
adapted to our data, the unit tests of the base-subject rules, and the bad-input cases."""

from __future__ import annotations

import pytest

from casella.imap.sorting import base_subject
from casella.store.model import AppendItem
from tests.imap.util import Raw, deliver, new_user


def mail(subject: str, *, sender: str = "alice@example.org", to: str = "bob@example.test",
         cc: str = "", date: str = "Mon, 7 Feb 1994 21:52:25 -0800", msgid: str = "",
         refs: str = "", size: int = 10) -> bytes:
    head = f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\nDate: {date}\r\n"
    if cc:
        head += f"Cc: {cc}\r\n"
    if msgid:
        head += f"Message-ID: <{msgid}>\r\n"
    if refs:
        head += f"References: {refs}\r\n"
    return (head + "\r\n" + "b" * size + "\r\n").encode()


def selected(srv, messages: list[tuple[bytes, tuple[str, ...]]]) -> Raw:
    """A session with these messages in INBOX, arrived one minute apart (oldest first)."""
    acct = new_user(srv)
    mb = srv.run(srv.store.get_mailbox(acct.id, "INBOX"))

    async def add() -> None:
        for i, (data, flags) in enumerate(messages):
            staged = await srv.store.blobs.stage(data)
            try:
                await srv.store.append(mb.id, [AppendItem(staged, flags,
                                                          1_700_000_000 + 60 * i)])
            finally:
                staged.discard()
    srv.run(add())
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("SELECT INBOX")
    return raw


@pytest.mark.parametrize("subject,base,reply", [
    ("Hello", "hello", False),
    ("Re: Hello", "hello", True),
    ("RE: re: Fwd: Hello", "hello", True),
    ("Re[2]: Hello", "hello", True),
    ("[list] Re: Hello (fwd)", "hello", True),
    ("[fwd: Re: Hello]", "hello", True),
    ("  Hello   world  ", "hello world", False),
    ("[only a blob]", "[only a blob]", False),
    ("=?utf-8?q?Gr=C3=BC=C3=9Fe?=", "grüsse", False),
    ("", "", False),
])
def test_base_subject(subject: str, base: str, reply: bool) -> None:
    """RFC 5256 §2.1: the base subject, compared case-folded (i;unicode-casemap)."""
    assert base_subject(subject) == (base, reply)


def test_esearch_rfc4731_examples(srv) -> None:
    """RFC 4731 §3.1: MIN, MAX, COUNT, ALL; RETURN () means ALL; nothing found still answers."""
    flags = [(), ("\\Flagged",), (), (), ("\\Flagged",), ("\\Flagged",)]
    raw = selected(srv, [(mail(f"e{i}", sender="smith@x" if i == 5 else "jones@x"), f)
                         for i, f in enumerate(flags)])
    assert raw.ok('SEARCH RETURN (MIN COUNT) FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"') == \
        [b'* ESEARCH (TAG "t3") MIN 2 COUNT 2']
    assert raw.ok('SEARCH RETURN () FLAGGED SINCE 1-Feb-1994 NOT FROM "Smith"') == \
        [b'* ESEARCH (TAG "t4") ALL 2,5']
    assert raw.ok("SEARCH RETURN (MIN MAX) DRAFT") == [b'* ESEARCH (TAG "t5")']
    assert raw.ok("UID SEARCH RETURN (MAX ALL) FLAGGED") == \
        [b'* ESEARCH (TAG "t6") UID MAX 6 ALL 2,5:6']
    raw.close()


def test_searchres_rfc5182_examples(srv) -> None:
    """RFC 5182 §2: SAVE keeps the result as `$` for FETCH, STORE, SEARCH UID $; MIN/MAX with
    SAVE keep only those; a failed SAVE empties `$`."""
    raw = selected(srv, [(mail(f"s{i}", size=100 * i), ("\\Flagged",) if i % 2 else ())
                         for i in range(1, 7)])
    assert raw.ok("SEARCH RETURN (SAVE) FLAGGED") == []
    got = raw.ok("FETCH $ (UID)")
    assert [x.split()[1] for x in got] == [b"1", b"3", b"5"]
    assert raw.ok("UID SEARCH UID $ SMALLER 500") == [b"* SEARCH 1 3"]
    assert raw.ok("SEARCH RETURN (SAVE MIN) ALL") == [b'* ESEARCH (TAG "t6") MIN 1']
    assert raw.ok("UID STORE $ +FLAGS.SILENT (\\Seen)") == []
    assert raw.ok("SEARCH SEEN") == [b"* SEARCH 1"]
    _, tagged = raw.command("SEARCH RETURN (SAVE) CHARSET KOI8-R TEXT x")
    assert b"NO [BADCHARSET" in tagged
    assert raw.ok("FETCH $ (UID)") == []
    raw.close()


def test_within_older_younger(srv) -> None:
    """RFC 5032: OLDER / YOUNGER n compare the internal date with now minus n seconds."""
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    old = mail("old")
    raw.send(b'a1 APPEND INBOX "01-Jan-2001 00:00:00 +0000" {%d+}\r\n' % len(old) + old +
             b"\r\n")
    assert raw.line().startswith(b"a1 OK")
    deliver(srv, acct, mail("new"))
    raw.ok("SELECT INBOX")
    assert raw.ok("SEARCH YOUNGER 3600") == [b"* SEARCH 2"]
    assert raw.ok("SEARCH OLDER 3600") == [b"* SEARCH 1"]
    assert raw.ok("SEARCH OLDER 1 YOUNGER 4000000000") == [b"* SEARCH 1"]
    _, tagged = raw.command("SEARCH OLDER 0")
    assert b" BAD " in tagged
    raw.close()


def test_savedate_search_keys(srv) -> None:
    """RFC 8514 §4.2: SAVEDBEFORE / SAVEDON / SAVEDSINCE use the save date;
    SAVEDATESUPPORTED matches everything (every mailbox keeps save dates)."""
    raw = selected(srv, [(mail("a"), ()), (mail("b"), ())])
    assert raw.ok("SEARCH SAVEDATESUPPORTED") == [b"* SEARCH 1 2"]
    assert raw.ok("SEARCH SAVEDSINCE 1-Jan-2020") == [b"* SEARCH 1 2"]
    assert raw.ok("SEARCH SAVEDBEFORE 1-Jan-2020") == [b"* SEARCH"]
    assert raw.ok("SEARCH NOT SAVEDON 1-Jan-2020") == [b"* SEARCH 1 2"]
    raw.close()


def test_sort_every_key(srv) -> None:
    """RFC 5256 §3 SORT: ARRIVAL, CC, DATE, FROM, SIZE, SUBJECT, TO, REVERSE, ties by sequence
    number; RFC 5957 DISPLAYFROM / DISPLAYTO sort on the display name (else the address)."""
    raw = selected(srv, [
        (mail("Re: beta", sender='"Zed" <zed@x>', to="carol@y", cc="x@z",
              date="Tue, 1 Mar 2022 10:00:00 +0000", size=300), ()),
        (mail("alpha", sender='"Anna" <yves@x>', to='"Bob" <dave@y>', cc="b@z",
              date="Tue, 1 Mar 2022 09:00:00 +0100", size=100), ()),
        (mail("Fwd: Beta", sender="mike@x", to="alice@y",
              date="Mon, 28 Feb 2022 23:00:00 -0500", size=200), ()),
    ])
    cases = {
        "(ARRIVAL)": b"1 2 3",
        "(REVERSE ARRIVAL)": b"3 2 1",
        "(DATE)": b"3 2 1",            # 04:00Z, 08:00Z, 10:00Z on 1 March
        "(SIZE)": b"2 3 1",
        "(SUBJECT)": b"2 1 3",         # alpha, beta, beta: ties by sequence number
        "(SUBJECT REVERSE DATE)": b"2 1 3",
        "(FROM)": b"3 2 1",            # mike, yves, zed
        "(DISPLAYFROM)": b"2 3 1",     # Anna, mike@x, Zed
        "(TO)": b"3 1 2",              # alice, carol, dave
        "(DISPLAYTO)": b"3 2 1",       # alice@y, Bob, carol@y
        "(CC)": b"3 2 1",              # "" (none), b, x
    }
    for criteria, expected in cases.items():
        assert raw.ok(f"SORT {criteria} UTF-8 ALL") == [b"* SORT " + expected], criteria
    assert raw.ok("UID SORT (SIZE) US-ASCII LARGER 280") == [b"* SORT 3 1"]
    raw.close()


def test_thread_orderedsubject_and_references(srv) -> None:
    """RFC 5256 §3: ORDEREDSUBJECT groups by base subject (first message the parent of the
    others); REFERENCES follows References / Message-ID, with a dummy parent for siblings
    whose parent is missing, and joins threads of the same base subject."""
    raw = selected(srv, [
        (mail("Party", msgid="1@x", date="Mon, 1 Jan 2024 10:00:00 +0000"), ()),
        (mail("Re: Party", msgid="2@x", refs="<1@x>",
              date="Mon, 1 Jan 2024 11:00:00 +0000"), ()),
        (mail("Other", msgid="3@x", date="Mon, 1 Jan 2024 12:00:00 +0000"), ()),
        (mail("Re: Party", msgid="4@x", refs="<1@x> <2@x>",
              date="Mon, 1 Jan 2024 13:00:00 +0000"), ()),
        (mail("Re: Lost", msgid="5@x", refs="<gone@x>",
              date="Mon, 1 Jan 2024 14:00:00 +0000"), ()),
        (mail("Re: Lost", msgid="6@x", refs="<gone@x>",
              date="Mon, 1 Jan 2024 15:00:00 +0000"), ()),
        (mail("Re: Party", msgid="7@x", date="Mon, 1 Jan 2024 16:00:00 +0000"), ()),
    ])
    assert raw.ok("THREAD ORDEREDSUBJECT UTF-8 ALL") == \
        [b"* THREAD (1 (2)(4)(7))(3)(5 6)"]
    assert raw.ok("THREAD REFERENCES UTF-8 ALL") == \
        [b"* THREAD (1 (2 4)(7))(3)((5)(6))"]
    assert raw.ok("UID THREAD REFERENCES UTF-8 NOT SUBJECT Other") == \
        [b"* THREAD (1 (2 4)(7))((5)(6))"]
    assert raw.ok("THREAD REFERENCES UTF-8 SUBJECT nothing") == [b"* THREAD"]
    raw.close()


def test_sort_thread_bad_input(srv) -> None:
    """Unknown keys and algorithms are BAD, an unknown charset NO [BADCHARSET]; after ENABLE
    UTF8=ACCEPT, SEARCH takes no CHARSET and SORT only UTF-8 (RFC 6855 erratum 4029)."""
    raw = selected(srv, [(mail("x"), ())])
    for command in ("SORT (FOO) UTF-8 ALL", "SORT () UTF-8 ALL", "SORT (REVERSE) UTF-8 ALL",
                    "SORT (REVERSE REVERSE DATE) UTF-8 ALL", "SORT DATE UTF-8 ALL",
                    "THREAD FOO UTF-8 ALL", "THREAD REFERENCES", "SORT (DATE) UTF-8"):
        _, tagged = raw.command(command)
        assert b" BAD " in tagged, command
    _, tagged = raw.command("SORT (DATE) KOI8-R ALL")
    assert b"NO [BADCHARSET" in tagged
    raw.ok("UNSELECT")
    raw.ok("ENABLE UTF8=ACCEPT")
    raw.ok("SELECT INBOX")
    _, tagged = raw.command("SEARCH CHARSET UTF-8 ALL")
    assert b" BAD " in tagged
    _, tagged = raw.command("SORT (DATE) US-ASCII ALL")
    assert b" BAD " in tagged
    assert raw.ok("SORT (DATE) UTF-8 ALL") == [b"* SORT 1"]
    raw.close()
