"""The IMAP parser: bytes in, a typed command or ParseError out (RFC 9051 §9 grammar).

Tables of good inputs for every command form, tables of malformed inputs, literal handling,
and hypothesis properties: arbitrary bytes raise nothing but ParseError."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casella.imap import commands as c
from casella.imap.commands import ExternalLiteral
from casella.imap.parser import (
    ParseError,
    literal_spec,
    parse_bytes,
    parse_request,
    peek_command,
    split_literals,
)
from casella.imap.seqset import STAR, SeqSet

S = SeqSet


def cmd(data: bytes) -> c.Command:
    return parse_bytes(data).command


GOOD: list[tuple[bytes, c.Command]] = [
    (b"a CAPABILITY", c.Capability()),
    (b"a capability", c.Capability()),
    (b"a NOOP", c.Noop()),
    (b"a LOGOUT", c.Logout()),
    (b"a STARTTLS", c.StartTLS()),
    (b"a ID NIL", c.Id(None)),
    (b'a ID ("name" "mutt" "version" NIL)', c.Id((("name", "mutt"), ("version", None)))),
    (b"a ID ()", c.Id(())),
    (b"a AUTHENTICATE PLAIN", c.Authenticate("PLAIN")),
    (b"a AUTHENTICATE plain AGpvZQBzZWNyZXQ=", c.Authenticate("PLAIN", b"AGpvZQBzZWNyZXQ=")),
    (b"a AUTHENTICATE LOGIN =", c.Authenticate("LOGIN", b"=")),
    (b"a LOGIN joe secret", c.Login("joe", "secret")),
    (b'a LOGIN "joe@example.test" "se\\"cr\\\\et"', c.Login("joe@example.test", 'se"cr\\et')),
    (b"a LOGIN {3}\r\njoe {6+}\r\nsecret", c.Login("joe", "secret")),
    (b'a LOGIN joe "p\xc3\xa4ss"', c.Login("joe", "p\u00e4ss")),
    (b"a ENABLE IMAP4rev2", c.Enable(("IMAP4rev2",))),
    (b"a ENABLE CONDSTORE UTF8=ACCEPT", c.Enable(("CONDSTORE", "UTF8=ACCEPT"))),
    (b"a NAMESPACE", c.Namespace()),
    (b"a SELECT INBOX", c.Select(b"INBOX")),
    (b'a SELECT "Sent Items"', c.Select(b"Sent Items")),
    (b"a SELECT {5}\r\nDr\"fs", c.Select(b'Dr"fs')),
    (b"a SELECT INBOX ()", c.Select(b"INBOX")),
    (b"a EXAMINE &ZeVnLIqe-", c.Select(b"&ZeVnLIqe-", readonly=True)),
    (b"a CREATE foo/bar", c.Create(b"foo/bar")),
    (b"a DELETE foo", c.Delete(b"foo")),
    (b'a RENAME foo "new name"', c.Rename(b"foo", b"new name")),
    (b"a SUBSCRIBE foo", c.Subscribe(b"foo")),
    (b"a UNSUBSCRIBE foo", c.Unsubscribe(b"foo")),
    (b'a LIST "" *', c.List(b"", (b"*",))),
    (b'a LIST "" ""', c.List(b"", (b"",))),
    (b"a LIST ~/Mail/ %", c.List(b"~/Mail/", (b"%",))),
    (b'a LIST "" INBOX/%]', c.List(b"", (b"INBOX/%]",))),
    (b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" (foo/* %) RETURN (CHILDREN)',
     c.List(b"", (b"foo/*", b"%"), frozenset({"SUBSCRIBED", "RECURSIVEMATCH"}),
            frozenset({"CHILDREN"}), (), True)),
    (b'a LIST "" % RETURN (SPECIAL-USE STATUS (MESSAGES UNSEEN))',
     c.List(b"", (b"%",), frozenset(), frozenset({"SPECIAL-USE", "STATUS"}),
            ("MESSAGES", "UNSEEN"), True)),
    (b'a LIST (SPECIAL-USE) "" *', c.List(b"", (b"*",), frozenset({"SPECIAL-USE"}),
                                           extended=True)),
    (b'a LSUB "" *', c.Lsub(b"", b"*")),
    (b"a STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN SIZE DELETED)",
     c.Status(b"INBOX", c.STATUS_ITEMS[:7])),
    (b"a status inbox (messages)", c.Status(b"inbox", ("MESSAGES",))),
    (b"a APPEND INBOX {5}\r\nhello",
     c.Append(b"INBOX", (c.AppendMessage((), None, b"hello"),))),
    (b"a APPEND INBOX (\\Seen $Label1) {5+}\r\nhello",
     c.Append(b"INBOX", (c.AppendMessage(("\\Seen", "$Label1"), None, b"hello"),))),
    (b'a APPEND Drafts () " 7-Feb-1994 21:52:25 -0800" {2}\r\nhi',
     c.Append(b"Drafts", (c.AppendMessage((), datetime.datetime(
         1994, 2, 7, 21, 52, 25, tzinfo=datetime.timezone(datetime.timedelta(hours=-8))),
         b"hi"),))),
    (b"a CHECK", c.Check()),
    (b"a CLOSE", c.Close()),
    (b"a UNSELECT", c.Unselect()),
    (b"a EXPUNGE", c.Expunge()),
    (b"a UID EXPUNGE 3:5,9", c.Expunge(S(((3, 5), (9, 9))))),
    (b"a COPY 2:4 Trash", c.Copy(False, S(((2, 4),)), b"Trash")),
    (b"a UID COPY 4:2 Trash", c.Copy(True, S(((4, 2),)), b"Trash")),
    (b"a MOVE * Archive", c.Move(False, S(((STAR, STAR),)), b"Archive")),
    (b"a uid move 1:* Archive", c.Move(True, S(((1, STAR),)), b"Archive")),
    (b"a STORE 1 +FLAGS (\\Seen)", c.Store(False, S(((1, 1),)), "add", False, ("\\Seen",))),
    (b"a STORE 1:3 -FLAGS.SILENT \\deleted foo",
     c.Store(False, S(((1, 3),)), "remove", True, ("\\Deleted", "foo"))),
    (b"a UID STORE 5 FLAGS ()", c.Store(True, S(((5, 5),)), "replace", False, ())),
    (b"a IDLE", c.Idle()),
    (b"a SEARCH ALL", c.Search(False, c.SAll())),
    (b"a UID SEARCH $", c.Search(True, c.SSeq(S(saved=True)))),
    (b"a SEARCH CHARSET UTF-8 SUBJECT {4}\r\n\xc3\xa4bc",
     c.Search(False, c.SHeader("Subject", b"\xc3\xa4bc"), "UTF-8")),
    (b"a SEARCH RETURN (MIN MAX COUNT) UNSEEN",
     c.Search(False, c.SFlag("\\Seen", False), None, ("MIN", "MAX", "COUNT"))),
    (b"a SEARCH RETURN () ALL", c.Search(False, c.SAll(), None, ())),
    (b"a SEARCH 1:5 NOT DELETED",
     c.Search(False, c.SAnd((c.SSeq(S(((1, 5),))), c.SNot(c.SFlag("\\Deleted")))))),
]

SEARCH_KEYS: list[tuple[bytes, c.SearchKey]] = [
    (b"ALL", c.SAll()),
    (b"ANSWERED", c.SFlag("\\Answered")), (b"UNANSWERED", c.SFlag("\\Answered", False)),
    (b"DELETED", c.SFlag("\\Deleted")), (b"UNDELETED", c.SFlag("\\Deleted", False)),
    (b"DRAFT", c.SFlag("\\Draft")), (b"UNDRAFT", c.SFlag("\\Draft", False)),
    (b"FLAGGED", c.SFlag("\\Flagged")), (b"UNFLAGGED", c.SFlag("\\Flagged", False)),
    (b"SEEN", c.SFlag("\\Seen")), (b"UNSEEN", c.SFlag("\\Seen", False)),
    (b"KEYWORD $Forwarded", c.SFlag("$Forwarded")),
    (b"UNKEYWORD junk", c.SFlag("junk", False)),
    (b"NEW", c.SAnd((c.SRecent(True), c.SFlag("\\Seen", False)))),
    (b"OLD", c.SRecent(False)), (b"RECENT", c.SRecent(True)),
    (b"FROM alice", c.SHeader("From", b"alice")), (b"TO bob", c.SHeader("To", b"bob")),
    (b"CC x", c.SHeader("Cc", b"x")), (b"BCC x", c.SHeader("Bcc", b"x")),
    (b'SUBJECT "two words"', c.SHeader("Subject", b"two words")),
    (b"HEADER Message-ID <x@y>", c.SHeader("Message-ID", b"<x@y>")),
    (b'HEADER X-Spam ""', c.SHeader("X-Spam", b"")),
    (b"BODY hello", c.SText(b"hello", False)), (b"TEXT hello", c.SText(b"hello", True)),
    (b"BEFORE 1-Feb-2024", c.SDate("before", datetime.date(2024, 2, 1))),
    (b'ON "15-Mar-2023"', c.SDate("on", datetime.date(2023, 3, 15))),
    (b"SINCE 01-jan-2020", c.SDate("since", datetime.date(2020, 1, 1))),
    (b"SENTBEFORE 1-Feb-2024", c.SDate("before", datetime.date(2024, 2, 1), True)),
    (b"SENTON 1-Feb-2024", c.SDate("on", datetime.date(2024, 2, 1), True)),
    (b"SENTSINCE 1-Feb-2024", c.SDate("since", datetime.date(2024, 2, 1), True)),
    (b"LARGER 1000", c.SSize(True, 1000)), (b"SMALLER 10", c.SSize(False, 10)),
    (b"UID 1:*", c.SUid(S(((1, STAR),)))),
    (b"2,4:*", c.SSeq(S(((2, 2), (4, STAR))))),
    (b"NOT SEEN", c.SNot(c.SFlag("\\Seen"))),
    (b"OR SEEN FLAGGED", c.SOr(c.SFlag("\\Seen"), c.SFlag("\\Flagged"))),
    (b"(SEEN FLAGGED)", c.SAnd((c.SFlag("\\Seen"), c.SFlag("\\Flagged")))),
    (b"OR (SEEN) (NOT 1:3)", c.SOr(c.SFlag("\\Seen"), c.SNot(c.SSeq(S(((1, 3),)))))),
]


@pytest.mark.parametrize("data,expected", GOOD)
def test_good_commands(data: bytes, expected: c.Command) -> None:
    assert cmd(data) == expected


@pytest.mark.parametrize("key,expected", SEARCH_KEYS)
def test_every_search_key(key: bytes, expected: c.SearchKey) -> None:
    """RFC 3501 §6.4.4: every search key parses into its typed form."""
    assert cmd(b"a SEARCH " + key) == c.Search(False, expected)


def test_tag_is_kept() -> None:
    req = parse_bytes(b"A0042.x] NOOP")
    assert req.tag == "A0042.x]" and req.command == c.Noop()


FETCH_CASES: list[tuple[bytes, tuple[c.FetchAtt, ...]]] = [
    (b"ALL", tuple(c.FetchAtt(n) for n in ("FLAGS", "INTERNALDATE", "RFC822.SIZE",
                                           "ENVELOPE"))),
    (b"FAST", tuple(c.FetchAtt(n) for n in ("FLAGS", "INTERNALDATE", "RFC822.SIZE"))),
    (b"FULL", tuple(c.FetchAtt(n) for n in ("FLAGS", "INTERNALDATE", "RFC822.SIZE",
                                            "ENVELOPE", "BODY"))),
    (b"FLAGS", (c.FetchAtt("FLAGS"),)),
    (b"(UID RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY INTERNALDATE)",
     tuple(c.FetchAtt(n) for n in ("UID", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY",
                                   "INTERNALDATE"))),
    (b"(RFC822 RFC822.HEADER RFC822.TEXT)",
     tuple(c.FetchAtt(n) for n in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"))),
    (b"BODY[]", (c.FetchAtt("BODY[]", c.Section()),)),
    (b"BODY.PEEK[]<0.1024>", (c.FetchAtt("BODY[]", c.Section(), True, (0, 1024)),)),
    (b"BODY[TEXT]", (c.FetchAtt("BODY[]", c.Section((), "TEXT")),)),
    (b"BODY[HEADER]", (c.FetchAtt("BODY[]", c.Section((), "HEADER")),)),
    (b'BODY.PEEK[HEADER.FIELDS (From "Subject" {4}\r\nDate)]',
     (c.FetchAtt("BODY[]", c.Section((), "HEADER.FIELDS", ("From", "Subject", "Date")),
                 True),)),
    (b"BODY[HEADER.FIELDS.NOT (Received)]",
     (c.FetchAtt("BODY[]", c.Section((), "HEADER.FIELDS.NOT", ("Received",))),)),
    (b"BODY[1]", (c.FetchAtt("BODY[]", c.Section((1,))),)),
    (b"BODY[1.2.3]", (c.FetchAtt("BODY[]", c.Section((1, 2, 3))),)),
    (b"BODY[2.MIME]", (c.FetchAtt("BODY[]", c.Section((2,), "MIME")),)),
    (b"BODY[2.HEADER]", (c.FetchAtt("BODY[]", c.Section((2,), "HEADER")),)),
    (b"BODY[4.2.TEXT]<10.20>", (c.FetchAtt("BODY[]", c.Section((4, 2), "TEXT"), False,
                                           (10, 20)),)),
    (b"body.peek[1.header.fields (to)]",
     (c.FetchAtt("BODY[]", c.Section((1,), "HEADER.FIELDS", ("to",)), True),)),
]


@pytest.mark.parametrize("items,expected", FETCH_CASES)
def test_fetch_items(items: bytes, expected: tuple[c.FetchAtt, ...]) -> None:
    assert cmd(b"a FETCH 1:* " + items) == c.Fetch(False, S(((1, STAR),)), expected)


def test_uid_fetch_always_has_uid() -> None:
    """RFC 9051 §6.4.9: UID FETCH reports UID even when not asked."""
    f = cmd(b"a UID FETCH 1 FLAGS")
    assert isinstance(f, c.Fetch) and f.items[0] == c.FetchAtt("UID")


def test_section_spec_echo() -> None:
    sec = c.Section((1,), "HEADER.FIELDS", ("From", "X Y"))
    assert sec.spec() == b'1.HEADER.FIELDS (From "X Y")'
    assert c.Section().spec() == b""
    assert c.Section((2, 1), "MIME").spec() == b"2.1.MIME"


BAD: list[tuple[bytes, str]] = [
    (b"", "tag"),
    (b"+ NOOP", "tag"),
    (b"a", "missing"),
    (b"a FOO", "unknown command"),
    (b"a UID NOOP", "unknown UID command"),
    (b"a NOOP extra", "unexpected text"),
    (b"a NOOP  ", "unexpected text"),
    (b"a  NOOP", "expected an atom"),
    (b"a LOGIN joe", "missing"),
    (b'a LOGIN "joe secret', "unterminated"),
    (b'a LOGIN "jo\\e" x', "escape"),
    (b"a LOGIN {3}\r\njo", "literal"),
    (b"a LOGIN joe \xff\xfe", "string"),
    (b'a LOGIN joe "\xff"', "UTF-8"),
    (b"a SELECT", "missing"),
    (b"a SELECT INBOX (FOO)", "unknown SELECT parameter"),
    (b"a SELECT (INBOX)", "string"),
    (b"a STATUS INBOX ()", "at least one"),
    (b"a STATUS INBOX (FOO)", "unexpected"),
    (b"a STATUS INBOX MESSAGES", "expected"),
    (b"a APPEND INBOX hello", "literal"),
    (b'a APPEND INBOX "hello"', "date-time"),
    (b'a APPEND INBOX "32-Jan-2020 00:00:00 +0000" {1}\r\nx', "invalid date-time"),
    (b"a APPEND INBOX (\\Recent) {1}\r\nx", "can be set"),
    (b"a FETCH", "missing"),
    (b"a FETCH 1", "missing"),
    (b"a FETCH 0 FLAGS", "sequence"),
    (b"a FETCH 1:0 FLAGS", "sequence"),
    (b"a FETCH -1 FLAGS", "sequence"),
    (b"a FETCH 1,,2 FLAGS", "sequence"),
    (b"a FETCH 4294967296 FLAGS", "range"),
    (b"a FETCH 1 FOO", "unknown FETCH item"),
    (b"a FETCH 1 (FLAGS", "missing"),
    (b"a FETCH 1 ()", "at least one"),
    (b"a FETCH 1 (ALL)", "unknown FETCH item"),
    (b"a FETCH 1 BODY[MIME]", "unknown section"),
    (b"a FETCH 1 BODY[0]", "zero"),
    (b"a FETCH 1 BODY[1.]", "expected"),
    (b"a FETCH 1 BODY[HEADER.FIELDS]", "expected a space"),
    (b"a FETCH 1 BODY[HEADER.FIELDS ()]", "at least one"),
    (b"a FETCH 1 BODY[HEADER.FIELDS (a:b)]", "header field"),
    (b"a FETCH 1 BODY[]<1>", "expected"),
    (b"a FETCH 1 BODY[]<1.0>", "zero"),
    (b"a FETCH 1 BODY.PEEK", "unknown FETCH item"),
    (b"a FETCH 1 BINARY[1.HEADER]", "expected"),
    (b"a FETCH 1 FLAGS (CHANGEDSINCE)", "expected a space"),
    (b"a FETCH 1 FLAGS (FOO 1)", "unknown FETCH modifier"),
    (b"a FETCH 1 FLAGS (CHANGEDSINCE 1 VANISHED)", "only allowed with UID FETCH"),
    (b"a UID FETCH 1 FLAGS (VANISHED)", "needs CHANGEDSINCE"),
    (b"a STORE 1 FLAGS", "missing"),
    (b"a STORE 1 XFLAGS (\\Seen)", "FLAGS"),
    (b"a STORE 1 +FLAGS (\\Recent)", "can be set"),
    (b"a STORE 1 +FLAGS (\\Foo)", "can be set"),
    (b"a STORE 1 (UNCHANGEDSINCE x) +FLAGS (\\Seen)", "number"),
    (b"a STORE 1 (FOO 5) +FLAGS (\\Seen)", "unknown STORE modifier"),
    (b"a COPY 1", "missing"),
    (b"a SEARCH", "missing"),
    (b"a SEARCH FOO", "unknown search key"),
    (b"a SEARCH BEFORE 1-Foo-2020", "date"),
    (b"a SEARCH BEFORE 31-Feb-2020", "invalid date"),
    (b"a SEARCH OR SEEN", "missing"),
    (b"a SEARCH ()", "empty"),
    (b"a SEARCH (SEEN", "missing"),
    (b"a SEARCH LARGER x", "number"),
    (b"a SEARCH RETURN (FOO) ALL", "unexpected"),
    (b"a SEARCH " + b"NOT " * 40 + b"ALL", "nested"),
    (b"a SEARCH " + b"(" * 40 + b"ALL" + b")" * 40, "nested"),
    (b"a LIST", "missing"),
    (b'a LIST "" ()', "at least one"),
    (b'a LIST (RECURSIVEMATCH) "" *', "RECURSIVEMATCH"),
    (b'a LIST (RECURSIVEMATCH REMOTE) "" *', "RECURSIVEMATCH"),
    (b'a LIST "" * RETURN (FOO)', "unexpected"),
    (b'a LIST "" * FOO (CHILDREN)', "unexpected"),
    (b"a ENABLE", "missing"),
    (b"a ID", "missing"),
    (b"a ID foo", "string"),
    (b"a ID (" + b'"k" "v" ' * 31 + b")", "too many"),
    (b"a AUTHENTICATE", "missing"),
    (b"a AUTHENTICATE PLAIN !!", "initial response"),
    (b"a UID EXPUNGE", "missing"),
]


@pytest.mark.parametrize("data,fragment", BAD)
def test_bad_commands(data: bytes, fragment: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_bytes(data)
    assert fragment.lower() in info.value.message.lower()
    if data[:2] == b"a ":
        assert info.value.tag == "a"


def test_literal_spec() -> None:
    assert literal_spec(b"a LOGIN {3}") == (3, False)
    assert literal_spec(b"a APPEND INBOX {100+}") == (100, True)
    assert literal_spec(b"a LOGIN x") is None
    assert literal_spec(b'a LOGIN "{3}"') is None
    assert literal_spec(b"a X {}") is None
    assert literal_spec(b"a X {99999999999999999999999}")[0] >= 1 << 64  # type: ignore[index]


def test_peek_command() -> None:
    assert peek_command(b"A1 append INBOX {5}") == ("A1", "APPEND")
    assert peek_command(b"A1 uid fetch 1 FLAGS") == ("A1", "UID FETCH")
    assert peek_command(b"+x") == (None, "")
    assert peek_command(b"A1") == ("A1", "")


def test_split_literals() -> None:
    lines, lits = split_literals(b"a LOGIN {3}\r\nabc {2+}\r\nxy")
    assert lines == [b"a LOGIN {3}", b" {2+}", b""] and lits == [b"abc", b"xy"]


def test_literal_size_must_match() -> None:
    with pytest.raises(ParseError, match="size"):
        parse_request([b"a LOGIN {4}", b" x"], [b"abc"])
    with pytest.raises(ParseError, match="count"):
        parse_request([b"a NOOP"], [b"abc"])


def test_external_literal_only_for_append_message() -> None:
    big = ExternalLiteral(100000, object())
    req = parse_request([b"a APPEND INBOX {100000}", b""], [big])
    assert isinstance(req.command, c.Append) and req.command.messages[0].message is big
    with pytest.raises(ParseError, match="too large"):
        parse_request([b"a LOGIN {100000}", b" x"], [big])


def test_deep_nesting_is_a_parse_error_not_a_crash() -> None:
    for depth in (31, 33, 500, 5000):
        data = b"a SEARCH " + b"(" * depth + b"ALL" + b")" * depth
        try:
            parse_bytes(data)
        except ParseError:
            pass


# --- properties -------------------------------------------------------------------------------

@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_parse_error(data: bytes) -> None:
    try:
        parse_bytes(data)
    except ParseError:
        pass


_TOKENS = [b"a", b" ", b"FETCH", b"SEARCH", b"STORE", b"LIST", b"APPEND", b"UID", b"(", b")",
           b"[", b"]", b"<", b">", b"1", b":", b"*", b",", b"$", b'"', b"\\", b"{3}\r\nabc",
           b"{2+}\r\nxy", b"BODY", b".PEEK", b"HEADER.FIELDS", b"NOT", b"OR", b"ALL", b"INBOX",
           b"+FLAGS", b"\\Seen", b"RETURN", b"CHARSET", b"1-Jan-2020", b"NIL", b"%", b"\x00",
           b"\xff", b"~{1}\r\nx"]


@settings(max_examples=600, deadline=None)
@given(st.lists(st.sampled_from(_TOKENS), max_size=30))
def test_token_soup_only_raises_parse_error(tokens: list[bytes]) -> None:
    """Near-valid command shapes reach deep into the grammar; still only ParseError."""
    try:
        parse_bytes(b"".join(tokens))
    except ParseError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(GOOD), st.data())
def test_literal_forms_are_equivalent(case: tuple[bytes, c.Command], data: st.DataObject
                                      ) -> None:
    """A quoted string may always be sent as a literal instead (RFC 9051 §4.3)."""
    raw, expected = case
    if b"{" in raw or b'"' not in raw or isinstance(expected, c.Append):
        return
    start = raw.index(b'"')
    end = raw.index(b'"', start + 1)
    inner = raw[start + 1:end]
    if b"\\" in inner:
        return
    plus = data.draw(st.booleans())
    lit = b"{%d%s}\r\n" % (len(inner), b"+" if plus else b"") + inner
    assert cmd(raw[:start] + lit + raw[end + 1:]) == expected
