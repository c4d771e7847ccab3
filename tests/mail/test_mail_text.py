"""Decoded text for IMAP SEARCH: RFC 2047 words, header values and body text."""

from __future__ import annotations

import base64
import mmap
import tempfile
from pathlib import Path

import pytest

from casella.mail.parse import parse_message
from casella.mail.sections import load_parts
from casella.mail.text import body_text, decode_words, decoded_headers, header_values

CORPUS = Path(__file__).parent / "corpus"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # RFC 2047 §8 examples
        ("=?ISO-8859-1?Q?a?=", "a"),
        ("=?ISO-8859-1?Q?a?= b", "a b"),
        ("=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=", "ab"),
        ("=?ISO-8859-1?Q?a?=  =?ISO-8859-1?Q?b?=", "ab"),
        ("=?ISO-8859-1?Q?a?=\r\n    =?ISO-8859-1?Q?b?=", "ab"),
        ("=?ISO-8859-1?Q?a_b?=", "a b"),
        ("=?ISO-8859-1?Q?a?= =?ISO-8859-2?Q?_b?=", "a b"),
        ("(=?ISO-8859-1?Q?a?= b)", "(a b)"),
        ("=?US-ASCII?Q?Keith_Moore?= <moore@cs.utk.edu>", "Keith Moore <moore@cs.utk.edu>"),
        ("=?ISO-8859-1?Q?Andr=E9?= Pirard", "André Pirard"),
        ("=?UTF-8?B?SsO2cmcgTcO8bGxlcg==?=", "Jörg Müller"),
        # a character split across two words of the same charset survives
        ("=?utf-8?b?4oI=?= =?utf-8?b?rA==?=", "€"),
        ("=?utf-8?b?4oKs?=\r\n\t=?iso-8859-1?q?=A3?=", "€£"),
        ("=?utf-8?b?QQ?= x", "A x"),  # missing padding
        ("=?utf-8*en?q?hi?=", "hi"),  # RFC 2231 §5 language suffix
        # bad words are left as they are
        ("=?utf-8?x?abc?=", "=?utf-8?x?abc?="),
        ("=?utf-8?b?!!!?=", "=?utf-8?b?!!!?="),
        ("=?utf-8?q?bad=ZZ?=", "bad=ZZ"),
        ("a =?no-such-charset?q?x=41?= b", "a xA b"),
        ("=?zlib?q?x?=", "x"),  # not a text codec: UTF-8 fallback
        (b"caf\xc3\xa9", "café"),
        (b"caf\xe9", "café"),  # not UTF-8: Latin-1
        ("plain", "plain"),
        ("", ""),
    ],
)
def test_decode_words(value: str | bytes, expected: str) -> None:
    """RFC 2047 §6.2: decoding, whitespace between adjacent encoded words dropped."""
    assert decode_words(value) == expected


HEADER = (CORPUS / "i18n.eml").read_bytes().split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"


def test_header_values() -> None:
    """All occurrences, unfolded and decoded, case-insensitive names."""
    assert header_values(HEADER, "SUBJECT") == ["Übersetzung für euch and this is some text"]
    assert header_values(HEADER, "to") == [
        "André Pirard <PIRARD@vm1.ulg.ac.be.example>, Jérôme <jerome@example.fr>"
    ]
    assert header_values(HEADER, "X-Missing") == []
    assert header_values(b"X-A: 1\r\nx-a: 2\r\n\r\nX-A: body\r\n", "x-a") == ["1", "2"]


def test_decoded_headers() -> None:
    assert decoded_headers(HEADER).splitlines()[:3] == [
        "From: Jörg Müller <joerg@example.de>",
        "To: André Pirard <PIRARD@vm1.ulg.ac.be.example>, Jérôme <jerome@example.fr>",
        "Subject: Übersetzung für euch and this is some text",
    ]
    assert decoded_headers(b"A: 1\nB:\n\t2\n\n").endswith("A: 1\nB: 2\n")


def _text(name: str) -> str:
    data = (CORPUS / name).read_bytes()
    return body_text(data, load_parts(parse_message(data).parts))


def test_body_text_decodes_transfer_and_charset() -> None:
    assert _text("i18n.eml") == "Ünïcödé body text €\n"  # base64, UTF-8
    assert "résumé and a picture. This line is long enough to need a soft line" in _text(
        "mixed_attachments.eml"
    )  # quoted-printable with a soft line break; the base64 attachments are not text


def test_body_text_strips_html() -> None:
    """text/html: tags, styles and entities go; both alternatives are searchable."""
    text = _text("alternative.eml")
    assert "<p>" not in text and "color: red" not in text
    assert text.count("Grüße aus Zürich —") == 2
    assert "Café news" in _text("related.eml")  # ISO-8859-1, HTML without charset change


def test_body_text_includes_attached_messages() -> None:
    assert _text("rfc3501_sections.eml") == (
        "part 1 text\npart 3.1 text\npart 4.2.1 text\npart 4.2.2.1 text\npart 4.2.2.2 richtext"
    )


def test_body_text_limit() -> None:
    body = base64.encodebytes(("é" * 5000).encode())
    msg = b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
    data = msg + body
    root = load_parts(parse_message(data).parts)
    assert body_text(data, root, limit=100) == "é" * 100
    assert body_text(data, root) == "é" * 5000


def test_body_text_from_mmap() -> None:
    data = (CORPUS / "nested_rfc822.eml").read_bytes()
    root = load_parts(parse_message(data).parts)
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            assert body_text(mm, root) == body_text(data, root)
            assert "original text" in body_text(mm, root)


def test_body_text_unknown_encoding_is_searched_raw() -> None:
    data = b"Content-Transfer-Encoding: x-uuencode\r\n\r\nraw words"
    assert body_text(data, load_parts(parse_message(data).parts)) == "raw words"
