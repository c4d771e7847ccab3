"""The SEARCH key grammar (RFC 9051 §6.4.4) and the commands built on it: SEARCH with RETURN
options (RFC 4731, SEARCHRES RFC 5182, CONTEXT / UPDATE / PARTIAL of RFC 5267 §4 with the
PARTIAL ranges of RFC 9394), SORT with the same RETURN options (ESORT, RFC 5267 §3; RFC 5256,
DISPLAY keys RFC 5957), THREAD (RFC 5256) and CANCELUPDATE (RFC 5267 §4.3.5). Extension keys: MODSEQ (RFC 7162 §3.1.5), OLDER / YOUNGER (WITHIN, RFC 5032),
SAVEDBEFORE / SAVEDON / SAVEDSINCE / SAVEDATESUPPORTED (RFC 8514), EMAILID / THREADID
(RFC 8474 §6).

A program is bounded in size (MAX_SEARCH_KEYS keys, answered BAD [LIMIT]) and in nesting depth.
Must never: import asyncio, socket, config or the store; raise anything but ParseError.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from casella.imap import commands as c
from casella.imap.lexer import ATOM, MAX_DEPTH, ParseError, Reader

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True), "UNDELETED": ("\\Deleted", False),
    "DRAFT": ("\\Draft", True), "UNDRAFT": ("\\Draft", False),
    "FLAGGED": ("\\Flagged", True), "UNFLAGGED": ("\\Flagged", False),
    "SEEN": ("\\Seen", True), "UNSEEN": ("\\Seen", False),
}
_ADDRESS_KEYS = ("FROM", "TO", "CC", "BCC", "SUBJECT")
_DATE_KEYS = {"BEFORE": ("before", False), "ON": ("on", False), "SINCE": ("since", False),
              "SENTBEFORE": ("before", True), "SENTON": ("on", True),
              "SENTSINCE": ("since", True)}
_SAVED_KEYS = {"SAVEDBEFORE": "before", "SAVEDON": "on", "SAVEDSINCE": "since"}
_OBJECTID = re.compile(rb"[A-Za-z0-9_-]{1,255}")
_PARTIAL = re.compile(rb"(-?)([0-9]{1,20}):(-?)([0-9]{1,20})")
_NZ_MAX = 0xFFFFFFFF
_ENTRY_TYPES = ("PRIV", "SHARED", "ALL")


def _nested(r: Reader) -> None:
    r.depth += 1
    if r.depth > MAX_DEPTH:
        raise ParseError("search keys nested too deeply", code="LIMIT")


def search_key(r: Reader) -> c.SearchKey:
    r.count_search_key()
    ch = r.peek()
    if ch == 0x28:
        keys = r.paren_list(lambda: search_key(r))
        if not keys:
            raise ParseError("empty parenthesised search key")
        return keys[0] if len(keys) == 1 else c.SAnd(tuple(keys))
    if ch == 0x2A or ch == 0x24 or 0x30 <= ch <= 0x39:
        return c.SSeq(r.seq_set())
    word = r.keyword()
    if word == "ALL":
        return c.SAll()
    if word in _FLAG_KEYS:
        flag, present = _FLAG_KEYS[word]
        return c.SFlag(flag, present)
    if word in ("KEYWORD", "UNKEYWORD"):
        r.sp()
        kw = r.atom().decode("ascii")
        return c.SFlag(kw, word == "KEYWORD")
    if word == "NEW":       # RFC 3501: RECENT UNSEEN
        return c.SAnd((c.SRecent(True), c.SFlag("\\Seen", False)))
    if word == "OLD":
        return c.SRecent(False)
    if word == "RECENT":
        return c.SRecent(True)
    if word in _ADDRESS_KEYS:
        r.sp()
        return c.SHeader(word.capitalize(), r.astring())
    if word == "HEADER":
        r.sp()
        name = r.text_astring("header field name")
        r.sp()
        return c.SHeader(name, r.astring())
    if word in ("BODY", "TEXT"):
        r.sp()
        return c.SText(r.astring(), word == "TEXT")
    if word in _DATE_KEYS:
        op, sent = _DATE_KEYS[word]
        r.sp()
        return c.SDate(op, r.date(), sent)
    if word in _SAVED_KEYS:
        r.sp()
        return c.SSaveDate(_SAVED_KEYS[word], r.date())
    if word == "SAVEDATESUPPORTED":
        return c.SSaveDate(None)
    if word in ("LARGER", "SMALLER"):
        r.sp()
        return c.SSize(word == "LARGER", r.number(limit=(1 << 63) - 1))
    if word in ("OLDER", "YOUNGER"):
        r.sp()
        return c.SWithin(word == "OLDER", r.nz_number())
    if word == "MODSEQ":
        # RFC 7162 §3.1.5: MODSEQ [entry-name entry-type-req] mod-sequence-valzer. casella keeps
        # one MODSEQ per message, so the entry (a flag's own MODSEQ) only has to be valid.
        r.sp()
        if r.peek() == 0x22:
            r.quoted()
            r.sp()
            r.keyword(*_ENTRY_TYPES)
            r.sp()
        return c.SModseq(r.modseq(allow_zero=True))
    if word in ("EMAILID", "THREADID"):
        r.sp()
        value = r.match_re(_OBJECTID, "an object id").decode("ascii")
        return c.SObjectId(word, value)
    if word == "UID":
        r.sp()
        return c.SUid(r.seq_set())
    if word == "NOT":
        r.sp()
        _nested(r)
        key = search_key(r)
        r.depth -= 1
        return c.SNot(key)
    if word == "OR":
        r.sp()
        _nested(r)
        a = search_key(r)
        r.sp()
        b = search_key(r)
        r.depth -= 1
        return c.SOr(a, b)
    raise ParseError(f"unknown search key {word[:30]}")


def search_program(r: Reader) -> c.SearchKey:
    """One or more search keys separated by spaces, up to the end of the command."""
    keys = [search_key(r)]
    while r.maybe_sp():
        keys.append(search_key(r))
    return keys[0] if len(keys) == 1 else c.SAnd(tuple(keys))


def _peek_word(r: Reader) -> bytes:
    """The atom at the cursor, upper-cased and consumed, or b"" (cursor unchanged)."""
    m = ATOM.match(r.line, r.pos)
    if m is None:
        return b""
    r.pos = m.end()
    return m.group().upper()


def _charset(r: Reader) -> str:
    raw = r.astring()
    try:
        return raw.decode("ascii").upper()
    except UnicodeDecodeError:
        raise ParseError("invalid charset name") from None


def partial_range(r: Reader) -> tuple[int, int]:
    """RFC 9394 §4 (RFC 5267 §4.4): partial-range-first = nz-number ":" nz-number, or
    partial-range-last = "-" nz-number ":-" nz-number; never "*". 500:400 is 400:500 and
    -500:-400 is -400:-500, so the answer is ordered: (400, 500), (-400, -500)."""
    m = _PARTIAL.fullmatch(r.match_re(_PARTIAL, "a partial range such as 1:100 or -1:-100"))
    assert m is not None
    first, last = int(m[2]), int(m[4])
    if m[1] != m[3]:
        raise ParseError("both ends of a partial range must have the same sign")
    if not (0 < first <= _NZ_MAX and 0 < last <= _NZ_MAX):
        raise ParseError("a partial range counts from 1 to 4294967295")
    if first > last:
        first, last = last, first
    return (-first, -last) if m[1] else (first, last)


def return_options(r: Reader) -> tuple[tuple[str, ...], tuple[int, int] | None]:
    """`(` [option *(SP option)] `)` after RETURN: the options (each once, in the order given)
    and PARTIAL's range."""
    partial: tuple[int, int] | None = None

    def option() -> str:
        nonlocal partial
        word = r.keyword(*c.SEARCH_RETURN_OPTIONS)
        if word == "PARTIAL":
            if partial is not None:
                raise ParseError("PARTIAL given twice")
            r.sp()
            partial = partial_range(r)
        return word

    returns = tuple(dict.fromkeys(r.paren_list(option)))
    if partial is not None and "ALL" in returns:
        # RFC 5267 §4.4, RFC 9394 §3.1: one PARTIAL, one ALL, or neither.
        raise ParseError("PARTIAL and ALL cannot be used together")
    return returns, partial


def search(uid: bool) -> Callable[[Reader], c.Search]:
    def parse(r: Reader) -> c.Search:
        r.sp()
        returns: tuple[str, ...] | None = None
        partial: tuple[int, int] | None = None
        charset: str | None = None
        save = r.pos
        word = _peek_word(r)
        if word == b"RETURN":
            r.sp()
            returns, partial = return_options(r)
            r.sp()
            save = r.pos
            word = _peek_word(r)
        if word == b"CHARSET":
            r.sp()
            charset = _charset(r)
            r.sp()
        else:
            r.pos = save
        return c.Search(uid, search_program(r), charset, returns, partial)
    return parse


def cancelupdate(r: Reader) -> c.CancelUpdate:
    """RFC 5267 §5: "CANCELUPDATE" 1*(SP quoted)."""
    tags = []
    while r.maybe_sp():
        raw = r.quoted()
        try:
            tags.append(raw.decode("ascii"))
        except UnicodeDecodeError:
            raise ParseError("a tag is ASCII") from None
        if len(tags) > 100:
            raise ParseError("too many tags", code="LIMIT")
    if not tags:
        raise ParseError("CANCELUPDATE needs the tag of a searching command")
    return c.CancelUpdate(tuple(tags))


def sort(uid: bool) -> Callable[[Reader], c.Sort]:
    """RFC 5256 §3: SORT (criteria) charset search-key...; RFC 5957 adds DISPLAYFROM/TO;
    RFC 5267 §5: extended-sort = ["UID" SP] "SORT" search-return-opts SP sort-criteria ..."""
    def parse(r: Reader) -> c.Sort:
        r.sp()
        returns: tuple[str, ...] | None = None
        partial: tuple[int, int] | None = None
        if r.peek() != 0x28:
            r.keyword("RETURN")
            r.sp()
            returns, partial = return_options(r)
            r.sp()
        pending_reverse = False

        def criterion() -> c.SortKey | None:
            nonlocal pending_reverse
            word = r.keyword()
            if word == "REVERSE":
                if pending_reverse:
                    raise ParseError("REVERSE given twice")
                pending_reverse = True
                return None
            if word not in c.SORT_KEYS:
                raise ParseError(f"unknown sort key {word[:30]}")
            key = c.SortKey(word, pending_reverse)
            pending_reverse = False
            return key

        items = r.paren_list(criterion)
        if pending_reverse:
            raise ParseError("REVERSE must be followed by a sort key")
        criteria = tuple(k for k in items if k is not None)
        if not criteria:
            raise ParseError("SORT needs at least one sort key")
        r.sp()
        charset = _charset(r)
        r.sp()
        return c.Sort(uid, criteria, charset, search_program(r), returns, partial)
    return parse


def thread(uid: bool) -> Callable[[Reader], c.Thread]:
    def parse(r: Reader) -> c.Thread:
        r.sp()
        algorithm = r.keyword()
        if algorithm not in c.THREAD_ALGORITHMS:
            raise ParseError(f"unknown threading algorithm {algorithm[:30]}")
        r.sp()
        charset = _charset(r)
        r.sp()
        return c.Thread(uid, algorithm, charset, search_program(r))
    return parse
