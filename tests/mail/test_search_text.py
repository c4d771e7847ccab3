"""What SEARCH FROM/TO/CC/BCC/SUBJECT compare a needle with (RFC 9051 §6.4.4: a substring of
the field): addresses parsed and written back in one normal form (`format_addresses`), then
decoded and casefolded (`search_texts`, `search_values`), as Dovecot matches them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casella.mail.address import format_addresses, parse_addresses
from casella.mail.text import _simple_addresses, address_search_text, search_texts, search_values


@pytest.mark.parametrize("value,expected", [
    (b"user-from@domain.org", b"<user-from@domain.org>"),
    (b"RealFrom <user-from@domain.org>", b"RealFrom <user-from@domain.org>"),
    (b"<user-from (comment)@ (comment) domain.org>", b"<user-from@domain.org>"),
    (b"user-from@domain.org (RealFrom)", b"RealFrom <user-from@domain.org>"),
    (b"a@x,\r\n  b@y", b"<a@x>, <b@y>"),
    ((b"groupname: groupuser1@domain.org, groupuser2@domain.org;,\r\n"
      b"  groupname2: groupuser3@domain.org;"),
     (b"groupname: <groupuser1@domain.org>, <groupuser2@domain.org>;, "
      b"groupname2: <groupuser3@domain.org>;")),
    (b"groupname:;", b"groupname:;"),
    (b"open: a@b", b"open: <a@b>;"),                       # an unterminated group is closed
    (b'"Doe, John" <j@d>', b"Doe, John <j@d>"),
    (b"=?utf-8?q?Z=C3=BCrich?= <z@h>", b"=?utf-8?q?Z=C3=BCrich?= <z@h>"),
    (b"A <@r1,@r2:x@y>", b"A <@r1,@r2:x@y>"),
    (b"root", b"<root@MISSING_DOMAIN>"),
    (b"", b""),
])
def test_format_addresses(value: bytes, expected: bytes) -> None:
    """The normal form: `Name <mailbox@host>`, `<mailbox@host>`, `group: ...;`."""
    assert format_addresses(parse_addresses(value)) == expected


def test_search_texts_of_address_fields_are_normalised_and_decoded() -> None:
    header = (b"From: <user-from (comment)@ (comment) domain.org>\r\n"
              b"From: =?utf-8?q?J=C3=BCrgen?= <jx@example.org>\r\n"
              b"To: team: =?utf-8?q?Ren=C3=A9e?= <r@x>, s@y;\r\n"
              b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?=  (fwd)\r\n"
              b"X-Other: (kept) as is\r\n\r\n")
    assert search_texts(header, "FROM") == ["<user-from@domain.org>",
                                            "jürgen <jx@example.org>"]
    assert search_texts(header, "to") == ["team: renée <r@x>, <s@y>;"]
    assert search_texts(header, "Subject") == ["grüsse  (fwd)"]
    assert search_texts(header, "x-other") == ["(kept) as is"]
    assert search_texts(header, "cc") == []
    assert search_values(header) == (
        "<user-from@domain.org>\njürgen <jx@example.org>", "team: renée <r@x>, <s@y>;", "", "",
        "grüsse  (fwd)")


_FRAGMENTS = [b"a", b"bob", b"x.y", b"@", b" ", b"\t", b"<", b">", b",", b"=?utf-8?q?R=C3=A9?=",
              b"\xc3\xa9", b'"', b"(", b")", b":", b";", b"[", b"]", b"\\", b"\x0b", b".", b""]
_WSP = st.sampled_from([b" ", b"\t", b"", b"  ", b"\r\n "])
_WORD = st.sampled_from([b"a", b"bob.x", b"\xc3\xa9", b"=?utf-8?q?R=C3=A9?=", b"x-y", b"a.", b"",
                         b">", b"<", b"@", b".", b'"', b"(", b":"])
_SPEC = st.tuples(_WORD, st.sampled_from([b"@", b"@", b"", b"@@"]), _WORD).map(b"".join)
_NAME = st.lists(st.tuples(_WORD, _WSP).map(b"".join), max_size=3).map(b"".join)
_PIECE = st.one_of(
    st.tuples(_WSP, _SPEC, _WSP).map(b"".join),
    st.tuples(_WSP, _NAME, st.just(b"<"), _SPEC, st.sampled_from([b">", b">", b""]), _WSP
              ).map(b"".join))
#: Mostly well-formed lists (the fast path's own ground), and byte soup.
_VALUES = st.one_of(st.lists(_PIECE, min_size=1, max_size=3).map(b",".join),
                    st.lists(st.sampled_from(_FRAGMENTS), max_size=14).map(b"".join))


@settings(max_examples=3000, deadline=None)
@given(_VALUES)
def test_the_fast_path_writes_what_the_parser_writes(value: bytes) -> None:
    """`address_search_text` skips the tokenizer for plain `a@b` / `Name <a@b>` lists; the
    text is exactly the parser's whichever way it is worked out."""
    assert address_search_text(value) == format_addresses(parse_addresses(value))


@pytest.mark.parametrize("value", [b"a@b", b"Bob  Smith <bob@x.y>", b"a@b, <c@d>,\tE <e@f>",
                                   b"=?utf-8?q?R=C3=A9?= <r@x>"])
def test_plain_lists_take_the_fast_path(value: bytes) -> None:
    assert _simple_addresses(value) == format_addresses(parse_addresses(value))
