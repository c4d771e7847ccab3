"""SEARCH and UID SEARCH (RFC 3501 §6.4.4, RFC 9051 §6.4.4): every key, CHARSET, decoded
case-insensitive substring matching on headers and text, ESEARCH (RETURN) and `$` (RFC 5182)."""

from __future__ import annotations

import pytest

from tests.imap.util import MULTIPART, Raw, deliver, message, new_user


@pytest.fixture(scope="module")
def box(srv):
    """Five messages with known flags, sizes, dates and text."""
    acct = new_user(srv)
    deliver(srv, acct, message("Meeting notes", b"Agenda: budget\r\n",
                               sender="Alice <alice@example.org>",
                               extra=b"Cc: carol@example.org\r\nX-Priority: 1\r\n"),
            flags=("\\Seen", "\\Answered"))
    deliver(srv, acct, MULTIPART, flags=("\\Flagged", "$Work"))
    deliver(srv, acct, message("Invoice 42", b"Please pay.\r\n" * 200,
                               sender="Billing <billing@shop.example>",
                               extra=b"Bcc: boss@example.test\r\n"), flags=("\\Deleted",))
    deliver(srv, acct, message("Draft reply", b"half written\r\n"), flags=("\\Draft",))
    deliver(srv, acct, b"Subject: no date\r\n\r\nbare\r\n")
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("EXAMINE INBOX")   # read-only: \Recent stays unclaimed, so all five are recent
    yield raw
    raw.close()


CASES = [
    ("ALL", [1, 2, 3, 4, 5]),
    ("SEEN", [1]), ("UNSEEN", [2, 3, 4, 5]),
    ("ANSWERED", [1]), ("UNANSWERED", [2, 3, 4, 5]),
    ("FLAGGED", [2]), ("UNFLAGGED", [1, 3, 4, 5]),
    ("DELETED", [3]), ("UNDELETED", [1, 2, 4, 5]),
    ("DRAFT", [4]), ("UNDRAFT", [1, 2, 3, 5]),
    ("KEYWORD $Work", [2]), ("KEYWORD $work", [2]), ("UNKEYWORD $Work", [1, 3, 4, 5]),
    ("RECENT", [1, 2, 3, 4, 5]), ("NEW", [2, 3, 4, 5]), ("OLD", []),
    ("FROM alice", [1, 4]), ("FROM ALICE@EXAMPLE", [1, 4]), ("FROM billing", [3]),
    ("TO bob", [1, 2, 3, 4]), ("CC carol", [1]), ("BCC boss", [3]),
    ("SUBJECT invoice", [3]), ('SUBJECT "draft REPLY"', [4]),
    ("SUBJECT grüße", None),                  # raw 8-bit atom: BAD
    ('SUBJECT "gr\u00fc\u00dfe"', [2]),       # RFC 2047 subject, decoded
    ("HEADER X-Priority 1", [1]), ('HEADER X-Priority ""', [1]), ('HEADER Date ""', [1, 2, 3, 4]),
    ("BODY budget", [1]), ("BODY BUDGET", [1]), ("BODY inner", [2]), ("BODY Meeting", []),
    ("TEXT Meeting", [1]), ("TEXT bare", [5]),
    ("LARGER 1000", [3]), ("SMALLER 200", [4, 5]),
    ("SENTON 7-Feb-1994", [1, 3, 4]), ("SENTBEFORE 1-Jan-2000", [1, 3, 4]),
    ("SENTSINCE 1-Mar-2022", [2, 5]),         # 5 has no Date: the internal date stands in
    ("SINCE 1-Jan-2000", [1, 2, 3, 4, 5]), ("BEFORE 1-Jan-2000", []),
    ("UID 2:3", [2, 3]), ("UID 4:*", [4, 5]), ("2,4:*", [2, 4, 5]), ("*", [5]),
    ("NOT SEEN", [2, 3, 4, 5]), ("OR SEEN FLAGGED", [1, 2]),
    ("OR (SEEN ANSWERED) (DRAFT)", [1, 4]), ("NOT (OR 1 2)", [3, 4, 5]),
    ("UNDELETED SMALLER 300 NOT DRAFT", [1, 5]),
    ("1:3 UNSEEN BODY pay", [3]),
]


@pytest.mark.parametrize("criteria,expected", CASES)
def test_search_key(box: Raw, criteria: str, expected: list[int] | None) -> None:
    lines, tagged = box.command(("SEARCH " + criteria).encode())
    if expected is None:
        assert b" BAD " in tagged
        return
    assert b" OK " in tagged, tagged
    assert lines == [b"* SEARCH" + b"".join(b" %d" % n for n in expected)]


HEADER_PROGRAMS = ["FROM alice", "FROM ALICE@EXAMPLE", "TO bob", "CC carol", "BCC boss",
                   "SUBJECT invoice", "SUBJECT gr\u00fc\u00dfe", "SUBJECT GRÜSSE",
                   "UNDELETED FROM alice", "SEEN SUBJECT meeting", "SINCE 1-Jan-2000 TO bob",
                   "LARGER 1000 FROM billing", "SUBJECT nothing-like-this", "FROM example TO bob"]


@pytest.mark.parametrize("criteria", HEADER_PROGRAMS)
def test_header_keys_answered_by_the_store_match_the_full_walk(box: Raw, criteria: str) -> None:
    """A conjunction of FROM/TO/CC/BCC/SUBJECT with flags, dates and sizes is answered by one
    store query; under NOT NOT the same program takes the message-by-message walk. Both
    give the same messages."""
    def search(program: str) -> list[bytes]:
        lines, tagged = box.command(b"SEARCH " + program.encode())
        assert b" OK " in tagged, tagged
        return lines

    if not criteria.isascii():
        # UTF-8 goes as a literal.
        key, _, needle = criteria.partition(" ")
        raw = needle.strip('"').encode()
        direct, _ = box.command(b"SEARCH CHARSET UTF-8 %s {%d+}\r\n" % (key.encode(), len(raw))
                                + raw)
        walked, _ = box.command(b"SEARCH CHARSET UTF-8 NOT NOT %s {%d+}\r\n"
                                % (key.encode(), len(raw)) + raw)
        assert direct == walked == [b"* SEARCH 2"]
        return
    assert search(criteria) == search(f"NOT NOT ({criteria})")


def test_charset(box: Raw) -> None:
    subject = "grüße".encode()
    lines, tagged = box.command(b"SEARCH CHARSET UTF-8 SUBJECT {%d+}\r\n" % len(subject) +
                                subject)
    assert lines == [b"* SEARCH 2"]
    lines, tagged = box.command(b"SEARCH CHARSET UTF-8 BODY {%d+}\r\n" % len("zürich".encode())
                                + "zürich".encode())
    assert lines == [b"* SEARCH 2"]
    assert box.ok("SEARCH CHARSET US-ASCII SUBJECT invoice") == [b"* SEARCH 3"]
    _, tagged = box.command("SEARCH CHARSET KOI8-R SUBJECT x")
    assert b"NO [BADCHARSET (US-ASCII UTF-8)]" in tagged


def test_uid_search(srv) -> None:
    acct = new_user(srv)
    for i in range(4):
        deliver(srv, acct, message(f"u{i}"))
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("SELECT INBOX")
    raw.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    raw.ok("EXPUNGE")
    assert raw.ok("UID SEARCH ALL") == [b"* SEARCH 2 3 4"]
    assert raw.ok("SEARCH ALL") == [b"* SEARCH 1 2 3"]
    assert raw.ok("UID SEARCH UID 3:*") == [b"* SEARCH 3 4"]
    assert raw.ok("SEARCH UID 3") == [b"* SEARCH 2"]
    raw.close()


def test_esearch_and_saved_result(srv) -> None:
    """RFC 4731 RETURN options, RFC 5182 SAVE and `$`."""
    acct = new_user(srv)
    for i in range(6):
        deliver(srv, acct, message(f"e{i}"), flags=("\\Flagged",) if i % 2 else ())
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("SELECT INBOX")
    assert raw.ok("SEARCH RETURN (MIN MAX COUNT) FLAGGED") == [
        b'* ESEARCH (TAG "t3") MIN 2 MAX 6 COUNT 3']
    assert raw.ok("UID SEARCH RETURN () FLAGGED") == [b'* ESEARCH (TAG "t4") UID ALL 2,4,6']
    assert raw.ok("SEARCH RETURN (COUNT) DRAFT") == [b'* ESEARCH (TAG "t5") COUNT 0']
    assert raw.ok("SEARCH RETURN (MIN) DRAFT") == [b'* ESEARCH (TAG "t6")']
    assert raw.ok("SEARCH RETURN (SAVE) FLAGGED") == []
    assert raw.ok("SEARCH $") == [b"* SEARCH 2 4 6"]
    assert raw.ok("SEARCH NOT $") == [b"* SEARCH 1 3 5"]
    lines = raw.ok("FETCH $ (UID)")
    assert [x.split(b" ")[1] for x in lines] == [b"2", b"4", b"6"]
    raw.ok("UID STORE $ +FLAGS.SILENT (\\Seen)")
    assert raw.ok("SEARCH SEEN") == [b"* SEARCH 2 4 6"]
    assert raw.ok("SEARCH RETURN (SAVE MIN) FLAGGED") == [b'* ESEARCH (TAG "t13") MIN 2']
    assert raw.ok("UID SEARCH UID $") == [b"* SEARCH 2"]
    raw.ok("SELECT INBOX")
    assert raw.ok("SEARCH $") == [b"* SEARCH"]          # $ is empty after SELECT
    raw.close()
