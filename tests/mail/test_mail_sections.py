"""Body sections (RFC 3501 §6.4.5 / RFC 9051 §6.4.5), HEADER.FIELDS filtering and
Content-Transfer-Encoding decoding.

``rfc3501_sections.eml`` builds the example structure listed in RFC 3501 §6.4.5. Every
section below was fetched from Dovecot 2.3.19.1 with BODY.PEEK[section] and matches it byte
for byte, except where a comment says otherwise.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from casella.mail.parse import parse_message
from casella.mail.sections import (
    Part,
    decode_transfer,
    dump_parts,
    filter_header_fields,
    load_parts,
    section_range,
)

CORPUS = Path(__file__).parent / "corpus"
DATA = (CORPUS / "rfc3501_sections.eml").read_bytes()
ROOT = load_parts(parse_message(DATA).parts)

EMB3 = (
    b"From: embedded3@example.com\r\nSubject: part 3 message\r\nContent-Type: MULTIPART/MIXED;"
    b' boundary="p3"\r\n\r\n'
)
TEXT3 = (
    b"--p3\r\nContent-Type: TEXT/PLAIN\r\n\r\npart 3.1 text\r\n--p3\r\nContent-Type: "
    b"APPLICATION/OCTET-STREAM\r\n\r\npart 3.2 data\r\n--p3--"
)
EMB42 = (
    b"From: embedded42@example.com\r\nSubject: part 4.2 message\r\nContent-Type: "
    b'MULTIPART/MIXED; boundary="p42"\r\n\r\n'
)
BODY422 = (
    b"--p422\r\nContent-Type: TEXT/PLAIN\r\n\r\npart 4.2.2.1 text\r\n--p422\r\nContent-Type: "
    b"TEXT/RICHTEXT\r\n\r\npart 4.2.2.2 richtext\r\n--p422--"
)
TEXT42 = (
    b"--p42\r\nContent-Type: TEXT/PLAIN\r\n\r\npart 4.2.1 text\r\n--p42\r\nContent-Type: "
    b'MULTIPART/ALTERNATIVE; boundary="p422"\r\n\r\n' + BODY422 + b"\r\n--p42--"
)
BODY4 = (
    b"--p4\r\nContent-Type: IMAGE/GIF\r\n\r\npart 4.1 gif\r\n--p4\r\nContent-Type: "
    b"MESSAGE/RFC822\r\n\r\n" + EMB42 + TEXT42 + b"\r\n--p4--"
)

# (path, spec, expected bytes). Dovecot appends the CRLF that follows an inner close
# delimiter to sections 3, 3.TEXT, 4, 4.2, 4.2.TEXT and 4.2.2 (see test_mail_corpus.py:
# RFC 2046 §5.1.1 makes that CRLF part of the outer delimiter).
SECTIONS = [
    ((), "HEADER", DATA[: DATA.index(b"\r\n\r\n") + 4]),
    ((1,), "", b"part 1 text"),
    ((2,), "", b"cGFydCAyIGRhdGE="),
    ((3,), "", EMB3 + TEXT3),
    ((3,), "HEADER", EMB3),
    ((3,), "TEXT", TEXT3),
    ((3, 1), "", b"part 3.1 text"),
    ((3, 2), "", b"part 3.2 data"),
    ((4,), "", BODY4),
    ((4, 1), "", b"part 4.1 gif"),
    ((4, 1), "MIME", b"Content-Type: IMAGE/GIF\r\n\r\n"),
    ((4, 2), "", EMB42 + TEXT42),
    ((4, 2), "HEADER", EMB42),
    ((4, 2), "TEXT", TEXT42),
    ((4, 2, 1), "", b"part 4.2.1 text"),
    ((4, 2, 2), "", BODY422),
    ((4, 2, 2, 1), "", b"part 4.2.2.1 text"),
    ((4, 2, 2, 2), "", b"part 4.2.2.2 richtext"),
    ((4, 2, 2), "MIME", b'Content-Type: MULTIPART/ALTERNATIVE; boundary="p422"\r\n\r\n'),
    ((3,), "MIME", b"Content-Type: MESSAGE/RFC822\r\n\r\n"),
    ((3, 1), "MIME", b"Content-Type: TEXT/PLAIN\r\n\r\n"),
    ((4, 2, 1), "MIME", b"Content-Type: TEXT/PLAIN\r\n\r\n"),
    ((1,), "MIME", b"Content-Type: TEXT/PLAIN\r\n\r\n"),
    ((), "", DATA),
    ((), "TEXT", DATA[DATA.index(b"\r\n\r\n") + 4 :]),
]


@pytest.mark.parametrize(("path", "spec", "expected"), SECTIONS)
def test_rfc3501_example_sections(path: tuple[int, ...], spec: str, expected: bytes) -> None:
    """RFC 3501 §6.4.5: the part numbering of its example message."""
    rng = section_range(ROOT, path, spec)
    assert rng is not None
    assert DATA[rng[0] : rng[1]] == expected


@pytest.mark.parametrize(
    ("path", "spec"),
    [
        ((5,), ""),  # beyond the last part
        ((4, 2, 2, 3), ""),
        ((1,), "HEADER"),  # HEADER/TEXT only for MESSAGE/RFC822 parts
        ((1,), "TEXT"),
        ((4,), "HEADER"),  # a multipart part is not a message
        ((), "MIME"),  # MIME needs a part number
        ((0,), ""),  # part numbers start at 1 (Dovecot answers part 1 here)
        ((2, 1), ""),  # a leaf has no sub-parts (Dovecot leniently answers part 2)
        ((3, 2, 1), ""),
        ((3, 1), "MIME.X"),
        ((1,), "BOGUS"),
    ],
)
def test_missing_sections_are_none(path: tuple[int, ...], spec: str) -> None:
    """A section that does not exist is None; FETCH then sends "" (as Dovecot does)."""
    assert section_range(ROOT, path, spec) is None


def test_header_fields_range_is_the_header() -> None:
    """HEADER.FIELDS[.NOT] return the header range; the caller filters it."""
    assert section_range(ROOT, (), "HEADER.FIELDS") == section_range(ROOT, (), "HEADER")
    assert section_range(ROOT, (4, 2), "header.fields.not") == section_range(ROOT, (4, 2), "HEADER")


def _root(msg: bytes) -> Part:
    return load_parts(parse_message(msg).parts)


def test_single_part_message_has_part_1() -> None:
    """RFC 3501 §6.4.5: a non-multipart message has only part 1, its body; 1.MIME is the
    message header (Dovecot agrees)."""
    msg = b"From: a@b\r\nSubject: x\r\n\r\nbody\r\n"
    root = _root(msg)
    assert section_range(root, (1,), "") == (25, len(msg))
    assert section_range(root, (1,), "MIME") == (0, 25)
    assert section_range(root, (2,), "") is None
    assert section_range(root, (1, 1), "") is None
    assert section_range(root, (1,), "TEXT") is None


def test_top_level_message_rfc822() -> None:
    """A message whose body is an encapsulated message: 1 is that message, 1.HEADER its
    header, 1.1 its body."""
    inner = b"From: in@x\r\nSubject: inner\r\n\r\ninner body\r\n"
    msg = b"From: out@x\r\nContent-Type: message/rfc822\r\n\r\n" + inner
    root = _root(msg)
    start = len(msg) - len(inner)
    assert section_range(root, (1,), "") == (start, len(msg))
    assert section_range(root, (1,), "HEADER") == (start, start + 30)
    assert section_range(root, (1,), "TEXT") == (start + 30, len(msg))
    assert section_range(root, (1, 1), "") == (start + 30, len(msg))


def test_multipart_without_parts_has_no_sections() -> None:
    """A multipart with no boundary has no parts to address."""
    root = _root(b"Content-Type: multipart/mixed\r\n\r\n--x\r\nfoo\r\n--x--\r\n")
    assert root.children == ()
    assert section_range(root, (1,), "") is None


def test_parts_json_round_trip() -> None:
    """dump_parts/load_parts round-trip and the JSON is compact."""
    text = parse_message(DATA).parts
    assert " " not in text
    assert dump_parts(load_parts(text)) == text
    assert ROOT.children[2].ctype == "message" and ROOT.children[2].is_message
    assert ROOT.children[2].children[0].header_start == ROOT.children[2].body_start


@pytest.mark.parametrize("bad", ["[]", "{}", "[1,2,3,4,5,6,7,8]", '[0,0,0,"a","b","c",1,[]]'])
def test_load_parts_rejects_garbage(bad: str) -> None:
    with pytest.raises(ValueError):
        load_parts(bad)


HEADER = (
    b"Received: from a\r\n\tby b; Mon, 1 Jan 2024\r\n"
    b"From: Alice <a@example.org>\r\n"
    b"To: b@example.net,\r\n  c@example.net\r\n"
    b"Subject: hello\r\n"
    b"X-Spam: yes\r\n"
    b"to: second@example.net\r\n"
    b"\r\n"
)


def test_filter_header_fields() -> None:
    """RFC 3501 §6.4.5 HEADER.FIELDS: matching fields with continuation lines, original
    order, case-insensitive names, then the blank line."""
    assert filter_header_fields(HEADER, ["TO", "subject"], exclude=False) == (
        b"To: b@example.net,\r\n  c@example.net\r\nSubject: hello\r\nto: second@example.net\r\n\r\n"
    )


def test_filter_header_fields_not() -> None:
    """HEADER.FIELDS.NOT: every field except the named ones."""
    assert filter_header_fields(HEADER, ["Received", "To", "X-Spam"], exclude=True) == (
        b"From: Alice <a@example.org>\r\nSubject: hello\r\n\r\n"
    )


def test_filter_header_fields_none_match() -> None:
    """No matching field: just the blank line (Dovecot sends the same CRLF)."""
    assert filter_header_fields(HEADER, ["Nope"], exclude=False) == b"\r\n"


def test_filter_header_fields_bare_lf_and_unterminated() -> None:
    """Fields keep their stored line ends; a last field without one gets CRLF."""
    assert filter_header_fields(b"A: 1\nB: 2\n b\nC: 3", ["b", "c"], False) == (
        b"B: 2\n b\nC: 3\r\n\r\n"
    )


PAYLOAD = bytes(range(256)) * 4


@pytest.mark.parametrize(
    ("data", "encoding", "expected"),
    [
        (base64.encodebytes(PAYLOAD), "base64", PAYLOAD),
        (base64.encodebytes(PAYLOAD), "BASE64", PAYLOAD),
        (base64.encodebytes(PAYLOAD).replace(b"\n", b"\r\n!*\x00 "), "base64", PAYLOAD),
        (b"aGVsbG8", "base64", b"hello"),  # missing padding
        (b"aGVsbG8=\r\n", "base64", b"hello"),
        (b"aGVsbG8gd", "base64", b"hello "),  # dangling character dropped
        (b"", "base64", b""),
        (b"QQ==QUI=\r\nQUJD", "base64", b"AABABC"),  # separately padded chunks
        (b"caf=C3=A9 =\r\nsoft break=3D\r\n", "quoted-printable", "café soft break=\r\n".encode()),
        (b"trailing   \r\nspace", "quoted-printable", b"trailing\r\nspace"),
        (b"bad =ZZ escape", "quoted-printable", b"bad =ZZ escape"),
        (b"raw \x00\xff bytes", "7bit", b"raw \x00\xff bytes"),
        (b"raw", "8bit", b"raw"),
        (b"raw", "binary", b"raw"),
        (b"raw", "", b"raw"),
    ],
)
def test_decode_transfer(data: bytes, encoding: str, expected: bytes) -> None:
    """RFC 2045 §6.7 (quoted-printable) and §6.8 (base64, ignoring junk)."""
    assert decode_transfer(data, encoding) == expected


@pytest.mark.parametrize("encoding", ["x-uuencode", "uuencode", "gzip", "7-bit"])
def test_decode_transfer_unknown(encoding: str) -> None:
    """RFC 3516 §4.3: an unknown encoding is an error (BINARY answers NO [UNKNOWN-CTE])."""
    with pytest.raises(ValueError):
        decode_transfer(b"data", encoding)
