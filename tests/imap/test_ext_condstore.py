"""CONDSTORE and QRESYNC (RFC 7162) over real sockets: the RFC's examples adapted to our data
(HIGHESTMODSEQ on SELECT and STATUS, FETCH MODSEQ / CHANGEDSINCE, STORE UNCHANGEDSINCE with
MODIFIED, SEARCH MODSEQ, ENABLE QRESYNC, SELECT (QRESYNC ...) with VANISHED (EARLIER), the
VANISHED UID FETCH modifier, VANISHED instead of EXPUNGE, HIGHESTMODSEQ after EXPUNGE and
CLOSE), the bad-input cases, and the three-device resynchronisation of issue 9."""

from __future__ import annotations

import re

import pytest

from tests.imap.util import (
    Raw,
    deliver,
    get_mailbox,
    imapclient_login,
    message,
    new_user,
    store_state,
)

FLAGS = re.compile(rb"FLAGS \(([^)]*)\)")


def modseq_of(line: bytes) -> int:
    m = re.search(rb"MODSEQ \((\d+)\)", line)
    assert m, line
    return int(m.group(1))


def code_value(lines: list[bytes], code: bytes) -> int:
    for line in lines:
        m = re.search(rb"\[" + code + rb" (\d+)\]", line)
        if m:
            return int(m.group(1))
    raise AssertionError((code, lines))


def mailbox_with(srv, n: int = 5):
    acct = new_user(srv)
    for i in range(n):
        deliver(srv, acct, message(f"cs{i}"))
    return acct


def session(srv, acct, enable: str | None = None) -> Raw:
    raw = Raw(srv)
    raw.login(acct)
    if enable:
        assert raw.ok(f"ENABLE {enable}") == [f"* ENABLED {enable}".encode()]
    return raw


def test_highestmodseq_on_select_and_status(srv) -> None:
    """RFC 7162 §3.1.2.1 / §3.1.6: every SELECT names HIGHESTMODSEQ (casella never says
    NOMODSEQ); STATUS (HIGHESTMODSEQ) is the same number."""
    acct = mailbox_with(srv, 3)
    mb = get_mailbox(srv, acct)
    raw = session(srv, acct)
    (line,) = raw.ok("STATUS INBOX (HIGHESTMODSEQ UIDVALIDITY)")
    assert line == b"* STATUS INBOX (HIGHESTMODSEQ %d UIDVALIDITY %d)" % (mb.highestmodseq,
                                                                         mb.uidvalidity)
    lines = raw.ok("SELECT INBOX (CONDSTORE)")
    assert code_value(lines, b"HIGHESTMODSEQ") == mb.highestmodseq
    assert not any(b"NOMODSEQ" in x for x in lines)
    raw.close()


def test_fetch_modseq_changedsince_and_store_unchangedsince(srv) -> None:
    """RFC 7162 §3.1.3 and §3.1.4 examples: conditional STORE succeeds for messages not changed
    since, lists the others in MODIFIED and leaves them alone; .SILENT still reports MODSEQ."""
    acct = mailbox_with(srv, 5)
    raw = session(srv, acct)
    lines = raw.ok("SELECT INBOX (CONDSTORE)")
    base = code_value(lines, b"HIGHESTMODSEQ")
    fetched = raw.ok("FETCH 1:* (MODSEQ)")
    assert len(fetched) == 5 and all(re.fullmatch(rb"\* \d FETCH \(MODSEQ \(\d+\)\)", x)
                                     for x in fetched)
    # Another device flags message 2: its MODSEQ moves past `base`.
    other = session(srv, acct)
    other.ok("SELECT INBOX")
    other.ok("STORE 2 +FLAGS (\\Flagged)")
    other.close()
    # C: a103 UID STORE 1,2,4 (UNCHANGEDSINCE base) +FLAGS.SILENT (\Deleted)
    lines, tagged = raw.command(f"UID STORE 1,2,4 (UNCHANGEDSINCE {base}) "
                                "+FLAGS.SILENT (\\Deleted)")
    assert tagged.endswith(b"OK [MODIFIED 2] Conditional STORE failed for some messages")
    silent = [x for x in lines if b"MODSEQ" in x and b"FLAGS" not in x]
    assert [re.match(rb"\* (\d+) FETCH \(UID (\d+)", x).groups() for x in silent] == \
        [(b"1", b"1"), (b"4", b"4")]
    state = dict(store_state(srv, acct))
    assert "\\Deleted" in state[1] and "\\Deleted" in state[4]
    assert "\\Deleted" not in state[2] and state[2] == {"\\Flagged"}   # never applied
    # CHANGEDSINCE: only what changed after `base`, MODSEQ implied.
    changed = raw.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {base})")
    assert sorted(int(x.split()[1]) for x in changed if b"FETCH" in x) == [1, 2, 4]
    assert all(b"MODSEQ (" in x for x in changed if b"FETCH" in x)
    # UNCHANGEDSINCE 0 can never hold (every MODSEQ is at least 1).
    _, tagged = raw.command("STORE 3,5 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)")
    assert b"[MODIFIED 3,5]" in tagged
    assert "\\Seen" not in dict(store_state(srv, acct))[3]
    raw.close()


def test_search_modseq(srv) -> None:
    """RFC 7162 §3.1.5: SEARCH MODSEQ (with or without an entry) answers the highest MODSEQ
    of the messages found; ESEARCH carries it too."""
    acct = mailbox_with(srv, 4)
    raw = session(srv, acct)
    lines = raw.ok("SELECT INBOX")
    base = code_value(lines, b"HIGHESTMODSEQ")
    raw.ok("STORE 2,4 +FLAGS (\\Draft)")
    lines = raw.ok("FETCH 4 (MODSEQ)")
    assert lines[0] == b"* OK [HIGHESTMODSEQ %d] Highest" % (base + 1)     # RFC 7162 §3.1
    top = int(re.search(rb"MODSEQ \((\d+)\)", lines[1]).group(1))
    assert raw.ok(f'SEARCH MODSEQ "/flags/\\\\draft" all {base + 1}') == \
        [b"* SEARCH 2 4 (MODSEQ %d)" % top]
    assert raw.ok(f"SEARCH MODSEQ {top + 1}") == [b"* SEARCH"]
    assert raw.ok(f"UID SEARCH RETURN (COUNT) MODSEQ {base + 1}") == \
        [b'* ESEARCH (TAG "t7") UID COUNT 2 MODSEQ %d' % top]
    raw.close()


def test_enabling_command_reports_highestmodseq(srv) -> None:
    """RFC 7162 §3.1: the first CONDSTORE enabling command while a mailbox is selected gets
    an untagged OK [HIGHESTMODSEQ] before its tagged reply, the next one does not; from then
    on flag updates carry UID and MODSEQ."""
    acct = mailbox_with(srv, 2)
    raw = session(srv, acct)
    lines = raw.ok("SELECT INBOX")
    top = code_value(lines, b"HIGHESTMODSEQ")
    lines, tagged = raw.command("FETCH 1 (MODSEQ)")
    assert lines[0] == b"* OK [HIGHESTMODSEQ %d] Highest" % top
    assert tagged.endswith(b"OK FETCH completed")
    assert not any(b"HIGHESTMODSEQ" in x for x in raw.ok("FETCH 2 (MODSEQ)"))
    other = session(srv, acct)
    other.ok("SELECT INBOX")
    other.ok("STORE 1 +FLAGS (\\Answered)")
    other.close()
    (update,) = raw.ok("NOOP")
    assert re.fullmatch(rb"\* 1 FETCH \(UID 1 FLAGS \(\\Answered( \\Recent)?\) MODSEQ \(\d+\)\)",
                        update)
    raw.close()


@pytest.mark.parametrize("command", [
    "FETCH 1 (MODSEQ)",
    "UID FETCH 1:* (FLAGS) (CHANGEDSINCE 1)",
    "STORE 1 (UNCHANGEDSINCE 1000000) +FLAGS.SILENT (\\Seen)",
    "SEARCH MODSEQ 1",
    "SORT (ARRIVAL) UTF-8 MODSEQ 1",
    "STATUS INBOX (HIGHESTMODSEQ)",
])
def test_every_enabling_command_reports_highestmodseq_once(srv, command: str) -> None:
    """RFC 7162 §3.1: each CONDSTORE enabling command, issued first while a mailbox is
    selected, is answered with an untagged OK [HIGHESTMODSEQ] before its tagged OK; SELECT
    (CONDSTORE) leaves the old mailbox without one (its own answer names the new one's)."""
    acct = mailbox_with(srv, 2)
    raw = session(srv, acct)
    top = code_value(raw.ok("SELECT INBOX"), b"HIGHESTMODSEQ")
    lines = raw.ok(command)
    assert lines.count(b"* OK [HIGHESTMODSEQ %d] Highest" % top) == 1, lines
    assert not any(b"HIGHESTMODSEQ" in x for x in raw.ok("FETCH 1 (MODSEQ)"))
    other = session(srv, acct)
    other.ok("SELECT INBOX")
    lines = other.ok("SELECT INBOX (CONDSTORE)")
    assert len([x for x in lines if b"HIGHESTMODSEQ" in x]) == 1, lines
    other.close()
    raw.close()


def test_qresync_select_vanished_earlier_and_fetch(srv) -> None:
    """RFC 7162 §3.2.5.1 example: SELECT INBOX (QRESYNC (uidvalidity modseq known-uids))
    answers VANISHED (EARLIER) and FETCH (UID FLAGS MODSEQ) for what changed, before the OK."""
    acct = mailbox_with(srv, 6)
    mb = get_mailbox(srv, acct)
    raw = session(srv, acct, "QRESYNC")
    lines = raw.ok("SELECT INBOX")
    seen_modseq = code_value(lines, b"HIGHESTMODSEQ")
    raw.ok("UNSELECT")
    other = session(srv, acct)
    other.ok("SELECT INBOX")
    other.ok("STORE 2,5 +FLAGS (\\Deleted)")
    other.ok("EXPUNGE")
    other.ok("UID STORE 3 +FLAGS ($Important)")
    other.close()
    lines, tagged = raw.command(f"SELECT INBOX (QRESYNC ({mb.uidvalidity} {seen_modseq} "
                                "1:4,6))")
    assert tagged.endswith(b"OK [READ-WRITE] SELECT completed")
    vanished = [x for x in lines if x.startswith(b"* VANISHED")]
    assert vanished == [b"* VANISHED (EARLIER) 2"]      # 5 was not in known-uids
    fetches = [x for x in lines if b" FETCH " in x]
    assert len(fetches) == 1 and fetches[0].startswith(b"* 2 FETCH (UID 3 FLAGS ($Important")
    assert lines.index(vanished[0]) < lines.index(fetches[0])
    assert b"* 4 EXISTS" in lines
    raw.close()


def test_qresync_stale_uidvalidity_means_full_resync(srv) -> None:
    """RFC 7162 §3.2.5.1: a UIDVALIDITY that does not match: no VANISHED, no FETCH."""
    acct = mailbox_with(srv, 3)
    raw = session(srv, acct, "QRESYNC")
    lines = raw.ok("SELECT INBOX (QRESYNC (12345 1 1:3))")
    assert not any(x.startswith(b"* VANISHED") or b" FETCH " in x for x in lines)
    assert b"* 3 EXISTS" in lines
    raw.close()


def test_vanished_modifier_and_vanished_responses(srv) -> None:
    """RFC 7162 §3.2.6 (UID FETCH ... (CHANGEDSINCE n VANISHED)) and §3.2.10: with QRESYNC
    on, expunges are VANISHED, and EXPUNGE / CLOSE name the new HIGHESTMODSEQ (§3.2.7-8)."""
    acct = mailbox_with(srv, 6)
    raw = session(srv, acct, "QRESYNC")
    base = code_value(raw.ok("SELECT INBOX"), b"HIGHESTMODSEQ")
    raw.ok("STORE 2,3 +FLAGS.SILENT (\\Deleted)")
    lines, tagged = raw.command("EXPUNGE")
    assert lines == [b"* VANISHED 2:3"]
    top = int(re.search(rb"HIGHESTMODSEQ (\d+)", tagged).group(1))
    assert top > base
    other = session(srv, acct)
    other.ok("SELECT INBOX")
    other.ok("UID STORE 6 +FLAGS (\\Deleted \\Seen)")
    other.ok("UID EXPUNGE 6")
    other.ok("UID STORE 4 +FLAGS (\\Flagged)")
    other.close()
    lines = raw.ok("NOOP")
    assert lines[0] == b"* VANISHED 6"
    assert re.fullmatch(rb"\* 2 FETCH \(UID 4 FLAGS \(\\Flagged( \\Recent)?\) MODSEQ \(\d+\)\)",
                        lines[1])
    lines = raw.ok(f"UID FETCH 1:10 (FLAGS) (CHANGEDSINCE {base} VANISHED)")
    assert lines[0] == b"* VANISHED (EARLIER) 2:3,6"
    assert [x.split(b" (")[0] for x in lines[1:]] == [b"* 2 FETCH"]
    raw.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    _, tagged = raw.command("CLOSE")
    assert re.search(rb"OK \[HIGHESTMODSEQ \d+\] CLOSE completed", tagged)
    raw.close()


def test_condstore_bad_input(srv) -> None:
    """QRESYNC parameters without ENABLE QRESYNC, VANISHED without UID / CHANGEDSINCE,
    unknown modifiers: BAD, and the session goes on; nothing changes."""
    acct = mailbox_with(srv, 2)
    before = store_state(srv, acct)
    raw = session(srv, acct)
    for command in ("SELECT INBOX (QRESYNC (1 1))", "SELECT INBOX (FOO)",
                    "SELECT INBOX (QRESYNC (1 0))", "SELECT INBOX (QRESYNC (1 1 $))"):
        _, tagged = raw.command(command)
        assert b" BAD " in tagged, command
    raw.ok("SELECT INBOX")
    for command in ("FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)",
                    "UID FETCH 1 (FLAGS) (VANISHED)",
                    "UID FETCH 1 (FLAGS) (CHANGEDSINCE 1 VANISHED)", "FETCH 1 FLAGS (FOO 1)",
                    "STORE 1 (UNCHANGEDSINCE 1 UNCHANGEDSINCE 2) +FLAGS (\\Seen)",
                    "STORE 1 (NOPE 2) +FLAGS (\\Seen)"):
        _, tagged = raw.command(command)
        assert b" BAD " in tagged, command
    raw.ok("NOOP")
    assert store_state(srv, acct) == before
    raw.close()


class Device:
    """An offline client's cache, kept up to date only by QRESYNC responses."""

    def __init__(self, srv, acct) -> None:
        self.raw = session(srv, acct, "QRESYNC")
        lines = self.raw.ok("SELECT INBOX")
        self.uidvalidity = code_value(lines, b"UIDVALIDITY")
        self.modseq = code_value(lines, b"HIGHESTMODSEQ")
        self.cache: dict[int, frozenset[str]] = {}
        for line in self.raw.ok("UID FETCH 1:* (FLAGS)"):
            self.apply(line)
        self.raw.ok("LOGOUT")
        self.raw.close()

    def apply(self, line: bytes) -> None:
        if m := re.match(rb"\* VANISHED (\(EARLIER\) )?([\d:,]+)$", line):
            for part in m.group(2).split(b","):
                lo, _, hi = part.partition(b":")
                for uid in range(int(lo), int(hi or lo) + 1):
                    self.cache.pop(uid, None)
        elif m := re.match(rb"\* \d+ FETCH \(.*UID (\d+)", line):
            flags = FLAGS.search(line)
            assert flags, line
            self.cache[int(m.group(1))] = frozenset(flags.group(1).decode().split()) - \
                {"\\Recent"}

    def resync(self, srv, acct) -> tuple[int, int]:
        raw = session(srv, acct, "QRESYNC")
        lines = raw.ok(f"SELECT INBOX (QRESYNC ({self.uidvalidity} {self.modseq}))")
        fetches = vanished = 0
        for line in lines:
            if line.startswith(b"* VANISHED"):
                vanished += 1
            elif b" FETCH " in line:
                fetches += 1
            self.apply(line)
        self.modseq = code_value(lines, b"HIGHESTMODSEQ")
        raw.ok("LOGOUT")
        raw.close()
        return fetches, vanished


def test_three_devices_resync_with_qresync(srv) -> None:
    """Issue 9: devices A and B change flags and expunge while C is offline; C reconnects with
    QRESYNC, receives only the changes (one VANISHED line, one FETCH per changed message) and
    ends with exactly the store's state."""
    acct = new_user(srv)
    for i in range(30):
        deliver(srv, acct, message(f"three{i}"))
    c = Device(srv, acct)
    assert len(c.cache) == 30
    a = imapclient_login(srv, acct)
    b = imapclient_login(srv, acct)
    a.select_folder("INBOX")
    b.select_folder("INBOX")
    a.add_flags([1, 2, 3], [b"\\Seen"])
    b.add_flags([3, 4], [b"\\Flagged"])
    a.remove_flags([3], [b"\\Seen"])
    b.add_flags([10, 11, 12], [b"\\Deleted"])
    b.expunge()
    a.move([20], "Archive")
    deliver(srv, acct, message("new while offline"))
    a.add_flags([31], [b"$Later"])
    a.logout()
    b.logout()
    truth = dict(store_state(srv, acct))
    fetches, vanished = c.resync(srv, acct)
    assert c.cache == truth
    # Changed: 1 2 3 4 (flags) and 31 (new); gone: 10 11 12 20.
    assert (fetches, vanished) == (5, 1)
    # Nothing changed since: a second resync receives nothing at all.
    assert c.resync(srv, acct) == (0, 0)
    assert c.cache == truth
