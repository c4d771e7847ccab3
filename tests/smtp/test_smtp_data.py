"""The end-of-data scanner and the BDAT checker (casella.smtp.data): exact dot-unstuffing, only
CRLF.CRLF ends DATA, bare CR/LF found wherever the chunks split."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casella.smtp.data import BdatScanner, DataScanner, HeadCapture, has_bare_newline


def scan(stream: bytes, splits: list[int] | None = None,
         max_size: int = 10**9) -> tuple[bytes, bytes | None, DataScanner]:
    """Feed `stream` in pieces cut at `splits` (or byte by byte when None)."""
    sc = DataScanner(max_size)
    out: list[bytes] = []
    if splits is None:
        pieces = [stream[i:i + 1] for i in range(len(stream))]
    else:
        cuts = [0, *sorted(s for s in splits if 0 < s < len(stream)), len(stream)]
        pieces = [stream[a:b] for a, b in itertools.pairwise(cuts)]
    leftover = None
    for idx, piece in enumerate(pieces):
        data, leftover = sc.feed(piece)
        out.append(data)
        if leftover is not None:
            leftover += b"".join(pieces[idx + 1:])
            break
    return b"".join(out), leftover, sc


CASES = [
    # (stream, message, leftover)
    (b"Subject: x\r\n\r\nbody\r\n.\r\n", b"Subject: x\r\n\r\nbody\r\n", b""),
    (b".\r\n", b"", b""),
    (b"\r\n.\r\n", b"\r\n", b""),
    (b"..\r\n.\r\n", b".\r\n", b""),
    (b"a\r\n..b\r\n...c\r\n.\r\nQUIT\r\n", b"a\r\n.b\r\n..c\r\n", b"QUIT\r\n"),
    (b"a\r\n.\r\nMAIL FROM:<x@y.example>\r\n", b"a\r\n", b"MAIL FROM:<x@y.example>\r\n"),
    (b".x\r\n.\r\n", b"x\r\n", b""),
    (b"a\r\n.\r\n.\r\n", b"a\r\n", b".\r\n"),
]


@pytest.mark.parametrize("stream,message,leftover", CASES)
def test_end_and_unstuffing(stream: bytes, message: bytes, leftover: bytes) -> None:
    """RFC 5321 §4.1.1.4 end of data and §4.5.2 transparency, whole and byte by byte."""
    for splits in ([], None):
        out, left, sc = scan(stream, splits)
        assert out == message
        assert left == leftover
        assert sc.done and not sc.bare
        assert sc.size == len(message)


SMUGGLING = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r.\n"]


@pytest.mark.parametrize("vector", SMUGGLING, ids=repr)
def test_smuggling_vectors_are_not_terminators(vector: bytes) -> None:
    """PROMISES M1: none of the five smuggling endings ends DATA; the smuggled MAIL FROM stays
    inside the (refused) message and the real terminator is found."""
    stream = (b"Subject: a\r\n\r\nhello" + vector + b"MAIL FROM:<evil@x.example>\r\n"
              b"RCPT TO:<victim@h.example>\r\nDATA\r\nspoofed\r\n.\r\nQUIT\r\n")
    for splits in ([], None, [len(b"Subject: a\r\n\r\nhello") + 1]):
        out, left, sc = scan(stream, splits)
        assert sc.done
        assert left == b"QUIT\r\n"
        assert sc.bare
        assert out == b"" or b"MAIL FROM" not in out


def test_bare_lf_and_cr_detected() -> None:
    """RFC 5321 §2.3.8: lone CR or LF is not a line ending; the scanner notices both."""
    for body in [b"a\nb\r\n", b"a\rb\r\n", b"a\r\r\n", b"\n", b"a\r\n\rb\r\n"]:
        _, _, sc = scan(body + b".\r\n", [])
        assert sc.bare, body
        _, _, sc = scan(body + b".\r\n", None)
        assert sc.bare, body


def test_cr_split_from_lf_is_not_bare() -> None:
    """A CRLF cut between two reads is one line ending."""
    stream = b"line one\r\nline two\r\n.\r\n"
    for i in range(len(stream)):
        out, _, sc = scan(stream, [i])
        assert not sc.bare and out == b"line one\r\nline two\r\n"


def test_too_big_stops_output_but_finds_end() -> None:
    """Over the limit: keep reading to the end (so the session stays in step), keep nothing."""
    stream = b"x" * 100 + b"\r\n" + b"y" * 100 + b"\r\n.\r\nNOOP\r\n"
    out, left, sc = scan(stream, [50, 150], max_size=120)
    assert sc.too_big and sc.done and left == b"NOOP\r\n"
    assert len(out) <= 120
    assert sc.size == 204


def test_feed_after_done_raises() -> None:
    sc = DataScanner(100)
    sc.feed(b".\r\n")
    with pytest.raises(RuntimeError):
        sc.feed(b"x")


def _reference(stream: bytes) -> tuple[bytes, bytes, bool] | None:
    """A slow, obviously-correct line-by-line model of DATA."""
    virtual = b"\r\n" + stream
    idx = virtual.find(b"\r\n.\r\n")
    if idx < 0:
        return None
    content = virtual[2:idx + 2]
    lines = content.split(b"\r\n")
    unstuffed = b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)
    bare = b"\r" in content.replace(b"\r\n", b"") or b"\n" in content.replace(b"\r\n", b"")
    return unstuffed, virtual[idx + 5:], bare


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from([b"a", b".", b"\r", b"\n", b"\r\n", b"..", b"\r\n.",
                                 b"\r\n.\r\n", b"xyz"]), max_size=40),
       st.lists(st.integers(min_value=0, max_value=200), max_size=6))
def test_scanner_matches_reference(parts: list[bytes], splits: list[int]) -> None:
    """Property: for any stream and any chunking, the scanner agrees with the line model."""
    stream = b"".join(parts) + b"\r\n.\r\n"
    expected = _reference(stream)
    assert expected is not None
    out, left, sc = scan(stream, splits)
    message, leftover, bare = expected
    assert left == leftover
    assert sc.bare == bare
    if not bare:
        assert out == message
        assert sc.size == len(message)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300), max_size=5))
def test_scanner_never_crashes(data: bytes, splits: list[int]) -> None:
    """Property: arbitrary bytes never raise, and the size counts what was kept."""
    out, _, sc = scan(data, splits)
    if not sc.refused:
        assert sc.size == len(out)


def test_bdat_scanner() -> None:
    """RFC 3030 chunks: CRLF split across chunks is fine; bare CR/LF and size are caught."""
    sc = BdatScanner(100)
    assert sc.feed(b"a\r") == b"a\r"
    assert sc.feed(b"\nb\r\n") == b"\nb\r\n"
    sc.finish()
    assert not sc.bare and sc.size == 6
    sc = BdatScanner(100)
    sc.feed(b"a\r")
    sc.feed(b"b")
    assert sc.bare
    sc = BdatScanner(100)
    sc.feed(b"a\n")
    assert sc.bare
    sc = BdatScanner(100)
    sc.feed(b"a\r")
    sc.finish()
    assert sc.bare
    sc = BdatScanner(10)
    assert sc.feed(b"x" * 11) == b""
    assert sc.too_big


def test_has_bare_newline() -> None:
    assert not has_bare_newline(b"a\r\nb\r\n")
    assert has_bare_newline(b"a\nb")
    assert has_bare_newline(b"a\rb")


def test_head_capture() -> None:
    cap = HeadCapture(limit=64)
    cap.feed(b"From: a@b.example\r\nSubj")
    cap.feed(b"ect: x\r\n\r\nbody " + b"z" * 100)
    assert cap.header == b"From: a@b.example\r\nSubject: x\r\n\r\n"
    assert not cap.complete and len(cap.prefix) == 64
    cap = HeadCapture(limit=64)
    cap.feed(b"From: a@b.example\r\n")
    assert cap.complete and cap.header == b"From: a@b.example\r\n"
    cap = HeadCapture(limit=8)
    cap.feed(b"X-Long: " + b"y" * 100)
    assert cap.header is None
