"""The IMAP tokenizer: a cursor over one command's lines and literals, and the grammar's
primitives (RFC 9051 §9: atoms, numbers, quoted strings, literals and literal8, astrings,
sequence sets, flags, dates, parenthesised lists), plus what the session needs while reading a
command off the wire: `literal_spec` (does this line end in a literal announcement?),
`is_literal8` (a literal8 one?) and `peek_command` (tag and command name of a first line).

The command grammars live in parser.py (base commands), parse_fetch.py (FETCH, STORE),
parse_search.py (SEARCH, SORT, THREAD) and parse_ext.py (the other extensions); they all build on
`Reader`. Every bound on what one command may ask for is here (PROMISES P1): nesting depth,
search keys, flags per command. Must never: import asyncio, socket, config or the store; raise
anything but ParseError (arbitrary bytes included).
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from typing import TypeVar

from casella.imap import seqset
from casella.imap.commands import ExternalLiteral

T = TypeVar("T")

MAX_DEPTH = 32          # nested parentheses / NOT / OR in SEARCH and FETCH (PROMISES P1)
MAX_FLAG_LENGTH = 255
MAX_ID_PAIRS = 30       # RFC 2971 §3.3
MAX_SEARCH_KEYS = 1000  # search keys in one SEARCH / SORT / THREAD program
MAX_FLAGS = 100         # flags named in one STORE or APPEND
MAX_MODSEQ = (1 << 63) - 1   # mod-sequence-value (RFC 7162 §7)


class ParseError(Exception):
    """The command is not valid IMAP. `tag` is set when the tag itself could be read, so the
    reply can be `tag BAD sentence`; otherwise `* BAD sentence`. `code` is a response code
    (LIMIT when a bound was crossed, RFC 5530)."""

    def __init__(self, message: str, tag: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.tag = tag
        self.code = code


LiteralValue = bytes | ExternalLiteral

# ATOM-CHAR: any CHAR except atom-specials ( ) { SP CTL % * " \ ] (RFC 9051 §9).
ATOM = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\\]]+')
ASTRING_CHARS = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\]+')
TAG = re.compile(rb'[^\x00-\x20\x7f-\xff(){%*"\\+]+')
LIST_CHARS = re.compile(rb'[^\x00-\x20\x7f-\xff(){"\\]+')
NUMBER = re.compile(rb"[0-9]+")
SEQ_CHARS = re.compile(rb"[0-9:*,$]+")
LITERAL_AT_END = re.compile(rb"~?\{([0-9]+)(\+)?\}\Z")
FETCH_NAME = re.compile(rb"[A-Za-z0-9.]+")
DATE = re.compile(rb"([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4})")
DATE_TIME = re.compile(rb'" ?([0-9]{1,2})-([A-Za-z]{3})-([0-9]{4}) ([0-9]{2}):([0-9]{2}):'
                        rb'([0-9]{2}) ([+-])([0-9]{2})([0-9]{2})"')
SASL_IR = re.compile(rb"[A-Za-z0-9+/]+={0,2}|=")
STORE_ITEM = re.compile(rb"([+-]?)FLAGS(\.SILENT)?")
MONTHS = {m: i for i, m in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), 1)}
SYSTEM_FLAGS = {"\\ANSWERED": "\\Answered", "\\FLAGGED": "\\Flagged", "\\DELETED": "\\Deleted",
                 "\\SEEN": "\\Seen", "\\DRAFT": "\\Draft"}


def literal_spec(line: bytes) -> tuple[int, bool] | None:
    """(size, non-synchronising) when the line ends with `{n}` or `{n+}`, else None."""
    if not line.endswith(b"}"):
        return None
    m = LITERAL_AT_END.search(line)
    if m is None:
        return None
    digits = m.group(1)
    size = int(digits) if len(digits) <= 20 else 1 << 64
    return size, m.group(2) is not None


def is_literal8(line: bytes) -> bool:
    """Whether the line ends with a literal8 announcement `~{n}` (RFC 3516 §4.4)."""
    m = LITERAL_AT_END.search(line) if line.endswith(b"}") else None
    return m is not None and m.group().startswith(b"~")


def peek_command(line: bytes) -> tuple[str | None, str]:
    """The tag and upper-case command name of a first line (`UID FETCH` for UID commands), as
    far as they can be read; ("", "") parts when they cannot."""
    m = TAG.match(line)
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



class Reader:
    """A cursor over the lines and literals of one command."""

    __slots__ = ("depth", "li", "line", "lines", "literals", "pos", "search_keys")

    def __init__(self, lines: Sequence[bytes], literals: Sequence[LiteralValue]) -> None:
        self.lines = lines
        self.literals = literals
        self.li = 0
        self.line = lines[0]
        self.pos = 0
        self.depth = 0
        self.search_keys = 0

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

    def match_re(self, pattern: re.Pattern[bytes], what: str) -> bytes:
        m = pattern.match(self.line, self.pos)
        if m is None:
            if self.at_line_end():
                raise ParseError(f"missing {what}")
            raise ParseError(f"expected {what}")
        self.pos = m.end()
        return m.group()

    def atom(self) -> bytes:
        return self.match_re(ATOM, "an atom")

    def keyword(self, *allowed: str) -> str:
        """An atom compared case-insensitively against `allowed` (any when empty)."""
        word = self.atom().upper().decode("ascii")
        if allowed and word not in allowed:
            raise ParseError(f"unexpected {word[:30]}")
        return word

    def number(self, limit: int = 0xFFFFFFFF) -> int:
        digits = self.match_re(NUMBER, "a number")
        if len(digits) > 20 or int(digits) > limit:
            raise ParseError("number out of range")
        return int(digits)

    def modseq(self, allow_zero: bool = True) -> int:
        """mod-sequence-value (or mod-sequence-valzer with `allow_zero`), RFC 7162 §7."""
        n = self.number(MAX_MODSEQ)
        if n == 0 and not allow_zero:
            raise ParseError("mod-sequence must not be zero")
        return n

    def count_search_key(self) -> None:
        self.search_keys += 1
        if self.search_keys > MAX_SEARCH_KEYS:
            raise ParseError(f"search program has more than {MAX_SEARCH_KEYS} keys",
                             code="LIMIT")

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

    def literal(self, allow_external: bool = False, binary: bool = False) -> LiteralValue:
        """A literal `{n}` / `{n+}`; with `binary` also a literal8 `~{n}` (RFC 3516 §4.4),
        which may hold NUL."""
        line = self.line
        m = LITERAL_AT_END.match(line, self.pos)
        if m is None or (line[self.pos:self.pos + 1] == b"~" and not binary):
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
        return self.match_re(ASTRING_CHARS, "a string")

    def nstring(self) -> bytes | None:
        if self.line[self.pos:self.pos + 3].upper() == b"NIL" and \
                not ATOM.match(self.line, self.pos + 3):
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
        return self.match_re(LIST_CHARS, "a mailbox pattern")

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
        raw = self.match_re(SEQ_CHARS, "a sequence set")
        try:
            return seqset.parse(raw)
        except seqset.SeqSetError as exc:
            raise ParseError(str(exc), code=exc.code) from None

    def flag(self, store: bool = True) -> str:
        """A flag for STORE/APPEND: a system flag or a keyword (RFC 9051 §2.3.2). \\Recent and
        unknown backslash flags cannot be set."""
        if self.maybe(b"\\"):
            word = "\\" + self.atom().decode("ascii")
            canon = SYSTEM_FLAGS.get(word.upper())
            if canon is None:
                raise ParseError(f"{word[:30]} is not a flag that can be set")
            return canon
        word = self.atom().decode("ascii")
        if len(word) > MAX_FLAG_LENGTH:
            raise ParseError("keyword too long")
        return word

    def flag_list(self) -> tuple[str, ...]:
        flags = self.paren_list(self.flag)
        if len(flags) > MAX_FLAGS:
            raise ParseError(f"more than {MAX_FLAGS} flags", code="LIMIT")
        return tuple(flags)

    def date(self) -> datetime.date:
        quoted = self.maybe(b'"')
        m = DATE.match(self.line, self.pos)
        if m is None:
            raise ParseError("expected a date such as 1-Feb-2024")
        self.pos = m.end()
        if quoted:
            self.expect(b'"')
        month = MONTHS.get(m.group(2).upper().decode("ascii"))
        try:
            if month is None:
                raise ValueError
            return datetime.date(int(m.group(3)), month, int(m.group(1)))
        except ValueError:
            raise ParseError("invalid date") from None

    def date_time(self) -> datetime.datetime:
        """`"dd-Mon-yyyy hh:mm:ss +zzzz"` (RFC 9051 §9 date-time)."""
        m = DATE_TIME.match(self.line, self.pos)
        if m is None:
            raise ParseError("expected a date-time such as \"01-Feb-2024 10:00:00 +0000\"")
        self.pos = m.end()
        month = MONTHS.get(m.group(2).upper().decode("ascii"))
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


