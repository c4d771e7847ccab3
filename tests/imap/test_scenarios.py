"""Whole-session scenarios: the RFC 3501 §8 sample session adapted to our data, and a "new user"
flow as Thunderbird runs it, checked afterwards from a second device."""

from __future__ import annotations

import re

from imapclient import IMAPClient
from imapclient.response_parser import parse_fetch_response

from casella.store.model import DeliveryTarget
from tests.imap.util import (
    Raw,
    deliver,
    get_mailbox,
    imapclient_login,
    message,
    new_user,
    store_state,
)

TERRY = (b"Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\r\n"
         b"From: Terry Gray <gray@cac.washington.edu>\r\n"
         b"Subject: IMAP4rev1 WG mtg summary and minutes\r\n"
         b"To: imap@cac.washington.edu\r\n"
         b"cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>\r\n"
         b"Message-Id: <B27397-0100000@cac.washington.edu>\r\n"
         b"MIME-Version: 1.0\r\n"
         b"Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n" +
         b"".join(b"Minutes line %02d of the working group meeting....\r\n" % i
                  for i in range(92)))


def test_rfc3501_section8_sample_session(srv) -> None:
    acct = new_user(srv)
    for i in range(1, 17):
        deliver(srv, acct, TERRY if i == 12 else message(f"old {i}"), flags=("\\Seen",))
    mb = get_mailbox(srv, acct)
    srv.run(srv.store.claim_recent(mb.id))      # an earlier session saw 1-16
    for i in (17, 18):
        deliver(srv, acct, message(f"new {i}"))
    raw = Raw(srv)
    assert raw.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    raw.send(b"a001 login " + acct.address.encode() + b" secret\r\n")
    assert raw.read_until("a001")[1].startswith(b"a001 OK ")
    raw.send(b"a002 select inbox\r\n")
    lines, tagged = raw.read_until("a002")
    assert b"* 18 EXISTS" in lines
    assert b"* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft)" in lines
    assert b"* 2 RECENT" in lines
    assert b"* OK [UNSEEN 17] Message 17 is first unseen" in lines
    assert b"* OK [UIDVALIDITY %d] UIDs valid" % mb.uidvalidity in lines
    assert tagged == b"a002 OK [READ-WRITE] SELECT completed"
    raw.send(b"a003 fetch 12 full\r\n")
    lines, tagged = raw.read_until("a003")
    assert len(lines) == 1 and tagged == b"a003 OK FETCH completed"
    assert re.fullmatch(
        rb'\* 12 FETCH \(FLAGS \(\\Seen\) INTERNALDATE "\d\d-\w\w\w-\d{4} \d\d:\d\d:\d\d '
        rb'\+0000" RFC822\.SIZE %d ENVELOPE \("Wed, 17 Jul 1996 02:23:25 -0700 \(PDT\)" '
        rb'"IMAP4rev1 WG mtg summary and minutes" '
        rb'\(\("Terry Gray" NIL "gray" "cac\.washington\.edu"\)\) '
        rb'\(\("Terry Gray" NIL "gray" "cac\.washington\.edu"\)\) '
        rb'\(\("Terry Gray" NIL "gray" "cac\.washington\.edu"\)\) '
        rb'\(\(NIL NIL "imap" "cac\.washington\.edu"\)\) '
        rb'\(\(NIL NIL "minutes" "CNRI\.Reston\.VA\.US"\)'
        rb'\("John Klensin" NIL "KLENSIN" "MIT\.EDU"\)\) NIL NIL '
        rb'"<B27397-0100000@cac\.washington\.edu>"\) '
        rb'BODY \("(?i:text)" "(?i:plain)" \("(?i:charset)" "(?i:us-ascii)"\) NIL NIL '
        rb'"(?i:7bit)" \d+ 92\)\)' % len(TERRY), lines[0]), lines[0]
    raw.send(b"a004 fetch 12 body[header]\r\n")
    lines, tagged = raw.read_until("a004")
    header = TERRY.split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert lines == [b"* 12 FETCH (BODY[HEADER] {%d}\r\n" % len(header) + header + b")"]
    assert tagged == b"a004 OK FETCH completed"
    raw.send(b"a005 store 12 +flags \\deleted\r\n")
    lines, tagged = raw.read_until("a005")
    assert lines == [b"* 12 FETCH (FLAGS (\\Seen \\Deleted))"]
    assert tagged.startswith(b"a005 OK ")
    raw.send(b"a006 logout\r\n")
    lines, tagged = raw.read_until("a006")
    assert lines[0].startswith(b"* BYE ") and tagged.startswith(b"a006 OK ")
    assert raw.closed()


def fetch_all(client: IMAPClient, items: str) -> dict[int, dict[bytes, object]]:
    """`FETCH 1:* items` by sequence number, parsed by imapclient's own response parser."""
    typ, data = client._imap.fetch("1:*", items)
    assert typ == "OK"
    return parse_fetch_response(data, True, False)


def test_new_user_flow_like_thunderbird(srv) -> None:
    acct = new_user(srv)
    for i in range(3):
        deliver(srv, acct, message(f"Welcome {i}", b"Hi!\r\n" * (i + 1)))
    c = imapclient_login(srv, acct)
    c.id_({"name": "Thunderbird", "version": "128.0"})
    folders = {f[2]: f[0] for f in c.list_folders()}
    assert b"\\Trash" in folders["Trash"] and b"\\Sent" in folders["Sent"]
    special = c._imap._simple_command("LIST", "(SPECIAL-USE)", '""', '"*"')
    assert special[0] == "OK"
    c.list_sub_folders()
    info = c.select_folder("INBOX")
    assert info[b"EXISTS"] == 3
    data = fetch_all(c, "(UID FLAGS ENVELOPE BODYSTRUCTURE)")
    assert sorted(d[b"UID"] for d in data.values()) == [1, 2, 3]
    assert data[1][b"ENVELOPE"].subject == b"Welcome 0"
    body = c.fetch([2], ["BODY.PEEK[]"])[2][b"BODY[]"]
    assert body.endswith(b"Hi!\r\nHi!\r\n")
    assert c.get_flags([2])[2] == (b"\\Recent",)           # PEEK did not set \Seen
    c.add_flags([2], [b"\\Seen"])
    c.move([3], "Trash")
    c.delete_messages([1])
    c.expunge()
    final = fetch_all(c, "(UID FLAGS)")
    c.logout()
    assert [(d[b"UID"], set(d[b"FLAGS"]) - {b"\\Recent"}) for d in final.values()] == \
        [(2, {b"\\Seen"})]
    # A second device sees the same state.
    phone = imapclient_login(srv, acct, tls="starttls")
    info = phone.select_folder("INBOX")
    assert info[b"EXISTS"] == 1
    assert fetch_all(phone, "(UID FLAGS)") == {1: {b"UID": 2, b"FLAGS": (b"\\Seen",),
                                                   b"SEQ": 1}}
    phone.select_folder("Trash", readonly=True)
    trash = fetch_all(phone, "(ENVELOPE)")
    assert [d[b"ENVELOPE"].subject for d in trash.values()] == [b"Welcome 2"]
    phone.logout()
    assert store_state(srv, acct) == [(2, frozenset({"\\Seen"}))]
    assert [u for u, _ in store_state(srv, acct, "Trash")] == [1]


def test_delivery_to_several_users_is_separate(srv) -> None:
    """One message delivered to two accounts (stored once) is seen and changed separately."""
    a = new_user(srv)
    b = new_user(srv)

    async def go() -> None:
        staged = await srv.store.blobs.stage(message("shared"))
        try:
            await srv.store.deliver(staged, [DeliveryTarget(a.id), DeliveryTarget(b.id)])
        finally:
            staged.discard()
    srv.run(go())
    ca = imapclient_login(srv, a)
    ca.select_folder("INBOX")
    ca.add_flags([1], [b"\\Deleted"])
    ca.expunge()
    ca.logout()
    cb = imapclient_login(srv, b)
    cb.select_folder("INBOX")
    assert cb.fetch([1], ["BODY.PEEK[HEADER.FIELDS (SUBJECT)]"])[1][
        b"BODY[HEADER.FIELDS (SUBJECT)]"] == b"Subject: shared\r\n\r\n"
    cb.logout()
