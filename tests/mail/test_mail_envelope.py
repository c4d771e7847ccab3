"""ENVELOPE and BODYSTRUCTURE rendering rules (RFC 3501 §7.4.2 / RFC 9051 §7.5.2).

Expected strings marked "Dovecot" were produced by Dovecot 2.3.19.1 for the same input.
"""

from __future__ import annotations

import pytest

from casella.mail.address import parse_addresses
from casella.mail.envelope import nstring, render_addresses
from casella.mail.parse import parse_message

# (To: value, rendered address list). All agree with Dovecot 2.3.19.1 except where noted.
ADDRESSES = [
    (
        b'"Fred Foobar" <foobar@Blurdybloop.COM>',
        b'(("Fred Foobar" NIL "foobar" "Blurdybloop.COM"))',
    ),
    # no display name: the comment is the name
    (b"foobar@x.com (Fred Foobar)", b'(("Fred Foobar" NIL "foobar" "x.com"))'),
    (
        b'Fred  "the" Foobar <foo@x>, <bar@y>',
        b'(("Fred the Foobar" NIL "foo" "x")(NIL NIL "bar" "y"))',
    ),
    # RFC 3501 §7.4.2 group syntax: start (NIL NIL name NIL), end (NIL NIL NIL NIL)
    (b"undisclosed-recipients:;", b'((NIL NIL "undisclosed-recipients" NIL)(NIL NIL NIL NIL))'),
    (
        b'grp: a@b, "c d" <c@d>;, e@f',
        b'((NIL NIL "grp" NIL)(NIL NIL "a" "b")("c d" NIL "c" "d")(NIL NIL NIL NIL)(NIL NIL "e" "f"))',
    ),
    # unterminated group: closed at the end so clients see a balanced group
    (b"grp: a@b", b'((NIL NIL "grp" NIL)(NIL NIL "a" "b")(NIL NIL NIL NIL))'),
    # no domain: MISSING_DOMAIN, not NIL (a NIL host means "group start" to a client)
    (b"foo", b'((NIL NIL "foo" "MISSING_DOMAIN"))'),
    (b"<foo>", b'((NIL NIL "foo" "MISSING_DOMAIN"))'),
    (b"foo@", b'((NIL NIL "foo" "MISSING_DOMAIN"))'),
    (b'"name only"', b'(("name only" NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'),
    (b"<>", b'((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'),
    # RFC 5322 §4.4 obs-route becomes the adl
    (b"<@route1,@route2:user@host>", b'((NIL "@route1,@route2" "user" "host"))'),
    # display names stay RFC 2047-encoded: IMAP sends the raw header text
    (b"=?utf-8?q?J=C3=B6rg?= <j@x>", b'(("=?utf-8?q?J=C3=B6rg?=" NIL "j" "x"))'),
    # Dovecot sends this name as a literal {7}; a quoted string with \" is equally valid
    (b'"quo\\"ted" <q@x>', b'(("quo\\"ted" NIL "q" "x"))'),
    (b'"a b"@example.com', b'((NIL NIL "a b" "example.com"))'),
    (b"a@b c@d", b'((NIL NIL "a" "b"))'),
    # 8-bit display name: a literal
    (b"\xc3\xa9l\xc3\xa8ve <e@x>", b'(({7}\r\n\xc3\xa9l\xc3\xa8ve NIL "e" "x"))'),
    # Dovecot stops at the first broken element and drops a@b; we keep going
    (b"@@@, ,, a@b", b'((NIL NIL "MISSING_MAILBOX" "MISSING_DOMAIN")(NIL NIL "a" "b"))'),
    (b"user@[127.0.0.1]", b'((NIL NIL "user" "[127.0.0.1]"))'),
    (
        b"Joe Q. Public <john.q.public@example.com>",
        b'(("Joe Q. Public" NIL "john.q.public" "example.com"))',
    ),
    (
        b"Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>",
        b'(("Pete" NIL "pete" "silly.test"))',
    ),
    (b"(comment only)", b"NIL"),
    (b'"" <x@y>', b'((NIL NIL "x" "y"))'),
    (b"x@y (  )", b'(("" NIL "x" "y"))'),
    (b"", b"NIL"),
    (b'"unterminated <a@b>', b'(("unterminated <a@b>" NIL "MISSING_MAILBOX" "MISSING_DOMAIN"))'),
    (b"Name <a@b", b'(("Name" NIL "a" "b"))'),
    (b"a@b,,,c@d", b'((NIL NIL "a" "b")(NIL NIL "c" "d"))'),
]


@pytest.mark.parametrize(("value", "expected"), ADDRESSES)
def test_address_lists(value: bytes, expected: bytes) -> None:
    """RFC 5322 §3.4 address lists rendered as RFC 3501 §7.4.2 address structures."""
    assert render_addresses(parse_addresses(value)) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, b"NIL"),
        (b"", b'""'),
        (b"plain text", b'"plain text"'),
        (b'say "hi" \\o/', b'"say \\"hi\\" \\\\o/"'),
        (b"caf\xc3\xa9", b"{5}\r\ncaf\xc3\xa9"),
        (b"ctl\x01", b"{4}\r\nctl\x01"),
        (b"a\r\nb\x00c", b'"abc"'),  # CR, LF and NUL are dropped, never sent
        (b"\xff\r\n", b"{1}\r\n\xff"),
    ],
)
def test_nstring(value: bytes | None, expected: bytes) -> None:
    """PROMISES P3: NIL, quoted when printable ASCII, else a literal; no raw CR/LF/NUL."""
    assert nstring(value) == expected


def test_envelope_fields_and_defaults() -> None:
    """RFC 3501 §7.4.2: field order; sender and reply-to default to from; first occurrence
    wins (Dovecot uses the last Subject); empty fields are "" and absent ones NIL."""
    msg = (
        b"Date:   Mon, 7 Feb 1994\r\n  21:52:25 -0800 \r\n"
        b"Subject: first\r\n"
        b"From: me@here\r\n"
        b"Reply-To:\r\n"
        b"To: you@there\r\n"
        b"In-Reply-To: <x@y> <z@w>\r\n"
        b"Message-ID:\r\n"
        b"Subject: second\r\n"
        b"\r\nbody\r\n"
    )
    me = b'((NIL NIL "me" "here"))'
    assert parse_message(msg).envelope == (
        b'("Mon, 7 Feb 1994  21:52:25 -0800 " "first" '
        + me
        + b" "
        + me
        + b" "
        + me
        + b' ((NIL NIL "you" "there")) NIL NIL "<x@y> <z@w>" "")'
    )


def test_envelope_of_headerless_message() -> None:
    assert parse_message(b"\r\nbody").envelope == b"(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)"


def _bs(msg: bytes) -> bytes:
    return parse_message(msg).bodystructure


def test_default_content_type() -> None:
    """RFC 2045 §5.1: no Content-Type means text/plain; charset=us-ascii (Dovecot)."""
    assert _bs(b"Subject: x\r\n\r\nhello") == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0 NIL NIL NIL NIL)'
    )


def test_text_charset_default_is_appended() -> None:
    """Dovecot: text/* without a charset gets ("charset" "us-ascii") after the others."""
    assert _bs(b"Content-Type: text/html; format=flowed\r\nContent-Language: en\r\n\r\nhi\r\n") == (
        b'("text" "html" ("format" "flowed" "charset" "us-ascii") NIL NIL "7bit" 4 1 NIL NIL'
        b' ("en") NIL)'
    )


def test_extension_fields_as_sent() -> None:
    """Dovecot: type, subtype, parameter names, encoding and disposition are sent as
    written; Content-Language is always a list."""
    msg = (
        b'Content-Type: Text/PLAIN; CharSet=UTF-8; Format="flowed"\r\n'
        b"Content-Transfer-Encoding: QUOTED-printable\r\nContent-Language: en, de\r\n"
        b"Content-Location: http://x/y\r\nContent-MD5: abc\r\nContent-ID: <id@x>\r\n"
        b"Content-Description: =?utf-8?q?d=C3=A9sc?=\r\nContent-Disposition: INLINE\r\n\r\nhi\r\n"
    )
    assert _bs(msg) == (
        b'("Text" "PLAIN" ("CharSet" "UTF-8" "Format" "flowed") "<id@x>"'
        b' "=?utf-8?q?d=C3=A9sc?=" "QUOTED-printable" 4 1 "abc" ("INLINE" NIL) ("en" "de")'
        b' "http://x/y")'
    )
    assert parse_message(msg).body == (
        b'("Text" "PLAIN" ("CharSet" "UTF-8" "Format" "flowed") "<id@x>"'
        b' "=?utf-8?q?d=C3=A9sc?=" "QUOTED-printable" 4 1)'
    )


def test_non_text_has_no_lines() -> None:
    assert _bs(b"Content-Type: image/png\r\n\r\nhi\r\n") == (
        b'("image" "png" NIL NIL NIL "7bit" 4 NIL NIL NIL NIL)'
    )


@pytest.mark.parametrize(
    "msg",
    [
        b"Content-Type: multipart/mixed\r\n\r\n--x\r\nfoo\r\n--x--\r\n",
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\nno parts here\r\n",
        b'Content-Type: multipart/mixed; boundary=""\r\n\r\n--\r\nfoo\r\n',
    ],
)
def test_multipart_without_parts(msg: bytes) -> None:
    """Dovecot: a multipart without boundary or without any part is rendered with one
    empty text/plain part (RFC 3501 body-type-mpart needs at least one body)."""
    bs = _bs(msg)
    assert bs.startswith(
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) "mixed" '
    )
    assert parse_message(msg).body.startswith(
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) "mixed")'
    )


def test_digest_children_default_to_message_rfc822() -> None:
    """RFC 2046 §5.1.5 (output identical to Dovecot)."""
    msg = (
        b"From: a@b\r\nContent-Type: multipart/digest; boundary=d\r\n\r\n--d\r\n\r\n"
        b"From: x@y\r\nSubject: in\r\n\r\nbody\r\n--d\r\nContent-Type: text/plain\r\n\r\n"
        b"txt\r\n--d--\r\n"
    )
    assert _bs(msg) == (
        b'(("message" "rfc822" NIL NIL NIL "7bit" 30 (NIL "in" ((NIL NIL "x" "y")) '
        b'((NIL NIL "x" "y")) ((NIL NIL "x" "y")) NIL NIL NIL NIL NIL) ("text" "plain" '
        b'("charset" "us-ascii") NIL NIL "7bit" 4 0 NIL NIL NIL NIL) 3 NIL NIL NIL NIL)'
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0 NIL NIL NIL NIL) "digest"'
        b' ("boundary" "d") NIL NIL NIL)'
    )


def test_message_global_is_not_encapsulated() -> None:
    """Like Dovecot 2.3, message/global is a basic part (an IMAP4rev1 client would not
    expect an envelope after it)."""
    assert _bs(b"Content-Type: message/global\r\n\r\nFrom: x@y\r\n\r\nbody\r\n") == (
        b'("message" "global" NIL NIL NIL "7bit" 19 NIL NIL NIL NIL)'
    )


def test_part_boundaries_and_sizes() -> None:
    """RFC 2046 §5.1.1: the CRLF before a delimiter belongs to the delimiter; preamble and
    epilogue belong to no part (Dovecot agrees)."""
    msg = (
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\npre\r\n--x\r\n\r\nhello\r\n--x\r\n"
        b"Content-Type: text/html\r\n\r\nhello\r\n\r\n--x--\r\nepi\r\n"
    )
    assert parse_message(msg).body == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 5 0)("text" "html" '
        b'("charset" "us-ascii") NIL NIL "7bit" 7 1) "mixed")'
    )


def test_boundary_lines_are_matched_strictly() -> None:
    """RFC 2046 §5.1.1: only transport padding may follow the boundary. Dovecot also takes
    "--x junk" and "--xy" as delimiters; we do not, so an outer boundary that is a prefix of
    an inner one cannot cut the inner parts."""
    msg = (
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n--x \t\r\n\r\nhello\r\n--xy\r\n"
        b"\r\nhello2\r\n--x junk\r\nmore\r\n--x--"
    )
    assert parse_message(msg).body == (
        b'(("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 37 5) "mixed")'
    )


def test_prefix_boundaries_nest() -> None:
    """An outer boundary "b" and an inner "b-1" are told apart."""
    msg = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: multipart/alternative; boundary=b-1\r\n\r\n--b-1\r\n\r\none\r\n--b-1\r\n"
        b"\r\ntwo\r\n--b-1--\r\n--b\r\n\r\nthree\r\n--b--\r\n"
    )
    assert parse_message(msg).body == (
        b'((("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 3 0)("text" "plain" '
        b'("charset" "us-ascii") NIL NIL "7bit" 3 0) "alternative")("text" "plain" '
        b'("charset" "us-ascii") NIL NIL "7bit" 5 0) "mixed")'
    )


def test_rfc2231_parameters_are_decoded() -> None:
    """RFC 2231 §3-4: continuations merged and charsets decoded into a plain parameter;
    non-ASCII values as an RFC 2047 UTF-8 word (Dovecot would send "name*" encoded)."""
    msg = (
        b"Content-Type: application/pdf; name*0*=utf-8''%E2%82%AC; name*1=\" x.pdf\"\r\n"
        b"Content-Disposition: attachment; filename*=iso-8859-1'en'%A3.txt;\r\n"
        b" size=3; foo*1=b; foo*0=a\r\n\r\nhi\r\n"
    )
    assert _bs(msg) == (
        b'("application" "pdf" ("name" "=?utf-8?b?4oKsIHgucGRm?=") NIL NIL "7bit" 4 NIL '
        b'("attachment" ("filename" "=?utf-8?b?wqMudHh0?=" "size" "3" "foo" "ab")) NIL NIL)'
    )


def test_lenient_parameter_values() -> None:
    """Unquoted values with tspecials or spaces keep their whole value; comments go."""
    msg = (
        b"Content-Type: multipart/mixed; boundary=----=_Part_1 (comment);\r\n"
        b' name=my file.pdf; broken; =x; charset="utf-8" junk\r\n\r\n'
        b"------=_Part_1\r\n\r\nok\r\n------=_Part_1--\r\n"
    )
    assert _bs(msg).endswith(
        b'"mixed" ("boundary" "----=_Part_1" "name" "my file.pdf" "charset" "utf-8") NIL NIL NIL)'
    )
    assert b'"7bit" 2 0' in _bs(msg)


def test_broken_content_type_falls_back_to_text_plain() -> None:
    """RFC 2045 §5.2; Dovecot sends ("" "" NIL ...) instead."""
    assert _bs(b"Content-Type: ;;;garbage/\r\n\r\nhi\r\n") == (
        b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 4 1 NIL NIL NIL NIL)'
    )
    assert _bs(b"Content-Type: text\r\n\r\nhi\r\n").startswith(b'("text" "plain"')


def test_encoded_message_rfc822_is_still_parsed() -> None:
    """Dovecot parses a (forbidden) base64 message/rfc822 body as a message too."""
    assert _bs(
        b"From: a@b\r\nContent-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\nRnJvbTogeEB5DQoNCmJvZHkNCg==\r\n"
    ) == (
        b'("message" "rfc822" NIL NIL NIL "base64" 30 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)'
        b' ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL) 1 NIL NIL'
        b" NIL NIL)"
    )


def test_empty_message_rfc822_part_before_delimiter() -> None:
    """Regression (found by Hypothesis): a message/rfc822 part whose header runs into the
    delimiter has an empty embedded message, never a negative size."""
    msg = (
        b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
        b"Content-Type: message/rfc822\r\n\r\n--b--\r\n"
    )
    assert parse_message(msg).body == (
        b'(("message" "rfc822" NIL NIL NIL "7bit" 0 (NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)'
        b' ("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0) 0) "mixed")'
    )
