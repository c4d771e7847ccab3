"""Bounded work on hostile messages (PROMISES P1, P3): MIME depth, part count, header size,
big inputs, mmap input."""

from __future__ import annotations

import mmap
import tempfile
import time
from pathlib import Path

import pytest

from casella.mail.headers import MAX_PARAMS
from casella.mail.mime import MAX_BOUNDARY, MAX_DEPTH, MAX_PARTS
from casella.mail.parse import MAX_HEADER_BYTES, parse_message
from casella.mail.sections import Part, load_parts, section_range

CORPUS = Path(__file__).parent / "corpus"


def _depth(part: Part) -> int:
    depth = 0
    while part.children:
        part = part.children[-1]
        depth += 1
    return depth


def _count(part: Part) -> int:
    return 1 + sum(_count(c) for c in part.children)


def test_multipart_nesting_is_capped() -> None:
    """Containers at depth MAX_DEPTH (the message is depth 0) become text/plain leaves."""
    parsed = parse_message((CORPUS / "deep_nesting.eml").read_bytes())
    root = load_parts(parsed.parts)
    assert _depth(root) == MAX_DEPTH
    deepest = root
    while deepest.children:
        deepest = deepest.children[0]
    assert (deepest.ctype, deepest.csubtype) == ("text", "plain")
    assert parsed.bodystructure.startswith(b"(" * (MAX_DEPTH + 1) + b'"text" "plain"')


def test_message_rfc822_nesting_bomb() -> None:
    """Thousands of nested message/rfc822 levels: no RecursionError, depth capped."""
    msg = b"Content-Type: message/rfc822\r\n\r\n" * 5000 + b"Subject: core\r\n\r\nbody\r\n"
    parsed = parse_message(msg)
    root = load_parts(parsed.parts)
    assert _depth(root) == MAX_DEPTH
    assert parsed.bodystructure.count(b'"message" "rfc822"') == MAX_DEPTH
    path = (1,) * 10
    rng = section_range(root, path, "HEADER")
    assert rng is not None and msg[rng[0] : rng[1]] == b"Content-Type: message/rfc822\r\n\r\n"


def test_part_count_is_capped() -> None:
    """At most MAX_PARTS entities; the rest of the multipart joins its last part."""
    parts = b"".join(b"--b\r\n\r\npart %d\r\n" % i for i in range(MAX_PARTS + 500))
    msg = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + parts + b"--b--\r\n"
    root = load_parts(parse_message(msg).parts)
    assert _count(root) == MAX_PARTS
    assert len(root.children) == MAX_PARTS - 1
    last = root.children[-1]
    assert last.end == len(msg)
    assert msg[last.body_start : last.end].startswith(b"part %d\r\n--b\r\n" % (MAX_PARTS - 2))


def test_part_count_is_capped_across_levels() -> None:
    """Parts in nested multiparts count too; later containers are not split."""
    inner = b"Content-Type: multipart/mixed; boundary=i\r\n\r\n" + b"--i\r\n\r\nx\r\n" * 3000
    inner += b"--i--"
    msg = (
        b"Content-Type: multipart/mixed; boundary=o\r\n\r\n"
        + (b"--o\r\n" + inner + b"\r\n") * 3
        + b"--o--\r\n"
    )
    root = load_parts(parse_message(msg).parts)
    assert _count(root) == MAX_PARTS
    # the second inner multipart hit the limit: the rest of the message joined it
    assert len(root.children) == 2
    assert root.children[-1].end == len(msg) and root.children[-1].ctype == "multipart"


def test_stored_header_is_capped() -> None:
    header = b"X-Long: " + b"a" * (MAX_HEADER_BYTES * 2) + b"\r\nSubject: late\r\n\r\n"
    parsed = parse_message(header + b"body")
    assert parsed.header == header[:MAX_HEADER_BYTES]
    assert parsed.envelope.startswith(b"(NIL NIL")  # fields past the cap are not parsed


def _big_message(size: int) -> bytes:
    attachment = (
        b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODkwYWJjZGVmZ2hpamtsbW5vcHFyc3R1\r\n"
    ) * 300
    part = (
        b'--frontier\r\nContent-Type: application/octet-stream; name="f.bin"\r\n'
        b"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment;"
        b" filename*=utf-8''f%C3%A9.bin\r\n\r\n" + attachment + b"\r\n"
        b"--frontier\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + b"hello world\r\n" * 50
        + b"\r\n"
    )
    head = (
        b"From: big@example.com\r\nTo: you@example.com\r\nSubject: big\r\n"
        b"Content-Type: multipart/mixed; boundary=frontier\r\n\r\n"
    )
    return head + part * (size // len(part)) + b"--frontier--\r\n"


def test_twenty_megabytes_with_many_parts_is_fast() -> None:
    """Linear time: a 20 MB message with ~1000 parts parses well under the loose bound."""
    msg = _big_message(20 * 1024 * 1024)
    start = time.monotonic()
    parsed = parse_message(msg)
    elapsed = time.monotonic() - start
    assert elapsed < 10, elapsed
    root = load_parts(parsed.parts)
    assert len(root.children) > 800
    assert parsed.preview.startswith("hello world hello world")


@pytest.mark.parametrize(
    "msg",
    [
        b"\n--b" * 2_000_000,  # many boundary-looking lines that are not delimiters
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"x--b\r\n" * 2_000_000,
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"\n--bX" * 2_000_000,
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"\n--b" * 2_000_000,
        b"X: " + b"a\n " * 3_000_000,  # one huge folded field, no body
        b"To: " + b"(" * 300_000 + b"\r\n\r\n",  # unterminated nested comments
        b"To: " + b"a," * 100_000 + b"\r\n\r\n",
        b"Content-Type: text/plain; " + b"a*0*=x; " * 20_000 + b"\r\n\r\n",
    ],
)
def test_pathological_inputs_are_fast(msg: bytes) -> None:
    start = time.monotonic()
    parse_message(msg)
    assert time.monotonic() - start < 10


def test_input_types_agree() -> None:
    """bytes, bytearray, memoryview and mmap give the same result."""
    data = (CORPUS / "mixed_attachments.eml").read_bytes()
    expected = parse_message(data)
    assert parse_message(bytearray(data)) == expected
    assert parse_message(memoryview(data)) == expected
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            assert parse_message(mm) == expected


def test_big_mmap_line_counts() -> None:
    """mmap has no count(): lines are counted in chunks and agree with bytes."""
    data = b"Subject: x\r\n\r\n" + b"line\r\n" * 600_000
    with tempfile.TemporaryFile() as f:
        f.write(data)
        f.flush()
        with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            assert parse_message(mm).body == parse_message(data).body
    assert parse_message(data).body.endswith(b" 3600000 600000)")


def test_parameter_count_is_capped() -> None:
    """At most MAX_PARAMS parameters per field are read and rendered."""
    params = b"".join(b"; p%d=v" % i for i in range(MAX_PARAMS * 4))
    bs = parse_message(b"Content-Type: application/x-test" + params + b"\r\n\r\nx").bodystructure
    assert bs.count(b'"v"') == MAX_PARAMS


def test_overlong_boundary_is_not_used() -> None:
    """A boundary beyond MAX_BOUNDARY is ignored: the multipart has no parts."""
    b = b"x" * (MAX_BOUNDARY + 1)
    msg = b"Content-Type: multipart/mixed; boundary=" + b + b"\r\n\r\n--" + b + b"\r\n\r\nhi\r\n"
    assert load_parts(parse_message(msg).parts).children == ()
