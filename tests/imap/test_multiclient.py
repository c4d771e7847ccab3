"""Many clients on one mailbox (issue 3 part 6; RFC 3501 §7.4.1, RFC 9051 §7.5.1; PROMISES
X1-X5): every session learns of the others' changes with EXISTS/RECENT, FETCH (FLAGS) and
EXPUNGE, only where the RFC allows EXPUNGE, with sequence numbers consistent per session; IDLE
pushes a change made elsewhere within a second."""

from __future__ import annotations

import re
import threading
import time

from tests.imap.util import (
    Raw,
    deliver,
    imapclient_login,
    message,
    new_user,
    store_state,
)


class View:
    """A client's idea of the mailbox, kept only from the untagged responses it receives."""

    def __init__(self, raw: Raw, select_lines: list[bytes]) -> None:
        self.raw = raw
        exists = next(int(x.split()[1]) for x in select_lines if x.endswith(b" EXISTS"))
        lines = raw.ok("FETCH 1:* (UID FLAGS)") if exists else []
        self.msgs: list[list[object]] = []   # [uid, flags]
        self.apply(lines)

    def apply(self, lines: list[bytes]) -> None:
        for line in lines:
            if m := re.match(rb"\* (\d+) EXPUNGE$", line):
                del self.msgs[int(m.group(1)) - 1]
            elif m := re.match(rb"\* (\d+) EXISTS$", line):
                n = int(m.group(1))
                while len(self.msgs) < n:
                    self.msgs.append([None, None])
            elif m := re.match(rb"\* (\d+) FETCH \((.*)\)$", line):
                seq = int(m.group(1))
                while len(self.msgs) < seq:
                    self.msgs.append([None, None])
                body = m.group(2)
                if u := re.search(rb"UID (\d+)", body):
                    self.msgs[seq - 1][0] = int(u.group(1))
                if f := re.search(rb"FLAGS \(([^)]*)\)", body):
                    flags = frozenset(f.group(1).decode().split()) - {"\\Recent"}
                    self.msgs[seq - 1][1] = flags

    def command(self, text: str) -> list[bytes]:
        lines = self.raw.ok(text)
        self.apply(lines)
        return lines

    def refresh_new(self) -> None:
        """Fetch UID and flags of messages announced by EXISTS only."""
        unknown = [i + 1 for i, m in enumerate(self.msgs) if m[0] is None]
        if unknown:
            self.command(f"FETCH {unknown[0]}:* (UID FLAGS)")

    def state(self) -> list[tuple[int, frozenset[str]]]:
        return [(m[0], m[1]) for m in self.msgs]  # type: ignore[misc]


def test_three_clients_one_mailbox(srv) -> None:
    acct = new_user(srv)
    for i in range(4):
        deliver(srv, acct, message(f"start {i}"))
    clients = []
    for _ in range(3):
        raw = Raw(srv)
        raw.login(acct)
        clients.append(View(raw, raw.ok("SELECT INBOX")))
    a, b, c = clients

    def check_all() -> None:
        truth = store_state(srv, acct)
        for view in clients:
            view.command("NOOP")
            view.refresh_new()
            assert view.state() == truth

    check_all()
    # Step 1: A appends two messages.
    for i in range(2):
        data = message(f"appended {i}")
        lines = a.raw.ok(b"APPEND INBOX {%d+}\r\n" % len(data) + data)
        a.apply(lines)
    check_all()
    # Step 2: B sets flags; A and C hear FETCH (FLAGS).
    b.command("STORE 1:3 +FLAGS (\\Flagged)")
    b.command("STORE 2 +FLAGS (\\Seen $Followup)")
    lines = a.command("NOOP")
    assert b"* 1 FETCH (UID 1 FLAGS (\\Flagged \\Recent))" in lines   # A claimed \Recent
    assert any(x.startswith(b"* FLAGS") and b"$Followup" in x for x in lines)
    check_all()
    # Step 3: C expunges and moves.
    c.command("STORE 1 +FLAGS (\\Deleted)")
    c.command("EXPUNGE")
    c.command("MOVE 2 Trash")
    lines = a.command("NOOP")
    assert lines[:2] == [b"* 1 EXPUNGE", b"* 2 EXPUNGE"]
    check_all()
    assert [u for u, _ in store_state(srv, acct, "Trash")] == [1]
    # PROMISES X3: after CHECK everyone sees the identical mailbox.
    for view in clients:
        view.command("CHECK")
    assert a.state() == b.state() == c.state() == store_state(srv, acct)
    for view in clients:
        view.raw.close()


def test_no_expunge_during_fetch_store_search(srv) -> None:
    """PROMISES X1: EXPUNGE is held back during FETCH, STORE and SEARCH; the message keeps its
    sequence number until then; NOOP (and UID commands) then announce it."""
    acct = new_user(srv)
    for i in range(3):
        deliver(srv, acct, message(f"x{i}"))
    viewer = Raw(srv)
    viewer.login(acct)
    viewer.ok("SELECT INBOX")
    other = Raw(srv)
    other.login(acct)
    other.ok("SELECT INBOX")
    other.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    for command in ("FETCH 3 (UID)", "STORE 3 +FLAGS (\\Seen)", "SEARCH ALL"):
        lines, tagged = viewer.command(command)
        assert not any(b"EXPUNGE" in x for x in lines), (command, lines)
        assert b" OK " in tagged
        if command.startswith("FETCH"):
            assert lines[-1] == b"* 3 FETCH (UID 3)"        # still number 3
    assert viewer.ok("SEARCH ALL") == [b"* SEARCH 1 3"]
    # The expunged message (number 2) is gone: FETCH of it says so, without EXPUNGE.
    lines, tagged = viewer.command("FETCH 2 FLAGS")
    assert lines == [] and b"NO [EXPUNGEISSUED]" in tagged
    lines = viewer.ok("NOOP")
    assert lines == [b"* 2 EXPUNGE"]
    assert viewer.ok("FETCH 2 (UID)") == [b"* 2 FETCH (UID 3)"]
    # A UID command may announce it at once.
    other.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    lines = viewer.ok("UID FETCH 3 (FLAGS)")
    assert lines[-1] == b"* 1 EXPUNGE"
    viewer.close()
    other.close()


def test_recent_belongs_to_one_session(srv) -> None:
    """PROMISES X5 (IMAP4rev1): a delivered message is \\Recent in exactly one session."""
    acct = new_user(srv)
    first = Raw(srv)
    first.login(acct)
    first.ok("SELECT INBOX")
    second = Raw(srv)
    second.login(acct)
    second.ok("SELECT INBOX")
    deliver(srv, acct, message("fresh"))
    l1 = first.ok("NOOP")
    l2 = second.ok("NOOP")
    assert b"* 1 EXISTS" in l1 and b"* 1 EXISTS" in l2
    recents = [x for x in l1 + l2 if x.endswith(b" RECENT")]
    assert sorted(recents) == [b"* 0 RECENT", b"* 1 RECENT"]
    f1 = first.ok("FETCH 1 FLAGS")[0]
    f2 = second.ok("FETCH 1 FLAGS")[0]
    assert [b"\\Recent" in f1, b"\\Recent" in f2].count(True) == 1
    first.close()
    second.close()


def test_idle_pushes_within_seconds(srv) -> None:
    """An IDLE client receives EXISTS within seconds of an APPEND from another session
    (PROMISES X2; the push itself takes milliseconds, the bound leaves room for a slow fsync
    of the APPEND on a loaded machine), then FETCH (FLAGS) and EXPUNGE as they happen; DONE
    ends it."""
    acct = new_user(srv)
    idler = imapclient_login(srv, acct)
    idler.select_folder("INBOX")
    idler.idle()
    writer = imapclient_login(srv, acct, tls="starttls")
    started = time.monotonic()
    writer.append("INBOX", message("pushed"))
    got = idler.idle_check(timeout=5)
    elapsed = time.monotonic() - started
    assert (1, b"EXISTS") in got and elapsed < 3.0, (got, elapsed)
    writer.select_folder("INBOX")
    writer.add_flags([1], [b"\\Flagged"])
    got = idler.idle_check(timeout=5)
    assert any(isinstance(x, tuple) and x[1] == b"FETCH" for x in got)
    writer.delete_messages([1])
    writer.expunge()
    seen = []
    deadline = time.monotonic() + 5
    while (1, b"EXPUNGE") not in seen and time.monotonic() < deadline:
        seen += idler.idle_check(timeout=1)
    assert (1, b"EXPUNGE") in seen
    text, _ = idler.idle_done()
    assert b"IDLE terminated" in text
    assert idler.noop()[0].endswith(b"completed")
    idler.logout()
    writer.logout()


def test_idle_raw_and_smtp_style_delivery(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("SELECT INBOX")
    raw.send(b"i IDLE\r\n")
    assert raw.line() == b"+ idling"
    result: list[bytes] = []

    def read() -> None:
        result.append(raw.line())

    reader = threading.Thread(target=read)
    reader.start()
    started = time.monotonic()
    deliver(srv, acct, message("delivered"))
    reader.join(5)
    assert result == [b"* 1 EXISTS"] and time.monotonic() - started < 1.0
    assert raw.line() == b"* 1 RECENT"
    raw.send(b"DONE\r\n")
    assert raw.line() == b"i OK IDLE terminated"
    raw.send(b"j IDLE\r\n")
    assert raw.line() == b"+ idling"
    raw.send(b"NOTDONE\r\n")
    assert raw.line().startswith(b"j BAD")
    raw.ok("NOOP")
    raw.close()


def test_many_sessions_append_concurrently(srv) -> None:
    """PROMISES X6: concurrent APPENDs never lose a message; UIDs are distinct."""
    acct = new_user(srv)
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            c = imapclient_login(srv, acct)
            for i in range(5):
                c.append("INBOX", message(f"w{n} m{i}"))
            c.logout()
        except Exception as exc:  # noqa: BLE001 - reported by the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    state = store_state(srv, acct)
    assert [u for u, _ in state] == list(range(1, 21))


def test_idle_fan_out_asks_the_store_once(srv) -> None:
    """After a delivery every IDLE session of the mailbox gets its EXISTS, from one store
    query per process rather than one per session (casella.imap.shared); a session that then
    asks on its own (NOOP) still gets a fresh answer."""
    from casella.imap.shared import shared_state

    acct = new_user(srv)
    sessions = []
    for _ in range(8):      # [imap] max_connections_per_user_ip is 10
        raw = Raw(srv)
        raw.login(acct)
        raw.ok("SELECT INBOX")
        raw.send(b"i IDLE\r\n")
        assert raw.line() == b"+ idling"
        sessions.append(raw)
    shared = shared_state(srv.store)
    for n in (1, 2):
        before = shared.queries
        deliver(srv, acct, message(f"fan-out {n}"))
        for raw in sessions:
            line = raw.line()
            while line.endswith(b"RECENT"):
                line = raw.line()
            assert line == b"* %d EXISTS" % n
        assert shared.queries - before == 1
    for raw in sessions:
        raw.send(b"DONE\r\n")
        line = raw.line()
        while line.startswith(b"* "):
            line = raw.line()
        assert line == b"i OK IDLE terminated"
    before = shared.queries
    deliver(srv, acct, message("after IDLE"))
    untagged, tagged = sessions[0].command("NOOP")
    assert b"* 3 EXISTS" in untagged and b" OK " in tagged
    assert shared.queries - before == 1
