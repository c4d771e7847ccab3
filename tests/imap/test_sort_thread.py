"""SORT (RFC 5256 §3, DISPLAYFROM / DISPLAYTO of RFC 5957 §3), THREAD=REFERENCES (RFC 5256 §3)
and SEARCH FROM/TO/CC (RFC 9051 §6.4.4) over real sockets with imaplib and imapclient, on the
data of imaptest's sort-addresses, sort-display-to, sort-subject, thread and search-addresses
groups (the answers Dovecot gives)."""

from __future__ import annotations

import imaplib

import pytest

from tests.imap.util import imapclient_login, imaplib_login, new_user

ARRIVAL = 1_704_067_200          # 1 Jan 2024 00:00 UTC


def fill(srv, messages: list[bytes], hours: list[int] | None = None):
    """A new user whose INBOX holds these messages, APPENDed with internal dates `hours`
    after ARRIVAL (else one hour apart, in order)."""
    acct = new_user(srv)
    m = imaplib_login(srv, acct)
    for i, data in enumerate(messages):
        hour = hours[i] if hours is not None else i
        typ, _ = m.append("INBOX", None, imaplib.Time2Internaldate(ARRIVAL + 3600 * hour),
                          data.replace(b"\n", b"\r\n"))
        assert typ == "OK"
    m.logout()
    return acct


def client(srv, acct):
    c = imapclient_login(srv, acct)
    c.use_uid = False
    c.select_folder("INBOX")
    return c


def test_sort_by_first_address_with_reverse(srv) -> None:
    """RFC 5256 §3 FROM/TO/CC: the first address's mailbox (a group: its name, "user2"),
    REVERSE per key, full ties in ascending sequence order."""
    acct = fill(srv, [
        (b"From: user2@domain2.org\nTo: foo bar <user2@domain2.org>\n"
         b"Cc: user2@domain2.org (foo bar)\n\n1\n"),
        b"From: user2@domain1.org\nTo: user2@domain1.org\nCc: user2: blah@domain1.org;\n\n2\n",
        b"From: user1@domain1.org\nTo: user1@domain1.org\nCc: user1@domain1.org\n\n3\n"])
    c = client(srv, acct)
    for key in ("FROM", "TO", "CC"):
        assert c.sort([key], "ALL", "US-ASCII") == [3, 1, 2], key
        assert c.sort(["REVERSE", key], "ALL", "US-ASCII") == [1, 2, 3], key
        assert c.sort([key, "REVERSE", "ARRIVAL"], "ALL", "US-ASCII") == [3, 2, 1], key
    c.use_uid = True
    assert c.sort(["REVERSE", "CC"], ["NOT", "2"], "UTF-8") == [1, 3]
    c.logout()


def test_sort_display_to_and_from(srv) -> None:
    """RFC 5957 §3: the decoded display name, else the addr-spec; a group sorts by its name;
    "[" / "_" style ordering is i;unicode-casemap's (upper case)."""
    tos = [b"foo bar <a@b.c>", b"b@c.d", b"d", b"=?iso-8859-1?q?foo_aar?= <e@f.g>",
           b"=?iso-8859-1?q?foo_car?= <f@g.h>", b"a: xx@xx.org, yy@yy.org;",
           b"z: aa@aa.org, bb@bb.org;", b"empty:;"]
    acct = fill(srv, [b"To: " + to + b"\nFrom: " + to + b"\n\nx\n" for to in tos])
    c = client(srv, acct)
    assert b"SORT=DISPLAY" in c.capabilities()
    assert c.sort(["DISPLAYTO"], "ALL", "US-ASCII") == [6, 2, 3, 8, 4, 1, 5, 7]
    assert c.sort(["REVERSE", "DISPLAYTO"], "ALL", "US-ASCII") == [7, 5, 1, 4, 8, 3, 2, 6]
    assert c.sort(["DISPLAYFROM"], "ALL", "US-ASCII") == [6, 2, 3, 8, 4, 1, 5, 7]
    c.logout()


SUBJECTS = [b"a", b"C", b"b", b"_", b"[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", b"b (a)",
            b"Re: [FWD: c]", b"[xyz]", None, b"=?iso-8859-1?q?_?=", b"Re: =?utf-8?q?b?=",
            b"=?iso-8859-1?q?RE:_C?=", b"=?us-ascii?b?UmU6IGM=?=", b"Ad: Re: Ad: Re: Ad: x",
            b"re: [fwd: [fwd: re: [fwd: babylon]]]"]


def test_sort_subject(srv) -> None:
    """RFC 5256 §2.1 base subjects compared with i;ascii-casemap (§3): "[xyz]" and "_" sort
    after the letters; SUBJECT REVERSE SIZE breaks ties by the larger message first (each
    message is larger than the one before)."""
    acct = fill(srv, [(b"X-N: %d\n" % n if s is None else b"Subject: " + s + b"\n") +
                      b"\n" + b"x" * (100 * n) + b"\n" for n, s in enumerate(SUBJECTS, 1)])
    c = client(srv, acct)
    assert c.sort(["SUBJECT"], "ALL", "US-ASCII") == \
        [9, 10, 1, 14, 3, 5, 11, 6, 15, 2, 7, 12, 13, 8, 4]
    assert c.sort(["REVERSE", "SUBJECT"], "ALL", "US-ASCII") == \
        [4, 8, 2, 7, 12, 13, 15, 6, 3, 5, 11, 14, 1, 9, 10]
    assert c.sort(["SUBJECT", "REVERSE", "SIZE"], "ALL", "US-ASCII") == \
        [10, 9, 1, 14, 11, 5, 3, 6, 15, 13, 12, 7, 2, 8, 4]
    c.logout()


def thread(m: imaplib.IMAP4, *args: str, uid: bool = False) -> bytes:
    if uid:
        typ, data = m.uid("THREAD", *args)
    else:
        typ, data = m._simple_command("THREAD", *args)
        data = m._untagged_response(typ, data, "THREAD")[1]
    assert typ == "OK", data
    assert len(data) == 1
    return data[0] or b""


def test_thread_references_own_references_win_and_expunge(srv) -> None:
    """RFC 5256 §3 REFERENCES (1)(C): a message's own last reference is its parent, a link
    another message's References made is dropped first, a link that would loop is not made;
    the tree is built again after EXPUNGE (imaptest thread)."""
    acct = fill(srv, [b"Message-ID: <a@b>\n\nbody\n",
                      b"Message-Id: <b@b>\nReferences: <a@b> <c@b>\n\nbody\n",
                      b"Message-Id: <c@b>\nReferences: <b@b>\n\nbody\n"], hours=[17, 15, 16])
    m = imaplib_login(srv, acct)
    m.select("INBOX")
    assert thread(m, "REFERENCES", "US-ASCII", "ALL") == b"(3 2)(1)"
    m.store("1", "+FLAGS", "\\Deleted")
    m.expunge()
    assert thread(m, "REFERENCES", "US-ASCII", "ALL") == b"(2 1)"
    assert thread(m, "REFERENCES", "US-ASCII", "ALL", uid=True) == b"(3 2)"
    m.logout()


def test_thread_references_dummies_and_subject_merge(srv) -> None:
    """RFC 5256 §3 REFERENCES: a missing parent of two messages is a dummy, shown as bare
    parentheses (2)-(3); roots of the same base subject are joined (5): a reply under the
    original, two dummies into one; siblings by sent date (6)."""
    def mail(n: int, subject: str, msgid: str, refs: str = "") -> bytes:
        return (f"Subject: {subject}\nMessage-ID: <{msgid}>\n" +
                (f"References: {refs}\n" if refs else "") +
                f"Date: Mon, 1 Jan 2024 {n:02d}:00:00 +0000\n\nbody\n").encode()

    acct = fill(srv, [
        mail(10, "Party", "1@x"),
        mail(11, "Re: Party", "2@x", "<1@x>"),
        mail(12, "Other", "3@x"),
        mail(13, "Re: Party", "4@x", "<1@x> <2@x>"),
        mail(15, "Re: Lost", "5@x", "<gone@x>"),
        mail(14, "Re: Lost", "6@x", "<gone@x>"),
        mail(16, "Re: Party", "7@x"),
        mail(17, "Lost", "8@x", "<gone2@x>"),
        mail(18, "Lost", "9@x", "<gone2@x>"),
    ])
    m = imaplib_login(srv, acct)
    m.select("INBOX")
    assert thread(m, "REFERENCES", "UTF-8", "ALL") == \
        b"(1 (2 4)(7))(3)((6)(5)(8)(9))"
    assert thread(m, "REFERENCES", "UTF-8", "NOT", "SUBJECT", "Other", "NOT", "8") == \
        b"(1 (2 4)(7))((6)(5)(9))"
    assert thread(m, "REFERENCES", "UTF-8", "5") == b"(5)"
    assert thread(m, "REFERENCES", "UTF-8", "SUBJECT", "nothing") == b""
    m.logout()


@pytest.fixture(scope="module")
def address_box(srv):
    """A user whose INBOX holds the ADDRESSES messages (the searches only read it)."""
    return fill(srv, [a + b"\nbody\n" for a in ADDRESSES])


ADDRESSES = [
    b"From: user-from@domain.org\nTo: user-to@domain.org\nCc: user-cc@domain.org\n",
    b"From: RealFrom <user-from@domain.org>\nTo: RealTo <user-to@domain.org>\n",
    b"From: <user-from (comment)@ (comment) domain.org>\nTo: <user-to@domain.org>\n",
    b"From: user-from@domain.org (RealFrom)\nTo: user-to@domain.org (RealTo)\n",
    b"From: user-from1@domain.org, user-from2@domain.org\nCc: user-cc@domain.org\n",
    (b"From: RealFrom <user-from@domain.org>\nTo: groupname: groupuser1@domain.org,\n"
     b"  groupuser2@domain.org;,\n  groupname2: groupuser3@domain.org;\n"),
    b"From: RealFrom <user-from@domain.org>\nTo: groupname:;\n",
    (b"From: =?utf-8?q?J=C3=BCrgen?= <=?us-ascii?q?juergen?=@example.org>\n"
     b"Cc: =?utf-8?q?Ren=C3=A9e_Dupont?= <renee@example.org>\n"),
]


@pytest.mark.parametrize("key,needle,expected", [
    ("FROM", "user-from@domain.org", [1, 2, 3, 4, 6, 7]),  # 3: comments inside the address
    ("FROM", "realfrom", [2, 4, 6, 7]),                      # 4: the comment as the name
    ("FROM", "ser-fro", [1, 2, 3, 4, 5, 6, 7]),
    ("FROM", "user-from2", [5]),
    ("TO", "groupname", [6, 7]),
    ("TO", "groupname2", [6]),
    ("TO", "groupuser3", [6]),
    ("TO", "groupuser4", []),
    ("TO", "<user-to@domain.org>", [1, 2, 3, 4]),
    ("FROM", "juergen@example.org", [8]),                    # an encoded word in the address
    ("FROM", "Jürgen <juergen", [8]),
    ("CC", "renée dupont", [8]),
    ("CC", "RENÉE", [8]),
])
def test_search_addresses(srv, address_box, key: str, needle: str, expected: list[int]
                          ) -> None:
    """RFC 9051 §6.4.4 FROM/TO/CC: a substring of the address list as Dovecot writes it back
    (`Name <mailbox@domain>`, groups as `name: ...;`, comments gone, RFC 2047 decoded). The
    store's answer (the plain key) and the message-by-message walk (under NOT NOT) agree."""
    c = client(srv, address_box)
    assert c.search([key, needle], "UTF-8") == expected
    assert c.search(["NOT", "NOT", key, needle], "UTF-8") == expected
    c.logout()
