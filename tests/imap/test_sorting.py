"""The pure SORT and THREAD algorithms of casella/imap/sorting.py (RFC 5256, RFC 5957): tables
of base subjects (§2.1), sort keys, key order with REVERSE, and the REFERENCES threading steps
(§3) with the choices Dovecot makes where the RFC leaves room. Every thread table row was also
run against Dovecot 2.3, which answered the same."""

from __future__ import annotations

import pytest

from casella.imap import commands as c
from casella.imap.sorting import (
    SortInfo,
    base_subject,
    casemap,
    message_ids,
    ordered_subject,
    references,
    render_threads,
    sort_info,
    sort_messages,
)

# The subjects of imaptest's sort-subject group, with their base subject and whether they
# are a reply or forward.
SORT_SUBJECT_MBOX = [
    ("a", "a", False),
    ("C", "c", False),
    ("b", "b", False),
    ("_", "_", False),
    ("[foo] Fwd: [bar] Re: fw: b (fWd)  (fwd)", "b", True),
    ("b (a)", "b (a)", False),
    ("Re: [FWD: c]", "c", True),
    ("[xyz]", "[xyz]", False),
    ("=?iso-8859-1?q?_?=", "", False),
    ("Re: =?utf-8?q?b?=", "b", True),
    ("=?iso-8859-1?q?RE:_C?=", "c", True),
    ("=?us-ascii?b?UmU6IGM=?=", "c", True),
    ("Ad: Re: Ad: Re: Ad: x", "ad: re: ad: re: ad: x", False),
    ("re: [fwd: [fwd: re: [fwd: babylon]]]", "babylon", True),
]

MORE_SUBJECTS = [
    ("c (fwd)", "c", True),                  # (2) a trailer marks a forward too
    ("Re[2]: x", "x", True),                 # (3) a blob inside the leader
    ("[list][tag] Re: x", "x", True),        # (3) blobs before the leader
    ("Fw:x", "x", True),
    ("Fwd : x", "x", True),                  # subj-refwd allows WSP before ":"
    ("Re: [list] x", "x", True),             # (4) after (3), then (5) repeats
    ("[only]  ", "[only]", False),           # (4) not when nothing would remain
    ("Refwd: x", "refwd: x", False),         # not a leader
    ("Re: Re:", "", True),
    ("x\t\r\n  y", "x y", False),            # (1) white space collapsed
    ("[fwd: Re: x] (fwd)", "x", True),       # (6) then (2) again
]


@pytest.mark.parametrize("subject,base,reply", SORT_SUBJECT_MBOX + MORE_SUBJECTS)
def test_base_subject_rfc5256_2_1(subject: str, base: str, reply: bool) -> None:
    """RFC 5256 §2.1 steps (1)-(6), in that order; the reply flag feeds REFERENCES (5)."""
    assert base_subject(subject) == (base, reply)


def test_casemap_orders_like_i_ascii_casemap() -> None:
    """RFC 5256 §3: i;ascii-casemap compares upper case, so "[" and "_" sort after letters
    (imaptest sort-subject: "[xyz]" and "_" come last); non-ASCII is decomposed."""
    keys = ["_", "[xyz]", "c", "ad: x", "B", "b (a)", "babylon", ""]
    assert sorted(keys, key=casemap) == ["", "ad: x", "B", "b (a)", "babylon", "c", "[xyz]",
                                         "_"]
    assert casemap("Grüße") == casemap("GRÜSSE")
    assert casemap("é") == "E\u0301"


def info(seq: int, header: str, arrival: int | None = None, size: int = 10) -> SortInfo:
    return sort_info(seq, seq, 1_700_000_000 + 60 * seq if arrival is None else arrival, size,
                     header.replace("\n", "\r\n").encode() + b"\r\n")


@pytest.mark.parametrize("field,expected_box,expected_display", [
    ("foo bar <a@b.c>", "A", "FOO BAR"),
    ("=?iso-8859-1?q?foo_aar?= <e@f.g>", "E", "FOO AAR"),     # RFC 5957 §3: decoded
    ("b@c.d", "B", "B@C.D"),                                  # no name: the addr-spec
    ("user2@domain2.org (foo bar)", "USER2", "FOO BAR"),      # a comment as the name
    ("d", "D", "D@MISSING_DOMAIN"),
    ("a: xx@xx.org, yy@yy.org;", "A", "A"),                   # a group: its name
    ("empty:;", "EMPTY", "EMPTY"),
    ('"" <z@y>', "Z", "Z@Y"),
    ("", "", ""),
])
def test_first_address_keys(field: str, expected_box: str, expected_display: str) -> None:
    """RFC 5256 §3 FROM/TO/CC: the addr-mailbox of the first address, where a group's
    start (RFC 3501 §7.4.2) holds the group name; RFC 5957 §3 DISPLAYFROM/DISPLAYTO."""
    got = info(1, f"To: {field}\nCc: {field}\nFrom: {field}")
    assert (got.to, got.display_to) == (expected_box, expected_display)
    assert (got.from_, got.display_from) == (expected_box, expected_display)
    assert got.cc == expected_box


def test_missing_fields_sort_first() -> None:
    got = info(1, "X-Other: 1")
    assert (got.from_, got.to, got.cc, got.display_from, got.subject) == ("", "", "", "", "")
    assert got.date == got.arrival          # RFC 5256 §2.2: no Date: the internal date


@pytest.mark.parametrize("date,expected", [
    ("Mon, 1 Jan 2024 10:00:00 +0100", 1_704_099_600),
    ("1 Jan 2024 09:00:00 +0000", 1_704_099_600),
    ("Mon, 1 Jan 2024 09:00:00", 1_704_099_600),             # no zone: UTC
    ("garbage", None),
    ("Thu, 1 Jan 1970 00:00:00 +0000", None),                # 0: as unknown
])
def test_sent_date(date: str, expected: int | None) -> None:
    """RFC 5256 §2.2: the sent date, else (missing or unparsable) the internal date."""
    got = info(3, f"Date: {date}", arrival=42)
    assert got.date == (42 if expected is None else expected)


@pytest.mark.parametrize("value,ids", [
    ("<a@b>", ["a@b"]),
    ("  <a@b> <c@d>\t<e@f>", ["a@b", "c@d", "e@f"]),
    ("<no-at> <x@y>", ["x@y"]),                  # not a msg-id: skipped
    ("<a @ b>", ["a@b"]),                        # white space inside dropped
    ("junk <x@y", []),
    ("<A@b> <a@b>", ["A@b", "a@b"]),             # compared case-sensitively
])
def test_message_ids(value: str, ids: list[str]) -> None:
    """RFC 5322 §3.6.4 msg-id lists, read as Dovecot reads them."""
    assert message_ids(value.encode()) == ids


def sort(infos: list[SortInfo], *keys: str) -> list[int]:
    criteria = []
    reverse = False
    for k in keys:
        if k == "REVERSE":
            reverse = True
            continue
        criteria.append(c.SortKey(k, reverse))
        reverse = False
    return [i.seq for i in sort_messages(infos, criteria)]


SORT_ADDRESSES = [
    info(1, "From: user2@domain2.org\nTo: foo bar <user2@domain2.org>\n"
            "Cc: user2@domain2.org (foo bar)"),
    info(2, "From: user2@domain1.org\nTo: user2@domain1.org\nCc: user2: blah@domain1.org;"),
    info(3, "From: user1@domain1.org\nTo: user1@domain1.org\nCc: user1@domain1.org"),
]


@pytest.mark.parametrize("keys,expected", [
    (("FROM",), [3, 1, 2]), (("TO",), [3, 1, 2]), (("CC",), [3, 1, 2]),
    (("REVERSE", "FROM"), [1, 2, 3]), (("REVERSE", "CC"), [1, 2, 3]),
    (("CC", "REVERSE", "ARRIVAL"), [3, 2, 1]), (("TO", "REVERSE", "ARRIVAL"), [3, 2, 1]),
])
def test_sort_addresses(keys: tuple[str, ...], expected: list[int]) -> None:
    """RFC 5256 §3: REVERSE turns only its own key around; a full tie stays in ascending
    sequence order (imaptest sort-addresses: "reverse cc" is 1 2 3, not 2 1 3)."""
    assert sort(SORT_ADDRESSES, *keys) == expected


def test_sort_display_to() -> None:
    """RFC 5957 §3 DISPLAYTO on imaptest's sort-display-to data."""
    tos = ["foo bar <a@b.c>", "b@c.d", "d", "=?iso-8859-1?q?foo_aar?= <e@f.g>",
           "=?iso-8859-1?q?foo_car?= <f@g.h>", "a: xx@xx.org, yy@yy.org;",
           "z: aa@aa.org, bb@bb.org;", "empty:;"]
    infos = [info(n, f"To: {to}", arrival=0) for n, to in enumerate(tos, 1)]
    assert sort(infos, "DISPLAYTO") == [6, 2, 3, 8, 4, 1, 5, 7]
    assert sort(infos, "REVERSE", "DISPLAYTO") == [7, 5, 1, 4, 8, 3, 2, 6]


def test_sort_subject() -> None:
    """RFC 5256 §3 SUBJECT on imaptest's sort-subject data (the 9th message has none);
    then SUBJECT REVERSE SIZE, where each message is bigger than the one before."""
    subjects = [s for s, _, _ in SORT_SUBJECT_MBOX]
    subjects.insert(8, None)
    infos = [info(n, "X: y" if s is None else f"Subject: {s}", size=n)
             for n, s in enumerate(subjects, 1)]
    assert sort(infos, "SUBJECT") == [9, 10, 1, 14, 3, 5, 11, 6, 15, 2, 7, 12, 13, 8, 4]
    assert sort(infos, "REVERSE", "SUBJECT") == [4, 8, 2, 7, 12, 13, 15, 6, 3, 5, 11, 14, 1, 9,
                                                 10]
    assert sort(infos, "SUBJECT", "REVERSE", "SIZE") == [10, 9, 1, 14, 11, 5, 3, 6, 15, 13, 12,
                                                         7, 2, 8, 4]


def msg(seq: int, msgid: str | None = None, refs: tuple[str, ...] = (),
        subject: str | None = None, hour: int | None = None, irt: str | None = None) -> SortInfo:
    """A message arriving at hour 30 + seq of 1 Jan 2024, sent at `hour` when given."""
    lines = []
    if msgid:
        lines.append(f"Message-ID: <{msgid}>")
    if refs:
        lines.append("References: " + " ".join(f"<{r}>" for r in refs))
    if irt:
        lines.append(f"In-Reply-To: <{irt}>")
    if subject is not None:
        lines.append(f"Subject: {subject}")
    if hour is not None:
        lines.append(f"Date: Mon, 1 Jan 2024 {hour:02d}:00:00 +0000")
    return info(seq, "\n".join(lines), arrival=1_704_067_200 + 3600 * (seq + 30))


THREADS = {
    # RFC 5256 §3 (1): References give the parent/child links.
    "basic": ([msg(1, "a@x", subject="s1"), msg(2, "b@x", ("a@x",), "s2"),
               msg(3, "c@x", ("a@x", "b@x"), "s3"), msg(4, "d@x", ("a@x",), "s4")],
              b"(1 (2 3)(4))"),
    # (1)(C): a message's own last reference is its parent; the link that another message's
    # References made is dropped, and a link that would loop is not made (imaptest thread).
    "own references win": ([msg(1, "a@b", hour=17), msg(2, "b@b", ("a@b", "c@b"), hour=15),
                            msg(3, "c@b", ("b@b",), hour=16)], b"(3 2)(1)"),
    "own references win, first one expunged": ([msg(1, "b@b", ("a@b", "c@b"), hour=15),
                                                msg(2, "c@b", ("b@b",), hour=16)], b"(2 1)"),
    # (2)-(3): a dummy root with two children stays, with one it is replaced by the child;
    # a dummy in the middle of a chain goes.
    "dummy with two children": ([msg(1, "x@x", ("gone@x",), "s1"),
                                 msg(2, "y@x", ("gone@x",), "s2")], b"((1)(2))"),
    "dummy with one child": ([msg(1, "x@x", ("gone@x",), "s1")], b"(1)"),
    "dummy in the middle": ([msg(1, "a@x", subject="s1"),
                             msg(2, "c@x", ("a@x", "b@x"), "s2")], b"(1 2)"),
    # (1)(A): a second message with the same Message-ID is threaded as if it had none.
    "duplicate message-id": ([msg(1, "a@x", subject="s1"), msg(2, "a@x", subject="s2"),
                              msg(3, "r@x", ("a@x",), "s3")], b"(1 3)(2)"),
    "references loop": ([msg(1, "a@x", ("b@x",), "s1"), msg(2, "b@x", ("a@x",), "s2")],
                        b"(2 1)"),
    "reference to itself": ([msg(1, "a@x", ("z@x", "a@x"), "s1")], b"(1)"),
    # (1)(A): In-Reply-To only when there is no References.
    "in-reply-to": ([msg(1, "a@x", subject="s1"), msg(2, "b@x", subject="s2", irt="a@x"),
                     msg(3, "c@x", ("b@x",), "s3", irt="a@x")], b"(1 2 3)"),
    "no message-id": ([msg(1, "a@x", subject="s1"), msg(2, None, ("a@x",), "s2")], b"(1 2)"),
    # (4)/(6): siblings by sent date, not by arrival.
    "siblings by date": ([msg(1, "a@x", subject="s1", hour=1),
                          msg(2, "b@x", ("a@x",), "s2", hour=5),
                          msg(3, "c@x", ("a@x",), "s3", hour=3)], b"(1 (3)(2))"),
    # (5): roots with the same base subject are joined.
    "reply joins the original": ([msg(1, "p1@x", subject="Party", hour=1),
                                  msg(2, "p2@x", subject="Re: Party", hour=2)], b"(1 2)"),
    "two originals get a dummy": ([msg(1, "p1@x", subject="Party", hour=1),
                                   msg(2, "p2@x", subject="Party", hour=2)], b"((1)(2))"),
    "two replies get a dummy": ([msg(1, "p1@x", subject="Re: x", hour=1),
                                 msg(2, "p2@x", subject="Re: x", hour=2)], b"((1)(2))"),
    "original sent after the reply": ([msg(1, "p1@x", subject="Re: x", hour=1),
                                       msg(2, "p2@x", subject="x", hour=2)], b"(2 1)"),
    "two dummies merge": ([msg(1, "x@x", ("g1@x",), "Lost", 1),
                           msg(2, "y@x", ("g1@x",), "Lost", 2),
                           msg(3, "z@x", ("g2@x",), "Re: Lost", 3),
                           msg(4, "w@x", ("g2@x",), "Lost", 4)], b"((1)(2)(3)(4))"),
    "message joins a dummy": ([msg(1, "x@x", ("g1@x",), "Lost", 1),
                               msg(2, "y@x", ("g1@x",), "Lost", 2),
                               msg(3, "z@x", subject="Lost", hour=3)], b"((1)(2)(3))"),
    "empty subjects never merge": ([msg(1, "a@x", subject="", hour=1),
                                    msg(2, "b@x", subject="Re:", hour=2),
                                    msg(3, "c@x", hour=3)], b"(1)(2)(3)"),
}


@pytest.mark.parametrize("name", list(THREADS))
def test_thread_references(name: str) -> None:
    """RFC 5256 §3 REFERENCES, steps (1)-(6), rendered as RFC 5256 §4 thread-list."""
    infos, expected = THREADS[name]
    assert render_threads(references(infos), uid=False) == expected
    # The order the messages are handed over in does not matter (arrival order is used).
    assert render_threads(references(list(reversed(infos))), uid=False) == expected


def test_thread_renders_uids() -> None:
    infos = [msg(1, "a@x", subject="s"), msg(2, "b@x", ("a@x",), "s")]
    for i in infos:
        i.uid = i.seq * 10
    assert render_threads(references(infos), uid=True) == b"(10 20)"
    assert render_threads(references([]), uid=False) == b""


def test_thread_orderedsubject() -> None:
    """RFC 5256 §3 ORDEREDSUBJECT: one thread per base subject, the earliest message the
    parent of the others, threads by their first message's date."""
    infos = [msg(1, subject="Party", hour=5), msg(2, subject="Re: party", hour=1),
             msg(3, subject="Other", hour=3), msg(4, subject="Fwd: PARTY", hour=9)]
    assert render_threads(ordered_subject(infos), uid=False) == b"(2 (1)(4))(3)"
