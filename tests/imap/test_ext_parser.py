"""The extension grammars (bytes in, typed command or ParseError out): SELECT parameters and
QRESYNC, FETCH items and modifiers, STORE UNCHANGEDSINCE, the new SEARCH keys, SORT, THREAD,
MULTIAPPEND / literal8 / UTF8 APPEND, CREATE USE, QUOTA, COMPRESS, NOTIFY; tables of good and bad
inputs, and hypothesis properties (arbitrary bytes after any command name raise nothing but
ParseError). Also the COMPRESS codec's bounds."""

from __future__ import annotations

import datetime
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casella.imap import commands as c
from casella.imap.compress import OUT_CHUNK, CompressionError, DeflateTransform
from casella.imap.lexer import MAX_SEARCH_KEYS
from casella.imap.parser import ParseError, parse_bytes
from casella.imap.seqset import STAR, SeqSet

S = SeqSet
A = c.FetchAtt


def cmd(data: bytes) -> c.Command:
    return parse_bytes(data).command


GOOD: list[tuple[bytes, c.Command]] = [
    (b"a SELECT INBOX (CONDSTORE)", c.Select(b"INBOX", condstore=True)),
    (b"a EXAMINE INBOX (QRESYNC (67890007 20050715194045000 41,43:211,214:541))",
     c.Select(b"INBOX", True, qresync=c.QresyncParams(
         67890007, 20050715194045000, S(((41, 41), (43, 211), (214, 541)))))),
    (b"a SELECT INBOX (QRESYNC (1 2 1:9 (1,5 1,7)))",
     c.Select(b"INBOX", qresync=c.QresyncParams(1, 2, S(((1, 9),)),
                                                (S(((1, 1), (5, 5))), S(((1, 1), (7, 7))))))),
    (b"a FETCH 1:* (FLAGS) (CHANGEDSINCE 12345)",
     c.Fetch(False, S(((1, STAR),)), (A("FLAGS"), A("MODSEQ")), 12345)),
    (b"a UID FETCH 300:500 (FLAGS) (CHANGEDSINCE 12345 VANISHED)",
     c.Fetch(True, S(((300, 500),)), (A("UID"), A("FLAGS"), A("MODSEQ")), 12345, True)),
    (b"a FETCH 1 (MODSEQ EMAILID THREADID SAVEDATE PREVIEW)",
     c.Fetch(False, S(((1, 1),)), (A("MODSEQ"), A("EMAILID"), A("THREADID"), A("SAVEDATE"),
                                   A("PREVIEW")))),
    (b"a FETCH 1 (PREVIEW (LAZY))", c.Fetch(False, S(((1, 1),)), (A("PREVIEW", lazy=True),))),
    (b"a FETCH 1 PREVIEW (CHANGEDSINCE 3)",
     c.Fetch(False, S(((1, 1),)), (A("PREVIEW"), A("MODSEQ")), 3)),
    (b"a FETCH 2 (BINARY[1.2] BINARY.PEEK[]<0.10> BINARY.SIZE[3])",
     c.Fetch(False, S(((2, 2),)), (A("BINARY[]", c.Section((1, 2))),
                                   A("BINARY[]", c.Section(), True, (0, 10)),
                                   A("BINARY.SIZE", c.Section((3,)))))),
    (b"a UID STORE 6,4,8 (UNCHANGEDSINCE 12121231777) +FLAGS.SILENT (\\Deleted)",
     c.Store(True, S(((6, 6), (4, 4), (8, 8))), "add", True, ("\\Deleted",), 12121231777)),
    (b"a SEARCH MODSEQ 620162338", c.Search(False, c.SModseq(620162338))),
    (b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338', c.Search(False, c.SModseq(620162338))),
    (b"a SEARCH OLDER 3600 YOUNGER 60",
     c.Search(False, c.SAnd((c.SWithin(True, 3600), c.SWithin(False, 60))))),
    (b"a SEARCH SAVEDATESUPPORTED", c.Search(False, c.SSaveDate(None))),
    (b"a SEARCH EMAILID M6d99ac3275bb4e THREADID T64b478a75b7ea9",
     c.Search(False, c.SAnd((c.SObjectId("EMAILID", "M6d99ac3275bb4e"),
                             c.SObjectId("THREADID", "T64b478a75b7ea9"))))),
    (b"a SORT (REVERSE DATE SUBJECT) UTF-8 ALL",
     c.Sort(False, (c.SortKey("DATE", True), c.SortKey("SUBJECT")), "UTF-8", c.SAll())),
    (b"a UID SORT (DISPLAYFROM) US-ASCII SEEN",
     c.Sort(True, (c.SortKey("DISPLAYFROM"),), "US-ASCII", c.SFlag("\\Seen"))),
    (b"a THREAD ORDEREDSUBJECT UTF-8 SINCE 5-MAR-2000",
     c.Thread(False, "ORDEREDSUBJECT", "UTF-8", c.SDate("since", datetime.date(2000, 3, 5)))),
    (b"a CREATE Arc (USE (\\Archive))", c.Create(b"Arc", ("\\Archive",))),
    (b'a GETQUOTA ""', c.GetQuota(b"")),
    (b"a GETQUOTAROOT INBOX", c.GetQuotaRoot(b"INBOX")),
    (b'a SETQUOTA "" (STORAGE 512)', c.SetQuota(b"", (("STORAGE", 512),))),
    (b"a COMPRESS DEFLATE", c.Compress("DEFLATE")),
    (b"a NOTIFY NONE", c.Notify(None)),
    (b"a NOTIFY SET (personal (MessageNew MessageExpunge))",
     c.Notify((c.NotifyGroup("PERSONAL", (), (c.NotifyEvent("MESSAGENEW"),
                                              c.NotifyEvent("MESSAGEEXPUNGE"))),))),
    # Outside the selected mailbox any event combination only picks what STATUS reports
    # (accepted as Dovecot does).
    (b"a NOTIFY SET STATUS (mailboxes Lists (MessageExpunge))",
     c.Notify((c.NotifyGroup("MAILBOXES", (b"Lists",), (c.NotifyEvent("MESSAGEEXPUNGE"),)),),
              True)),
    (b"a NOTIFY SET (inboxes (FlagChange))",
     c.Notify((c.NotifyGroup("INBOXES", (), (c.NotifyEvent("FLAGCHANGE"),)),))),
    (b"a NOTIFY SET STATUS (mailboxes (INBOX Sent) NONE)",
     c.Notify((c.NotifyGroup("MAILBOXES", (b"INBOX", b"Sent"), None),), True)),
]


@pytest.mark.parametrize("data,expected", GOOD)
def test_good(data: bytes, expected: c.Command) -> None:
    assert cmd(data) == expected


def test_multiappend_literal8_and_utf8() -> None:
    """RFC 3502 several messages; RFC 3516 ~{n}; RFC 6855 UTF8 (~{n})."""
    got = cmd(b'a APPEND INBOX (\\Seen) {3}\r\nabc ~{2}\r\nx\x00 " 7-Feb-1994 21:52:25 -0800"'
              b" UTF8 (~{1}\r\nz)")
    assert isinstance(got, c.Append) and len(got.messages) == 3
    one, two, three = got.messages
    assert (one.flags, one.message, one.binary) == (("\\Seen",), b"abc", False)
    assert (two.message, two.binary, two.utf8) == (b"x\x00", True, False)
    assert three.date is not None and three.utf8 and three.message == b"z"


BAD: list[tuple[bytes, str]] = [
    (b"a SELECT INBOX (QRESYNC)", "expected a space"),
    (b"a SELECT INBOX (QRESYNC (0 1))", "zero"),
    (b"a SELECT INBOX (QRESYNC (1 0))", "zero"),
    (b"a SELECT INBOX (QRESYNC (1 1 1:*))", "explicit"),
    (b"a SELECT INBOX (CONDSTORE QRESYNC (1 1) QRESYNC (1 1))", "twice"),
    (b"a FETCH 1 FLAGS (CHANGEDSINCE 1 CHANGEDSINCE 2)", "twice"),
    (b"a FETCH 1 FLAGS ()", "empty"),
    (b"a FETCH 1 BINARY[TEXT]", "expected"),
    (b"a FETCH 1 (PREVIEW (LAZY)", "missing"),
    (b"a STORE 1 () +FLAGS (\\Seen)", "empty"),
    (b"a STORE 1 (UNCHANGEDSINCE 99999999999999999999) FLAGS ()", "range"),
    (b"a SEARCH MODSEQ", "missing"),
    (b'a SEARCH MODSEQ "/flags/x" other 5', "unexpected"),
    (b"a SEARCH YOUNGER 0", "zero"),
    (b"a SEARCH EMAILID ''", "object id"),
    (b"a SORT DATE UTF-8 ALL", "expected"),
    (b"a SORT (FROM) UTF-8", "missing"),
    (b"a THREAD NONE UTF-8 ALL", "unknown threading"),
    (b"a CREATE x (USE \\Drafts)", "expected"),
    (b"a CREATE x ()", "empty"),
    (b"a APPEND INBOX UTF8 ({3}\r\nabc)", "literal8"),
    (b"a COMPRESS", "missing"),
    (b"a NOTIFY SET STATUS", "missing"),
    (b"a NOTIFY SET (selected (MessageNew))", "together"),
    (b"a NOTIFY SET (selected-delayed (MessageExpunge FlagChange))", "together"),
    (b"a NOTIFY SET (selected (FlagChange))", "FlagChange needs"),
    (b"a GETQUOTAROOT", "missing"),
    (b"a SETQUOTA x (STORAGE)", "space"),
]


@pytest.mark.parametrize("data,fragment", BAD)
def test_bad(data: bytes, fragment: str) -> None:
    with pytest.raises(ParseError) as info:
        parse_bytes(data)
    assert fragment.lower() in info.value.message.lower()
    assert info.value.tag == "a"


def test_bounds_carry_limit() -> None:
    """Issue 7: bounds crossed are BAD [LIMIT] (the ParseError carries the code)."""
    with pytest.raises(ParseError) as info:
        parse_bytes(b"a SEARCH " + b" ".join([b"SEEN"] * (MAX_SEARCH_KEYS + 1)))
    assert info.value.code == "LIMIT"
    with pytest.raises(ParseError) as info:
        parse_bytes(b"a UID FETCH " + b",".join(b"%d" % n for n in range(1, 20_004, 2)) +
                    b" UID")
    assert info.value.code == "LIMIT"
    with pytest.raises(ParseError) as info:
        parse_bytes(b"a STORE 1 FLAGS (" + b" ".join(b"k%d" % i for i in range(101)) + b")")
    assert info.value.code == "LIMIT"
    assert parse_bytes(b"a UID FETCH 1:4294967295 UID").command == \
        c.Fetch(True, S(((1, 4294967295),)), (A("UID"),))


_COMMANDS = [b"SELECT INBOX ", b"FETCH 1 ", b"UID FETCH 1:* ", b"STORE 1 ", b"SEARCH ",
             b"SORT ", b"UID THREAD ", b"APPEND INBOX ", b"NOTIFY ", b"NOTIFY SET ",
             b"CREATE x ", b"SETQUOTA x ", b"GETQUOTA ", b"COMPRESS ", b"ENABLE "]
_PIECES = [b"(", b")", b" ", b"CONDSTORE", b"QRESYNC", b"CHANGEDSINCE", b"VANISHED",
           b"UNCHANGEDSINCE", b"MODSEQ", b"1:*", b"$", b"BINARY[1]", b"PREVIEW", b"LAZY",
           b"REVERSE", b"DATE", b"UTF-8", b"ALL", b"UTF8", b"~{1}\r\nx", b"{2+}\r\nab",
           b"SELECTED", b"MessageNew", b"MessageExpunge", b"NONE", b"STATUS", b"\"x\"",
           b"\\Seen", b"0", b"4294967296", b"\x00", b"\xff", b"USE", b"EMAILID", b"OLDER"]


@settings(max_examples=400, deadline=None)
@given(st.sampled_from(_COMMANDS),
       st.lists(st.sampled_from(_PIECES) | st.binary(max_size=8), max_size=25))
def test_arbitrary_arguments_raise_only_parse_error(command: bytes, pieces: list[bytes]) -> None:
    data = b"t " + command + b"".join(pieces)
    try:
        parse_bytes(data)
    except ParseError:
        pass


def test_deflate_transform_round_trip_and_bounds() -> None:
    """RFC 4978: raw deflate with a sync flush per write; garbage and bombs are errors."""
    server = DeflateTransform()
    client_in = zlib.decompressobj(-15)
    client_out = zlib.compressobj(6, zlib.DEFLATED, -15)
    wire = server.encode(b"* OK hello\r\n")
    assert client_in.decompress(wire) == b"* OK hello\r\n"       # complete at once
    sent = client_out.compress(b"a NOOP\r\n") + client_out.flush(zlib.Z_SYNC_FLUSH)
    assert server.decode(sent[:3]) + server.decode(sent[3:]) == b"a NOOP\r\n"
    with pytest.raises(CompressionError):
        DeflateTransform().decode(b"a NOOP\r\n" * 3)
    # A bomb: 8 MiB of zeros in ~8 KiB. It is handed out in bounded pieces, held back between.
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = bomb.compress(b"\0" * (8 * 1024 * 1024)) + bomb.flush(zlib.Z_SYNC_FLUSH)
    t = DeflateTransform()
    pieces = [t.decode(data)]
    while t.pending:
        pieces.append(t.decode(b""))
    assert max(len(p) for p in pieces) <= OUT_CHUNK
    assert sum(len(p) for p in pieces) == 8 * 1024 * 1024
