"""Grammars of the extension commands and parameters that are not FETCH / STORE / SEARCH:
SELECT / EXAMINE parameters (CONDSTORE, QRESYNC: RFC 7162 §3.1.8, §3.2.5), CREATE ... (USE
(...)) (RFC 6154 §3), APPEND with MULTIAPPEND (RFC 3502), literal8 (RFC 3516 §4.4), CATENATE
(RFC 4469 §5) and the UTF8 data extension (RFC 6855 §4), GETQUOTA / GETQUOTAROOT / SETQUOTA (RFC 9208 §4), COMPRESS
(RFC 4978 §3) and NOTIFY (RFC 5465 §8).

Must never: import asyncio, socket, config or the store; raise anything but ParseError.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable

from casella.imap import commands as c
from casella.imap.lexer import ParseError, Reader
from casella.imap.parse_fetch import fetch_att_list
from casella.imap.seqset import SeqSet

MAX_APPEND_MESSAGES = 1000      # messages in one MULTIAPPEND (PROMISES P1)
MAX_CATENATE_PARTS = 1000       # TEXT and URL parts in one APPEND, all messages together
MAX_NOTIFY_GROUPS = 50


def _qresync(r: Reader) -> c.QresyncParams:
    """`(uidvalidity mod-sequence-value [known-uids [seq-match-data]])` (RFC 7162 §7)."""
    r.open_paren()
    uidvalidity = r.nz_number()
    r.sp()
    modseq = r.modseq(allow_zero=False)
    known: SeqSet | None = None
    match: tuple[SeqSet, SeqSet] | None = None
    if r.maybe_sp():
        known = r.seq_set()
        if r.maybe_sp():
            r.open_paren()
            seqs = r.seq_set()
            r.sp()
            uids = r.seq_set()
            r.close_paren()
            match = (seqs, uids)
    r.close_paren()
    for s in (known, *(match or ())):
        if s is not None and (s.saved or s.has_star()):
            raise ParseError("QRESYNC sets must be explicit UIDs and sequence numbers")
    return c.QresyncParams(uidvalidity, modseq, known, match)


def select(readonly: bool) -> Callable[[Reader], c.Select]:
    """SELECT / EXAMINE mailbox [(param...)] (RFC 4466 select-params)."""
    def parse(r: Reader) -> c.Select:
        r.sp()
        mailbox = r.mailbox()
        condstore = False
        qresync: c.QresyncParams | None = None
        if r.maybe_sp():
            def param() -> str:
                nonlocal condstore, qresync
                word = r.keyword()
                if word == "CONDSTORE":
                    condstore = True
                elif word == "QRESYNC":
                    if qresync is not None:
                        raise ParseError("QRESYNC given twice")
                    r.sp()
                    qresync = _qresync(r)
                else:
                    raise ParseError(f"unknown SELECT parameter {word[:30]}")
                return word
            r.paren_list(param)       # "()" is accepted, as before any parameter existed
        return c.Select(mailbox, readonly, condstore, qresync)
    return parse


def create(r: Reader) -> c.Create:
    """CREATE mailbox [(USE (\\Drafts ...))] (RFC 6154 §3, RFC 4466 create-params)."""
    r.sp()
    mailbox = r.mailbox()
    uses: list[str] = []
    if r.maybe_sp():
        def param() -> str:
            word = r.keyword()
            if word != "USE":
                raise ParseError(f"unknown CREATE parameter {word[:30]}")
            r.sp()

            def use() -> str:
                # The handler checks the attribute (RFC 6154 §3: NO [USEATTR] if unknown).
                r.expect(b"\\")
                return "\\" + r.atom().decode("ascii")
            uses.extend(r.paren_list(use))
            return word
        if not r.paren_list(param):
            raise ParseError("empty CREATE parameter list")
    return c.Create(mailbox, tuple(dict.fromkeys(uses)))


def _catenate(r: Reader, budget: int) -> tuple[c.CatenatePart, ...]:
    """RFC 4469 §5: `"CATENATE" SP "(" cat-part *(SP cat-part) ")"`, cat-part = `"TEXT" SP
    literal` / `"URL" SP astring`; at most `budget` parts."""
    r.keyword("CATENATE")
    r.sp()
    r.open_paren()
    if r.peek() == 0x29:
        raise ParseError("CATENATE needs at least one part")
    parts: list[c.CatenatePart] = []
    while True:
        word = r.keyword("TEXT", "URL")
        r.sp()
        if word == "TEXT":
            if r.peek() == 0x7E:
                raise ParseError("a CATENATE TEXT part is a literal, not a literal8")
            parts.append(r.literal(allow_external=True))
        else:
            parts.append(c.CatenateUrl(r.astring()))
        if len(parts) > budget:
            raise ParseError(f"more than {MAX_CATENATE_PARTS} CATENATE parts", code="LIMIT")
        if r.maybe(b")"):
            r.depth -= 1
            return tuple(parts)
        r.sp()


def append(r: Reader) -> c.Append:
    """APPEND mailbox 1*(SP [flag-list SP] [date-time SP] (literal / literal8 /
    "UTF8" SP "(" literal8 ")" / "CATENATE" SP "(" cat-part ... ")")) — several messages make
    a MULTIAPPEND (RFC 3502 §6.3.11)."""
    r.sp()
    mailbox = r.mailbox()
    messages: list[c.AppendMessage] = []
    budget = MAX_CATENATE_PARTS
    while True:
        r.sp()
        flags: tuple[str, ...] = ()
        date = None
        if r.peek() == 0x28:
            flags = r.flag_list()
            r.sp()
        if r.peek() == 0x22:
            date = r.date_time()
            r.sp()
        flags = tuple(dict.fromkeys(flags))
        if r.line[r.pos:r.pos + 9].upper() == b"CATENATE ":
            parts = _catenate(r, budget)
            budget -= len(parts)
            messages.append(c.AppendMessage(flags, date, b"", catenate=parts))
        else:
            messages.append(_append_data(r, flags, date))
        if len(messages) > MAX_APPEND_MESSAGES:
            raise ParseError(f"more than {MAX_APPEND_MESSAGES} messages in one APPEND",
                             code="LIMIT")
        if r.at_line_end():
            return c.Append(mailbox, tuple(messages))


def _append_data(r: Reader, flags: tuple[str, ...],
                 date: datetime.datetime | None) -> c.AppendMessage:
    """The message as one literal, literal8, or `"UTF8" SP "(" literal8 ")"`."""
    utf8 = False
    if r.line[r.pos:r.pos + 4].upper() == b"UTF8":
        r.keyword("UTF8")
        r.sp()
        r.expect(b"(")
        utf8 = True
    if r.peek() not in (0x7B, 0x7E):
        raise ParseError("APPEND needs the message as a literal")
    binary = r.peek() == 0x7E
    if utf8 and not binary:
        raise ParseError("UTF8 APPEND data must be a literal8 (~{n})")
    message = r.literal(allow_external=True, binary=True)
    if utf8:
        r.expect(b")")
    return c.AppendMessage(flags, date, message, binary, utf8)


def getquota(r: Reader) -> c.GetQuota:
    r.sp()
    return c.GetQuota(r.astring())


def getquotaroot(r: Reader) -> c.GetQuotaRoot:
    r.sp()
    return c.GetQuotaRoot(r.mailbox())


def setquota(r: Reader) -> c.SetQuota:
    """SETQUOTA root (resource limit ...) (RFC 9208 §4.1.3)."""
    r.sp()
    root = r.astring()
    r.sp()

    def pair() -> tuple[str, int]:
        name = r.keyword()
        r.sp()
        return name, r.number(limit=(1 << 63) - 1)
    return c.SetQuota(root, tuple(r.paren_list(pair)))


def compress(r: Reader) -> c.Compress:
    r.sp()
    return c.Compress(r.atom().decode("ascii").upper())


_FILTERS = ("SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED", "SUBTREE",
            "MAILBOXES")


def _notify_event(r: Reader, selected: bool) -> c.NotifyEvent:
    name = r.keyword()
    if name not in c.NOTIFY_MESSAGE_EVENTS + c.NOTIFY_MAILBOX_EVENTS:
        # RFC 5465 §8 event-ext = atom: unknown events parse; the handler answers NO
        # [BADEVENT] for everything it does not support.
        return c.NotifyEvent(name)
    if selected and name in c.NOTIFY_MAILBOX_EVENTS:
        raise ParseError(f"{name} cannot be asked for the selected mailbox")
    fetch: tuple[c.FetchAtt, ...] = ()
    if name == "MESSAGENEW" and r.line[r.pos:r.pos + 2] == b" (":
        if not selected:
            raise ParseError("FETCH items for MessageNew only with SELECTED")
        r.sp()
        fetch = tuple(fetch_att_list(r))
    return c.NotifyEvent(name, fetch)


def _notify_group(r: Reader) -> c.NotifyGroup:
    r.open_paren()
    kind = r.keyword(*_FILTERS)
    boxes: tuple[bytes, ...] = ()
    if kind in ("SUBTREE", "MAILBOXES"):
        r.sp()
        if r.peek() == 0x28:
            boxes = tuple(r.paren_list(r.mailbox))
            if not boxes:
                raise ParseError(f"{kind} needs at least one mailbox")
        else:
            boxes = (r.mailbox(),)
    r.sp()
    selected = kind.startswith("SELECTED")
    events: tuple[c.NotifyEvent, ...] | None
    if r.peek() == 0x28:
        events = tuple(r.paren_list(lambda: _notify_event(r, selected)))
        if not events:
            raise ParseError("empty event list (use NONE)")
    elif r.line[r.pos:r.pos + 5].upper() == b"NONE)":
        r.keyword("NONE")
        events = None
    else:
        # The RFC's own examples write the events without parentheses ("(subtree Lists
        # MessageNew)"); accept that form too.
        found = [_notify_event(r, selected)]
        while r.maybe_sp():
            found.append(_notify_event(r, selected))
        events = tuple(found)
    r.close_paren()
    return c.NotifyGroup(kind, boxes, events)


def notify(r: Reader) -> c.Notify:
    """NOTIFY SET [STATUS] event-groups / NOTIFY NONE (RFC 5465 §8)."""
    r.sp()
    word = r.keyword("SET", "NONE")
    if word == "NONE":
        return c.Notify(None)
    r.sp()
    status = False
    if r.peek() != 0x28:
        r.keyword("STATUS")
        status = True
        r.sp()
    groups = [_notify_group(r)]
    while r.maybe_sp():
        groups.append(_notify_group(r))
        if len(groups) > MAX_NOTIFY_GROUPS:
            raise ParseError("too many NOTIFY event groups", code="LIMIT")
    if sum(1 for g in groups if g.filter.startswith("SELECTED")) > 1:
        raise ParseError("only one of SELECTED and SELECTED-DELAYED may be given")
    for g in groups:
        if not g.filter.startswith("SELECTED"):
            # For other mailboxes the events only choose what STATUS reports, and any
            # combination makes sense (Dovecot accepts MessageExpunge alone there too).
            continue
        names = {e.name for e in g.events or ()}
        # RFC 5465 §5: for the selected mailbox, MessageNew and MessageExpunge go together
        # (EXISTS and EXPUNGE keep the sequence numbers right); FlagChange and
        # AnnotationChange need both.
        if ("MESSAGENEW" in names) != ("MESSAGEEXPUNGE" in names):
            raise ParseError("MessageNew and MessageExpunge must be asked for together")
        if names & {"FLAGCHANGE", "ANNOTATIONCHANGE"} and "MESSAGENEW" not in names:
            raise ParseError("FlagChange needs MessageNew and MessageExpunge")
    return c.Notify(tuple(groups), status)
