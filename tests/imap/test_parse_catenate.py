"""The CATENATE grammar (RFC 4469 §5: `"CATENATE" SP "(" cat-part *(SP cat-part) ")"`,
cat-part = `"TEXT" SP literal` / `"URL" SP astring`), MULTIAPPEND of CATENATE and plain
messages (RFC 3502), the literal8 announcement the session looks for (RFC 3516 §4.4), and the
IMAP URLs CATENATE resolves (RFC 5092, relative to the session: RFC 4469 §3). Tables of good
and bad inputs, the same commands fed in random splits, and hypothesis properties (nothing
but ParseError / UrlError comes out of arbitrary bytes)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casella.imap import commands as c
from casella.imap.commands import ExternalLiteral
from casella.imap.imapurl import MAX_URL, MessageUrl, UrlError, parse_message_url
from casella.imap.parse_ext import MAX_CATENATE_PARTS
from casella.imap.parser import (
    ParseError,
    is_literal8,
    literal_spec,
    parse_bytes,
    parse_request,
    split_literals,
)

U = c.CatenateUrl


def message(*parts: c.CatenatePart, flags: tuple[str, ...] = ()) -> c.AppendMessage:
    return c.AppendMessage(flags, None, b"", catenate=parts)


def appended(data: bytes) -> tuple[c.AppendMessage, ...]:
    cmd = parse_bytes(data).command
    assert isinstance(cmd, c.Append)
    return cmd.messages


GOOD: list[tuple[bytes, tuple[c.AppendMessage, ...]]] = [
    (b"a APPEND INBOX CATENATE (TEXT {5}\r\nhello)", (message(b"hello"),)),
    ((b'a APPEND Drafts (\\Seen \\Flagged) catenate (url "/INBOX;UIDVALIDITY=385759045/;UID=20'
      b'/;SECTION=1.MIME" text {2+}\r\nhi)'),
     (message(U(b"/INBOX;UIDVALIDITY=385759045/;UID=20/;SECTION=1.MIME"), b"hi",
               flags=("\\Seen", "\\Flagged")),)),
    (b"a APPEND INBOX CATENATE (URL /INBOX/;UID=1 URL ;UID=2/;SECTION=TEXT)",
     (message(U(b"/INBOX/;UID=1"), U(b";UID=2/;SECTION=TEXT")),)),
    (b"a APPEND INBOX CATENATE (URL {13}\r\n/INBOX/;UID=1)", (message(U(b"/INBOX/;UID=1")),)),
    # RFC 3502 with RFC 4469: CATENATE messages beside each other and beside plain ones.
    (b'a APPEND INBOX CATENATE (URL "/INBOX/;UID=1") CATENATE (TEXT {1}\r\nx) {3}\r\nabc',
     (message(U(b"/INBOX/;UID=1")), message(b"x"),
      c.AppendMessage((), None, b"abc"))),
    (b'a APPEND INBOX CATENATE (URL "/INBOX/;UID=1") (\\Answered) {3}\r\nabc',
     (message(U(b"/INBOX/;UID=1")), c.AppendMessage(("\\Answered",), None, b"abc"))),
]


@pytest.mark.parametrize(("data", "expected"), GOOD)
def test_good_catenate(data: bytes, expected: tuple[c.AppendMessage, ...]) -> None:
    assert appended(data) == expected
    lines, literals = split_literals(data)
    assert appended(data) == parse_request(lines, literals).command.messages  # type: ignore


def test_catenate_with_date() -> None:
    (msg,) = appended(b'a APPEND INBOX " 7-Feb-1994 21:52:25 -0800" CATENATE (TEXT {1}\r\nx)')
    assert msg.date is not None and msg.date.day == 7 and msg.catenate == (b"x",)


BAD: list[tuple[bytes, str]] = [
    (b"a APPEND INBOX CATENATE ()", "at least one part"),
    (b'a APPEND INBOX CATENATE (TEXT "hello")', "literal"),
    (b"a APPEND INBOX CATENATE (TEXT ~{1}\r\nx)", "not a literal8"),
    (b"a APPEND INBOX CATENATE (URL)", "expected a space"),
    (b'a APPEND INBOX CATENATE (BODY "x")', "unexpected BODY"),
    (b"a APPEND INBOX CATENATE TEXT {1}\r\nx", "expected '('"),
    (b'a APPEND INBOX CATENATE (URL "x"', "missing"),
    (b'a APPEND INBOX CATENATE (URL "x")(URL "y")', "expected a space"),
    (b'a APPEND INBOX CATENATE (URL "x"  URL "y")', "expected an atom"),
    (b"a APPEND INBOX CATENATE", "needs the message as a literal"),
    (b'a APPEND INBOX UTF8 (CATENATE (URL "x"))', "literal"),
]


@pytest.mark.parametrize(("data", "fragment"), BAD)
def test_bad_catenate(data: bytes, fragment: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_bytes(data)
    assert fragment.lower() in info.value.message.lower()
    assert info.value.tag == "a"


def test_catenate_parts_are_bounded() -> None:
    """PROMISES P1: at most MAX_CATENATE_PARTS parts in one APPEND, all messages together."""
    half = b" ".join([b'URL "/INBOX/;UID=1"'] * (MAX_CATENATE_PARTS // 2))
    ok = b"a APPEND INBOX CATENATE (" + half + b") CATENATE (" + half + b")"
    assert len(appended(ok)) == 2
    with pytest.raises(ParseError) as info:
        parse_bytes(ok + b' CATENATE (URL "/INBOX/;UID=1")')
    assert info.value.code == "LIMIT"


def test_streamed_text_literal_is_accepted_but_not_as_url() -> None:
    """A TEXT literal over 64 KiB arrives streamed (ExternalLiteral) like an APPEND message;
    a URL is never that big (a literal astring)."""
    big = ExternalLiteral(100_000, None)
    req = parse_request([b"a APPEND INBOX CATENATE (TEXT {100000}", b")"], [big])
    assert req.command.messages[0].catenate == (big,)  # type: ignore[attr-defined]
    with pytest.raises(ParseError):
        parse_request([b"a APPEND INBOX CATENATE (URL {100000}", b")"], [big])


def test_is_literal8() -> None:
    """RFC 3516 §4.4: the session treats a `~{n}` literal of APPEND as binary."""
    assert is_literal8(b"a APPEND INBOX ~{5}")
    assert is_literal8(b"a APPEND INBOX UTF8 (~{5+}")
    assert not is_literal8(b"a APPEND INBOX {5}")
    assert not is_literal8(b"a APPEND INBOX ~{5} x")
    assert not is_literal8(b"a LOGIN ~x")
    assert literal_spec(b"a APPEND INBOX ~{5}") == (5, False)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=80))
def test_arbitrary_catenate_arguments_raise_only_parse_error(tail: bytes) -> None:
    for head in (b"a APPEND INBOX CATENATE (", b"a APPEND INBOX CATENATE (TEXT ",
                 b"a APPEND INBOX CATENATE (URL "):
        try:
            parse_bytes(head + tail)
        except ParseError:
            pass


# --- IMAP URLs (RFC 5092) --------------------------------------------------------------------

S = c.Section

GOOD_URLS: list[tuple[bytes, MessageUrl]] = [
    (b"/INBOX;UIDVALIDITY=385759045/;UID=20/;SECTION=1.MIME",
     MessageUrl("INBOX", 385759045, 20, S((1,), "MIME"), None)),
    (b"/Drafts/;UID=3", MessageUrl("Drafts", None, 3, None, None)),
    (b"/drafts;uidvalidity=7/;uid=3/;section=header/;partial=0.100",
     MessageUrl("drafts", 7, 3, S((), "HEADER"), (0, 100))),
    (b";UID=20/;SECTION=TEXT", MessageUrl(None, None, 20, S((), "TEXT"), None)),
    (b";uid=1/;partial=10", MessageUrl(None, None, 1, None, (10, None))),
    (b"/Work/Sub%20box/;UID=1", MessageUrl("Work/Sub box", None, 1, None, None)),
    (b"/Entw%C3%BCrfe/;UID=1", MessageUrl("Entwürfe", None, 1, None, None)),
    (b"/INBOX/;UID=1/;SECTION=2.HEADER.FIELDS%20(To%20Cc)",
     MessageUrl("INBOX", None, 1, S((2,), "HEADER.FIELDS", ("To", "Cc")), None)),
    (b"/a%3Bb/;UID=1", MessageUrl("a;b", None, 1, None, None)),
]


@pytest.mark.parametrize(("url", "expected"), GOOD_URLS)
def test_good_urls(url: bytes, expected: MessageUrl) -> None:
    assert parse_message_url(url) == expected


BAD_URLS: list[tuple[bytes, str]] = [
    (b"imap://joe@example.com/INBOX/;UID=1", "this account"),       # RFC 4469 §3: relative
    (b"//example.com/INBOX/;UID=1", "this account"),
    (b"INBOX/;UID=1", "this account"),
    (b"/INBOX", "no message"),
    (b"/INBOX;UIDVALIDITY=5", "no message"),
    (b"/INBOX/;SECTION=1", "no message"),
    (b"/INBOX/;UID=0", "UID"),
    (b"/INBOX/;UID=4294967296", "UID"),
    (b"/INBOX/;UID=x", "UID"),
    (b"/INBOX;UIDVALIDITY=0/;UID=1", "UIDVALIDITY"),
    (b"/INBOX;FOO=1/;UID=1", "after the mailbox"),
    (b"/INBOX/;UID=1/;URLAUTH=anonymous:internal:91354a", "URLAUTH"),  # RFC 4467: not here
    (b"/INBOX/;UID=1/;EXPIRE=2030-01-01T00:00:00Z", "EXPIRE"),
    (b"/INBOX/;SECTION=1/;UID=1", "out of order"),
    (b"/INBOX/;UID=1/;UID=2", "out of order"),
    (b"/INBOX/;UID=1/;SECTION=", "SECTION"),
    (b"/INBOX/;UID=1/;SECTION=FOO", "SECTION"),
    (b"/INBOX/;UID=1/;SECTION=1.2.MIMEX", "SECTION"),
    (b"/INBOX/;UID=1/;PARTIAL=1.0", "PARTIAL"),
    (b"/INBOX/;UID=1/;PARTIAL=.5", "PARTIAL"),
    (b"/INBOX/;UID", "invalid URL parameter"),
    (b"/INBOX/", "no message"),
    (b"/INBOX/;UID=1/", "UID"),
    (b"/%ZZ/;UID=1", "percent"),
    (b"/%FF/;UID=1", "UTF-8"),
    (b"//;UID=1", "this account"),
    (b"/;UID=1", "no mailbox"),
    (b"/IN BOX/;UID=1", "printable"),
    (b"/INBOX/;UID=1\r\n", "printable"),
    (b"", "printable"),
    (b"/" + b"a" * MAX_URL + b"/;UID=1", "too long"),
]


@pytest.mark.parametrize(("url", "fragment"), BAD_URLS)
def test_bad_urls(url: bytes, fragment: str) -> None:
    with pytest.raises(UrlError) as info:
        parse_message_url(url)
    assert fragment.lower() in str(info.value).lower()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=60), st.sampled_from([b"", b"/INBOX/;UID=1/;SECTION=", b";UID=",
                                                 b"/INBOX;UIDVALIDITY=", b"/"]))
def test_arbitrary_urls_raise_only_url_error(tail: bytes, head: bytes) -> None:
    try:
        parse_message_url(head + tail)
    except UrlError:
        pass
