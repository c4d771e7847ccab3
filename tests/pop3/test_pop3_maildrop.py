"""The maildrop behind a POP3 session: the fixed snapshot, UIDL, DELE policies at QUIT, quota,
retention, download bookkeeping, byte-stuffing and large messages (RFC 1939 §6–§7, RFC 2449
§6.7, PROMISES D7, U5, U6, X8)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from casella.errors import StorageError
from casella.pop3.maildrop import uid_ranges
from tests.conftest import RunningServer
from tests.pop3.util import (
    Raw,
    account,
    add_user,
    deliver,
    deliver_all,
    inbox_uids,
    login,
    mailbox,
    message,
    uidl_map,
)

USER = "user@example.test"
DAY = 86400


def plain_server(make_server: Callable[..., Any], **pop3: Any) -> Any:
    return make_server(auth={"allow_plaintext_without_tls": True}, pop3=pop3)


def setup(make_server: Callable[..., Any], n: int = 3, **pop3: Any) -> tuple[Any, Any, list[int]]:
    srv = plain_server(make_server, **pop3)
    acct = add_user(srv, USER)
    uids = deliver_all(srv, acct, [message(f"m{i}") for i in range(n)])
    return srv, acct, uids


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_uid_ranges() -> None:
    """Only consecutive UIDs share a range, so a range never covers a message not asked for."""
    assert uid_ranges([5, 1, 2, 3, 7, 8, 10]) == [(1, 3), (5, 5), (7, 8), (10, 10)]
    assert uid_ranges([]) == []
    assert uid_ranges([4, 4]) == [(4, 4)]


# --- UIDL ----------------------------------------------------------------------------------


def test_uidl_is_uid_and_uidvalidity(make_server: Callable[..., Any]) -> None:
    """PROMISES U5: Dovecot's %08Xu%08Xv, 16 chars, agreeing with IMAP's UID/UIDVALIDITY."""
    srv, acct, uids = setup(make_server)
    v = mailbox(srv, acct).uidvalidity
    c = login(srv, USER)
    got = [l.split()[1] for l in c.uidl()[1]]
    assert got == [b"%08X%08X" % (u, v) for u in uids]
    assert c.uidl(2) == b"+OK 2 %08X%08X" % (uids[1], v)
    c.quit()


def test_uidl_stored_by_an_import_wins(make_server: Callable[..., Any]) -> None:
    """Issue 19, PROMISES U5: a message imported with the UIDL another server gave it is
    listed (UIDL and UIDL n) with that UIDL; the others keep the derived one."""
    from casella.store.model import ImportItem

    srv = plain_server(make_server)
    acct = add_user(srv, USER)
    inbox = mailbox(srv, acct)

    async def go() -> None:
        batch = [ImportItem(await srv.store.blobs.stage(message(f"i{n}")), uid=inbox.uidnext + n,
                            modseq=1, pop3_uidl="dovecot.1234" if n == 1 else None)
                 for n in range(3)]
        try:
            await srv.store.import_messages(inbox.id, batch)
        finally:
            for item in batch:
                item.blob.discard()
    srv.run(go())
    c = login(srv, USER)
    u = inbox.uidnext
    v = inbox.uidvalidity
    assert [line.split()[1] for line in c.uidl()[1]] == [
        b"%08X%08X" % (u, v), b"dovecot.1234", b"%08X%08X" % (u + 2, v)]
    assert c.uidl(2) == b"+OK 2 dovecot.1234"
    c.dele(1)
    assert c.uidl()[1] == [b"2 dovecot.1234", b"3 %08X%08X" % (u + 2, v)]
    c.quit()


def test_uidl_stable_across_sessions_and_restart(make_server: Callable[..., Any]) -> None:
    srv, _acct, _uids = setup(make_server)
    c = login(srv, USER)
    before = c.uidl()[1]
    c.quit()
    srv.stop()
    again = RunningServer(srv.config)
    try:
        c = login(again, USER)
        assert c.uidl()[1] == before
        c.quit()
    finally:
        again.stop()


# --- the snapshot --------------------------------------------------------------------------


def test_new_mail_not_shown_during_session(make_server: Callable[..., Any]) -> None:
    """RFC 1939 §8 / PROMISES U6: numbers and sizes are fixed for the session; mail arriving
    meanwhile appears at the next login."""
    srv, acct, _uids = setup(make_server)
    c = login(srv, USER)
    listing = c.list()[1]
    deliver(srv, acct, message("late"))
    assert c.stat()[0] == 3
    assert c.list()[1] == listing
    with pytest.raises(Exception, match="no message 4"):
        c.retr(4)
    c.quit()
    c = login(srv, USER)
    assert c.stat()[0] == 4
    assert b"Subject: late" in c.retr(4)[1]
    c.quit()


# --- DELE and QUIT -------------------------------------------------------------------------


def test_dropped_connection_after_dele_deletes_nothing(make_server: Callable[..., Any]) -> None:
    """PROMISES D7: without QUIT there is no UPDATE state."""
    srv, acct, uids = setup(make_server)
    c = Raw(srv.port("pop3"))
    c.login(USER)
    for i in (1, 2, 3):
        assert c.cmd(b"DELE %d" % i).startswith(b"+OK")
    c.close()
    wait_for(lambda: Raw(srv.port("pop3")).login(USER).startswith(b"+OK"), "lock release")
    assert inbox_uids(srv, acct) == uids


def test_rset_then_quit_deletes_nothing(make_server: Callable[..., Any]) -> None:
    srv, acct, uids = setup(make_server)
    c = login(srv, USER)
    c.dele(1)
    c.rset()
    assert c.quit() == b"+OK Logging out."
    assert inbox_uids(srv, acct) == uids


def test_quit_after_dele_removes_and_frees_quota(make_server: Callable[..., Any]) -> None:
    """RFC 1939 §6 and issue 4 §7: QUIT removes the marked messages and returns their space."""
    srv, acct, uids = setup(make_server)
    before = account(srv, USER)
    c = login(srv, USER)
    sizes = [int(l.split()[1]) for l in c.list()[1]]
    c.dele(1)
    c.dele(3)
    assert c.quit() == b"+OK Logging out, 2 messages deleted."
    after = account(srv, USER)
    assert inbox_uids(srv, acct) == [uids[1]]
    assert after.used_bytes == before.used_bytes - sizes[0] - sizes[2]
    assert after.used_messages == before.used_messages - 2


def test_dele_of_everything(make_server: Callable[..., Any]) -> None:
    srv, acct, _uids = setup(make_server, n=5)
    c = login(srv, USER)
    for i in range(1, 6):
        c.dele(i)
    assert c.stat() == (0, 0)
    assert c.list()[1] == []
    c.quit()
    assert inbox_uids(srv, acct) == []
    assert account(srv, USER).used_bytes == 0


def test_move_to_trash_policy(make_server: Callable[..., Any]) -> None:
    """pop3.delete = "move-to-trash": the messages go to the \\Trash mailbox at QUIT."""
    srv, acct, uids = setup(make_server, delete="move-to-trash")
    before = account(srv, USER)
    c = login(srv, USER)
    c.dele(2)
    assert c.quit() == b"+OK Logging out, 1 message moved to Trash."
    assert inbox_uids(srv, acct) == [uids[0], uids[2]]
    trash = mailbox(srv, acct, "Trash")
    assert trash.special_use == "\\Trash" and trash.messages == 1
    assert account(srv, USER).used_bytes == before.used_bytes  # still stored


def test_move_to_trash_uses_special_use_then_creates(make_server: Callable[..., Any]) -> None:
    """Trash is the mailbox marked \\Trash, else one named Trash, created when missing."""
    srv, acct, uids = setup(make_server, delete="move-to-trash")
    store = srv.store
    srv.run(store.delete_mailbox(acct.id, "Trash"))
    srv.run(store.create_mailbox(acct.id, "Deleted Items", "\\Trash"))
    c = login(srv, USER)
    c.dele(1)
    c.quit()
    assert mailbox(srv, acct, "Deleted Items").messages == 1
    srv.run(store.delete_mailbox(acct.id, "Deleted Items"))
    assert srv.run(store.get_mailbox(acct.id, "Trash")) is None
    c = login(srv, USER)
    c.dele(1)
    c.quit()
    trash = mailbox(srv, acct, "Trash")
    assert trash.messages == 1 and trash.special_use == "\\Trash"
    assert inbox_uids(srv, acct) == [uids[2]]


def test_hide_policy(make_server: Callable[..., Any]) -> None:
    """pop3.delete = "hide": gone from POP3 for ever, still in INBOX for IMAP."""
    srv, acct, uids = setup(make_server, delete="hide")
    before = account(srv, USER)
    c = login(srv, USER)
    keep = uidl_map(c)
    c.dele(1)
    assert c.quit() == b"+OK Logging out, 1 message hidden from POP3."
    assert inbox_uids(srv, acct) == uids
    assert account(srv, USER).used_bytes == before.used_bytes
    c = login(srv, USER)
    assert c.stat()[0] == 2
    assert set(uidl_map(c)) == set(keep) - {min(keep, key=keep.__getitem__)}
    c.quit()


def test_update_failure_reports_and_keeps_messages(make_server: Callable[..., Any],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A store failure in UPDATE answers -ERR [SYS/TEMP] (never +OK) and keeps the mail."""
    srv, acct, uids = setup(make_server)

    async def broken(*args: Any, **kw: Any) -> Any:
        raise StorageError("disk on fire")
    monkeypatch.setattr(srv.store, "remove_messages", broken)
    c = Raw(srv.port("pop3"))
    c.login(USER)
    c.cmd(b"DELE 1")
    reply = c.cmd(b"QUIT")
    assert reply.startswith(b"-ERR [SYS/TEMP] Some deleted messages were not removed")
    assert c.closed()
    monkeypatch.undo()
    assert inbox_uids(srv, acct) == uids


# --- retention -----------------------------------------------------------------------------


def _mark(srv: Any, acct: Any, uids: list[int], when: int) -> None:
    srv.run(srv.store.pop3_mark_retrieved(mailbox(srv, acct).id, uids, when))


@pytest.mark.parametrize("policy", ["expunge", "move-to-trash", "hide"])
def test_expire_days(make_server: Callable[..., Any], policy: str) -> None:
    """pop3.expire_days: messages first downloaded more than N days ago are removed at login
    (only hidden with delete = "hide"); others stay (RFC 2449 §6.7 EXPIRE)."""
    srv, acct, uids = setup(make_server, n=3, expire_days=30, delete=policy)
    now = int(time.time())
    _mark(srv, acct, [uids[0]], now - 31 * DAY)
    _mark(srv, acct, [uids[1]], now - 29 * DAY)
    c = login(srv, USER)
    assert c.stat()[0] == 2
    assert [b"Subject: m1" in c.retr(1)[1], b"Subject: m2" in c.retr(2)[1]] == [True, True]
    c.quit()
    if policy == "hide":
        assert inbox_uids(srv, acct) == uids
    else:
        assert inbox_uids(srv, acct) == uids[1:]
        assert mailbox(srv, acct, "Trash").messages == 0


def test_expire_zero_keeps_everything(make_server: Callable[..., Any]) -> None:
    srv, acct, uids = setup(make_server)
    _mark(srv, acct, uids, int(time.time()) - 3650 * DAY)
    c = login(srv, USER)
    assert c.stat()[0] == 3
    c.quit()


# --- download bookkeeping ------------------------------------------------------------------


def _retrieved(srv: Any, acct: Any) -> dict[int, int | None]:
    rows = srv.run(srv.store.pop3_list(mailbox(srv, acct).id))
    return {meta.uid: first for meta, first in rows}


def test_downloads_recorded_at_quit(make_server: Callable[..., Any]) -> None:
    """RETR, and TOP that reaches the end, count as a download; a short TOP does not."""
    srv, acct, uids = setup(make_server)
    c = login(srv, USER)
    c.retr(1)
    c.top(2, 1000)
    c.top(3, 0)
    assert all(v is None for v in _retrieved(srv, acct).values())  # batched until the end
    c.quit()
    got = _retrieved(srv, acct)
    assert got[uids[0]] is not None and got[uids[1]] is not None and got[uids[2]] is None
    assert abs(got[uids[0]] - time.time()) < 60


def test_downloads_recorded_when_connection_drops(make_server: Callable[..., Any]) -> None:
    """A completed download counts for expire_days even if the client never sends QUIT."""
    srv, acct, uids = setup(make_server)
    c = Raw(srv.port("pop3"))
    c.login(USER)
    assert c.cmd(b"RETR 2").startswith(b"+OK")
    c.multi()
    c.close()
    wait_for(lambda: _retrieved(srv, acct)[uids[1]] is not None, "download record")
    assert _retrieved(srv, acct)[uids[0]] is None


def test_first_download_time_kept(make_server: Callable[..., Any]) -> None:
    srv, acct, uids = setup(make_server)
    first = int(time.time()) - 5 * DAY
    _mark(srv, acct, [uids[0]], first)
    c = login(srv, USER)
    c.retr(1)
    c.quit()
    assert _retrieved(srv, acct)[uids[0]] == first


# --- message bytes -------------------------------------------------------------------------

DOTTED = (b"Subject: dots\r\n\r\n.\r\n..\r\n.leading\r\n...three\r\nmiddle.dot\r\n"
          b". space\r\n\r\n.\r\nend\r\n")


def test_dot_stuffing_on_the_wire(make_server: Callable[..., Any]) -> None:
    """RFC 1939 §3: every line starting with "." is sent with one more; CRLF.CRLF ends."""
    srv = plain_server(make_server)
    acct = add_user(srv, USER)
    deliver(srv, acct, DOTTED)
    c = Raw(srv.port("pop3"))
    c.login(USER)
    assert c.cmd(b"RETR 1") == b"+OK %d octets" % len(DOTTED)
    wire = c.raw_until_terminator()
    assert wire == (b"Subject: dots\r\n\r\n..\r\n...\r\n..leading\r\n....three\r\n"
                    b"middle.dot\r\n.. space\r\n\r\n..\r\nend\r\n.\r\n")
    assert c.cmd(b"TOP 1 2").startswith(b"+OK")
    assert c.raw_until_terminator() == b"Subject: dots\r\n\r\n..\r\n...\r\n.\r\n"


def test_dot_stuffing_poplib_roundtrip(make_server: Callable[..., Any]) -> None:
    srv = plain_server(make_server)
    acct = add_user(srv, USER)
    deliver(srv, acct, DOTTED)
    c = login(srv, USER)
    assert b"\r\n".join(c.retr(1)[1]) + b"\r\n" == DOTTED
    c.quit()


def test_message_without_final_crlf(make_server: Callable[..., Any]) -> None:
    """A message lacking a final line end gets CRLF added before the terminator; its size
    stays the stored size."""
    srv = plain_server(make_server)
    acct = add_user(srv, USER)
    data = b"Subject: open end\r\n\r\nline one\r\n.no final newline"
    deliver(srv, acct, data)
    c = Raw(srv.port("pop3"))
    c.login(USER)
    assert c.cmd(b"LIST 1") == b"+OK 1 %d" % len(data)
    assert c.cmd(b"RETR 1") == b"+OK %d octets" % len(data)
    assert c.raw_until_terminator() == (b"Subject: open end\r\n\r\nline one\r\n"
                                        b"..no final newline\r\n.\r\n")
    assert c.cmd(b"TOP 1 5").startswith(b"+OK")
    assert c.raw_until_terminator().endswith(b"..no final newline\r\n.\r\n")


def test_large_message_streams_exactly(make_server: Callable[..., Any]) -> None:
    """A 3 MB message with dot lines across read-chunk boundaries arrives byte-exact."""
    srv = plain_server(make_server)
    acct = add_user(srv, USER)
    body = b"".join(b".%07d line that starts with a dot and goes on for a while\r\n" % i
                    if i % 3 == 0 else b"plain line %07d ......................................\r\n"
                    % i for i in range(50000))
    data = b"Subject: big\r\n\r\n" + body
    assert len(data) > 2_500_000
    deliver(srv, acct, data)
    c = login(srv, USER)
    resp, got, _octets = c.retr(1)
    assert resp == b"+OK %d octets" % len(data)
    assert b"\r\n".join(got) + b"\r\n" == data
    _, top, _ = c.top(1, 3)
    assert top == [b"Subject: big", b"", (b".0000000 line that starts with a dot and goes on "
                   b"for a while"), body.split(b"\r\n")[1], body.split(b"\r\n")[2]]
    c.quit()


def test_empty_body_and_header_only(make_server: Callable[..., Any]) -> None:
    srv = plain_server(make_server)
    acct = add_user(srv, USER)
    deliver_all(srv, acct, [b"Subject: header only\r\n", b"Subject: x\r\n\r\n"])
    c = login(srv, USER)
    assert c.retr(1)[1] == [b"Subject: header only"]
    assert c.top(1, 0)[1] == [b"Subject: header only"]
    assert c.retr(2)[1] == [b"Subject: x", b""]
    c.quit()


# --- shutdown ------------------------------------------------------------------------------


def test_server_shutdown_says_goodbye_and_deletes_nothing(make_server: Callable[..., Any]
                                                          ) -> None:
    srv, acct, _uids = setup(make_server)
    c = Raw(srv.port("pop3"))
    c.login(USER)
    c.cmd(b"DELE 1")
    data_dir = srv.config
    srv.stop()
    assert c.line() == b"-ERR [SYS/TEMP] Server shutting down; try again shortly."
    assert c.closed()
    again = RunningServer(data_dir)
    try:
        assert len(inbox_uids(again, acct)) == 3
    finally:
        again.stop()
