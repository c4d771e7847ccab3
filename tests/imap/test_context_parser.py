"""The grammar of RFC 5267 (ESORT, CONTEXT=SEARCH, CONTEXT=SORT) with RFC 9394's PARTIAL ranges:
RETURN options on SEARCH and SORT (CONTEXT, UPDATE, PARTIAL next to MIN MAX ALL COUNT SAVE) and
CANCELUPDATE; tables of good and bad inputs, and a hypothesis property (arbitrary bytes after
RETURN raise nothing but ParseError)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casella.imap import commands as c
from casella.imap.parser import ParseError, parse_bytes
from casella.imap.seqset import SeqSet

ARRIVAL = (c.SortKey("ARRIVAL"),)


def cmd(data: bytes) -> c.Command:
    return parse_bytes(data).command


GOOD: list[tuple[bytes, c.Command]] = [
    # RFC 5267 §4.2 CONTEXT, §4.3 UPDATE: kept in the order given, each once.
    (b"a SEARCH RETURN (UPDATE) SEEN", c.Search(False, c.SFlag("\\Seen"), None, ("UPDATE",))),
    (b"a SEARCH RETURN (CONTEXT COUNT) ALL", c.Search(False, c.SAll(), None,
                                                      ("CONTEXT", "COUNT"))),
    (b"a SEARCH RETURN (update all Update) ALL", c.Search(False, c.SAll(), None,
                                                          ("UPDATE", "ALL"))),
    (b"a UID SEARCH RETURN (SAVE UPDATE MIN) CHARSET UTF-8 ALL",
     c.Search(True, c.SAll(), "UTF-8", ("SAVE", "UPDATE", "MIN"))),
    # RFC 5267 §4.4 / RFC 9394 §3.1: PARTIAL with its range; 500:400 is 400:500.
    (b"a SEARCH RETURN (PARTIAL 1:500) ALL",
     c.Search(False, c.SAll(), None, ("PARTIAL",), (1, 500))),
    (b"a SEARCH RETURN (PARTIAL 500:400) ALL",
     c.Search(False, c.SAll(), None, ("PARTIAL",), (400, 500))),
    (b"a SEARCH RETURN (partial 7:7 MIN MAX COUNT) ALL",
     c.Search(False, c.SAll(), None, ("PARTIAL", "MIN", "MAX", "COUNT"), (7, 7))),
    (b"a SEARCH RETURN (PARTIAL 1:4294967295) ALL",
     c.Search(False, c.SAll(), None, ("PARTIAL",), (1, 4294967295))),
    # RFC 9394 §3.1: negative ranges count from the last result; -100:-1 is -1:-100.
    (b"a UID SEARCH RETURN (PARTIAL -1:-100) UNDELETED",
     c.Search(True, c.SFlag("\\Deleted", False), None, ("PARTIAL",), (-1, -100))),
    (b"a UID SEARCH RETURN (PARTIAL -100:-1 UPDATE) ALL",
     c.Search(True, c.SAll(), None, ("PARTIAL", "UPDATE"), (-1, -100))),
    # RFC 5267 §3, §5: extended-sort = ["UID" SP] "SORT" search-return-opts SP sort-criteria...
    (b"a SORT RETURN (MIN) (ARRIVAL) US-ASCII 1:5",
     c.Sort(False, ARRIVAL, "US-ASCII", c.SSeq(SeqSet(((1, 5),))), ("MIN",))),
    (b"a UID SORT RETURN () (REVERSE DATE) UTF-8 UNDELETED",
     c.Sort(True, (c.SortKey("DATE", True),), "UTF-8", c.SFlag("\\Deleted", False), ())),
    (b"a SORT RETURN (UPDATE PARTIAL 4:2 COUNT) (SUBJECT ARRIVAL) UTF-8 ALL",
     c.Sort(False, (c.SortKey("SUBJECT"), c.SortKey("ARRIVAL")), "UTF-8", c.SAll(),
            ("UPDATE", "PARTIAL", "COUNT"), (2, 4))),
    (b"a SORT (ARRIVAL) UTF-8 ALL", c.Sort(False, ARRIVAL, "UTF-8", c.SAll())),
    # RFC 5267 §4.3.5: CANCELUPDATE 1*(SP quoted)
    (b'a CANCELUPDATE "B01"', c.CancelUpdate(("B01",))),
    (b'a cancelupdate "B01" "2.3" "q\\"x"', c.CancelUpdate(("B01", "2.3", 'q"x'))),
]


@pytest.mark.parametrize("data,expected", GOOD)
def test_good(data: bytes, expected: c.Command) -> None:
    assert cmd(data) == expected


BAD: list[tuple[bytes, str]] = [
    # RFC 9394 §4: partial-range is nz-number ":" nz-number (or both negative), no "*".
    (b"a SEARCH RETURN (PARTIAL 1) ALL", "partial range"),
    (b"a SEARCH RETURN (PARTIAL 1:*) ALL", "partial range"),
    (b"a SEARCH RETURN (PARTIAL *:1) ALL", "partial range"),
    (b"a SEARCH RETURN (PARTIAL) ALL", "expected"),
    (b"a SEARCH RETURN (PARTIAL 0:10) ALL", "from 1 to 4294967295"),
    (b"a SEARCH RETURN (PARTIAL 1:4294967296) ALL", "from 1 to 4294967295"),
    (b"a SEARCH RETURN (PARTIAL 1:99999999999999999999) ALL", "from 1 to 4294967295"),
    (b"a SEARCH RETURN (PARTIAL -1:5) ALL", "same sign"),
    (b"a SEARCH RETURN (PARTIAL 1:-5) ALL", "same sign"),
    (b'a SEARCH RETURN (PARTIAL "1:5") ALL', "partial range"),
    (b"a SEARCH RETURN (PARTIAL 1:5x) ALL", "expected"),
    (b"a SEARCH RETURN (PARTIAL 1:123456789012345678901) ALL", "from 1 to 4294967295"),
    # RFC 5267 §4.4 / RFC 9394 §3.1: one PARTIAL, one ALL, or neither.
    (b"a SEARCH RETURN (PARTIAL 1:5 ALL) ALL", "PARTIAL and ALL"),
    (b"a SEARCH RETURN (ALL PARTIAL 1:5) ALL", "PARTIAL and ALL"),
    (b"a SEARCH RETURN (PARTIAL 1:5 PARTIAL 6:9) ALL", "PARTIAL given twice"),
    (b"a SEARCH RETURN (UPDATE (FLAGS)) ALL", "expected an atom"),
    (b"a SEARCH RETURN (NOTIFY) ALL", "unexpected"),
    (b"a SORT RETURN (PARTIAL 1) (ARRIVAL) US-ASCII ALL", "partial range"),
    (b"a SORT RETURN (PARTIAL 1:*) (ARRIVAL) US-ASCII ALL", "partial range"),
    (b"a SORT RETURN (PARTIAL *:1) (ARRIVAL) US-ASCII ALL", "partial range"),
    (b"a SORT RETURN (MIN) US-ASCII ALL", "expected"),
    (b"a SORT RETURN (MIN)(ARRIVAL) US-ASCII ALL", "expected"),
    (b"a SORT FOO (ARRIVAL) US-ASCII ALL", "unexpected FOO"),
    (b"a SORT RETURN MIN (ARRIVAL) US-ASCII ALL", "expected"),
    (b"a THREAD RETURN (MIN) REFERENCES US-ASCII ALL", "unknown threading algorithm"),
    (b"a CANCELUPDATE", "needs the tag"),
    (b"a CANCELUPDATE B01", "expected"),
    (b'a CANCELUPDATE "B01" B02', "expected"),
    (b'a CANCELUPDATE "B01"  "B02"', "expected"),
    (b'a CANCELUPDATE "t\xc3\xa4g"', "ASCII"),
    (b"a UID CANCELUPDATE \"B01\"", "unknown UID command"),
    (b"a CANCELUPDATE " + b" ".join([b'"t"'] * 101), "too many tags"),
]


@pytest.mark.parametrize("data,fragment", BAD)
def test_bad(data: bytes, fragment: str) -> None:
    with pytest.raises(ParseError) as exc:
        cmd(data)
    assert fragment in exc.value.message
    assert exc.value.tag == "a"


_PIECES = [b"(", b")", b" ", b"PARTIAL", b"UPDATE", b"CONTEXT", b"ALL", b"MIN", b"1", b":",
           b"-", b"*", b"4294967296", b"0", b'"', b"\\", b"ARRIVAL", b"US-ASCII", b"\x00",
           b"\xff"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([b"a SEARCH RETURN (", b"a UID SORT RETURN (", b"a CANCELUPDATE ",
                        b"a SORT RETURN (PARTIAL "]),
       st.lists(st.sampled_from(_PIECES), max_size=12))
def test_arbitrary_return_options_raise_only_parse_error(head: bytes,
                                                         pieces: list[bytes]) -> None:
    try:
        cmd(head + b"".join(pieces))
    except ParseError:
        pass
