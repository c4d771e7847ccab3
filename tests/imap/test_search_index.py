"""SEARCH with the search index (issue 21) over a real socket: TEXT, BODY and the header keys
(RFC 9051 §6.4.4, case-insensitive substring of the decoded text) answer the same for messages
the index holds (delivered now) and for messages it does not hold yet (handed back to the
backfill), and the same again once the backfill has indexed them. The server's own backfill is
stopped, so which messages are indexed is decided by the test alone."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from casella.store.indexer import SearchIndexer
from tests.conftest import RunningServer, build_test_config
from tests.imap.util import MULTIPART, Raw, deliver, message, new_user

B64 = (b"From: =?utf-8?q?Zo=C3=AB?= <zoe@example.net>\r\nTo: bob@example.test\r\n"
       b"Subject: Encoded body\r\nX-Ticket: Case-4711 OPEN\r\nMIME-Version: 1.0\r\n"
       b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
       b"RGllIFN0cmHDn2UgaXN0IMOWZGUuIFF1ZXR6YWxGZWF0aGVyIQ==\r\n")   # Die Straße ist Öde. QuetzalFeather!
HTML = (b"From: Ann <ann@example.org>\r\nSubject: Newsletter\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/html; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"<p>Caf=E9 &amp; cr=E8me, quetzal=\r\nfeather</p>\r\n")

CASES = [
    "TEXT quetzalfeather", "BODY QUETZALFEATHER", "TEXT budget", "BODY budget",
    "TEXT example.org", "BODY example.org", "TEXT zoë", "SUBJECT encoded", "FROM ann",
    "FROM zoe@example", "TO bob", 'HEADER X-Ticket "case-4711"', "TEXT gr", "BODY e",
    "OR SUBJECT meeting BODY café", "NOT TEXT quetzal", "TEXT quetzal UNSEEN",
    'TEXT "agenda: budget"', "BODY straße", "BODY STRASSE", "TEXT dave@example.org",
    "BODY inner", "TEXT nothing-like-this", "OR SENTBEFORE 1-Jan-2000 BODY quetzal",
    "NOT OR HEADER X-Ticket open TEXT newsletter",
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = RunningServer(build_test_config(tmp_path_factory.mktemp("imap-index") / "data",
                                             store={"search_index": True}))
    for service in server.server.background:
        if isinstance(service, SearchIndexer):
            server.run(service.stop())
    yield server
    server.stop()


def _search(raw: Raw, criteria: str) -> list[bytes]:
    if any(ord(ch) > 127 for ch in criteria):
        key, needle = criteria.rsplit(" ", 1)
        data = needle.encode()
        return raw.ok(b"SEARCH CHARSET UTF-8 %s {%d+}\r\n" % (key.encode(), len(data)) + data)
    return raw.ok(f"SEARCH {criteria}")


def test_indexed_and_not_yet_indexed_messages_answer_alike(srv: RunningServer) -> None:
    """Messages 1-4 are not indexed, 5-8 are (3 and 5, 4 and 6, 2 and 8 hold the same text);
    the answers are the scan's (the outer headers and the text parts: not an attached
    message's headers), before and after the backfill; needles of one or two characters are
    answered by the scan."""
    acct = new_user(srv)
    older = [message("Meeting notes", b"Agenda: budget\r\nquetzalfeather\r\n",
                     sender="Alice <alice@example.org>"), MULTIPART, B64, HTML]
    for data in older:
        deliver(srv, acct, data)
    # The first four as a store made before the index: waiting for the backfill.
    assert srv.run(srv.store.search_index_reset(acct.id)) == 4
    # Copies with a header more: bodies of their own, which the index holds.
    for data in [B64, HTML, message("Re: budget", b"no needle here\r\n"), MULTIPART]:
        deliver(srv, acct, b"X-Copy: 1\r\n" + data)
    mb = srv.run(srv.store.get_mailbox(acct.id, "INBOX"))
    assert mb is not None
    answer = srv.run(srv.store.search_index(mb.id, 100, [("text", "quetzal")]))
    assert answer.unindexed == frozenset({1, 2, 3, 4})
    expected = {
        "TEXT quetzalfeather": [1, 3, 4, 5, 6], "BODY QUETZALFEATHER": [1, 3, 4, 5, 6],
        "TEXT budget": [1, 7], "BODY budget": [1], "TEXT example.org": [1, 2, 4, 6, 7, 8],
        "BODY example.org": [], "TEXT zoë": [3, 5], "SUBJECT encoded": [3, 5],
        "FROM ann": [4, 6], "FROM zoe@example": [3, 5], "TO bob": [1, 2, 3, 5, 7, 8],
        'HEADER X-Ticket "case-4711"': [3, 5], "TEXT gr": [2, 8], "BODY straße": [3, 5],
        "BODY STRASSE": [3, 5], "TEXT dave@example.org": [], "BODY inner": [2, 8],
        "TEXT nothing-like-this": [], "BODY e": list(range(1, 9)),
        "OR SUBJECT meeting BODY café": [1, 4, 6], "NOT TEXT quetzal": [2, 7, 8],
        "TEXT quetzal UNSEEN": [1, 3, 4, 5, 6], 'TEXT "agenda: budget"': [1],
        "OR SENTBEFORE 1-Jan-2000 BODY quetzal": [1, 3, 4, 5, 6, 7],
        "NOT OR HEADER X-Ticket open TEXT newsletter": [1, 2, 7, 8],
    }
    assert set(expected) == set(CASES)
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("EXAMINE INBOX")
    before = {c: _search(raw, c) for c in CASES}
    for criteria, uids in expected.items():
        assert before[criteria] == [b"* SEARCH" + b"".join(b" %d" % u for u in uids)], criteria

    while srv.run(srv.store.search_index_backfill())[1]:
        pass
    answer = srv.run(srv.store.search_index(mb.id, 100, [("text", "quetzal")]))
    assert answer.unindexed == frozenset()
    after = {c: _search(raw, c) for c in CASES}
    assert after == before
    assert raw.ok("UID SEARCH BODY QUETZALFEATHER") == [b"* SEARCH 1 3 4 5 6"]
    raw.close()
