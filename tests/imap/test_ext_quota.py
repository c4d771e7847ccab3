"""QUOTA (RFC 9208) and the quota behaviour of issue 9 over real sockets: the RFC's GETQUOTAROOT /
GETQUOTA examples, SETQUOTA refused, STATUS DELETED-STORAGE, APPEND / COPY / MOVE / SMTP delivery
near the limit (NO [OVERQUOTA], nothing half-stored), and one warning message in INBOX per 80 %
and 95 % crossing, with the texts from the [quota] config section."""

from __future__ import annotations

import re
import smtplib
import threading

from tests.imap.util import (
    Raw,
    deliver,
    get_mailbox,
    imaplib_login,
    message,
    new_user,
    store_state,
)

QUOTA = 20_000


def body(n: int) -> bytes:
    return b"x" * (n - 2) + b"\r\n"


def warnings(srv, acct) -> list[str]:
    """Subjects of the quota warnings in INBOX, oldest first."""
    mb = get_mailbox(srv, acct)
    metas = srv.run(srv.store.fetch_meta(mb.id, [(1, 1 << 32)]))
    headers = srv.run(srv.store.fetch_headers([m.blob_id for m in metas]))
    out = []
    for m in metas:
        h = headers[m.blob_id]
        if b"Auto-Submitted: auto-generated" in h and b"Message-ID: <quota-" in h:
            out.append(re.search(rb"Subject: (.*)\r\n", h).group(1).decode())
    return out


def test_getquotaroot_getquota_setquota(srv) -> None:
    """RFC 9208 §4.1.2 example: GETQUOTAROOT INBOX names the root and its QUOTA; GETQUOTA of
    that root; SETQUOTA is the administrator's (NO [NOPERM]); usage in 1024-octet units."""
    acct = new_user(srv, quota=512 * 1024)
    deliver(srv, acct, message("q", body=body(10_240)))
    used = srv.run(srv.store.get_account_by_id(acct.id)).used_bytes // 1024
    raw = Raw(srv)
    raw.login(acct)
    assert raw.ok("GETQUOTAROOT INBOX") == [b'* QUOTAROOT INBOX "User quota"',
                                            b'* QUOTA "User quota" (STORAGE %d 512)' % used]
    assert raw.ok('GETQUOTA "User quota"') == [b'* QUOTA "User quota" (STORAGE %d 512)' % used]
    _, tagged = raw.command('GETQUOTA "other"')
    assert b"NO [NONEXISTENT]" in tagged
    _, tagged = raw.command('SETQUOTA "User quota" (STORAGE 1024)')
    assert b"NO [NOPERM]" in tagged
    _, tagged = raw.command("GETQUOTAROOT Nowhere")
    assert b"NO [NONEXISTENT]" in tagged
    raw.close()


def test_message_quota_and_no_quota(srv) -> None:
    """RFC 9208 §5.2 MESSAGE resource; an account without limits has no quota root."""
    unlimited = new_user(srv, quota=0)
    raw = Raw(srv)
    raw.login(unlimited)
    assert raw.ok("GETQUOTAROOT INBOX") == [b"* QUOTAROOT INBOX"]
    raw.close()
    acct = new_user(srv, quota=0)
    srv.run(srv.store.set_quota(acct.address, 0, 10))
    deliver(srv, acct, message("one"))
    raw = Raw(srv)
    raw.login(acct)
    assert raw.ok('GETQUOTA "User quota"') == [b'* QUOTA "User quota" (MESSAGE 1 10)']
    raw.close()


def test_status_deleted_storage(srv) -> None:
    """RFC 9208 §4.3: DELETED-STORAGE is what EXPUNGE would free, in 1024-octet units."""
    acct = new_user(srv)
    for i in range(3):
        deliver(srv, acct, message(f"d{i}", body=body(3000)), flags=("\\Deleted",) if i else ())
    sizes = [m.size for m in srv.run(srv.store.fetch_meta(get_mailbox(srv, acct).id,
                                                          [(1, 10)]))]
    raw = Raw(srv)
    raw.login(acct)
    (line,) = raw.ok("STATUS INBOX (DELETED DELETED-STORAGE)")
    assert line == b"* STATUS INBOX (DELETED 2 DELETED-STORAGE %d)" % \
        ((sizes[1] + sizes[2] + 1023) // 1024)
    raw.close()


def test_append_copy_move_near_the_limit(srv) -> None:
    """Q2: APPEND and COPY that do not fit are NO [OVERQUOTA] and change nothing (a
    synchronising literal is refused before "+"); MOVE inside the account frees what it takes,
    so it works even at the limit; EXPUNGE always works (Q3)."""
    acct = new_user(srv, quota=QUOTA)
    deliver(srv, acct, message("big", body=body(12_000)))
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("SELECT INBOX")
    data = message("too much", body=body(9_000))
    raw.send(b"a1 APPEND INBOX {%d}\r\n" % len(data))
    assert raw.line().startswith(b"a1 NO [OVERQUOTA]")        # no "+": nothing sent
    raw.send(b"a2 APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
    assert raw.line().startswith(b"a2 NO [OVERQUOTA]")
    before = store_state(srv, acct)
    _, tagged = raw.command("COPY 1 Archive")
    assert b"NO [OVERQUOTA]" in tagged
    assert store_state(srv, acct) == before
    assert store_state(srv, acct, "Archive") == []
    raw.ok("MOVE 1 Archive")
    assert len(store_state(srv, acct, "Archive")) == 1
    raw.ok("SELECT Archive")
    raw.ok("STORE 1 +FLAGS (\\Deleted)")
    raw.ok("EXPUNGE")
    assert srv.run(srv.store.get_account_by_id(acct.id)).used_bytes == 0
    raw.close()


def test_warnings_once_per_crossing_for_append_copy_and_smtp(make_server) -> None:
    """Issue 9: one warning per threshold crossing upwards, whatever added the mail (IMAP
    APPEND, COPY, SMTP delivery); the subject comes from [quota] warning_subject."""
    server = make_server(quota={"warning_subject": "Mailbox {percent}% full ({address})"})
    acct = new_user(server, quota=100_000)
    m = imaplib_login(server, acct)
    assert m.append("INBOX", None, None, message("a", body=body(75_000)))[0] == "OK"   # 75 %
    assert warnings(server, acct) == []
    assert m.append("Archive", None, None, message("b", body=body(6_000)))[0] == "OK"  # 81 %
    assert warnings(server, acct) == [f"Mailbox 80% full ({acct.address})"]
    m.select("Archive")
    assert m.copy("1", "Drafts")[0] == "OK"                                          # 87 %
    assert len(warnings(server, acct)) == 1
    m.logout()
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as smtp:
        smtp.sendmail("someone@remote.example", [acct.address],
                      message("c", body=body(8_000), to=acct.address))              # 96 %
    assert warnings(server, acct) == [f"Mailbox 80% full ({acct.address})",
                                      f"Mailbox 95% full ({acct.address})"]
    text = server.run(server.store.read_blob(_warning_digest(server, acct)))
    assert b"is now 80% full" in text and b"Auto-Submitted: auto-generated" in text


def _warning_digest(server, acct) -> str:
    mb = get_mailbox(server, acct)
    metas = server.run(server.store.fetch_meta(mb.id, [(1, 1 << 32)]))
    statics = server.run(server.store.fetch_static([m.blob_id for m in metas]))
    for meta in metas:
        if b"Message-ID: <quota-80-" in statics[meta.blob_id].header:
            return statics[meta.blob_id].digest
    raise AssertionError("no 80% warning")


def test_concurrent_appends_warn_once(srv) -> None:
    """Two clients cross 80 % at the same moment: one warning, not two."""
    acct = new_user(srv, quota=100_000)
    deliver(srv, acct, message("base", body=body(78_000)))
    results: list[str] = []

    def add(n: int) -> None:
        m = imaplib_login(srv, acct)
        results.append(m.append("INBOX", None, None, message(f"c{n}", body=body(800)))[0])
        m.logout()
    threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["OK"] * 4
    assert len(warnings(srv, acct)) == 1
