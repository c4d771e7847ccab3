"""The IMAP command parser: command text and literals in, a typed `Request` or `ParseError` out.

Lives here: the grammar of RFC 3501 §9 / RFC 9051 §9 for every command casella serves (tags,
atoms, quoted strings with escapes, literals `{n}`, `{n+}`, sequence sets, flags, dates, LIST
patterns and the extended LIST syntax, FETCH attributes with sections and partials, the whole
SEARCH key grammar), plus two helpers the session uses while reading a command from the wire:
`literal_spec` (does this line end in a literal announcement?) and `peek_command` (tag and
command name from the first line, to pick the literal size limit).

A command arrives as lines and literals: `lines[i]` (without CRLF) ends with the announcement of
`literals[i]`, and the last line ends the command. A literal may be an `ExternalLiteral` the
session streamed elsewhere; only an APPEND message accepts one. Must never: import asyncio,
socket, config or the store; raise anything but ParseError (arbitrary bytes included).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from casella.imap import commands as c
from casella.imap import seqset
from casella.imap.commands import ExternalLiteral

T = TypeVar("T")

MAX_DEPTH = 32          # nested parentheses / NOT / OR in SEARCH and FETCH (PROMISES P1)
MAX_FLAG_LENGTH = 255
MAX_ID_PAIRS = 30       # RFC 2971 §3.3


class ParseError(Exception):
    """The command is not valid IMAP. `tag` is set when the tag itself could be read, so the
    reply can be `tag BAD sentence`; otherwise `* BAD sentence`."""

    def __init__(self, message: str, tag: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tag = tag


LiteralValue = bytes | ExternalLiteral

# ATOM-CHAR: any CHAR except atom-specials ( ) { SP CTL % * " \ ] (RFC 9051 §9).
_ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
_ASTRING_CHARS = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
_TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')
_LIST_CHARS = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')
_NUMBER = re.compile(rb"[0-9]+")
_SEQ_CHARS = re.compile(rb"[0-9:*,$]+")
_LITERAL_AT_END = re.compile(rb"~?\{([0-9]+)(\+)?\}\Z")
_FETCH_NAME = re.compile(rb"[A-Za-z0-9.]+")
_DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
_DATE_TIME = re.compile(rb'" ?([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):'
                        rb'([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"')
_SASL_IR = re.compile(rb"[A-Za-z0-9+/]+={0,2}|=")
_STORE_ITEM = re.compile(rb"([+-]?)FLAGS(\.SILENT)?")
_MONTHS = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)}
_SYSTEM_FLAGS = {"\\ANSWERED": "\\Answered", "\\FLAGGED": "\\Flagged", "\\DELETED": "\\Deleted",
                 "\\SEEN": "\\Seen", "\\DRAFT": "\\Draft"}


def literal_spec(line: bytes) -> tuple[int, bool] | None:
    """(size, non-synchronising) when the line ends with `{n}` or `{n+}`, else None."""
    if not line.endswith(b"}"):
        return None
    m = _LITERAL_AT_END.search(line)
    if m is None:
        return None
    digits = m.group(1)
    size = int(digits) if len(digits) <= 20 else 1 << 64
    return size, m.group(2) is not None


def peek_command(line: bytes) -> tuple[str | None, str]:
    """The tag and upper-case command name of a first line (`UID FETCH` for UID commands), as
    far as they can be read; ("", "") parts when they cannot."""
    m = _TAG.match(line)
    if m is None:
        return None, ""
    tag = m.group().decode("ascii")
    rest = line[m.end():]
    if not rest.startswith(b" "):
        return tag, ""
    words = rest[1:].split(b" ", 2)
    name = words[0].upper().decode("ascii", "replace")
    if name == "UID" and len(words) > 1:
        name = "UID " + words[1].upper().decode("ascii", "replace")
    return tag, name


def split_literals(data: bytes) -> tuple[list[bytes], list[bytes]]:
    """Split a raw command with embedded literals (`... {3}\\r\\nabc ...`) into lines and
    literals, as the session would have read them. Used by tests and fuzzing."""
    lines: list[bytes] = []
    literals: list[bytes] = []
    pos = 0
    while True:
        end = data.find(b"\r\n", pos)
        if end < 0:
            lines.append(data[pos:])
            return lines, literals
        line = data[pos:end]
        spec = literal_spec(line)
        if spec is None:
            # A CRLF that does not follow a literal announcement ends the command.
            lines.append(line)
            return lines, literals
        lines.append(line)
        start = end + 2
        literals.append(data[start:start + spec[0]])
        pos = start + spec[0]


def parse_bytes(data: bytes) -> c.Request:
    """Parse one whole command with embedded literals; see `split_literals`."""
    lines, literals = split_literals(data)
    return parse_request(lines, literals)


def parse_request(lines: Sequence[bytes], literals: Sequence[LiteralValue]) -> c.Request:
    """Parse a command read from the wire."""
    if len(lines) != len(literals) + 1:
        raise ParseError("literal count does not match the command")
    r = _Reader(lines, literals)
    m = _TAG.match(r.line, 0)
    if m is None:
        raise ParseError("missing or invalid tag")
    tag = m.group().decode("ascii")
    r.pos = m.end()
    try:
        r.sp()
        name = r.atom().upper()
        if name == b"UID":
            r.sp()
            sub = r.atom().upper()
            parser = _UID_COMMANDS.get(sub)
            if parser is None:
                raise ParseError(f"unknown UID command {sub.decode('ascii', 'replace')[:30]}")
        else:
            parser = _COMMANDS.get(name)
            if parser is None:
                raise ParseError(f"unknown command {name.decode('ascii', 'replace')[:30]}")
        cmd = parser(r)
        r.end()
    except ParseError as exc:
        exc.tag = tag
        raise
    except RecursionError:
        raise ParseError("command is nested too deeply", tag) from None
    return c.Request(tag, cmd)


class _Reader:
    """A cursor over the lines and literals of one command."""

    __slots__ = ("depth", "li", "line", "lines", "literals", "pos")

    def __init__(self, lines: Sequence[bytes], literals: Sequence[LiteralValue]) -> None:
        self.lines = lines
        self.literals = literals
        self.li = 0
        self.line = lines[0]
        self.pos = 0
        self.depth = 0

    # --- primitives --------------------------------------------------------------------

    def peek(self) -> int:
        """The next byte, or -1 at the end of the current line."""
        return self.line[self.pos] if self.pos < len(self.line) else -1

    def at_line_end(self) -> bool:
        return self.pos >= len(self.line)

    def end(self) -> None:
        if self.pos != len(self.line) or self.li != len(self.lines) - 1:
            raise ParseError("unexpected text after the command's arguments")

    def sp(self) -> None:
        if self.peek() != 0x20:
            if self.at_line_end():
                raise ParseError("missing argument")
            raise ParseError("expected a space")
        self.pos += 1

    def maybe_sp(self) -> bool:
        if self.peek() == 0x20:
            self.pos += 1
            return True
        return False

    def expect(self, ch: bytes) -> None:
        if self.line[self.pos:self.pos + 1] != ch:
            raise ParseError(f"expected {ch.decode()!r}")
        self.pos += 1

    def maybe(self, ch: bytes) -> bool:
        if self.line[self.pos:self.pos + 1] == ch:
            self.pos += 1
            return True
        return False

    def _match(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        m = pattern.match(self.line, self.pos)
        if m is None:
            if self.at_line_end():
                raise ParseError(f"missing {what}")
            raise ParseError(f"expected {what}")
        self.pos = m.end()
        return m.group()

    def atom(self) -> bytes:
        return self._match(_ATOM, "an atom")

    def keyword(self, *allowed: str) -> str:
        """An atom compared case-insensitively against `allowed` (any when empty)."""
        word = self.atom().upper().decode("ascii")
        if allowed and word not in allowed:
            raise ParseError(f"unexpected {word[:30]}")
        return word

    def number(self, limit: int = 0xFFFFFFFF) -> int:
        digits = self._match(_NUMBER, "a number")
        if len(digits) > 20 or int(digits) > limit:
            raise ParseError("number out of range")
        return int(digits)

    def nz_number(self) -> int:
        n = self.number()
        if n == 0:
            raise ParseError("number must not be zero")
        return n

    # --- strings -----------------------------------------------------------------------

    def quoted(self) -> bytes:
        self.expect(b'"')
        line = self.line
        out = bytearray()
        pos = self.pos
        while True:
            close = line.find(b'"', pos)
            esc = line.find(b"\\", pos, close if close >= 0 else len(line))
            if esc >= 0:
                out += line[pos:esc]
                nxt = line[esc + 1:esc + 2]
                if nxt not in (b'"', b"\\"):
                    raise ParseError("invalid escape in quoted string")
                out += nxt
                pos = esc + 2
                continue
            if close < 0:
                raise ParseError("unterminated quoted string")
            out += line[pos:close]
            self.pos = close + 1
            break
        if b"\x00" in out or b"\r" in out or b"\n" in out:
            raise ParseError("quoted string contains NUL, CR or LF")
        return bytes(out)

    def literal(self, allow_external: bool = False) -> LiteralValue:
        line = self.line
        m = _LITERAL_AT_END.match(line, self.pos)
        if m is None or line[self.pos:self.pos + 1] == b"~":
            raise ParseError("invalid literal")
        if self.li >= len(self.literals):
            raise ParseError("missing literal data")
        value = self.literals[self.li]
        size = len(value) if isinstance(value, bytes) else value.size
        if len(m.group(1)) > 20 or int(m.group(1)) != size:
            raise ParseError("literal size does not match its data")
        if isinstance(value, ExternalLiteral) and not allow_external:
            raise ParseError("literal too large for this argument")
        self.li += 1
        self.line = self.lines[self.li]
        self.pos = 0
        return value

    def string(self) -> bytes:
        ch = self.peek()
        if ch == 0x22:
            return self.quoted()
        if ch == 0x7B:
            value = self.literal()
            assert isinstance(value, bytes)
            return value
        raise ParseError("expected a string")

    def astring(self) -> bytes:
        ch = self.peek()
        if ch in (0x22, 0x7B):
            return self.string()
        return self._match(_ASTRING_CHARS, "a string")

    def nstring(self) -> bytes | None:
        if self.line[self.pos:self.pos + 3].upper() == b"NIL" and \
                not _ATOM.match(self.line, self.pos + 3):
            self.pos += 3
            return None
        return self.string()

    def text_astring(self, what: str) -> str:
        raw = self.astring()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError(f"{what} is not valid UTF-8") from None

    def mailbox(self) -> bytes:
        return self.astring()

    def list_mailbox(self) -> bytes:
        ch = self.peek()
        if ch in (0x22, 0x7B):
            return self.string()
        return self._match(_LIST_CHARS, "a mailbox pattern")

    # --- composite elements ------------------------------------------------------------

    def open_paren(self) -> None:
        self.expect(b"(")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ParseError("too many nested parentheses")

    def close_paren(self) -> None:
        self.expect(b")")
        self.depth -= 1

    def paren_list(self, item: Callable[[], T]) -> list[T]:
        """`(` [item *(SP item)] `)`"""
        self.open_paren()
        out: list[T] = []
        if self.maybe(b")"):
            self.depth -= 1
            return out
        while True:
            out.append(item())
            if self.maybe(b")"):
                self.depth -= 1
                return out
            self.sp()

    def seq_set(self) -> seqset.SeqSet:
        raw = self._match(_SEQ_CHARS, "a sequence set")
        try:
            return seqset.parse(raw)
        except seqset.SeqSetError as exc:
            raise ParseError(str(exc)) from None

    def flag(self, store: bool = True) -> str:
        """A flag for STORE/APPEND: a system flag or a keyword (RFC 9051 §2.3.2). \\Recent and
        unknown backslash flags cannot be set."""
        if self.maybe(b"\\"):
            word = "\\" + self.atom().decode("ascii")
            canon = _SYSTEM_FLAGS.get(word.upper())
            if canon is None:
                raise ParseError(f"{word[:30]} is not a flag that can be set")
            return canon
        word = self.atom().decode("ascii")
        if len(word) > MAX_FLAG_LENGTH:
            raise ParseError("keyword too long")
        return word

    def flag_list(self) -> tuple[str, ...]:
        return tuple(self.paren_list(self.flag))

    def date(self) -> datetime.date:
        quoted = self.maybe(b'"')
        m = _DATE.match(self.line, self.pos)
        if m is None:
            raise ParseError("expected a date such as 1-Feb-2024")
        self.pos = m.end()
        if quoted:
            self.expect(b'"')
        month = _MONTHS.get(m.group(2).upper().decode("ascii"))
        try:
            if month is None:
                raise ValueError
            return datetime.date(int(m.group(3)), month, int(m.group(1)))
        except ValueError:
            raise ParseError("invalid date") from None

    def date_time(self) -> datetime.datetime:
        """`"dd-Mon-yyyy hh:mm:ss +zzzz"` (RFC 9051 §9 date-time)."""
        m = _DATE_TIME.match(self.line, self.pos)
        if m is None:
            raise ParseError("expected a date-time such as \"01-Feb-2024 10:00:00 +0000\"")
        self.pos = m.end()
        month = _MONTHS.get(m.group(2).upper().decode("ascii"))
        try:
            if month is None:
                raise ValueError
            offset = datetime.timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
            if m.group(7) == b"-":
                offset = -offset
            return datetime.datetime(int(m.group(3)), month, int(m.group(1)), int(m.group(4)),
                                     int(m.group(5)), int(m.group(6)),
                                     tzinfo=datetime.timezone(offset))
        except ValueError:
            raise ParseError("invalid date-time") from None


# --- commands ---------------------------------------------------------------------------------

def _no_args(cls: Callable[[], c.Command]) -> Callable[[_Reader], c.Command]:
    def parse(r: _Reader) -> c.Command:
        return cls()
    return parse


def _authenticate(r: _Reader) -> c.Authenticate:
    r.sp()
    mech = r.atom().decode("ascii").upper()
    initial = None
    if r.maybe_sp():
        # SASL-IR (RFC 4959): base64 or "=" for an empty response.
        initial = r._match(_SASL_IR, "an initial response")
    return c.Authenticate(mech, initial)


def _login(r: _Reader) -> c.Login:
    r.sp()
    user = r.text_astring("user name")
    r.sp()
    password = r.text_astring("password")
    return c.Login(user, password)


def _enable(r: _Reader) -> c.Enable:
    caps = []
    r.sp()
    caps.append(r.atom().decode("ascii"))
    while r.maybe_sp():
        caps.append(r.atom().decode("ascii"))
    return c.Enable(tuple(caps))


def _id(r: _Reader) -> c.Id:
    r.sp()
    if r.peek() != 0x28:
        if r.nstring() is not None:
            raise ParseError("ID takes a parenthesised list or NIL")
        return c.Id(None)
    r.open_paren()
    pairs: list[tuple[str, str | None]] = []
    if not r.maybe(b")"):
        while True:
            key = r.string().decode("utf-8", "replace")
            r.sp()
            value = r.nstring()
            pairs.append((key, None if value is None else value.decode("utf-8", "replace")))
            if len(pairs) > MAX_ID_PAIRS:
                raise ParseError("too many ID fields")
            if r.maybe(b")"):
                break
            r.sp()
    r.depth -= 1
    return c.Id(tuple(pairs))


def _select(readonly: bool) -> Callable[[_Reader], c.Select]:
    def parse(r: _Reader) -> c.Select:
        r.sp()
        mailbox = r.mailbox()
        if r.maybe_sp():
            params = r.paren_list(r.atom)
            if params:
                raise ParseError("unsupported SELECT parameter "
                                 f"{params[0].decode('ascii', 'replace')[:30]}")
        return c.Select(mailbox, readonly)
    return parse


def _one_mailbox(cls: Callable[[bytes], c.Command]) -> Callable[[_Reader], c.Command]:
    def parse(r: _Reader) -> c.Command:
        r.sp()
        return cls(r.mailbox())
    return parse


def _rename(r: _Reader) -> c.Rename:
    r.sp()
    old = r.mailbox()
    r.sp()
    return c.Rename(old, r.mailbox())


_LIST_SELECT = ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE")
_LIST_RETURN = ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS")


def _status_items(r: _Reader) -> tuple[str, ...]:
    items = r.paren_list(lambda: r.keyword(*c.STATUS_ITEMS))
    if not items:
        raise ParseError("STATUS needs at least one item")
    return tuple(dict.fromkeys(items))


def _list(r: _Reader) -> c.List:
    """RFC 9051 §6.3.9 with RFC 5258 / RFC 5819 options."""
    r.sp()
    selection: list[str] = []
    extended = False
    if r.peek() == 0x28:
        extended = True
        selection = r.paren_list(lambda: r.keyword(*_LIST_SELECT))
        r.sp()
    reference = r.mailbox()
    r.sp()
    if r.peek() == 0x28:
        extended = True
        patterns = tuple(r.paren_list(r.list_mailbox))
        if not patterns:
            raise ParseError("LIST needs at least one pattern")
    else:
        patterns = (r.list_mailbox(),)
    returns: list[str] = []
    status_items: tuple[str, ...] = ()
    if r.maybe_sp():
        extended = True
        r.keyword("RETURN")
        r.sp()

        def option() -> str:
            nonlocal status_items
            word = r.keyword(*_LIST_RETURN)
            if word == "STATUS":
                r.sp()
                status_items = _status_items(r)
            return word

        returns = r.paren_list(option)
    sel = frozenset(selection)
    if "RECURSIVEMATCH" in sel and sel == {"RECURSIVEMATCH"}:
        # RFC 5258 §3: RECURSIVEMATCH alone is an error.
        raise ParseError("RECURSIVEMATCH needs another selection option")
    return c.List(reference, patterns, sel, frozenset(returns), status_items, extended)


def _lsub(r: _Reader) -> c.Lsub:
    r.sp()
    reference = r.mailbox()
    r.sp()
    return c.Lsub(reference, r.list_mailbox())


def _status(r: _Reader) -> c.Status:
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    return c.Status(mailbox, _status_items(r))


def _append(r: _Reader) -> c.Append:
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    flags: tuple[str, ...] = ()
    date = None
    if r.peek() == 0x28:
        flags = r.flag_list()
        r.sp()
    if r.peek() == 0x22:
        date = r.date_time()
        r.sp()
    if r.peek() != 0x7B:
        raise ParseError("APPEND needs the message as a literal")
    message = r.literal(allow_external=True)
    return c.Append(mailbox, tuple(dict.fromkeys(flags)), date, message)


def _expunge(r: _Reader) -> c.Expunge:
    return c.Expunge()


def _uid_expunge(r: _Reader) -> c.Expunge:
    r.sp()
    return c.Expunge(r.seq_set())


def _copy_move(cls: type[c.Copy | c.Move], uid: bool) -> Callable[[_Reader], c.Command]:
    def parse(r: _Reader) -> c.Command:
        r.sp()
        messages = r.seq_set()
        r.sp()
        return cls(uid, messages, r.mailbox())
    return parse


def _store(uid: bool) -> Callable[[_Reader], c.Store]:
    def parse(r: _Reader) -> c.Store:
        r.sp()
        messages = r.seq_set()
        r.sp()
        if r.peek() == 0x28:
            raise ParseError("STORE modifiers are not supported")
        word = r.atom().upper()
        m = _STORE_ITEM.fullmatch(word)
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
            flags = tuple(items)
        return c.Store(uid, messages, mode, m.group(2) is not None, tuple(dict.fromkeys(flags)))
    return parse


# FETCH -------------------------------------------------------------------------------------

_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SIMPLE_ATTS = ("ENVELOPE", "FLAGS", "INTERNALDATE", "RFC822", "RFC822.HEADER", "RFC822.SIZE",
                "RFC822.TEXT", "BODY", "BODYSTRUCTURE", "UID")


def _section(r: _Reader) -> c.Section:
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
                    raise ParseError("section part number too deep")
            else:
                text = r._match(_FETCH_NAME, "a section").upper().decode("ascii")
                break
    else:
        text = r._match(_FETCH_NAME, "a section").upper().decode("ascii")
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


def _partial(r: _Reader) -> tuple[int, int] | None:
    if not r.maybe(b"<"):
        return None
    origin = r.number()
    r.expect(b".")
    length = r.nz_number()
    r.expect(b">")
    return origin, length


def _fetch_att(r: _Reader) -> c.FetchAtt:
    name = r._match(_FETCH_NAME, "a FETCH item").upper().decode("ascii")
    if name in ("BODY", "BODY.PEEK") and r.peek() == 0x5B:
        section = _section(r)
        return c.FetchAtt("BODY[]", section, name == "BODY.PEEK", _partial(r))
    if name in _SIMPLE_ATTS:
        return c.FetchAtt(name)
    raise ParseError(f"unknown FETCH item {name[:30]}")


def _fetch(uid: bool) -> Callable[[_Reader], c.Fetch]:
    def parse(r: _Reader) -> c.Fetch:
        r.sp()
        messages = r.seq_set()
        r.sp()
        items: list[c.FetchAtt]
        if r.peek() == 0x28:
            items = r.paren_list(lambda: _fetch_att(r))
            if not items:
                raise ParseError("FETCH needs at least one item")
        else:
            save = r.pos
            word = r._match(_FETCH_NAME, "a FETCH item").upper().decode("ascii")
            if word in _MACROS:
                items = [c.FetchAtt(n) for n in _MACROS[word]]
            else:
                r.pos = save
                items = [_fetch_att(r)]
        if r.maybe_sp():
            raise ParseError("FETCH modifiers are not supported")
        if uid and not any(i.name == "UID" for i in items):
            items.insert(0, c.FetchAtt("UID"))  # RFC 9051 §6.4.9: UID FETCH always reports UID
        return c.Fetch(uid, messages, tuple(dict.fromkeys(items)))
    return parse


# SEARCH ------------------------------------------------------------------------------------

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


def _search_key(r: _Reader) -> c.SearchKey:
    ch = r.peek()
    if ch == 0x28:
        keys = r.paren_list(lambda: _search_key(r))
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
    if word in ("LARGER", "SMALLER"):
        r.sp()
        return c.SSize(word == "LARGER", r.number(limit=(1 << 63) - 1))
    if word == "UID":
        r.sp()
        return c.SUid(r.seq_set())
    if word == "NOT":
        r.sp()
        r.depth += 1
        if r.depth > MAX_DEPTH:
            raise ParseError("search keys nested too deeply")
        key = _search_key(r)
        r.depth -= 1
        return c.SNot(key)
    if word == "OR":
        r.sp()
        r.depth += 1
        if r.depth > MAX_DEPTH:
            raise ParseError("search keys nested too deeply")
        a = _search_key(r)
        r.sp()
        b = _search_key(r)
        r.depth -= 1
        return c.SOr(a, b)
    raise ParseError(f"unknown search key {word[:30]}")


def _peek_word(r: _Reader) -> bytes:
    """The atom at the cursor, upper-cased and consumed, or b"" (cursor unchanged)."""
    m = _ATOM.match(r.line, r.pos)
    if m is None:
        return b""
    r.pos = m.end()
    return m.group().upper()


def _search(uid: bool) -> Callable[[_Reader], c.Search]:
    def parse(r: _Reader) -> c.Search:
        r.sp()
        returns: tuple[str, ...] | None = None
        charset: str | None = None
        save = r.pos
        word = _peek_word(r)
        if word == b"RETURN":
            r.sp()
            opts = r.paren_list(lambda: r.keyword(*c.SEARCH_RETURN_OPTIONS))
            returns = tuple(dict.fromkeys(opts))
            r.sp()
            save = r.pos
            word = _peek_word(r)
        if word == b"CHARSET":
            r.sp()
            raw = r.astring()
            try:
                charset = raw.decode("ascii").upper()
            except UnicodeDecodeError:
                raise ParseError("invalid charset name") from None
            r.sp()
        else:
            r.pos = save
        keys = [_search_key(r)]
        while r.maybe_sp():
            keys.append(_search_key(r))
        key = keys[0] if len(keys) == 1 else c.SAnd(tuple(keys))
        return c.Search(uid, key, charset, returns)
    return parse


_COMMANDS: dict[bytes, Callable[[_Reader], c.Command]] = {
    b"CAPABILITY": _no_args(c.Capability),
    b"NOOP": _no_args(c.Noop),
    b"LOGOUT": _no_args(c.Logout),
    b"STARTTLS": _no_args(c.StartTLS),
    b"AUTHENTICATE": _authenticate,
    b"LOGIN": _login,
    b"ENABLE": _enable,
    b"ID": _id,
    b"NAMESPACE": _no_args(c.Namespace),
    b"SELECT": _select(False),
    b"EXAMINE": _select(True),
    b"CREATE": _one_mailbox(c.Create),
    b"DELETE": _one_mailbox(c.Delete),
    b"RENAME": _rename,
    b"SUBSCRIBE": _one_mailbox(c.Subscribe),
    b"UNSUBSCRIBE": _one_mailbox(c.Unsubscribe),
    b"LIST": _list,
    b"LSUB": _lsub,
    b"STATUS": _status,
    b"APPEND": _append,
    b"CHECK": _no_args(c.Check),
    b"CLOSE": _no_args(c.Close),
    b"UNSELECT": _no_args(c.Unselect),
    b"EXPUNGE": _expunge,
    b"COPY": _copy_move(c.Copy, False),
    b"MOVE": _copy_move(c.Move, False),
    b"STORE": _store(False),
    b"FETCH": _fetch(False),
    b"SEARCH": _search(False),
    b"IDLE": _no_args(c.Idle),
}

_UID_COMMANDS: dict[bytes, Callable[[_Reader], c.Command]] = {
    b"COPY": _copy_move(c.Copy, True),
    b"MOVE": _copy_move(c.Move, True),
    b"STORE": _store(True),
    b"FETCH": _fetch(True),
    b"SEARCH": _search(True),
    b"EXPUNGE": _uid_expunge,
}
