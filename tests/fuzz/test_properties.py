"""Hypothesis properties the parser test files of each protocol do not already hold (issue 7
"Tests that must exist"): arbitrary input framed exactly as the sessions frame it raises only
the parser's own error, and round-trips where the grammar defines them — IMAP strings and
sequence sets, SMTP paths, xtext, MAIL/RCPT parameters and replies, POP3 commands, and MIME
part boundaries (every generated leaf comes back as exactly its bytes)."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from casella.imap import commands as ic
from casella.imap import responses as ir
from casella.imap import seqset
from casella.imap.parser import ParseError, parse_request
from casella.mail.parse import parse_message
from casella.mail.sections import load_parts, section_range
from casella.pop3 import proto as pop3
from casella.smtp import proto as smtp
from tests.fuzz.test_fuzz_targets import FUZZ, load

SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


# --- IMAP ----------------------------------------------------------------------------------

# Commands cut from a byte stream the way casella.imap.session reads them (a line, and while it
# ends in a literal announcement, that many bytes and the next line): the IMAP fuzz target's.
frame_imap = load(FUZZ / "fuzz_imap_parser.py").frames


_IMAP_PIECES = st.sampled_from([
    b"a ", b"A1 ", b"UID ", b"FETCH ", b"SEARCH ", b"STORE ", b"APPEND ", b"SELECT ",
    b"LOGIN ", b"AUTHENTICATE ", b"LIST ", b"STATUS ", b"COPY ", b"MOVE ", b"ENABLE ",
    b"1", b"2:*", b"1:4294967295", b"$", b",", b"(", b")", b"[", b"]", b"<0.10>", b" ",
    b"{0}\r\n", b"{3}\r\nabc", b"{4+}\r\nab\r\n", b"~{2}\r\n\x00x", b"{99999999999}\r\n",
    b'"', b"\\", b"\r\n", b"\n", b"NIL", b"BODY.PEEK", b"HEADER.FIELDS", b"(FLAGS)",
    b"\\Seen", b"OR ", b"NOT ", b"CHARSET UTF-8 ", b"INBOX", b"\xff", b"\x00",
])


@SETTINGS
@given(st.lists(_IMAP_PIECES | st.binary(max_size=12), max_size=50))
def test_imap_framed_stream_only_raises_parse_error(pieces: list[bytes]) -> None:
    for lines, literals in frame_imap(b"".join(pieces) + b"\r\n"):
        try:
            request = parse_request(lines, literals)
        except ParseError as exc:
            assert exc.message and "\r" not in exc.message and "\n" not in exc.message
        else:
            assert isinstance(request, ic.Request)


_USERNAMES = st.text(st.characters(min_codepoint=1, exclude_categories=("Cs",)),
                     min_size=1, max_size=40)


@SETTINGS
@given(_USERNAMES, _USERNAMES)
def test_imap_astring_round_trip(user: str, password: str) -> None:
    """RFC 9051 §4.3: whatever the server's astring() encoder writes (atom, quoted string or
    literal), the command parser reads back the same value."""
    wire = b"a LOGIN " + ir.astring(user.encode()) + b" " + ir.astring(password.encode())
    [(lines, literals)] = frame_imap(wire + b"\r\n")
    request = parse_request(lines, literals)
    assert isinstance(request.command, ic.Login)
    assert (request.command.username, request.command.password) == (user, password)


@SETTINGS
@given(st.sets(st.integers(1, 2**32 - 1), min_size=1, max_size=60))
def test_sequence_set_round_trip(numbers: set[int]) -> None:
    """RFC 9051 §9 sequence-set: compress() writes a set the parser reads back as the same
    numbers (the ranges cover exactly them), and str() writes it back unchanged."""
    wire = seqset.compress(sorted(numbers))
    parsed = seqset.parse(wire)
    assert str(parsed).encode() == wire
    ranges = parsed.resolve(max(numbers))
    assert sum(hi - lo + 1 for lo, hi in ranges) == len(numbers)
    assert all(lo in numbers and hi in numbers for lo, hi in ranges)
    assert seqset.select_sorted(sorted(numbers), ranges) == sorted(numbers)


@SETTINGS
@given(st.binary(max_size=80))
def test_sequence_set_bytes_only_raise_its_error(data: bytes) -> None:
    try:
        parsed = seqset.parse(data)
    except seqset.SeqSetError:
        return
    for lo, hi in parsed.resolve(1000):
        assert 1 <= lo <= hi


# --- SMTP ----------------------------------------------------------------------------------

_LOCAL_ATOM = st.from_regex(r"[A-Za-z0-9!#$&'*+/=?^_`{|}~\-]{1,12}", fullmatch=True)
_LOCAL = st.one_of(
    st.lists(_LOCAL_ATOM, min_size=1, max_size=3).map(".".join),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1, max_size=30))
_DOMAIN = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?(\.[a-z0-9]{1,10}){1,3}",
                        fullmatch=True)


@SETTINGS
@given(_LOCAL, _DOMAIN)
def test_smtp_path_round_trip(local: str, domain: str) -> None:
    """RFC 5321 §4.1.2: Path.address (quoted when it must be) parses back to the same path."""
    quoted = not re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~"
                              r"\-]+)*", local)
    path = smtp.Path(local, domain, quoted)
    assume(len(local) <= smtp.MAX_LOCAL)
    parsed, rest = smtp.parse_path(f"<{path.address}>", allow_null=False)
    assert rest == "" and parsed is not None
    assert (parsed.local, parsed.domain) == (local, domain)
    assert parsed.address == path.address


@SETTINGS
@given(st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60))
def test_xtext_round_trip(text: str) -> None:
    """RFC 3461 §4: encode_xtext and decode_xtext are inverse for printable ASCII."""
    assert smtp.decode_xtext(smtp.encode_xtext(text), "ENVID") == text


@SETTINGS
@given(st.binary(max_size=120))
def test_xtext_bytes_only_raise_parse_error(data: bytes) -> None:
    try:
        decoded = smtp.decode_xtext(data.decode("latin-1"), "ENVID")
    except smtp.ParseError:
        return
    assert not re.search(r"[\x00-\x1f\x7f]", decoded)      # PROMISES M7


@SETTINGS
@given(_LOCAL_ATOM, _DOMAIN, st.none() | st.integers(0, 10**12),
       st.none() | st.sampled_from(["7BIT", "8BITMIME"]), st.none() | st.sampled_from(
           ["FULL", "HDRS"]), st.none() | st.text(st.characters(min_codepoint=0x20,
                                                               max_codepoint=0x7E),
                                                  min_size=1, max_size=40))
def test_smtp_mail_parameters_round_trip(local: str, domain: str, size: int | None,
                                         body: str | None, ret: str | None,
                                         envid: str | None) -> None:
    """RFC 1870 / 6152 / 3461: a MAIL command written with its parameters parses back to
    them."""
    params = []
    if size is not None:
        params.append(f"SIZE={size}")
    if body is not None:
        params.append(f"BODY={body}")
    if ret is not None:
        params.append(f"RET={ret}")
    if envid is not None:
        params.append(f"ENVID={smtp.encode_xtext(envid)}")
    line = f"MAIL FROM:<{local}@{domain}>" + "".join(" " + p for p in params)
    cmd = smtp.parse_command(line.encode())
    assert isinstance(cmd, smtp.Mail) and cmd.sender is not None
    assert (cmd.sender.local, cmd.sender.domain) == (local, domain)
    assert (cmd.size, cmd.body, cmd.ret, cmd.envid) == (size, body, ret, envid)
    assert cmd.has_params == bool(params)


_REPLY_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)


@SETTINGS
@given(st.integers(200, 599), st.lists(_REPLY_TEXT, min_size=1, max_size=5),
       st.booleans())
def test_smtp_reply_render_round_trip(code: int, lines: list[str], enhanced: bool) -> None:
    """RFC 5321 §4.2.1: a rendered reply is CRLF lines `code-text`, the last `code text`, and
    reads back as the same lines; RFC 2034 §3 puts the status code on every line."""
    status = f"{code // 100}.0.0" if enhanced and code >= 200 else ""
    reply = smtp.Reply(code, status, tuple(lines))
    wire = reply.render()
    assert wire.endswith(b"\r\n")
    got = wire[:-2].split(b"\r\n")
    assert len(got) == len(lines)
    for i, raw in enumerate(got):
        assert raw[:3] == str(code).encode()
        assert raw[3:4] == (b" " if i == len(lines) - 1 else b"-")
        text = raw[4:].decode()
        if status:
            assert text.startswith(status + " ")
            text = text[len(status) + 1:]
        assert text == lines[i]


@SETTINGS
@given(st.text(max_size=300))
def test_safe_text_is_one_bounded_line(text: str) -> None:
    cleaned = smtp.safe_text(text)
    assert "\r" not in cleaned and "\n" not in cleaned and len(cleaned) <= 200
    assert b"\r\n" not in smtp.reply(550, "5.0.0", cleaned).render()[:-2]


# --- POP3 ----------------------------------------------------------------------------------

_NUM = st.integers(1, 10**9)
_POP3_COMMANDS = st.one_of(
    _NUM.map(lambda n: (f"RETR {n}", pop3.Retr(n))),
    _NUM.map(lambda n: (f"DELE {n}", pop3.Dele(n))),
    st.tuples(_NUM, st.integers(0, 10**6)).map(lambda t: (f"TOP {t[0]} {t[1]}",
                                                          pop3.Top(*t))),
    st.none().map(lambda _: ("LIST", pop3.List(None))),
    _NUM.map(lambda n: (f"LIST {n}", pop3.List(n))),
    st.none().map(lambda _: ("UIDL", pop3.Uidl(None))),
    _NUM.map(lambda n: (f"UIDL {n}", pop3.Uidl(n))),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=60)
    .map(lambda u: (f"USER {u}", pop3.User(u))),
)


@SETTINGS
@given(_POP3_COMMANDS)
def test_pop3_commands_round_trip(case: tuple[str, pop3.Command]) -> None:
    """RFC 1939 §5-7: a command as a client writes it parses to the command meant."""
    line, expected = case
    assert pop3.parse_command(line.encode()) == expected
    assert pop3.parse_command(line.lower().encode()[:4] + line.encode()[4:]) == expected


# --- MIME ----------------------------------------------------------------------------------

_LEAF_BODY = st.binary(max_size=60).map(
    lambda b: b.replace(b"\r", b"").replace(b"\n", b"\r\n").replace(b"--", b"-"))


@st.composite
def _tree(draw: st.DrawFn, depth: int = 0) -> tuple[bytes, list[tuple[tuple[int, ...], bytes]]]:
    """A MIME entity (header and body) and its leaves: (section path, exact body bytes)."""
    kind = draw(st.sampled_from(["leaf", "leaf", "multi"] if depth < 4 else ["leaf"]))
    if kind == "leaf":
        body = draw(_LEAF_BODY)
        return b"Content-Type: text/plain\r\n\r\n" + body, [((), body)]
    boundary = b"=_b%d_" % depth + draw(st.from_regex(r"[A-Za-z0-9]{1,10}", fullmatch=True)
                                         ).encode()
    kids = draw(st.lists(_tree(depth + 1), min_size=1, max_size=4))
    out = b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
    leaves = []
    for n, (kid, kid_leaves) in enumerate(kids, 1):
        out += b"--" + boundary + b"\r\n" + kid + b"\r\n"
        leaves += [((n, *path), body) for path, body in kid_leaves]
    out += b"--" + boundary + b"--\r\n"
    return out, leaves


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_tree())
def test_mime_sections_round_trip(tree: tuple[bytes, list[tuple[tuple[int, ...], bytes]]]
                                  ) -> None:
    """RFC 2046 §5.1.1 / RFC 9051 §6.4.5: in a generated tree every leaf's BODY[path] is
    exactly the bytes it was written with (the CRLF before a delimiter belongs to the
    delimiter)."""
    entity, leaves = tree
    data = b"From: gen@example.com\r\nSubject: t\r\nMIME-Version: 1.0\r\n" + entity
    root = load_parts(parse_message(data).parts)
    for path, body in leaves:
        if not path:              # a single-part message: its part 1 is its body
            path = (1,)
        rng = section_range(root, path, "")
        assert rng is not None, path
        assert data[rng[0]:rng[1]] == body, (path, data[rng[0]:rng[1]], body)
