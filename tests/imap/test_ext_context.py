"""ESORT, CONTEXT=SEARCH and CONTEXT=SORT (RFC 5267) with RFC 9394's PARTIAL ranges, and the MODSEQ
of ESEARCH's MIN / MAX (RFC 4731 §3.2), over real sockets: SORT ... RETURN answered in ESEARCH,
PARTIAL pages (positive, reversed, negative, beyond the results), SAVE with PARTIAL, update
contexts kept true while a second session (or a delivery) changes flags, adds and expunges
messages (ADDTO after EXISTS, REMOVEFROM before EXPUNGE, no EXPUNGE while answering FETCH, X1),
positions in a sorted context, CANCELUPDATE, the per-session limit (NO [NOUPDATE]) and the
bad-input cases."""

from __future__ import annotations

import random
import re

import pytest

from casella.imap import contexts
from casella.imap.contexts import MAX_UPDATE_CONTEXTS
from casella.store.model import AppendItem
from tests.imap.util import Raw, deliver, new_user


def mail(subject: str, body: str = "body") -> bytes:
    return (f"From: a@example.org\r\nTo: b@example.test\r\nSubject: {subject}\r\n"
            f"Date: Mon, 7 Feb 1994 21:52:25 -0800\r\n\r\n{body}\r\n").encode()


def mailbox(srv, subjects: list[str], flags: dict[int, tuple[str, ...]] | None = None):
    """An account whose INBOX holds these messages (UIDs 1.., arrived one minute apart)."""
    acct = new_user(srv)
    mb = srv.run(srv.store.get_mailbox(acct.id, "INBOX"))

    async def add() -> None:
        for i, subject in enumerate(subjects, 1):
            staged = await srv.store.blobs.stage(mail(subject))
            try:
                await srv.store.append(mb.id, [AppendItem(staged, (flags or {}).get(i, ()),
                                                          1_700_000_000 + 60 * i)])
            finally:
                staged.discard()
    srv.run(add())
    return acct


def selected(srv, acct) -> Raw:
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("SELECT INBOX")
    return raw


def esearch(lines: list[bytes]) -> list[bytes]:
    return [x for x in lines if x.startswith(b"* ESEARCH")]


def test_capabilities_are_advertised(srv) -> None:
    """RFC 5267 §3.1, §4.1: ESORT, CONTEXT=SEARCH and CONTEXT=SORT."""
    raw = selected(srv, new_user(srv))
    (line,) = raw.ok("CAPABILITY")
    assert {b"ESORT", b"CONTEXT=SEARCH", b"CONTEXT=SORT", b"ESEARCH"} <= set(line.split())
    raw.close()


def test_esearch_modseq_of_min_and_max(srv) -> None:
    """RFC 4731 §3.2 / RFC 7162 §3.1.5: with MIN or MAX alone MODSEQ is that message's; with
    both, the higher of the two; with ALL or COUNT, the highest of all found; none found, no
    MODSEQ."""
    raw = selected(srv, mailbox(srv, ["a", "b", "c", "d"]))
    raw.ok("FETCH 1 (MODSEQ)")              # CONDSTORE on: STORE answers carry MODSEQ
    modseq = {}
    for n in (1, 3, 2, 4):
        (line,) = raw.ok(f"STORE {n} +FLAGS (\\Seen)")
        modseq[n] = int(re.search(rb"MODSEQ \((\d+)\)", line).group(1))
    assert modseq[1] < modseq[3] < modseq[2] < modseq[4]
    key = f'1:3 MODSEQ "/flags/\\\\seen" all {modseq[1]}'
    assert raw.ok(f"SEARCH RETURN (MIN) {key}") == \
        [b'* ESEARCH (TAG "t8") MIN 1 MODSEQ %d' % modseq[1]]
    assert raw.ok(f"SEARCH RETURN (MAX) {key}") == \
        [b'* ESEARCH (TAG "t9") MAX 3 MODSEQ %d' % modseq[3]]
    assert raw.ok(f"SEARCH RETURN (MIN MAX) {key}") == \
        [b'* ESEARCH (TAG "t10") MIN 1 MAX 3 MODSEQ %d' % modseq[3]]
    assert raw.ok(f"SEARCH RETURN (COUNT) {key}") == \
        [b'* ESEARCH (TAG "t11") COUNT 3 MODSEQ %d' % modseq[2]]
    assert raw.ok(f"SEARCH RETURN () 2:3 MODSEQ {modseq[2]}") == \
        [b'* ESEARCH (TAG "t12") ALL 2 MODSEQ %d' % modseq[2]]
    assert raw.ok(f"SEARCH RETURN (MIN) 1:3 MODSEQ {modseq[4]}") == [b'* ESEARCH (TAG "t13")']
    assert raw.ok(f"SEARCH 1:3 MODSEQ {modseq[3]}") == [b"* SEARCH 2 3 (MODSEQ %d)" % modseq[2]]
    raw.close()


def test_esort_return_options(srv) -> None:
    """RFC 5267 §3.1: SORT ... RETURN answers ESEARCH; MIN / MAX are the first and last sorted
    messages, ALL is in sort order with ranges only where it ascends (§3.2), RETURN () means
    ALL, COUNT as in ESEARCH; SAVE keeps the messages in `$` (RFC 5182)."""
    raw = selected(srv, mailbox(srv, ["c", "a", "b", "e", "d"]))
    assert raw.ok("SORT RETURN (MIN MAX COUNT) (SUBJECT) US-ASCII ALL") == \
        [b'* ESEARCH (TAG "t3") MIN 2 MAX 4 COUNT 5']
    assert raw.ok("SORT RETURN () (SUBJECT) US-ASCII ALL") == \
        [b'* ESEARCH (TAG "t4") ALL 2:3,1,5,4']
    assert raw.ok("UID SORT RETURN (ALL) (REVERSE ARRIVAL) US-ASCII 2:4") == \
        [b'* ESEARCH (TAG "t5") UID ALL 4,3,2']
    assert raw.ok("SORT RETURN (COUNT) (ARRIVAL) US-ASCII 9999") == \
        [b'* ESEARCH (TAG "t6") COUNT 0']
    assert raw.ok("SORT RETURN (MIN) (ARRIVAL) US-ASCII SEEN") == [b'* ESEARCH (TAG "t7")']
    assert raw.ok("SORT RETURN (SAVE MAX) (SUBJECT) US-ASCII ALL") == \
        [b'* ESEARCH (TAG "t8") MAX 4']
    assert raw.ok("SEARCH $") == [b"* SEARCH 4"]
    assert raw.ok("SORT RETURN (SAVE) (SUBJECT) US-ASCII 1:2") == []
    assert raw.ok("SEARCH $") == [b"* SEARCH 1 2"]
    assert raw.ok("SORT (SUBJECT) US-ASCII ALL") == [b"* SORT 2 3 1 5 4"]
    raw.close()


def test_partial_search_and_sort(srv) -> None:
    """RFC 5267 §4.4 / RFC 9394 §3.1: the results at the positions asked for (a reversed range
    is the same range, -1 is the last result), the range echoed in order, NIL when none is
    there; MIN / MAX / COUNT still look at every result; SAVE with PARTIAL alone keeps the page
    (RFC 9394 §3.2)."""
    raw = selected(srv, mailbox(srv, ["c", "a", "b", "e", "d", "f"]))
    raw.ok("STORE 3 +FLAGS (\\Deleted)")
    raw.ok("EXPUNGE")       # UIDs 1 2 4 5 6 are messages 1..5
    cases = [
        ("SEARCH RETURN (PARTIAL 1:1) ALL", b"PARTIAL (1:1 1)"),
        ("SEARCH RETURN (PARTIAL 4:2) ALL", b"PARTIAL (2:4 2:4)"),
        ("SEARCH RETURN (PARTIAL 2:10) 1:2,4:5", b"PARTIAL (2:10 2,4:5)"),
        ("SEARCH RETURN (PARTIAL 6:6) ALL", b"PARTIAL (6:6 NIL)"),
        ("SEARCH RETURN (PARTIAL -1:-1) ALL", b"PARTIAL (-1:-1 5)"),
        ("SEARCH RETURN (PARTIAL -4:-2) ALL", b"PARTIAL (-2:-4 2:4)"),
        ("SEARCH RETURN (PARTIAL -3:-10) ALL", b"PARTIAL (-3:-10 1:3)"),
        ("SEARCH RETURN (PARTIAL -6:-9) ALL", b"PARTIAL (-6:-9 NIL)"),
        ("UID SEARCH RETURN (PARTIAL 2:3) ALL", b"UID PARTIAL (2:3 2,4)"),
        ("UID SEARCH RETURN (PARTIAL -1:-2) ALL", b"UID PARTIAL (-1:-2 5:6)"),
        ("SEARCH RETURN (MIN PARTIAL 2:3 COUNT) ALL", b"MIN 1 PARTIAL (2:3 2:3) COUNT 5"),
        ("SORT RETURN (PARTIAL 1:3) (SUBJECT) US-ASCII ALL", b"PARTIAL (1:3 2,1,4)"),
        ("SORT RETURN (PARTIAL -1:-2) (SUBJECT) US-ASCII ALL", b"PARTIAL (-1:-2 3,5)"),
        ("SORT RETURN (PARTIAL 1:9) (REVERSE SUBJECT) US-ASCII ALL",
         b"PARTIAL (1:9 5,3:4,1:2)"),
        ("UID SORT RETURN (PARTIAL 2:2 MAX) (SUBJECT) US-ASCII ALL",
         b"UID MAX 6 PARTIAL (2:2 1)"),
    ]
    for command, expected in cases:
        (line,) = raw.ok(command)
        assert line.split(b") ", 1)[1] == expected, command
    assert raw.ok("SEARCH RETURN (SAVE PARTIAL 2:3) ALL") == \
        [b'* ESEARCH (TAG "t20") PARTIAL (2:3 2:3)']
    assert raw.ok("SEARCH $") == [b"* SEARCH 2 3"]
    assert esearch(raw.ok("SEARCH RETURN (SAVE PARTIAL 2:3 COUNT) ALL")) != []
    assert raw.ok("SEARCH $") == [b"* SEARCH 1 2 3 4 5"]
    raw.close()


def test_bad_return_options_and_tags(srv) -> None:
    """RFC 5267 §4.4: PARTIAL with ALL, or a range with "*", is BAD; §4.3: a tag already
    naming an update context cannot start another (BAD); §4.3.5: CANCELUPDATE of an unknown
    tag is NO and cancels nothing; CANCELUPDATE needs a selected mailbox."""
    acct = mailbox(srv, ["a", "b"])
    raw = Raw(srv)
    raw.login(acct)
    _, tagged = raw.command('CANCELUPDATE "x"')
    assert b" BAD " in tagged
    raw.ok("SELECT INBOX")
    for command in ("SEARCH RETURN (PARTIAL 1:5 ALL) ALL", "SEARCH RETURN (PARTIAL 1:*) ALL",
                    "SORT RETURN (PARTIAL *:1) (ARRIVAL) US-ASCII ALL",
                    "SEARCH RETURN (PARTIAL 0:1) ALL", "SORT RETURN (FOO) (ARRIVAL) UTF-8 ALL"):
        _, tagged = raw.command(command)
        assert b" BAD " in tagged, command
    raw.ok("NOOP")          # the BADs in a row are forgiven by an OK (max_bad_commands)
    lines, tagged = raw.command("SEARCH RETURN (UPDATE) SEEN", tag="U1")
    assert tagged.startswith(b"U1 OK") and lines == [b'* ESEARCH (TAG "U1")']
    _, tagged = raw.command("SEARCH RETURN (UPDATE COUNT) ALL", tag="U1")
    assert tagged.startswith(b"U1 BAD")
    lines, tagged = raw.command("SEARCH RETURN (COUNT) ALL", tag="U1")
    assert tagged.startswith(b"U1 OK")          # without UPDATE the tag may be reused
    _, tagged = raw.command('CANCELUPDATE "U1" "nope"')
    assert b" NO " in tagged and b"nope" in tagged
    lines = raw.ok("STORE 1 +FLAGS (\\Seen)")
    assert esearch(lines) == [b'* ESEARCH (TAG "U1") ADDTO (0 1)']    # U1 still lives
    raw.ok('CANCELUPDATE "U1"')
    _, tagged = raw.command('CANCELUPDATE "U1"')
    assert b" NO " in tagged
    raw.close()


def test_search_context_follows_other_sessions(srv) -> None:
    """RFC 5267 §4.3: a SEARCH context is kept true while another session changes flags,
    delivers and expunges: ADDTO / REMOVEFROM with position 0 and sets in mailbox order
    (§4.3.3, §4.3.4), ADDTO for a new message after its EXISTS, REMOVEFROM before the
    EXPUNGE; nothing is expunged while answering FETCH (X1), so the REMOVEFROM waits too."""
    acct = mailbox(srv, ["a", "b", "c", "d", "e"], {2: ("\\Flagged",)})
    raw = selected(srv, acct)
    lines, tagged = raw.command("SEARCH RETURN (UPDATE ALL) FLAGGED", tag="C1")
    assert lines == [b'* ESEARCH (TAG "C1") ALL 2'] and tagged.startswith(b"C1 OK")
    other = selected(srv, acct)
    other.ok("STORE 4:5 +FLAGS (\\Flagged)")
    lines = raw.ok("NOOP")
    assert lines[-1] == b'* ESEARCH (TAG "C1") ADDTO (0 4:5)'
    assert len([x for x in lines if b"FETCH" in x]) == 2
    other.ok("STORE 2 -FLAGS (\\Flagged)")
    assert raw.ok("NOOP")[-1] == b'* ESEARCH (TAG "C1") REMOVEFROM (0 2)'
    uid = deliver(srv, acct, mail("f"), flags=("\\Flagged",))
    assert uid == 6
    lines = raw.ok("NOOP")
    assert lines.index(b"* 6 EXISTS") < lines.index(b'* ESEARCH (TAG "C1") ADDTO (0 6)')
    deliver(srv, acct, mail("g"))
    assert esearch(raw.ok("NOOP")) == []        # not matching: nothing to say
    other.ok("STORE 1,4 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    lines = raw.ok("FETCH 5 (FLAGS)")
    assert not any(b"EXPUNGE" in x or b"REMOVEFROM" in x for x in lines), lines
    lines = raw.ok("NOOP")
    assert lines[:3] == [b'* ESEARCH (TAG "C1") REMOVEFROM (0 4)', b"* 1 EXPUNGE",
                         b"* 3 EXPUNGE"], lines
    assert raw.ok("SEARCH RETURN (ALL) FLAGGED") == [b'* ESEARCH (TAG "t9") ALL 3:4']
    other.close()
    raw.close()


def test_uid_context_own_changes_append_and_idle(srv) -> None:
    """RFC 5267 §4.3.2: a UID SEARCH context reports UIDs; the session's own STORE, EXPUNGE and
    APPEND update it (ADDTO after the APPEND's EXISTS), and so does another session's change
    during IDLE (§4.3.2: at any time)."""
    acct = mailbox(srv, ["a", "b", "c"])
    raw = selected(srv, acct)
    assert raw.ok("UID SEARCH RETURN (UPDATE) OR SEEN SUBJECT zz") == \
        [b'* ESEARCH (TAG "t3") UID']
    lines = raw.ok("UID STORE 2:3 +FLAGS (\\Seen)")
    assert esearch(lines) == [b'* ESEARCH (TAG "t3") UID ADDTO (0 2:3)']
    assert lines[-1] == esearch(lines)[0]          # after the FETCH responses
    raw.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    lines = raw.ok("EXPUNGE")
    assert lines[:2] == [b'* ESEARCH (TAG "t3") UID REMOVEFROM (0 2)', b"* 2 EXPUNGE"]
    msg = mail("zz")
    lines = raw.ok(b"APPEND INBOX {%d+}\r\n" % len(msg) + msg)
    assert lines.index(b"* 3 EXISTS") < lines.index(b'* ESEARCH (TAG "t3") UID ADDTO (0 4)')
    other = selected(srv, acct)
    raw.send(b"I1 IDLE\r\n")
    assert raw.line() == b"+ idling"
    other.ok("UID STORE 1 +FLAGS (\\Seen)")
    got = []
    while not got or not got[-1].startswith(b"* ESEARCH"):
        got.append(raw.line())
    assert got[-1] == b'* ESEARCH (TAG "t3") UID ADDTO (0 1)'
    raw.send(b"DONE\r\n")
    assert raw.read_until("I1")[1].startswith(b"I1 OK")
    other.close()
    raw.close()


def test_sort_context_positions(srv) -> None:
    """RFC 5267 §4.3.2-§4.3.4: a SORT context names positions in the sorted result: ADDTO
    (position set-in-sort-order), REMOVEFROM (position set), each pair applied in turn; with
    sequence numbers they are the numbers at the time (REMOVEFROM before the EXPUNGE)."""
    acct = mailbox(srv, ["d", "b", "a", "c", "e"], {1: ("\\Flagged",), 5: ("\\Flagged",)})
    raw = selected(srv, acct)
    assert raw.ok("UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 FLAGGED") == \
        [b'* ESEARCH (TAG "t3") UID ALL 1,5']
    assert raw.ok("SORT RETURN (UPDATE COUNT) (REVERSE SUBJECT) UTF-8 FLAGGED") == \
        [b'* ESEARCH (TAG "t4") COUNT 2']
    other = selected(srv, acct)
    other.ok("STORE 3:4 +FLAGS (\\Flagged)")
    lines = esearch(raw.ok("NOOP"))
    # a c d e (UIDs 3 4 1 5); reversed: e d c a (messages 5 1 4 3)
    assert lines == [b'* ESEARCH (TAG "t3") UID ADDTO (1 3:4)',
                     b'* ESEARCH (TAG "t4") ADDTO (3 4,3)']
    other.ok("STORE 1,3 -FLAGS (\\Flagged)")
    lines = esearch(raw.ok("NOOP"))
    assert lines == [b'* ESEARCH (TAG "t3") UID REMOVEFROM (1 3 2 1)',
                     b'* ESEARCH (TAG "t4") REMOVEFROM (2 1 3 3)']
    other.ok("STORE 2 +FLAGS (\\Flagged)")
    assert esearch(raw.ok("NOOP")) == [b'* ESEARCH (TAG "t3") UID ADDTO (1 2)',
                                       b'* ESEARCH (TAG "t4") ADDTO (3 2)']
    other.ok("STORE 4 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    lines = raw.ok("NOOP")
    assert lines[:3] == [b'* ESEARCH (TAG "t3") UID REMOVEFROM (2 4)',
                         b'* ESEARCH (TAG "t4") REMOVEFROM (2 4)', b"* 4 EXPUNGE"], lines
    deliver(srv, acct, mail("bb"), flags=("\\Flagged",))
    lines = raw.ok("NOOP")
    assert lines[0] == b"* 5 EXISTS"
    assert esearch(lines) == [b'* ESEARCH (TAG "t3") UID ADDTO (2 6)',
                              b'* ESEARCH (TAG "t4") ADDTO (2 5)']
    assert raw.ok("UID SORT RETURN (ALL) (SUBJECT) UTF-8 FLAGGED") == \
        [b'* ESEARCH (TAG "t10") UID ALL 2,6,5']
    other.close()
    raw.close()


def test_update_context_limit_and_lifetime(srv) -> None:
    """RFC 5267 §4.3.1: past MAX_UPDATE_CONTEXTS (and for OLDER / YOUNGER, which change with the
    clock alone) the server refuses to update with an untagged NO [NOUPDATE "tag"], and still
    answers the other return options; CANCELUPDATE frees a place; §4.3: updates end when the
    mailbox is no longer selected."""
    acct = mailbox(srv, ["a", "b"])
    raw = selected(srv, acct)
    for i in range(MAX_UPDATE_CONTEXTS):
        raw.ok(f"SEARCH RETURN (UPDATE) KEYWORD k{i}")
    lines, tagged = raw.command("SEARCH RETURN (UPDATE COUNT) ALL", tag="X1")
    assert lines[0].startswith(b'* NO [NOUPDATE "X1"] ')
    assert lines[1:] == [b'* ESEARCH (TAG "X1") COUNT 2'] and tagged.startswith(b"X1 OK")
    lines = raw.ok("STORE 1 +FLAGS (k0)")
    assert esearch(lines) == [b'* ESEARCH (TAG "t3") ADDTO (0 1)']
    raw.ok('CANCELUPDATE "t3" "t4"')
    assert esearch(raw.ok("STORE 1 +FLAGS (k1)")) == []
    lines, _ = raw.command("SORT RETURN (UPDATE) (ARRIVAL) UTF-8 ALL", tag="X2")
    assert lines == [b'* ESEARCH (TAG "X2")']
    lines, _ = raw.command("SEARCH RETURN (UPDATE ALL) YOUNGER 100000000", tag="X3")
    assert lines[0].startswith(b'* NO [NOUPDATE "X3"] ') and len(esearch(lines)) == 1
    raw.ok("UNSELECT")
    raw.ok("SELECT INBOX")
    assert esearch(raw.ok("STORE 2 +FLAGS (k5)")) == []
    lines, tagged = raw.command("SEARCH RETURN (UPDATE) ALL", tag="X2")
    assert tagged.startswith(b"X2 OK")          # the old context went with the mailbox
    raw.close()


def test_context_program_keeps_its_messages(srv) -> None:
    """A context's sequence numbers and `$` keep naming the messages they named when the
    command ran (as Dovecot turns them into UIDs): an expunge before them does not shift them
    onto other messages."""
    acct = mailbox(srv, ["a", "b", "c", "d"])
    raw = selected(srv, acct)
    assert raw.ok("SEARCH RETURN (UPDATE ALL) 3:4 SEEN") == [b'* ESEARCH (TAG "t3")']
    raw.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    raw.ok("EXPUNGE")                       # b c d are messages 1 2 3 now
    lines = raw.ok("STORE 1:3 +FLAGS (\\Seen)")
    assert esearch(lines) == [b'* ESEARCH (TAG "t3") ADDTO (0 2:3)']
    raw.close()


def test_sort_context_waits_for_an_expunge_it_cannot_read(srv) -> None:
    """A SORT context places a new result by comparing it with results already there; when one
    of those was expunged by another session and the view has not announced it yet (FETCH may
    not, X1), the context waits: after the EXPUNGE it says REMOVEFROM then ADDTO."""
    acct = mailbox(srv, ["a", "b", "c"], {1: ("\\Flagged",)})
    raw = selected(srv, acct)
    assert raw.ok("UID SORT RETURN (UPDATE ALL) (SUBJECT) UTF-8 FLAGGED") == \
        [b'* ESEARCH (TAG "t3") UID ALL 1']
    other = selected(srv, acct)
    other.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    other.ok("UID STORE 2 +FLAGS (\\Flagged)")
    lines = raw.ok("FETCH 3 (FLAGS)")
    assert not any(b"EXPUNGE" in x or b"ESEARCH" in x for x in lines), lines
    lines = raw.ok("NOOP")
    assert lines[0] == b'* ESEARCH (TAG "t3") UID REMOVEFROM (1 1)'
    assert lines[1] == b"* 1 EXPUNGE"
    assert lines[-1] == b'* ESEARCH (TAG "t3") UID ADDTO (1 2)'
    other.close()
    raw.close()


# --- a client's view of its contexts, checked against fresh answers -------------------------

def expand(text: bytes) -> list[int]:
    """A sequence-set in the order written (RFC 5267 §3.2: ranges ascend)."""
    out: list[int] = []
    for part in text.split(b","):
        lo, _, hi = part.partition(b":")
        a, b = int(lo), int(hi or lo)
        out.extend(range(min(a, b), max(a, b) + 1))
    return out


class Client:
    """What a client keeps for its contexts: each result as a list, changed by ADDTO /
    REMOVEFROM (RFC 5267 §4.3.3, §4.3.4) and, for sequence numbers, by EXPUNGE."""

    def __init__(self) -> None:
        self.results: dict[str, list[int]] = {}
        self.uid: dict[str, bool] = {}
        self.sorted: dict[str, bool] = {}

    def start(self, tag: str, line: bytes, uid: bool, sort: bool) -> None:
        m = re.search(rb" ALL (\S+)", line)
        self.results[tag] = expand(m.group(1)) if m else []
        self.uid[tag], self.sorted[tag] = uid, sort

    def feed(self, lines: list[bytes]) -> None:
        for line in lines:
            m = re.fullmatch(rb"\* (\d+) EXPUNGE", line)
            if m:
                n = int(m.group(1))
                for tag, result in self.results.items():
                    if not self.uid[tag]:
                        assert n not in result, (tag, n, "REMOVEFROM must come first")
                        self.results[tag] = [x - 1 if x > n else x for x in result]
                continue
            m = re.fullmatch(rb'\* ESEARCH \(TAG "([^"]+)"\)( UID)? (ADDTO|REMOVEFROM) \((.*)\)',
                             line)
            if not m or m.group(1).decode() not in self.results:
                continue
            tag = m.group(1).decode()
            result = self.results[tag]
            words = m.group(4).split()
            for pos_text, numbers in zip(words[::2], words[1::2], strict=True):
                pos, items = int(pos_text), expand(numbers)
                if m.group(3) == b"ADDTO":
                    if pos == 0:
                        assert not self.sorted[tag]
                        result[:] = sorted(result + items)
                    else:
                        result[pos - 1:pos - 1] = items
                elif pos == 0:
                    result[:] = [x for x in result if x not in items]
                else:
                    assert result[pos - 1:pos - 1 + len(items)] == items, (tag, line, result)
                    del result[pos - 1:pos - 1 + len(items)]


CONTEXTS = [
    ("UID SORT", "(SUBJECT) UTF-8 FLAGGED", True, True),
    ("SORT", "(REVERSE SUBJECT REVERSE ARRIVAL) UTF-8 OR FLAGGED KEYWORD k", False, True),
    ("SORT", "(SIZE) UTF-8 NOT KEYWORD k", False, True),
    ("SEARCH", "FLAGGED", False, False),
    ("UID SEARCH", "NOT KEYWORD k", True, False),
]


@pytest.mark.parametrize("insert_most,key_cache", [(256, 4096), (2, 3)])
def test_contexts_stay_true_under_random_changes(srv, monkeypatch, insert_most: int,
                                                 key_cache: int) -> None:
    """RFC 5267 §4.3: whatever another session flags, delivers and expunges, a client that
    applies every ADDTO / REMOVEFROM in order holds what a fresh SEARCH / SORT answers, for
    UID and sequence-number contexts, sorted and not (with small bounds too: new results
    placed one by one or the whole result sorted again, few sort keys kept). Seeded, so
    every run is the same."""
    monkeypatch.setattr(contexts, "INSERT_MOST", insert_most)
    monkeypatch.setattr(contexts, "KEY_CACHE", key_cache)
    rng = random.Random(5267)
    subjects = ["a", "b", "c", "Re: a", "d"]
    acct = mailbox(srv, [rng.choice(subjects) for _ in range(24)],
                   {i: ("\\Flagged",) for i in range(1, 25) if rng.random() < 0.3})
    raw = selected(srv, acct)
    client = Client()
    for i, (command, program, uid, sort) in enumerate(CONTEXTS):
        tag = f"C{i}"
        lines, tagged = raw.command(f"{command} RETURN (UPDATE ALL) {program}", tag=tag)
        assert tagged.startswith(tag.encode() + b" OK"), tagged
        client.start(tag, lines[-1], uid, sort)
    other = selected(srv, acct)
    for _ in range(30):
        lines = other.ok("SEARCH ALL")
        present = [int(x) for x in lines[0].split()[2:]]
        action = rng.random()
        if action < 0.45 and present:
            some = rng.sample(present, min(len(present), rng.randint(1, 6)))
            flag = rng.choice(["\\Flagged", "k"])
            sign = rng.choice("+-")
            other.ok(f"STORE {','.join(map(str, some))} {sign}FLAGS.SILENT ({flag})")
        elif action < 0.7:
            for _ in range(rng.randint(1, 3)):
                deliver(srv, acct, mail(rng.choice(subjects), "x" * rng.randint(1, 50)),
                        flags=rng.choice([(), ("\\Flagged",), ("k",)]))
        elif present:
            some = rng.sample(present, min(len(present), rng.randint(1, 3)))
            other.ok(f"STORE {','.join(map(str, some))} +FLAGS.SILENT (\\Deleted)")
            other.ok("EXPUNGE")
        client.feed(raw.ok("NOOP"))
        for i, (command, program, _, sort) in enumerate(CONTEXTS):
            lines = raw.ok(f"{command} RETURN (ALL) {program}")
            client.feed(lines[:-1])
            m = re.search(rb" ALL (\S+)", lines[-1])
            fresh = expand(m.group(1)) if m else []
            have = client.results[f"C{i}"]
            assert (have if sort else sorted(have)) == fresh, (command, program)
    other.close()
    raw.close()
