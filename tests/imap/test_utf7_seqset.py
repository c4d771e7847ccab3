"""Modified UTF-7 (RFC 3501 §5.1.3) and sequence sets (RFC 9051 §9), pure functions."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casella.imap import seqset, utf7
from casella.imap.responses import astring, internaldate, mailbox, string, text
from casella.imap.seqset import STAR, SeqSet, SeqSetError

PAIRS = [
    ("INBOX", "INBOX"),
    ("Entwürfe", "Entw&APw-rfe"),
    ("~peter/mail/台北/日本語", "~peter/mail/&U,BTFw-/&ZeVnLIqe-"),
    ("a&b", "a&-b"),
    ("&", "&-"),
    ("日本語&x", "&ZeVnLIqe-&-x"),
    ("\U0001F600 smile", "&2D3eAA- smile"),
    ("Tab\there", "Tab&AAk-here"),
]


@pytest.mark.parametrize("name,wire", PAIRS)
def test_utf7_pairs(name: str, wire: str) -> None:
    assert utf7.encode(name) == wire
    assert utf7.decode(wire.encode()) == name


@pytest.mark.parametrize("wire", [
    b"&Jjo",                 # unterminated
    b"&U,BTFw-&ZeVnLIqe-",   # two shifted runs next to each other: not canonical
    b"&AGE-",                # "a" encoded: must be written directly
    b"&ACY-",                # "&" encoded instead of "&-"
    b"\xc3\xa9t\xc3\xa9",    # raw UTF-8 is not mUTF-7
    b"a\tb",                 # raw control character
    b"&2D3-",                # lone surrogate
    b"&AOk",                 # missing "-"
    b"&A-",                  # dangling bits
    b"&AP-",
    b"&!!-",                 # not base64
])
def test_utf7_refuses_non_canonical(wire: bytes) -> None:
    """PROMISES N2: never silently re-encode a name into another one."""
    with pytest.raises(utf7.Utf7Error):
        utf7.decode(wire)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=40))
def test_utf7_round_trip(name: str) -> None:
    wire = utf7.encode(name)
    assert wire.isascii()
    assert utf7.decode(wire.encode()) == name


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60))
def test_utf7_decode_is_canonical(raw: bytes) -> None:
    """Whatever decodes encodes back to exactly the same bytes: one name, one spelling."""
    try:
        name = utf7.decode(raw)
    except utf7.Utf7Error:
        return
    assert utf7.encode(name).encode() == raw


def test_seqset_parse_and_resolve() -> None:
    s = seqset.parse(b"1:3,7,9:*")
    assert s.ranges == ((1, 3), (7, 7), (9, STAR))
    assert s.resolve(10) == [(1, 3), (7, 7), (9, 10)]
    assert s.resolve(5) == [(1, 3), (5, 9)]          # 9:* with * = 5 is 5:9
    assert seqset.parse(b"5:2").resolve(10) == [(2, 5)]
    assert seqset.parse(b"*").resolve(0) == []
    assert seqset.parse(b"$").saved
    assert str(seqset.parse(b"1:3,*")) == "1:3,*"


@pytest.mark.parametrize("bad", [b"", b"0", b"1:", b":1", b"1,", b"a", b"1:2:3", b"01",
                                 b"4294967296", b"1 2", b"$,1"])
def test_seqset_bad(bad: bytes) -> None:
    with pytest.raises(SeqSetError):
        seqset.parse(bad)


def test_seqset_limits_work() -> None:
    with pytest.raises(SeqSetError):
        seqset.parse(b",".join(b"%d" % i for i in range(1, 10_003)))


def test_compress_and_select() -> None:
    assert seqset.compress([1, 2, 3, 5, 7, 8]) == b"1:3,5,7:8"
    assert seqset.compress_ordered([5, 6, 2, 3]) == b"5:6,2:3"
    assert seqset.select_sorted([1, 4, 5, 9, 12], [(2, 5), (10, 20)]) == [4, 5, 12]
    assert seqset.merge([(5, 6), (1, 2), (3, 3)]) == [(1, 3), (5, 6)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.integers(1, 50)), min_size=1, max_size=8),
       st.integers(0, 60))
def test_resolve_matches_brute_force(ranges: list[tuple[int, int]], largest: int) -> None:
    s = SeqSet(tuple(ranges))
    want = {n for lo, hi in ranges for n in range(min(lo, hi), max(lo, hi) + 1)}
    got = {n for lo, hi in s.resolve(largest) for n in range(lo, hi + 1)}
    assert got == want


def test_response_strings() -> None:
    assert astring(b"INBOX") == b"INBOX"
    assert astring(b"Sent Items") == b'"Sent Items"'
    assert astring(b"NIL") == b'"NIL"'
    assert astring(b"") == b'""'
    assert string(b'a"b\\c') == b'"a\\"b\\\\c"'
    assert string(b"line\r\nbreak") == b"{11}\r\nline\r\nbreak"
    assert mailbox("Entwürfe") == b"Entw&APw-rfe"
    assert text("bad\r\nname é") == b"bad??name ?"
    assert internaldate(0) == b'"01-Jan-1970 00:00:00 +0000"'
