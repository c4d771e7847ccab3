"""Hypothesis properties of the MIME layer (PROMISES P3): no input makes parse_message raise,
everything it renders is well-formed IMAP, and the stored part tree round-trips."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from casella.mail.parse import parse_message
from casella.mail.sections import Part, dump_parts, load_parts, section_range
from casella.mail.text import body_text, decode_words, header_values

CORPUS = Path(__file__).parent / "corpus"
MESSAGES = {p.name: p.read_bytes() for p in sorted(CORPUS.glob("*.eml"))}

_ATOM = re.compile(rb"NIL|\d+")
_LITERAL = re.compile(rb"\{(\d+)\}\r\n")


def _value(data: bytes, i: int) -> int:
    """Parse one IMAP value (NIL, number, quoted string, literal or list) at ``i`` and
    return where it ends; AssertionError on anything malformed."""
    c = data[i : i + 1]
    if c == b"(":
        i += 1
        first = True
        while data[i : i + 1] != b")":
            assert i < len(data), "unbalanced parenthesis"
            if not first and data[i : i + 1] == b" ":
                i += 1
            first = False
            i = _value(data, i)
        return i + 1
    if c == b'"':
        i += 1
        while True:
            ch = data[i : i + 1]
            assert ch, "unterminated quoted string"
            assert ch not in (b"\r", b"\n", b"\x00"), "CR/LF/NUL in a quoted string"
            assert 0x20 <= ch[0] <= 0x7E, "8-bit byte in a quoted string"
            if ch == b"\\":
                assert data[i + 1 : i + 2] in (b"\\", b'"'), "bad quoted-pair"
                i += 2
                continue
            if ch == b'"':
                return i + 1
            i += 1
    if c == b"{":
        m = _LITERAL.match(data, i)
        assert m, "bad literal"
        body = data[m.end() : m.end() + int(m.group(1))]
        assert len(body) == int(m.group(1)), "short literal"
        assert b"\r" not in body and b"\n" not in body and b"\x00" not in body
        return m.end() + len(body)
    m = _ATOM.match(data, i)
    assert m, f"unexpected byte at {i}: {data[i : i + 20]!r}"
    return m.end()


def assert_well_formed(data: bytes) -> None:
    """One parenthesised IMAP list: balanced, no CR/LF/NUL outside literals."""
    assert data.startswith(b"(")
    assert _value(data, 0) == len(data)


def _check_tree(part: Part, size: int, lo: int, hi: int, depth: int = 0) -> int:
    assert lo <= part.header_start <= part.body_start <= part.end <= hi <= size
    assert depth <= 60
    if part.is_message:
        assert part.children[0].header_start == part.body_start
    count = 1
    for child in part.children:
        count += _check_tree(child, size, part.body_start, part.end, depth + 1)
    return count


def check(data: bytes) -> None:
    parsed = parse_message(data)
    for rendered in (parsed.envelope, parsed.bodystructure, parsed.body):
        assert_well_formed(rendered)
    root = load_parts(parsed.parts)
    assert dump_parts(root) == parsed.parts
    assert (root.header_start, root.end) == (0, len(data))
    assert _check_tree(root, len(data), 0, len(data)) <= 5000
    assert data.startswith(parsed.header)
    assert len(parsed.preview) <= 200 and "\n" not in parsed.preview
    for path in ((), (1,), (1, 1), (2,), (1, 2, 1)):
        for spec in ("", "HEADER", "TEXT", "MIME"):
            rng = section_range(root, path, spec)
            assert rng is None or 0 <= rng[0] <= rng[1] <= len(data)
    body_text(data, root, limit=10_000)
    header_values(parsed.header, "subject")


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data: bytes) -> None:
    check(data)


# Bytes that matter to MIME parsing, to make random input hit the interesting paths.
_PIECES = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"\r",
        b"\x00",
        b" ",
        b"\t",
        b":",
        b";",
        b"=",
        b'"',
        b"\\",
        b"(",
        b")",
        b"<",
        b">",
        b"@",
        b",",
        b"--",
        b"--b",
        b"--b--",
        b"\r\n--b\r\n",
        b"\n--b--\n",
        b"Content-Type: multipart/mixed; boundary=b\r\n",
        b"Content-Type: message/rfc822\r\n",
        b"Content-Type: multipart/digest; boundary=b\r\n",
        b"Content-Type: text/html; charset=utf-8\r\n",
        b"Content-Transfer-Encoding: base64\r\n",
        b"Content-Disposition: attachment; filename*0*=utf-8''%E2%82; filename*1*=%AC\r\n",
        b"From: =?utf-8?q?J=C3=B6rg?= <j@x>\r\n",
        b"To: g: a@b, <c@d>;\r\n",
        b"Subject: ",
        b"=?utf-8?b?",
        b"?=",
        b"\xff\xfe",
        b"\xc3\xa9",
        b"\r\n\r\n",
        b"\n\n",
    ]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.binary(max_size=8)), max_size=80))
def test_mime_shaped_noise(pieces: list[bytes]) -> None:
    check(b"".join(pieces))


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(MESSAGES[draw(st.sampled_from(sorted(MESSAGES)))])
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["delete", "insert", "duplicate", "lf", "flip"]))
        i = draw(st.integers(0, len(data)))
        j = draw(st.integers(i, min(len(data), i + 200)))
        if op == "delete":
            del data[i:j]
        elif op == "insert":
            data[i:i] = draw(st.one_of(_PIECES, st.binary(max_size=20)))
        elif op == "duplicate":
            data[i:i] = data[i:j]
        elif op == "lf":
            data[i:j] = bytes(data[i:j]).replace(b"\r\n", b"\n")
        elif data:
            k = min(i, len(data) - 1)
            data[k] = draw(st.integers(0, 255))
    return bytes(data)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_mutated())
def test_mutated_corpus(data: bytes) -> None:
    check(data)


def test_corpus_is_well_formed() -> None:
    for data in MESSAGES.values():
        check(data)


_BOUNDARY = st.text("abcxyz0123'()+_,-./:=?", min_size=1, max_size=12)


@st.composite
def _entity(draw: st.DrawFn, depth: int = 0) -> bytes:
    """A random, mostly well-formed MIME entity (so the tree is deep and wide)."""
    kind = draw(
        st.sampled_from(["text", "binary", "multipart", "message"] if depth < 4 else ["text"])
    )
    if kind == "text":
        body = draw(st.binary(max_size=40)).replace(b"--", b"")
        return b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body
    if kind == "binary":
        return b"Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA"
    if kind == "message":
        return b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n" + draw(_entity(depth + 1))
    boundary = draw(_BOUNDARY).encode() + b"%d" % depth
    kids = draw(st.lists(_entity(depth + 1), min_size=0, max_size=4))
    out = b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\npreamble'
    for kid in kids:
        out += b"\r\n--" + boundary + b"\r\n" + kid
    if draw(st.booleans()):
        out += b"\r\n--" + boundary + b"--\r\n"
    return out


def _leaves(part: Part) -> int:
    return 1 if not part.children else sum(_leaves(c) for c in part.children)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_entity())
def test_generated_mime_trees(entity: bytes) -> None:
    data = b"From: gen@example.com\r\nSubject: generated\r\n" + entity
    check(data)
    # section "1" always exists: a multipart with no parts is the only exception
    root = load_parts(parse_message(data).parts)
    if not (root.is_multipart and not root.children):
        assert section_range(root, (1,), "") is not None


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_decode_words_never_raises(value: str | bytes) -> None:
    assert isinstance(decode_words(value), str)


@given(st.text(alphabet=st.sampled_from("ab \t\n\r\x0b\x0c\x1c\x85\xa0\u2003\u3000z"),
               max_size=3000),
       st.integers(min_value=0, max_value=400))
def test_preview_collapse_matches_the_regex_definition(text: str, chars: int) -> None:
    """collapse_prefix is the regex collapse of the whole text, cut and stripped: the same
    answer whatever prefix it stopped at, with every kind of Unicode white space."""
    from casella.mail.text import collapse_prefix

    want = re.sub(r"\s+", " ", text).strip()[:chars].rstrip()
    assert collapse_prefix(text, chars) == want
