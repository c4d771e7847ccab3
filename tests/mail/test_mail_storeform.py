"""What an APPENDed message is stored as (casella.mail.storeform): text_form for an ordinary
literal (CRLF line ends, no NUL: RFC 9051 §4.3), binary_form for a literal8 (RFC 3516 §4.4:
the transfer encoding may change, the data may not be lost; §6: BODY[] and BODYSTRUCTURE show
binary parts in an encoding the base protocol carries). Bytes in, bytes out, and the parts
decoded again with the FETCH BINARY decoder."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casella.mail.parse import parse_message
from casella.mail.sections import decode_transfer, load_parts, section_range
from casella.mail.storeform import binary_form, text_form


def decoded_part(stored: bytes, path: tuple[int, ...]) -> tuple[str, bytes]:
    """(declared encoding, decoded body) of a part of a stored message, as FETCH BINARY sees
    it."""
    root = load_parts(parse_message(stored).parts)
    part = root
    for n in path:
        part = part.children[n - 1] if part.is_multipart else part
    rng = section_range(root, path, "")
    assert rng is not None
    return part.encoding, decode_transfer(stored[rng[0]:rng[1]], part.encoding)


@pytest.mark.parametrize(("given_", "stored"), [
    (b"", b""),
    (b"a\nb\r\nc\n", b"a\r\nb\r\nc\r\n"),
    (b"no line end", b"no line end"),
    (b"nul\x00here\r\n", b"nul\x80here\r\n"),
    (b"\r\r\n\n", b"\r\r\n\r\n"),
])
def test_text_form(given_: bytes, stored: bytes) -> None:
    """Bare LF becomes CRLF and CRLF stays; NUL, which an ordinary literal cannot carry
    (RFC 9051 §4.3 CHAR8), becomes 0x80 as Dovecot makes it."""
    assert text_form(given_) == stored


SINGLE = (b"From: user@domain.org\r\nMime-Version: 1.0\r\n"
          b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
          b"\r\n\x00-\xe4\n\r\n\n")


def test_single_part_binary_message_is_stored_base64() -> None:
    """RFC 3516 §4.4/§6: the binary body is stored base64 (what Dovecot stores for the same
    literal8: `AC3kCg0KCg==`), its header says so, and decoding gives the 7 octets sent, bare
    LF and CR included."""
    stored = binary_form(SINGLE)
    assert stored == (b"From: user@domain.org\r\nMime-Version: 1.0\r\n"
                      b"Content-Type: application/octet-stream\r\n"
                      b"Content-Transfer-Encoding: base64\r\n\r\nAC3kCg0KCg==")
    assert decoded_part(stored, (1,)) == ("base64", b"\x00-\xe4\n\r\n\n")
    assert b'"base64" 12' in parse_message(stored).bodystructure


def test_multipart_parts_each_get_the_form_they_need() -> None:
    """Per leaf: declared binary -> base64; 7bit holding NUL -> base64 (the header gains the
    field); quoted-printable holding NUL -> `=00`; base64 holding NUL -> the NUL is junk the
    decoder skips; 8bit text untouched (bare LF made CRLF); an unknown encoding keeps its name
    (BINARY answers UNKNOWN-CTE, §4.3), its NUL made 0x80. A multipart or message/rfc822
    declared binary is declared 8bit. Folded Content-Transfer-Encoding fields go whole."""
    blob = bytes(range(256)) * 3
    data = (b"From: a@x\nContent-Type: multipart/mixed; boundary=xx\n"
            b"Content-Transfer-Encoding: binary\n\n"
            b"--xx\nContent-Transfer-Encoding:\n  binary\nContent-Type: image/png\n\n" + blob +
            b"\n--xx\nContent-Type: text/plain\n\nseven\x00bit\n"
            b"--xx\nContent-Transfer-Encoding: quoted-printable\n\nq\x00p=3D\n"
            b"--xx\nContent-Transfer-Encoding: base64\n\naGVs\x00bG8=\n"
            b"--xx\nContent-Type: message/rfc822\nContent-Transfer-Encoding: binary\n\n"
            b"Subject: inner\n\ninner\x00body\n"
            b"--xx\n\n8bit \xff text\n"
            b"--xx\nContent-Transfer-Encoding: x-odd\n\nodd\x00data\n--xx--\n")
    stored = binary_form(data)
    assert b"\x00" not in stored
    assert b"\r\n" in stored and b"\n" not in stored.replace(b"\r\n", b"")
    assert decoded_part(stored, (1,)) == ("base64", blob)
    assert decoded_part(stored, (2,)) == ("base64", b"seven\x00bit")
    assert decoded_part(stored, (3,)) == ("quoted-printable", b"q\x00p=")
    assert decoded_part(stored, (4,)) == ("base64", b"hello")
    assert decoded_part(stored, (6,)) == ("7bit", b"8bit \xff text")
    assert b"Content-Transfer-Encoding: x-odd\r\n\r\nodd\x80data\r\n--xx--" in stored
    root = load_parts(parse_message(stored).parts)
    assert root.encoding == "8bit" and root.children[4].encoding == "8bit"
    inner = root.children[4].children[0]
    rng = section_range(root, (5, 1), "")
    assert rng is not None and inner.encoding == "base64"
    assert decode_transfer(stored[rng[0]:rng[1]], "base64") == b"inner\x00body"
    assert b"Content-Transfer-Encoding:\r\n  binary" not in stored
    assert stored.count(b"Content-Transfer-Encoding: base64") == 4    # 3 new, 1 sent


def test_message_without_binary_parts_is_its_text_form() -> None:
    """A literal8 holding only text is stored as an ordinary literal would be."""
    data = b"From: a@x\nSubject: plain\n\n8bit \xe4 text\nline\n"
    assert binary_form(data) == text_form(data)


@pytest.mark.parametrize("data", [
    b"From: a@x\r\nContent-Transfer-Encoding: binary\r\n\r\n",
    b"From: a@x\r\nContent-Transfer-Encoding: binary\r\n",
    b"Content-Transfer-Encoding: binary\r\nFrom: a@x",
])
def test_empty_binary_part(data: bytes) -> None:
    """An empty body declared binary is declared base64 too; a header without its empty line
    (or its last line end) gets them."""
    assert binary_form(data) == b"From: a@x\r\nContent-Transfer-Encoding: base64\r\n\r\n"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([b"binary", b"7bit", b"base64",
                                                  b"quoted-printable"]))
def test_no_nul_is_ever_stored(body: bytes, encoding: bytes) -> None:
    """Whatever the literal8 holds, the stored form has no NUL and only CRLF line ends, and a
    body that was declared binary decodes to the octets sent."""
    data = (b"From: a@x\r\nContent-Type: multipart/mixed; boundary=zz\r\n\r\n--zz\r\n"
            b"Content-Transfer-Encoding: " + encoding + b"\r\n\r\n" + body + b"\r\n--zz--\r\n")
    stored = binary_form(data)
    assert b"\x00" not in stored
    assert b"\n" not in stored.replace(b"\r\n", b"")
    if encoding == b"binary" and b"\n--zz" not in b"\n" + body:
        assert decoded_part(stored, (1,)) == ("base64", body)
