"""Message commands over real sockets (RFC 9051 §6.3.2, §6.3.12, §6.4; RFC 4315; RFC 6851):
SELECT/EXAMINE, APPEND (flags, date, literals, limits, quota), FETCH (every item, sections,
partials, implicit \\Seen), STORE, COPY, MOVE, EXPUNGE, UID EXPUNGE, CLOSE, UNSELECT, CHECK.
Every mutating command is checked against the store (the truth)."""

from __future__ import annotations

import pytest

from tests.imap.util import (
    MULTIPART,
    Raw,
    deliver,
    fetch_map,
    get_mailbox,
    imapclient_login,
    imaplib_login,
    message,
    new_user,
    store_state,
)


def selected(raw: Raw, command: str = "SELECT INBOX") -> tuple[list[bytes], bytes]:
    lines, tagged = raw.command(command)
    assert b" OK " in tagged, tagged
    return lines, tagged


def test_select_and_examine_responses(srv) -> None:
    """RFC 3501 §6.3.1: FLAGS, EXISTS, RECENT, UNSEEN, PERMANENTFLAGS, UIDNEXT, UIDVALIDITY."""
    acct = new_user(srv)
    deliver(srv, acct, message("a"), flags=("\\Seen",))
    deliver(srv, acct, message("b"), flags=("$Important",))
    mb = get_mailbox(srv, acct)
    raw = Raw(srv)
    raw.login(acct)
    lines, tagged = selected(raw, "EXAMINE INBOX")
    assert tagged.endswith(b"OK [READ-ONLY] EXAMINE completed")
    assert b"* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $Important)" in lines
    assert b"* OK [PERMANENTFLAGS ()] No permanent flags permitted" in lines
    assert b"* 2 EXISTS" in lines and b"* 2 RECENT" in lines
    assert b"* OK [UNSEEN 2] Message 2 is first unseen" in lines
    assert b"* OK [UIDVALIDITY %d] UIDs valid" % mb.uidvalidity in lines
    assert b"* OK [UIDNEXT 3] Predicted next UID" in lines
    lines, tagged = selected(raw)
    assert tagged.endswith(b"OK [READ-WRITE] SELECT completed")
    assert (b"* OK [PERMANENTFLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $Important "
            b"\\*)] Flags permitted") in lines
    assert b"* 2 RECENT" in lines
    raw.close()
    # PROMISES X5: \Recent belongs to exactly one session; the claim was made above.
    raw = Raw(srv)
    raw.login(acct)
    lines, _ = selected(raw)
    assert b"* 0 RECENT" in lines
    _, tagged = raw.command("SELECT nothing")
    assert b"NO [NONEXISTENT]" in tagged
    _, tagged = raw.command("FETCH 1 FLAGS")
    assert b"BAD" in tagged        # a failed SELECT leaves no mailbox selected
    raw.close()


def test_append_with_flags_date_and_appenduid(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    data = message("appended")
    _, tagged = raw.command(b'APPEND Drafts (\\Draft \\Seen $Todo) '
                                b'"07-Feb-1994 21:52:25 -0800" {%d+}\r\n' % len(data) + data)
    mb = get_mailbox(srv, acct, "Drafts")
    assert tagged.endswith(b"OK [APPENDUID %d 1] APPEND completed" % mb.uidvalidity)
    assert store_state(srv, acct, "Drafts") == [(1, frozenset({"\\Draft", "\\Seen", "$Todo"}))]
    selected(raw, "SELECT Drafts")
    got = fetch_map(raw.ok("FETCH 1 (INTERNALDATE RFC822.SIZE BODY.PEEK[])"))
    assert b'INTERNALDATE "08-Feb-1994 05:52:25 +0000"' in got[1]
    assert b"RFC822.SIZE %d" % len(data) in got[1] and got[1].endswith(data)
    _, tagged = raw.command(b"APPEND Nowhere {3+}\r\nabc")
    assert b"NO [TRYCREATE]" in tagged
    _, tagged = raw.command(b"APPEND INBOX {0+}\r\n")
    assert b" NO " in tagged
    raw.close()


def test_append_synchronising_literal_and_bare_lf(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    body = b"Subject: lf only\nFrom: x@example.org\n\nline one\nline two\n"
    raw.send(b"a APPEND INBOX {%d}\r\n" % len(body))
    assert raw.line() == b"+ OK"
    raw.send(body + b"\r\n")
    tagged = raw.line()
    assert b"APPENDUID" in tagged
    selected(raw)
    got = fetch_map(raw.ok("FETCH 1 BODY.PEEK[]"))
    assert got[1].endswith(body.replace(b"\n", b"\r\n"))
    raw.close()


def test_append_to_selected_mailbox_sends_exists(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    selected(raw)
    data = message("x")
    lines, tagged = raw.command(b"APPEND INBOX {%d+}\r\n" % len(data) + data)
    assert b"* 1 EXISTS" in lines and b"OK [APPENDUID" in tagged
    raw.close()


def test_append_too_big_and_over_quota(make_server) -> None:
    """PROMISES P2, Q2, Q5: refused before `+`; a LITERAL+ body is read and dropped."""
    server = make_server(limits={"max_message_size": "2K"})
    acct = new_user(server, quota=3000)
    raw = Raw(server)
    raw.login(acct)
    raw.send(b"a APPEND INBOX {5000}\r\n")
    assert raw.line().startswith(b"a NO [TOOBIG]")       # no "+" came first
    big = b"x" * 5000
    raw.send(b"b APPEND INBOX {5000+}\r\n" + big + b"\r\nc NOOP\r\n")
    assert raw.line().startswith(b"b NO [TOOBIG]")
    assert raw.line().startswith(b"c OK")                # the body was not read as commands
    ok = message("fits", b"y" * 1500)
    _, tagged = raw.command(b"APPEND INBOX {%d+}\r\n" % len(ok) + ok)
    assert b"OK [APPENDUID" in tagged
    raw.send(b"d APPEND INBOX {%d}\r\n" % len(ok))
    assert raw.line().startswith(b"d NO [OVERQUOTA]")
    raw.send(b"e APPEND INBOX {%d+}\r\n" % len(ok) + ok + b"\r\n")
    assert raw.line().startswith(b"e NO [OVERQUOTA]")
    assert len(store_state(server, acct)) == 1
    caps = raw.ok("CAPABILITY")[0]
    assert b"APPENDLIMIT=2048" in caps
    raw.close()


def test_large_message_streams_both_ways(srv) -> None:
    """Over 64 KiB the APPEND body goes straight to the blob store; BODY[] streams back."""
    acct = new_user(srv)
    body = b"".join(b"line %06d of a long message\r\n" % i for i in range(40000))
    data = message("big", body)
    m = imaplib_login(srv, acct)
    typ, resp = m.append("INBOX", None, None, data)
    assert typ == "OK"
    m.select("INBOX")
    typ, resp = m.fetch("1", "(RFC822.SIZE BODY.PEEK[])")
    assert resp[0][1] == data
    typ, resp = m.fetch("1", "(BODY.PEEK[TEXT]<300000.100>)")
    assert resp[0][0].endswith(b"BODY[TEXT]<300000> {100}")
    assert resp[0][1] == body[300000:300100]
    m.logout()


def test_fetch_every_item(srv) -> None:
    acct = new_user(srv)
    deliver(srv, acct, message("plain"))
    deliver(srv, acct, MULTIPART)
    raw = Raw(srv)
    raw.login(acct)
    selected(raw)
    got = fetch_map(raw.ok("FETCH 1:2 (UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODY "
                           "BODYSTRUCTURE)"))
    assert set(got) == {1, 2}
    assert got[1].startswith(b"UID 1 FLAGS (\\Recent) INTERNALDATE \"")
    assert b'ENVELOPE ("Mon, 7 Feb 1994 21:52:25 -0800" "plain" (("Alice" NIL "alice" ' \
           b'"example.org"))' in got[1]
    assert b'BODYSTRUCTURE (("text" "plain" ("charset" "utf-8") NIL NIL ' \
           b'"quoted-printable" 43 0 NIL NIL NIL NIL)("message" "rfc822"' in got[2]
    assert b'BODY (("text" "plain"' in got[2]
    got = fetch_map(raw.ok("FETCH 2 (BODY.PEEK[1] BODY.PEEK[1.MIME] BODY.PEEK[2.HEADER] "
                           "BODY.PEEK[2.TEXT] BODY.PEEK[2.HEADER.FIELDS (subject)] "
                           "BODY.PEEK[3] BODY.PEEK[HEADER.FIELDS.NOT (Content-Type From To "
                           "Date Subject)] BODY.PEEK[TEXT]<0.10>)"))
    one = got[2]
    assert b"BODY[1] {43}\r\nSch=C3=B6ne Gr=C3=BC=C3=9Fe aus Z=C3=BCrich" in one
    assert b"BODY[1.MIME] {88}\r\nContent-Type: text/plain; charset=utf-8\r\n" in one
    assert b"BODY[2.HEADER] {42}\r\nFrom: dave@example.org\r\nSubject: inner\r\n\r\n" in one
    assert b"BODY[2.TEXT] {10}\r\ninner body" in one
    assert b"BODY[2.HEADER.FIELDS (subject)] {18}\r\nSubject: inner\r\n\r\n" in one
    assert b'BODY[3] ""' in one
    assert b"BODY[HEADER.FIELDS.NOT (Content-Type From To Date Subject)] {21}\r\n" \
           b"MIME-Version: 1.0\r\n\r\n" in one
    assert b"BODY[TEXT]<0> {10}\r\npreamble\r\n" in one
    got = fetch_map(raw.ok("FETCH 1 (RFC822.HEADER RFC822.TEXT BODY.PEEK[HEADER]<0.5>)"))
    assert b"RFC822.HEADER {150}\r\nFrom: Alice" in got[1]
    assert b"RFC822.TEXT {14}\r\nHello there.\r\n" in got[1]
    assert b"BODY[HEADER]<0> {5}\r\nFrom:" in got[1]
    # RFC822.TEXT set \Seen, so FLAGS came along.
    assert got[1].endswith(b"FLAGS (\\Seen \\Recent)")
    assert store_state(srv, acct)[0][1] == frozenset({"\\Seen"})
    got = fetch_map(raw.ok("FETCH 1 (RFC822)"))
    assert got[1].startswith(b"RFC822 {164}\r\nFrom:") and b"FLAGS" not in got[1]
    for macro, items in (("FAST", 3), ("ALL", 4), ("FULL", 5)):
        line = raw.ok(f"FETCH 2 {macro}")[0]
        assert line.count(b"FLAGS") + line.count(b"INTERNALDATE") + line.count(b"SIZE") + \
            line.count(b"ENVELOPE") + line.count(b" BODY ") == items
    raw.close()


def test_fetch_seen_rules(srv) -> None:
    """BODY[] sets \\Seen (with FLAGS in the answer); BODY.PEEK and EXAMINE do not."""
    acct = new_user(srv)
    for i in range(3):
        deliver(srv, acct, message(f"m{i}"))
    raw = Raw(srv)
    raw.login(acct)
    selected(raw, "EXAMINE INBOX")
    raw.ok("FETCH 1 BODY[]")
    assert all(not flags for _, flags in store_state(srv, acct))
    selected(raw)
    got = fetch_map(raw.ok("FETCH 1:2 (BODY.PEEK[] FLAGS)"))
    assert b"\\Seen" not in got[1]
    got = fetch_map(raw.ok("FETCH 2 (FLAGS BODY[TEXT])"))
    assert got[2].startswith(b"FLAGS (\\Seen \\Recent) BODY[TEXT]")
    assert got[2].count(b"FLAGS") == 1
    assert [bool(f) for _, f in store_state(srv, acct)] == [False, True, False]
    lines, _ = raw.command("FETCH 3 BODY[HEADER]")
    assert b"FLAGS (\\Seen \\Recent)" in lines[0]
    raw.close()


def test_fetch_sequence_errors(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    selected(raw)
    for command in ("FETCH 1:* FLAGS", "FETCH * FLAGS", "STORE 1 +FLAGS (\\Seen)",
                    "COPY 1 Trash"):
        _, tagged = raw.command(command)
        assert b" BAD " in tagged, command          # RFC 9051 §9: * in an empty mailbox
    assert raw.ok("UID FETCH 1:* FLAGS") == []
    deliver(srv, acct, message("one"))
    raw.ok("NOOP")
    _, tagged = raw.command("FETCH 2 FLAGS")
    assert b" BAD " in tagged
    got = fetch_map(raw.ok("UID FETCH 1:999 FLAGS"))
    assert got[1].startswith(b"UID 1 ")
    assert raw.ok("UID FETCH 5:7 FLAGS") == []
    got = fetch_map(raw.ok("UID FETCH 5:* FLAGS"))     # n:* always includes the last UID
    assert 1 in got
    raw.close()


def test_store_forms_and_keywords(srv) -> None:
    acct = new_user(srv)
    for i in range(3):
        deliver(srv, acct, message(f"m{i}"))
    raw = Raw(srv)
    raw.login(acct)
    selected(raw)
    lines = raw.ok("STORE 1:2 +FLAGS (\\Flagged $Work)")
    assert b"* FLAGS (\\Seen \\Answered \\Flagged \\Deleted \\Draft $Work)" in lines
    assert b"* 1 FETCH (FLAGS (\\Flagged $Work \\Recent))" in lines
    assert any(b"PERMANENTFLAGS" in x and b"$Work" in x for x in lines)
    assert raw.ok("STORE 1 -FLAGS.SILENT ($Work)") == []
    lines = raw.ok("UID STORE 3 FLAGS (\\Answered \\Draft)")
    assert lines == [b"* 3 FETCH (UID 3 FLAGS (\\Answered \\Draft \\Recent))"]
    lines = raw.ok("STORE 2 FLAGS.SILENT ()")
    assert lines == []
    assert store_state(srv, acct) == [(1, frozenset({"\\Flagged"})), (2, frozenset()),
                                      (3, frozenset({"\\Answered", "\\Draft"}))]
    selected(raw, "EXAMINE INBOX")
    _, tagged = raw.command("STORE 1 +FLAGS (\\Seen)")
    assert b" NO " in tagged
    raw.close()


def test_copy_and_move_with_copyuid(srv) -> None:
    acct = new_user(srv)
    for i in range(5):
        deliver(srv, acct, message(f"m{i}"), flags=("\\Flagged",) if i == 0 else ())
    trash = get_mailbox(srv, acct, "Trash")
    raw = Raw(srv)
    raw.login(acct)
    selected(raw)
    _, tagged = raw.command("COPY 1:2 Trash")
    assert tagged.endswith(b"OK [COPYUID %d 1:2 1:2] COPY completed" % trash.uidvalidity)
    assert store_state(srv, acct, "Trash") == [(1, frozenset({"\\Flagged"})), (2, frozenset())]
    _, tagged = raw.command("COPY 1 Missing")
    assert b"NO [TRYCREATE]" in tagged
    lines, tagged = raw.command("MOVE 2,4 Trash")
    assert lines == [b"* OK [COPYUID %d 2,4 3:4] Moved" % trash.uidvalidity,
                     b"* 2 EXPUNGE", b"* 3 EXPUNGE"]
    assert tagged.endswith(b"OK MOVE completed")
    assert [u for u, _ in store_state(srv, acct)] == [1, 3, 5]
    lines, tagged = raw.command("UID MOVE 5 Archive")
    assert lines[1:] == [b"* 3 EXPUNGE"] and b"COPYUID" in lines[0]
    lines, tagged = raw.command("UID COPY 1,3 Junk")
    assert b"[COPYUID" in tagged and b" 1,3 1:2]" in tagged
    selected(raw, "EXAMINE INBOX")
    _, tagged = raw.command("MOVE 1 Trash")
    assert b" NO " in tagged
    raw.ok("COPY 1 Trash")                       # COPY from a read-only mailbox is fine
    raw.close()


def test_expunge_forms(srv) -> None:
    acct = new_user(srv)
    for i in range(6):
        deliver(srv, acct, message(f"m{i}"))
    raw = Raw(srv)
    raw.login(acct)
    selected(raw)
    raw.ok("STORE 2,3,5,6 +FLAGS.SILENT (\\Deleted)")
    # RFC 4315 §2.1: only the named UIDs.
    assert raw.ok("UID EXPUNGE 5:6") == [b"* 5 EXPUNGE", b"* 5 EXPUNGE"]
    # RFC 3501 §6.4.3 example: each number as it is after the previous EXPUNGE.
    assert raw.ok("EXPUNGE") == [b"* 2 EXPUNGE", b"* 2 EXPUNGE"]
    assert [u for u, _ in store_state(srv, acct)] == [1, 4]
    assert raw.ok("EXPUNGE") == []
    raw.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    selected(raw, "EXAMINE INBOX")
    _, tagged = raw.command("EXPUNGE")
    assert b" NO " in tagged
    raw.ok("CLOSE")                             # read-only: CLOSE expunges nothing
    assert len(store_state(srv, acct)) == 2
    selected(raw)
    raw.ok("UNSELECT")                          # UNSELECT never expunges
    assert len(store_state(srv, acct)) == 2
    selected(raw)
    assert raw.ok("CLOSE") == []                # CLOSE expunges silently
    assert [u for u, _ in store_state(srv, acct)] == [1]
    _, tagged = raw.command("FETCH 1 FLAGS")
    assert b"BAD" in tagged
    raw.close()


def test_check_noop_and_selected_mailbox_deleted(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("CREATE Temp")
    selected(raw, "SELECT Temp")
    raw.ok("CHECK")
    other = Raw(srv)
    other.login(acct)
    other.ok("DELETE Temp")
    raw.send(b"n NOOP\r\n")
    assert raw.line().startswith(b"* BYE")
    assert raw.closed()
    other.close()


def test_imaplib_message_commands(srv) -> None:
    acct = new_user(srv)
    m = imaplib_login(srv, acct, tls="starttls")
    for i in range(3):
        assert m.append("INBOX", "(\\Seen)" if i == 0 else None, None,
                        message(f"imaplib {i}"))[0] == "OK"
    typ, data = m.select("INBOX")
    assert typ == "OK" and data == [b"3"]
    typ, data = m.fetch("1:3", "(UID FLAGS)")
    assert typ == "OK" and len(data) == 3
    typ, data = m.uid("FETCH", "2", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert data[0][1] == b"Subject: imaplib 1\r\n\r\n"
    typ, data = m.store("2", "+FLAGS", "(\\Answered)")
    assert typ == "OK" and b"\\Answered" in data[0]
    typ, data = m.search(None, "UNSEEN")
    assert data == [b"2 3"]
    typ, data = m.uid("SEARCH", "ANSWERED")
    assert data == [b"2"]
    assert m.copy("1", "Archive")[0] == "OK"
    assert m.uid("MOVE", "3", "Trash")[0] == "OK"
    m.store("1", "+FLAGS", "(\\Deleted)")
    typ, data = m.expunge()
    assert data == [b"3", b"1"]   # imaplib also keeps the EXPUNGE that UID MOVE sent
    assert m.check()[0] == "OK"
    assert m.close()[0] == "OK"
    typ, data = m.select("INBOX", readonly=True)
    assert data == [b"1"]
    assert m.unselect()[0] == "OK"
    m.logout()
    assert [len(store_state(srv, acct, n)) for n in ("INBOX", "Archive", "Trash")] == [1, 1, 1]


def test_imapclient_message_commands(srv) -> None:
    acct = new_user(srv)
    c = imapclient_login(srv, acct, tls="starttls")
    uid = c.append("INBOX", MULTIPART, flags=[b"$Label"])
    assert uid.startswith(b"[APPENDUID")
    c.append("INBOX", message("second"))
    info = c.select_folder("INBOX")
    assert info[b"EXISTS"] == 2 and info[b"UIDNEXT"] == 3 and b"$Label" in info[b"FLAGS"]
    data = c.fetch([1, 2], ["UID", "FLAGS", "ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE",
                            "INTERNALDATE", "BODY.PEEK[1]"])
    assert data[1][b"ENVELOPE"].subject == b"=?utf-8?q?Gr=C3=BC=C3=9Fe?= with parts"
    assert data[1][b"BODYSTRUCTURE"].is_multipart
    assert data[1][b"BODY[1]"].startswith(b"Sch=C3=B6ne")
    assert data[2][b"FLAGS"] == (b"\\Recent",)
    c.add_flags([1], [b"\\Flagged"])
    c.remove_flags([1], [b"$Label"])
    assert c.get_flags([1])[1] == (b"\\Flagged", b"\\Recent")
    c.set_flags([2], [b"\\Seen"])
    assert c.search(["SEEN"]) == [2]
    assert c.search(["SUBJECT", "Grüße"], charset="UTF-8") == [1]
    assert c.search(["BODY", "Zürich"], charset="UTF-8") == [1]
    copied = c.copy([1], "Archive")
    assert copied is None or copied[0]
    c.move([2], "Trash")
    assert c.search("ALL") == [1]
    c.delete_messages([1])
    assert c.expunge() == (b"EXPUNGE completed", [(1, b"EXPUNGE")])
    assert c.search("ALL") == []
    c.unselect_folder()
    c.select_folder("Archive", readonly=True)
    assert c.fetch([1], ["FLAGS"])[1][b"FLAGS"] == (b"\\Flagged", b"\\Recent")
    c.close_folder()
    c.logout()
    assert len(store_state(srv, acct, "Archive")) == 1
    assert len(store_state(srv, acct)) == 0


def test_pipelined_commands(srv) -> None:
    """Several commands in one packet are answered in order (RFC 9051 §5.5)."""
    acct = new_user(srv)
    deliver(srv, acct, message("p"))
    raw = Raw(srv)
    raw.login(acct)
    raw.send(b"p1 SELECT INBOX\r\np2 FETCH 1 FLAGS\r\np3 STORE 1 +FLAGS (\\Seen)\r\n"
             b"p4 NOOP\r\n")
    tags = []
    while len(tags) < 4:
        line = raw.line()
        if not line.startswith(b"*"):
            tags.append(line.split(b" ")[0])
    assert tags == [b"p1", b"p2", b"p3", b"p4"]
    raw.close()


def test_literal_limits_for_other_commands(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    raw.send(b"a CREATE {70000}\r\n")
    assert raw.line().startswith(b"a BAD [TOOBIG]")
    raw.send(b"b CREATE {70000+}\r\n" + b"x" * 70000 + b"\r\nc NOOP\r\n")
    assert raw.line().startswith(b"b BAD [TOOBIG]")
    assert raw.line().startswith(b"c OK")
    raw.ok("NOOP")
    raw.close()


def test_overlong_line(srv) -> None:
    """A command line over 64 KiB: refused, nothing runs, and no byte of it becomes a command."""
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    raw.send(b"a CREATE " + b"x" * 70000 + b"\r\n")
    assert raw.line().startswith(b"a BAD [TOOBIG]")
    # A LITERAL+ announced at the end of an over-long line: its bytes are skipped (P2).
    raw.send(b"b CREATE " + b"y" * 70000 + b" {8+}\r\nc NOOP\r\n\r\nd NOOP\r\n")
    assert raw.line().startswith(b"b BAD [TOOBIG]")
    assert raw.line().startswith(b"d OK")          # "c NOOP\r\n" was the literal's bytes
    # A literal then an over-long continuation line.
    raw.send(b"e CREATE {3+}\r\nabc" + b"z" * 70000 + b"\r\nf NOOP\r\n")
    assert raw.line().startswith(b"e BAD [TOOBIG]")
    assert raw.line().startswith(b"f OK")
    raw.ok("NOOP")
    assert len(list(srv.run(srv.store.list_mailboxes(acct.id)))) == 6
    raw.close()


def test_bad_commands_keep_the_session(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    selected(raw)
    for command in ("FOO", "FETCH", "FETCH 1 (FLAGS", "SEARCH FOO", "STORE 1 XFLAGS x",
                    "UID NOOP", "COPY", "LIST"):
        _, tagged = raw.command(command)
        assert b" BAD " in tagged, command
    raw.send(b"\r\n")
    assert raw.line().startswith(b"* BAD")
    raw.ok("NOOP")
    raw.close()


def test_too_many_bad_commands_disconnects(make_server) -> None:
    """imap.max_bad_commands in a row, then BYE (PROMISES P5)."""
    raw = Raw(make_server(imap={"max_bad_commands": 3}))
    raw.send(b"a FOO\r\nb FOO\r\nc FOO\r\n")
    assert [raw.line()[:5] for _ in range(4)] == [b"a BAD", b"b BAD", b"c BAD", b"* BYE"]
    assert raw.closed()


@pytest.mark.parametrize("split", [1, 2, 3, 7, 64])
def test_commands_split_in_random_chunks(srv, split: int) -> None:
    """The same bytes, however TCP cuts them, give the same answers."""
    import socket as _s
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    data = message("chunked")
    stream = (b"x1 SELECT INBOX\r\nx2 APPEND INBOX (\\Seen) {%d+}\r\n" % len(data) + data +
              b"\r\nx3 FETCH 1 (FLAGS BODY.PEEK[HEADER.FIELDS (Subject)])\r\n")
    raw.sock.setsockopt(_s.IPPROTO_TCP, _s.TCP_NODELAY, 1)
    for i in range(0, len(stream), split):
        raw.send(stream[i:i + split])
    _, tagged = raw.read_until("x3")
    assert tagged.startswith(b"x3 OK")
    raw.close()


def test_selected_parent_deleted_elsewhere(srv) -> None:
    """A selected mailbox deleted by another session while it has children (it stays as a
    \\Noselect placeholder): the session is told with BYE instead of keeping stale UIDs."""
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("CREATE Parent/Child")
    deliver(srv, acct, message("in parent"), mailbox="Parent")
    selected(raw, "SELECT Parent")
    other = Raw(srv)
    other.login(acct)
    other.ok("DELETE Parent")
    raw.send(b"n NOOP\r\n")
    assert raw.line().startswith(b"* BYE")
    assert raw.closed()
    other.close()
