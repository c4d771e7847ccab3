"""CATENATE (RFC 4469) over real sockets: a message built from TEXT literals and IMAP URLs
(RFC 5092) of messages and parts of messages in the user's mailboxes, absolute or relative to
the selected mailbox (§3), copied as BODY.PEEK[section]<partial> gives them, without setting
\\Seen on the source (§3); NO [BADURL url] (§4.1), NO [TOOBIG] (§4.2) and NO [OVERQUOTA] for
the assembled message, with nothing stored (and MULTIAPPEND all or nothing, RFC 3502); a TEXT
literal over the limits refused before "+" (PROMISES P2, Q2). A second session sees the
result."""

from __future__ import annotations

import re

from tests.imap.util import (
    MULTIPART,
    Raw,
    deliver,
    get_mailbox,
    message,
    new_user,
    store_state,
)


def literal(data: bytes) -> bytes:
    return b"{%d+}\r\n" % len(data) + data


def body_of(raw: Raw, seq: int) -> bytes:
    """BODY.PEEK[] of a message of the selected mailbox, exactly."""
    (line,) = raw.ok(f"FETCH {seq} BODY.PEEK[]")
    m = re.match(rb"\* \d+ FETCH \(BODY\[\] \{(\d+)\}\r\n", line)
    assert m is not None, line
    data = line[m.end():]
    assert len(data) == int(m.group(1)) + 1 and data.endswith(b")")
    return data[:-1]


def section_of(raw: Raw, seq: int, section: str) -> bytes:
    (line,) = raw.ok(f"FETCH {seq} BODY.PEEK[{section}]")
    m = re.search(rb"\{(\d+)\}\r\n", line)
    assert m is not None, line
    return line[m.end():m.end() + int(m.group(1))]


def test_catenate_text_and_urls(srv) -> None:
    """RFC 4469 §3: TEXT literals and the octets the URLs name, in order. The URL parts are
    what BODY.PEEK[1.MIME] and BODY.PEEK[1] answer; the source keeps its flags (no \\Seen);
    the new message gets the APPEND's flags and APPENDUID; another session sees it."""
    acct = new_user(srv)
    deliver(srv, acct, MULTIPART)
    inbox = get_mailbox(srv, acct)
    drafts = get_mailbox(srv, acct, "Drafts")
    raw = Raw(srv)
    raw.login(acct)
    head = b"From: me@example.test\r\nSubject: forward\r\nMIME-Version: 1.0\r\n" \
           b"Content-Type: multipart/mixed; boundary=\"fw\"\r\n\r\n--fw\r\n"
    tail = b"\r\n--fw--\r\n"
    _, tagged = raw.command(
        b"APPEND Drafts (\\Seen) CATENATE (TEXT " + literal(head) +
        b' URL "/INBOX;UIDVALIDITY=%d/;UID=1/;SECTION=1.MIME"' % inbox.uidvalidity +
        b" URL /INBOX/;uid=1/;section=1 TEXT " + literal(tail) + b")")
    assert tagged.endswith(b" OK [APPENDUID %d 1] APPEND completed" % drafts.uidvalidity)
    assert store_state(srv, acct) == [(1, frozenset())]            # no \Seen on the source
    assert store_state(srv, acct, "Drafts") == [(1, frozenset({"\\Seen"}))]
    raw.ok("EXAMINE INBOX")
    mime, text = section_of(raw, 1, "1.MIME"), section_of(raw, 1, "1")
    assert mime.startswith(b"Content-Type: text/plain") and text.startswith(b"Sch=C3=B6ne")
    raw.ok("EXAMINE Drafts")
    assert body_of(raw, 1) == head + mime + text + tail
    other = Raw(srv)
    other.login(acct)
    assert other.ok("STATUS Drafts (MESSAGES)") == [b"* STATUS Drafts (MESSAGES 1)"]
    raw.close()
    other.close()


def test_catenate_relative_urls_partial_and_header_fields(srv) -> None:
    """RFC 4469 §3: with a mailbox selected, `;UID=n...` names a message of it; ;PARTIAL and
    HEADER.FIELDS cut as FETCH does (RFC 5092 §6). Appending to the selected mailbox announces
    the message (EXISTS). A MULTIAPPEND of two CATENATE messages and a plain one."""
    acct = new_user(srv)
    deliver(srv, acct, MULTIPART)
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("ENABLE IMAP4rev2")
    raw.ok("SELECT INBOX")
    plain = message("plain")
    lines, tagged = raw.command(
        b'APPEND INBOX CATENATE (URL ";UID=1/;SECTION=HEADER.FIELDS%20(Subject)" TEXT ' +
        literal(b"body: ") + b' URL ";uid=1/;section=2.TEXT/;partial=0.5")'
        b' CATENATE (URL ";UID=1/;PARTIAL=6") ' + literal(plain))
    assert lines == [b"* 4 EXISTS"] and b" OK [APPENDUID " in tagged and b" 2:4]" in tagged
    assert body_of(raw, 2) == (b"Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= with parts\r\n\r\n"
                               b"body: inner")
    assert body_of(raw, 3) == MULTIPART[6:]
    assert body_of(raw, 4) == plain
    raw.close()


def test_catenate_large_text_literal(srv) -> None:
    """A TEXT literal over 64 KiB is streamed like an APPEND message and copied from there;
    bare LF in it becomes CRLF as in any APPEND."""
    acct = new_user(srv)
    deliver(srv, acct, message("source", b"source body\r\n"))
    big = b"".join(b"line %06d of a long text part\n" % i for i in range(4000))
    raw = Raw(srv)
    raw.login(acct)
    head = b"Subject: big\r\n\r\n"
    _, tagged = raw.command(b"APPEND INBOX CATENATE (TEXT " + literal(head) + b" TEXT " +
                            literal(big) + b' URL "/INBOX/;UID=1/;SECTION=TEXT")')
    assert b" OK [APPENDUID " in tagged
    raw.ok("EXAMINE INBOX")
    assert body_of(raw, 2) == head + big.replace(b"\n", b"\r\n") + b"source body\r\n"
    raw.close()


def test_bad_urls_store_nothing(srv) -> None:
    """RFC 4469 §4.1: NO [BADURL url] for a wrong UIDVALIDITY, a missing UID, mailbox or
    section, a URL with a server, a relative URL with no mailbox selected; NO [TRYCREATE] for
    a missing target first; a MULTIAPPEND with one bad URL stores none of its messages."""
    acct = new_user(srv)
    deliver(srv, acct, MULTIPART)
    v = get_mailbox(srv, acct).uidvalidity
    raw = Raw(srv)
    raw.login(acct)
    for url, why in [
        (b"/INBOX;UIDVALIDITY=%d/;UID=1" % (v + 1), b"UIDVALIDITY"),
        (b"/INBOX/;UID=2", b"no message with that UID"),
        (b"/Nowhere/;UID=1", b"no such mailbox"),
        (b"/INBOX/;UID=1/;SECTION=7", b"no such section"),
        (b"/INBOX/;UID=1/;SECTION=1.HEADER", b"no such section"),
        (b"imap://me@example.test/INBOX/;UID=1", b"only URLs of a message of this account"),
        (b";UID=1", b"needs a selected mailbox"),
    ]:
        _, tagged = raw.command(b'APPEND Drafts CATENATE (TEXT {1+}\r\nx URL "' + url + b'")')
        assert tagged.split(b" ", 1)[1].startswith(b"NO [BADURL " + url + b"] "), tagged
        assert why in tagged, tagged
    _, tagged = raw.command(b'APPEND Drafts CATENATE (URL "/IN]BOX/;UID=1")')
    assert b"NO [BADURL /IN%5DBOX/;UID=1] " in tagged          # no "]" inside the code
    _, tagged = raw.command(b'APPEND Nowhere CATENATE (URL "/INBOX;UIDVALIDITY=1/;UID=9")')
    assert b"NO [TRYCREATE]" in tagged
    _, tagged = raw.command(b'APPEND Drafts CATENATE (URL "/INBOX/;UID=1") '
                            b'CATENATE (URL "/INBOX/;UID=5")')
    assert b"NO [BADURL /INBOX/;UID=5]" in tagged
    _, tagged = raw.command(b'APPEND Drafts CATENATE (URL "/INBOX/;UID=1/;PARTIAL=90000")')
    assert b"NO [CANNOT]" in tagged                            # nothing to store
    assert store_state(srv, acct, "Drafts") == []
    assert store_state(srv, acct) == [(1, frozenset())]
    raw.close()


def test_catenate_over_quota(srv) -> None:
    """Q2 with RFC 4469: the assembled message counts against the quota (NO [OVERQUOTA],
    nothing stored), and a TEXT literal that cannot fit is refused before "+" (P2)."""
    acct = new_user(srv, quota=len(MULTIPART) * 2 + 100)
    deliver(srv, acct, MULTIPART)
    raw = Raw(srv)
    raw.login(acct)
    _, tagged = raw.command(b'APPEND INBOX CATENATE (URL "/INBOX/;UID=1" URL "/INBOX/;UID=1")')
    assert b"NO [OVERQUOTA]" in tagged
    raw.send(b"a1 APPEND INBOX CATENATE (URL \"/INBOX/;UID=1\" TEXT {%d}\r\n"
             % (len(MULTIPART) * 2))
    assert raw.line().startswith(b"a1 NO [OVERQUOTA]")         # no "+": nothing sent
    _, tagged = raw.command(b'APPEND INBOX CATENATE (URL "/INBOX/;UID=1")')
    assert b" OK [APPENDUID " in tagged                        # one copy fits
    assert len(store_state(srv, acct)) == 2
    raw.close()


def test_catenate_too_big(make_server) -> None:
    """RFC 4469 §4.2: NO [TOOBIG] when the assembled message passes the size limit, nothing
    stored; a TEXT literal over the limit is refused before "+" (P2, Q5)."""
    server = make_server(limits={"max_message_size": "2K"})
    acct = new_user(server)
    source = message("source", b"s" * 1200)
    deliver(server, acct, source)
    raw = Raw(server)
    raw.login(acct)
    _, tagged = raw.command(b'APPEND INBOX CATENATE (URL "/INBOX/;UID=1" TEXT ' +
                            literal(b"x" * 900) + b")")
    assert b"NO [TOOBIG]" in tagged
    raw.send(b"a1 APPEND INBOX CATENATE (TEXT {3000}\r\n")
    assert raw.line().startswith(b"a1 NO [TOOBIG]")
    _, tagged = raw.command(b'APPEND INBOX CATENATE (URL "/INBOX/;UID=1" TEXT ' +
                            literal(b"x" * 100) + b")")
    assert b" OK [APPENDUID " in tagged
    assert len(store_state(server, acct)) == 2
    raw.close()
