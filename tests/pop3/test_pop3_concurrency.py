"""POP3 and IMAP on one account at the same time, for each `pop3.delete` policy, and the "leave
a copy on the server" client that must never download a message twice (PROMISES X8, U5)."""

from __future__ import annotations

import imaplib
import poplib
from collections.abc import Callable
from typing import Any

import pytest

from tests.pop3.util import (
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


class ImapSide:
    """Changes another client makes while POP3 is connected: through imaplib when the IMAP
    listener is there, else through the same store calls IMAP makes."""

    def __init__(self, srv: Any, acct: Any, via: str) -> None:
        self.srv = srv
        self.acct = acct
        self.via = via
        self.imap: imaplib.IMAP4 | None = None
        if via == "imaplib":
            self.imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"), timeout=15)
            self.imap.login(USER, "secret")
            typ, _ = self.imap.select("INBOX")
            assert typ == "OK"

    def _inbox(self) -> int:
        return int(mailbox(self.srv, self.acct).id)

    def flag(self, uid: int, *flags: str) -> None:
        if self.imap is not None:
            typ, _ = self.imap.uid("STORE", str(uid), "+FLAGS", f"({' '.join(flags)})")
            assert typ == "OK"
        else:
            self.srv.run(self.srv.store.store_flags(self._inbox(), [(uid, uid)], "add", flags))

    def move(self, uid: int, dest: str, source: str = "INBOX") -> None:
        if self.imap is not None:
            if source != "INBOX":
                self.imap.select(source)
            typ, _ = self.imap.uid("MOVE", str(uid), dest)
            assert typ == "OK"
            if source != "INBOX":
                self.imap.select("INBOX")
        else:
            store = self.srv.store
            src = mailbox(self.srv, self.acct, source).id
            dst = mailbox(self.srv, self.acct, dest).id
            self.srv.run(store.move(src, [(uid, uid)], dst))

    def copy(self, uid: int, dest: str) -> None:
        if self.imap is not None:
            typ, _ = self.imap.uid("COPY", str(uid), dest)
            assert typ == "OK"
        else:
            dst = mailbox(self.srv, self.acct, dest).id
            self.srv.run(self.srv.store.copy(self._inbox(), [(uid, uid)], dst))

    def expunge(self, uid: int) -> None:
        self.flag(uid, "\\Deleted")
        if self.imap is not None:
            typ, _ = self.imap.expunge()
            assert typ == "OK"
        else:
            self.srv.run(self.srv.store.expunge(self._inbox(), [(uid, uid)]))

    def close(self) -> None:
        if self.imap is not None:
            self.imap.logout()


VIAS = ["store", "imaplib"]


def subject_of(lines: list[bytes]) -> bytes:
    return next(l for l in lines if l.startswith(b"Subject: "))[9:]


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("policy", ["expunge", "move-to-trash", "hide"])
def test_pop3_and_imap_at_the_same_time(make_server: Callable[..., Any], policy: str,
                                        via: str) -> None:
    """While POP3 is connected, IMAP flags, moves and expunges messages and new mail arrives.
    POP3 keeps its snapshot; RETR of a message that is gone answers -ERR and the session goes
    on; no RETR ever returns another message's content; QUIT applies the policy only to what
    is still there."""
    srv = make_server(auth={"allow_plaintext_without_tls": True}, pop3={"delete": policy})
    acct = add_user(srv, USER)
    uids = deliver_all(srv, acct, [message(f"m{i}") for i in range(5)])
    pop = login(srv, USER)
    listing, uidls = pop.list()[1], pop.uidl()[1]
    imap = ImapSide(srv, acct, via)
    imap.flag(uids[0], "\\Seen", "\\Flagged")
    imap.move(uids[1], "Archive")
    imap.expunge(uids[2])
    late = deliver(srv, acct, message("late"))[0]

    assert pop.stat()[0] == 5
    assert pop.list()[1] == listing and pop.uidl()[1] == uidls
    assert subject_of(pop.retr(1)[1]) == b"m0"
    for n in (2, 3):
        with pytest.raises(poplib.error_proto, match="deleted by another session"):
            pop.retr(n)
        with pytest.raises(poplib.error_proto, match="deleted by another session"):
            pop.top(n, 0)
    assert subject_of(pop.retr(4)[1]) == b"m3"
    assert subject_of(pop.top(5, 0)[1]) == b"m4"
    assert pop.noop().startswith(b"+OK")
    for n in range(1, 6):
        assert pop.dele(n).startswith(b"+OK")
    assert pop.quit().startswith(b"+OK Logging out, 5 messages")
    imap.close()

    remaining = inbox_uids(srv, acct)
    if policy == "hide":
        assert remaining == [uids[0], uids[3], uids[4], late]
    else:
        assert remaining == [late]
    assert mailbox(srv, acct, "Archive").messages == 1
    assert mailbox(srv, acct, "Trash").messages == (3 if policy == "move-to-trash" else 0)

    again = login(srv, USER)
    assert again.stat()[0] == 1
    assert subject_of(again.retr(1)[1]) == b"late"
    again.quit()


def test_expunged_message_with_shared_body(make_server: Callable[..., Any]) -> None:
    """Two copies of one message share their stored body: when IMAP expunges one during the
    session, POP3 still refuses it (the body's survival does not hide the expunge)."""
    srv = make_server(auth={"allow_plaintext_without_tls": True})
    acct = add_user(srv, USER)
    uids = deliver(srv, acct, message("twin"), count=2)
    pop = login(srv, USER)
    pop.retr(1)  # the body's location is cached now
    ImapSide(srv, acct, "store").expunge(uids[1])
    with pytest.raises(poplib.error_proto, match="deleted by another session"):
        pop.retr(2)
    assert subject_of(pop.retr(1)[1]) == b"twin"
    pop.quit()


def test_expunge_after_body_location_cached(make_server: Callable[..., Any]) -> None:
    """The first RETR looks up bodies for the following messages too; a later expunge of one
    of them is still noticed."""
    srv = make_server(auth={"allow_plaintext_without_tls": True})
    acct = add_user(srv, USER)
    uids = deliver_all(srv, acct, [message(f"m{i}") for i in range(4)])
    pop = login(srv, USER)
    pop.retr(1)
    ImapSide(srv, acct, "store").expunge(uids[3])
    with pytest.raises(poplib.error_proto, match="deleted by another session"):
        pop.retr(4)
    assert subject_of(pop.retr(3)[1]) == b"m2"
    pop.quit()


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("policy", ["expunge", "hide"])
def test_leave_a_copy_never_downloads_twice(make_server: Callable[..., Any], via: str,
                                            policy: str) -> None:
    """A "leave a copy on the server" client: three sessions, each fetching only the UIDLs it
    has not seen, with new deliveries and IMAP moves, copies and flag changes in between.
    Every message is downloaded exactly once."""
    srv = make_server(auth={"allow_plaintext_without_tls": True}, pop3={"delete": policy})
    acct = add_user(srv, USER)
    seen: set[bytes] = set()
    downloaded: list[bytes] = []

    def session() -> int:
        c = login(srv, USER)
        new = 0
        for uidl, num in sorted(uidl_map(c).items(), key=lambda kv: kv[1]):
            if uidl in seen:
                continue
            downloaded.append(subject_of(c.retr(num)[1]))
            seen.add(uidl)
            new += 1
        assert c.quit().startswith(b"+OK")
        return new

    uids = deliver_all(srv, acct, [message(f"first{i}") for i in range(4)])
    assert session() == 4

    deliver_all(srv, acct, [message("second0"), message("second1")])
    imap = ImapSide(srv, acct, via)
    imap.flag(uids[0], "\\Seen", "\\Flagged", "$Label1")
    imap.move(uids[1], "Archive")
    imap.copy(uids[2], "Archive")
    imap.close()
    assert session() == 2

    deliver(srv, acct, message("third0"))
    imap = ImapSide(srv, acct, via)
    imap.expunge(uids[3])
    imap.flag(uids[2], "\\Answered")
    imap.close()
    assert session() == 1
    assert session() == 0

    assert sorted(downloaded) == sorted(set(downloaded))
    assert len(downloaded) == 7
