"""The FETCH and STORE grammars (RFC 9051 §6.4.5, §6.4.6) with their extensions: BINARY[],
BINARY.PEEK[], BINARY.SIZE[] (RFC 3516), MODSEQ and the CHANGEDSINCE / VANISHED modifiers,
STORE (UNCHANGEDSINCE n) (RFC 7162), EMAILID / THREADID (RFC 8474), SAVEDATE (RFC 8514) and
PREVIEW / PREVIEW (LAZY) (RFC 8970).

Must never: import asyncio, socket, config or the store; raise anything but ParseError.
"""

from __future__ import annotations

from collections.abc import Callable

from casella.imap import commands as c
from casella.imap.lexer import FETCH_NAME, MAX_DEPTH, STORE_ITEM, ParseError, Reader

_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
SIMPLE_ATTS = ("ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
               "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID", "MODSEQ", "EMAILID", "THREADID",
               "SAVEDATE", "PREVIEW")


def _section(r: Reader) -> c.Section:
    r.expect(b"[")
    if r.maybe(b"]"):
        return c.Section()
    parts: list[int] = []
    text: str | None = None
    fields: tuple[str, ...] = ()
    if 0x30 <= r.peek() <= 0x39:
        parts.append(r.nz_number())
        while r.maybe(b"."):
            if 0x30 <= r.peek() <= 0x39:
                parts.append(r.nz_number())
                if len(parts) > MAX_DEPTH:
                    raise ParseError("section part number too deep", code="LIMIT")
            else:
                text = r.match_re(FETCH_NAME, "a section").upper().decode("ascii")
                break
    else:
        text = r.match_re(FETCH_NAME, "a section").upper().decode("ascii")
    if text is not None:
        allowed: tuple[str, ...] = ("HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT")
        if parts:
            allowed += ("MIME",)
        if text not in allowed:
            raise ParseError(f"unknown section {text[:30]}")
        if text.startswith("HEADER.FIELDS"):
            r.sp()
            names = r.paren_list(lambda: r.text_astring("header field name"))
            if not names:
                raise ParseError("HEADER.FIELDS needs at least one field name")
            for name in names:
                if not name or any(ord(ch) <= 0x20 or ord(ch) >= 0x7F or ch == ":"
                                   for ch in name):
                    raise ParseError("invalid header field name")
            fields = tuple(names)
    r.expect(b"]")
    return c.Section(tuple(parts), text, fields)


def parse_section(text: bytes) -> c.Section:
    """A section spec on its own, as an IMAP URL's `;SECTION=` carries it (RFC 5092 §11
    `enc-section`, once percent-decoded): `1.2.MIME`, `HEADER.FIELDS (To)`, "" for all."""
    r = Reader([b"[" + text + b"]"], [])
    section = _section(r)
    r.end()
    return section


def _binary_section(r: Reader) -> c.Section:
    """RFC 3516 §4.1: `section-binary = "[" [section-part] "]"`: part numbers only."""
    r.expect(b"[")
    parts: list[int] = []
    if not r.maybe(b"]"):
        parts.append(r.nz_number())
        while r.maybe(b"."):
            parts.append(r.nz_number())
            if len(parts) > MAX_DEPTH:
                raise ParseError("section part number too deep", code="LIMIT")
        r.expect(b"]")
    return c.Section(tuple(parts))


def _partial(r: Reader) -> tuple[int, int] | None:
    if not r.maybe(b"<"):
        return None
    origin = r.number()
    r.expect(b".")
    length = r.nz_number()
    r.expect(b">")
    return origin, length


def fetch_att(r: Reader) -> c.FetchAtt:
    name = r.match_re(FETCH_NAME, "a FETCH item").upper().decode("ascii")
    if name in ("BODY", "BODY.PEEK") and r.peek() == 0x5B:
        section = _section(r)
        return c.FetchAtt("BODY[]", section, name == "BODY.PEEK", _partial(r))
    if name in ("BINARY", "BINARY.PEEK"):
        section = _binary_section(r)
        return c.FetchAtt("BINARY[]", section, name == "BINARY.PEEK", _partial(r))
    if name == "BINARY.SIZE":
        return c.FetchAtt("BINARY.SIZE", _binary_section(r))
    if name == "PREVIEW" and r.line[r.pos:r.pos + 7].upper() == b" (LAZY)":
        # RFC 8970 §3.1: PREVIEW (LAZY). Anything else in parentheses after PREVIEW is not a
        # preview modifier (`FETCH 1 PREVIEW (CHANGEDSINCE 5)` is a fetch modifier).
        r.pos += 7
        return c.FetchAtt("PREVIEW", lazy=True)
    if name in SIMPLE_ATTS:
        return c.FetchAtt(name)
    raise ParseError(f"unknown FETCH item {name[:30]}")


def fetch_att_list(r: Reader) -> list[c.FetchAtt]:
    """A parenthesised list of fetch-att (NOTIFY MessageNew uses the same)."""
    items = r.paren_list(lambda: fetch_att(r))
    if not items:
        raise ParseError("FETCH needs at least one item")
    return items


def _fetch_modifiers(r: Reader, uid: bool) -> tuple[int | None, bool]:
    """`(CHANGEDSINCE n [VANISHED])` (RFC 4466 fetch-modifier, RFC 7162 §3.1.4, §3.2.6)."""
    changedsince: int | None = None
    vanished = False

    def modifier() -> str:
        nonlocal changedsince, vanished
        word = r.keyword()
        if word == "CHANGEDSINCE":
            if changedsince is not None:
                raise ParseError("CHANGEDSINCE given twice")
            r.sp()
            changedsince = r.modseq(allow_zero=True)
        elif word == "VANISHED":
            if not uid:
                raise ParseError("VANISHED is only allowed with UID FETCH")
            vanished = True
        else:
            raise ParseError(f"unknown FETCH modifier {word[:30]}")
        return word

    if not r.paren_list(modifier):
        raise ParseError("empty FETCH modifier list")
    if vanished and changedsince is None:
        raise ParseError("VANISHED needs CHANGEDSINCE")
    return changedsince, vanished


def fetch(uid: bool) -> Callable[[Reader], c.Fetch]:
    def parse(r: Reader) -> c.Fetch:
        r.sp()
        messages = r.seq_set()
        r.sp()
        items: list[c.FetchAtt]
        if r.peek() == 0x28:
            items = fetch_att_list(r)
        else:
            save = r.pos
            word = r.match_re(FETCH_NAME, "a FETCH item").upper().decode("ascii")
            if word in _MACROS:
                items = [c.FetchAtt(n) for n in _MACROS[word]]
            else:
                r.pos = save
                items = [fetch_att(r)]
        changedsince: int | None = None
        vanished = False
        if r.maybe_sp():
            changedsince, vanished = _fetch_modifiers(r, uid)
        if uid and not any(i.name == "UID" for i in items):
            items.insert(0, c.FetchAtt("UID"))  # RFC 9051 §6.4.9: UID FETCH always reports UID
        if changedsince is not None and not any(i.name == "MODSEQ" for i in items):
            items.append(c.FetchAtt("MODSEQ"))  # RFC 7162 §3.1.4.1: CHANGEDSINCE implies MODSEQ
        return c.Fetch(uid, messages, tuple(dict.fromkeys(items)), changedsince, vanished)
    return parse


def store(uid: bool) -> Callable[[Reader], c.Store]:
    def parse(r: Reader) -> c.Store:
        r.sp()
        messages = r.seq_set()
        r.sp()
        unchangedsince: int | None = None
        if r.peek() == 0x28:
            # RFC 4466 store-modifiers; RFC 7162 §3.1.3 defines UNCHANGEDSINCE.
            def modifier() -> str:
                nonlocal unchangedsince
                word = r.keyword()
                if word != "UNCHANGEDSINCE":
                    raise ParseError(f"unknown STORE modifier {word[:30]}")
                if unchangedsince is not None:
                    raise ParseError("UNCHANGEDSINCE given twice")
                r.sp()
                unchangedsince = r.modseq(allow_zero=True)
                return word
            if not r.paren_list(modifier):
                raise ParseError("empty STORE modifier list")
            r.sp()
        word = r.atom().upper()
        m = STORE_ITEM.fullmatch(word)
        if m is None:
            raise ParseError("STORE needs FLAGS, +FLAGS or -FLAGS")
        mode = {b"": "replace", b"+": "add", b"-": "remove"}[m.group(1)]
        r.sp()
        if r.peek() == 0x28:
            flags = r.flag_list()
        else:
            items = [r.flag()]
            while r.maybe_sp():
                items.append(r.flag())
                if len(items) > 100:
                    raise ParseError("more than 100 flags", code="LIMIT")
            flags = tuple(items)
        return c.Store(uid, messages, mode, m.group(2) is not None, tuple(dict.fromkeys(flags)),
                       unchangedsince)
    return parse
