"""Identity and metadata extensions over real sockets, with their RFCs' examples adapted:
OBJECTID (RFC 8474: EMAILID shared by copies, THREADID from References, SEARCH EMAILID /
THREADID), SAVEDATE (RFC 8514), PREVIEW (RFC 8970, LAZY included), UTF8=ACCEPT (RFC 6855:
UTF-8 mailbox names both ways, APPEND with the UTF8 data extension, UTF-8 search strings)."""

from __future__ import annotations

import re
import time

from tests.imap.util import MULTIPART, Raw, deliver, message, new_user


def items(line: bytes, name: bytes) -> bytes:
    m = re.search(name + rb" \(([^)]*)\)", line)
    assert m, (name, line)
    return m.group(1)


def test_emailid_threadid_rfc8474(srv) -> None:
    """RFC 8474 §5, §6: EMAILID is the same for a message and its copy and differs between
    messages; a reply shares its parent's THREADID; SEARCH EMAILID / THREADID find them."""
    acct = new_user(srv)
    deliver(srv, acct, message("root"))
    deliver(srv, acct, message("reply", extra=b"In-Reply-To: <root@example.org>\r\n"))
    deliver(srv, acct, message("other"))
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("SELECT INBOX")
    lines = raw.ok("FETCH 1:3 (EMAILID THREADID)")
    eids = [items(x, b"EMAILID") for x in lines]
    tids = [items(x, b"THREADID") for x in lines]
    assert len(set(eids)) == 3 and all(re.fullmatch(rb"M[0-9a-f]{24}", e) for e in eids)
    assert tids[0] == tids[1] != tids[2]
    raw.ok("COPY 1 Archive")
    raw.ok("SELECT Archive")
    (copy,) = raw.ok("FETCH 1 (EMAILID THREADID)")
    assert items(copy, b"EMAILID") == eids[0] and items(copy, b"THREADID") == tids[0]
    raw.ok("SELECT INBOX")
    assert raw.ok(f"SEARCH EMAILID {eids[2].decode()}") == [b"* SEARCH 3"]
    assert raw.ok(f"SEARCH THREADID {tids[0].decode()}") == [b"* SEARCH 1 2"]
    assert raw.ok("SEARCH EMAILID Mnothing") == [b"* SEARCH"]
    _, tagged = raw.command("SEARCH EMAILID bad!id")
    assert b" BAD " in tagged
    raw.close()


def test_savedate_rfc8514(srv) -> None:
    """RFC 8514 §4.1: SAVEDATE is when the message was saved into this mailbox: an APPEND with
    an old internal date keeps a new save date; COPY gives the copy its own."""
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    data = message("dated")
    raw.send(b'a1 APPEND INBOX "01-Jan-2001 00:00:00 +0000" {%d+}\r\n' % len(data) + data +
             b"\r\n")
    assert raw.line().startswith(b"a1 OK")
    raw.ok("SELECT INBOX")
    (line,) = raw.ok("FETCH 1 (INTERNALDATE SAVEDATE)")
    assert b'INTERNALDATE "01-Jan-2001 00:00:00 +0000"' in line
    saved = re.search(rb'SAVEDATE "(\d+)-(\w+)-(\d{4})', line)
    assert saved and int(saved.group(3)) == time.gmtime().tm_year
    raw.close()


def test_preview_rfc8970(srv) -> None:
    """RFC 8970 §3: PREVIEW is the start of the first text part, whitespace folded; LAZY gets
    it too (it was computed at delivery); no text part means an empty preview."""
    acct = new_user(srv)
    deliver(srv, acct, message("p", body=b"Hello   there,\r\n\r\nsee you  soon.\r\n"))
    deliver(srv, acct, MULTIPART)
    deliver(srv, acct, b"From: a@x\r\nContent-Type: image/png\r\n\r\n\x89PNG\r\n")
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("SELECT INBOX")
    assert raw.ok("FETCH 1 (PREVIEW)") == [b'* 1 FETCH (PREVIEW "Hello there, see you soon.")']
    (line,) = raw.ok("FETCH 2 (PREVIEW (LAZY))")
    assert "Schöne Grüße aus Zürich".encode() in line
    assert raw.ok("FETCH 3 (PREVIEW)") == [b'* 3 FETCH (PREVIEW "")']
    assert raw.ok("FETCH 1 FLAGS") == [b"* 1 FETCH (FLAGS (\\Recent))"]     # no \Seen
    _, tagged = raw.command("FETCH 1 (PREVIEW (FUZZY))")
    assert b" BAD " in tagged
    raw.close()


def test_utf8_accept_rfc6855(srv) -> None:
    """RFC 6855 §3-4: after ENABLE UTF8=ACCEPT mailbox names are UTF-8 both ways (others still
    see modified UTF-7), APPEND takes UTF8 (~{n}), search strings are UTF-8."""
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    assert raw.ok("ENABLE UTF8=ACCEPT") == [b"* ENABLED UTF8=ACCEPT"]
    name = "Größe & Co".encode()
    raw.send(b"a1 CREATE {%d+}\r\n" % len(name) + name + b"\r\n")
    assert raw.line().startswith(b"a1 OK")
    lines = raw.ok('LIST "" "Gr*"')
    assert lines == [b'* LIST (\\HasNoChildren) "/" {%d}\r\n' % len(name) + name]
    data = ("From: a@x\r\nSubject: Grüße\r\n\r\nÜbermorgen\r\n").encode()
    raw.send(b"a2 APPEND {%d+}\r\n" % len(name) + name + b" UTF8 (~{%d+}\r\n" % len(data) +
             data + b")\r\n")
    assert raw.line().startswith(b"a2 OK [APPENDUID")
    raw.send(b"a3 SELECT {%d+}\r\n" % len(name) + name + b"\r\n")
    assert raw.read_until("a3")[1].startswith(b"a3 OK")
    raw.send(b"a4 SEARCH SUBJECT {%d+}\r\n" % len("grüße".encode()) + "grüße".encode() +
             b"\r\n")
    assert raw.read_until("a4")[0] == [b"* SEARCH 1"]
    raw.close()
    other = Raw(srv)
    other.login(acct)
    assert other.ok('LIST "" "Gr*"') == [b'* LIST (\\HasNoChildren) "/" "Gr&APYA3w-e &- Co"']
    other.close()
