"""Every command through each real client library, over STARTTLS and implicit TLS, in both
protocol revisions (issue 3, "Tests that must exist"): imaplib and imapclient drive the same
scenario and the store is checked afterwards."""

from __future__ import annotations

import imaplib

import pytest
from imapclient import IMAPClient

from tests.imap.util import (
    MULTIPART,
    PASSWORD,
    TIMEOUT,
    get_mailbox,
    message,
    new_user,
    store_state,
)

MODES = [("starttls", False), ("implicit", False), ("starttls", True), ("implicit", True)]


def _ok(result: tuple[str, list[object]]) -> list[object]:
    typ, data = result
    assert typ == "OK", data
    return data


@pytest.mark.parametrize("tls,rev2", MODES)
def test_imaplib_every_command(srv, tls: str, rev2: bool) -> None:
    acct = new_user(srv)
    if tls == "implicit":
        m = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ssl_context(),
                              timeout=TIMEOUT)
    else:
        m = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=TIMEOUT)
        assert "LOGINDISABLED" in m.capabilities
        _ok(m.starttls(srv.ssl_context()))
    _ok(m.capability())
    _ok(m.noop())
    _ok(m._simple_command("ID", '("name" "imaplib")'))
    if rev2:
        _ok(m.authenticate("PLAIN", lambda _: f"\0{acct.address}\0{PASSWORD}".encode()))
        _ok(m.enable("IMAP4rev2"))
    else:
        _ok(m.login(acct.address, PASSWORD))
    _ok(m.namespace())
    _ok(m.create("Work/Reports"))
    _ok(m.rename("Work/Reports", "Work/Old"))
    _ok(m.subscribe("Work/Old"))
    assert any(b"Work/Old" in d for d in _ok(m.lsub()))  # type: ignore[operator]
    _ok(m.unsubscribe("Work/Old"))
    assert len(_ok(m.list())) == 8
    _ok(m.status("INBOX", "(MESSAGES UIDNEXT UIDVALIDITY UNSEEN RECENT SIZE DELETED)"))
    _ok(m.append("INBOX", "(\\Flagged)", imaplib.Time2Internaldate(1700000000), MULTIPART))
    _ok(m.append("INBOX", None, None, message("second")))
    _ok(m.append("INBOX", None, None, message("third")))
    assert _ok(m.select("INBOX")) == [b"3"]
    data = _ok(m.fetch("1:3", "(UID FLAGS INTERNALDATE RFC822.SIZE ENVELOPE BODYSTRUCTURE)"))
    assert len(data) == 3
    _ok(m.fetch("1", "(BODY.PEEK[1] BODY.PEEK[HEADER.FIELDS (Subject)] RFC822.HEADER)"))
    _ok(m.uid("FETCH", "1:*", "(FLAGS)"))
    _ok(m.store("2", "+FLAGS", "(\\Seen $Done)"))
    _ok(m.uid("STORE", "3", "-FLAGS", "(\\Seen)"))
    m._simple_command("SEARCH", "FLAGGED")
    _ok(m.uid("SEARCH", "ALL"))
    _ok(m.copy("1", "Archive"))
    _ok(m.uid("COPY", "2", "Archive"))
    _ok(m._simple_command("MOVE", "3", "Trash"))
    _ok(m.uid("MOVE", "2", "Junk"))
    _ok(m.store("1", "+FLAGS", "(\\Deleted)"))
    _ok(m.uid("EXPUNGE", "1"))
    _ok(m.check())
    _ok(m.expunge())
    _ok(m.close())
    assert _ok(m.select("Archive", readonly=True)) == [b"2"]
    _ok(m.unselect())
    _ok(m.delete("Work/Old"))
    assert m.logout()[0] == "BYE"
    assert store_state(srv, acct) == []
    assert [f for _, f in store_state(srv, acct, "Archive")] == [frozenset({"\\Flagged"}),
                                                                 frozenset({"\\Seen", "$Done"})]
    assert len(store_state(srv, acct, "Trash")) == len(store_state(srv, acct, "Junk")) == 1


@pytest.mark.parametrize("tls,rev2", MODES)
def test_imapclient_every_command(srv, tls: str, rev2: bool) -> None:
    acct = new_user(srv)
    c = IMAPClient("127.0.0.1", srv.port("imaps" if tls == "implicit" else "imap"),
                   ssl=tls == "implicit", ssl_context=srv.ssl_context(), timeout=TIMEOUT)
    if tls == "starttls":
        c.starttls(srv.ssl_context())
    assert b"IDLE" in c.capabilities()
    c.noop()
    assert c.id_({"name": "imapclient"})[0][:2] == (b"name", b"casella")
    if rev2:
        c.plain_login(acct.address, PASSWORD)
        assert c.enable("IMAP4rev2") == [b"IMAP4rev2"]
    else:
        c.login(acct.address, PASSWORD)
    assert c.namespace().personal == (("", "/"),)
    c.create_folder("Lists/python")
    c.rename_folder("Lists/python", "Lists/py")
    c.subscribe_folder("Lists/py")
    assert "Lists/py" in [f[2] for f in c.list_sub_folders()]
    c.unsubscribe_folder("Lists/py")
    assert len(c.list_folders()) == 8
    assert c.folder_status("INBOX", ["MESSAGES", "UNSEEN"])[b"MESSAGES"] == 0
    c.append("INBOX", MULTIPART, flags=[b"\\Flagged"])
    c.append("INBOX", message("second"))
    c.append("INBOX", message("third"))
    info = c.select_folder("INBOX")
    assert info[b"EXISTS"] == 3 and (b"RECENT" in info) != rev2
    fetched = c.fetch([1, 2, 3], ["FLAGS", "ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE",
                                  "INTERNALDATE", "BODY.PEEK[TEXT]<0.10>"])
    assert len(fetched) == 3
    c.add_flags([2], [b"\\Seen", b"$Done"])
    c.remove_flags([1], [b"\\Seen"])
    c.set_flags([3], [b"\\Answered"])
    if not rev2:
        assert c.search(["FLAGGED"]) == [1]
    c.copy([1], "Archive")
    c.move([3], "Trash")
    c.delete_messages([2])
    c.expunge([2])
    c.idle()
    c.idle_done()
    c.close_folder()
    c.select_folder("Archive", readonly=True)
    c.unselect_folder()
    c.delete_folder("Lists/py")
    c.logout()
    assert [u for u, _ in store_state(srv, acct)] == [1]
    assert get_mailbox(srv, acct, "Archive").messages == 1
    assert get_mailbox(srv, acct, "Trash").messages == 1
