"""The POP3 protocol core: command lines in, typed commands out; replies and message bytes out.

Lives here: the typed commands of RFC 1939, RFC 2449 (CAPA), RFC 5034 (AUTH) and RFC 2595
(STLS), each knowing the states it is valid in; `parse_command` (one command line without its
CRLF → a command or a `Pop3SyntaxError`); reply formatting (`ok`, `err`, multi-line bodies,
scan listings, UIDL strings, the CAPA list); and the streaming transforms used by RETR and TOP
(`DotStuffer` for RFC 1939 §3 byte-stuffing, `TopCutter` for the TOP cut). Must never: import
asyncio, sockets, config or the store, or know about sessions and maildrops.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

# RFC 2449 §4: a command line, CRLF included, is at most 255 octets.
MAX_COMMAND_LINE = 255
# RFC 5034 §4 lets SASL client responses be longer than a command; 8 KiB is plenty for
# PLAIN/LOGIN with long UTF-8 names and passwords.
MAX_AUTH_LINE = 8192
# RFC 2449 §4: a response line, CRLF included, is at most 512 octets.
MAX_RESPONSE_LINE = 512
# RFC 1939 §3: an argument is at most 40 characters. Passwords and user names are commonly
# longer than that in practice (Dovecot accepts them), so the bound applies to the rest only.
MAX_ARGUMENT = 40
# A message number or line count with more digits than this cannot name anything real.
_MAX_DIGITS = 10

CRLF = b"\r\n"
TERMINATOR = b".\r\n"


class State(enum.Enum):
    """RFC 1939 §3. UPDATE is entered only by QUIT and needs no commands of its own."""

    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"


AUTH_ONLY = frozenset({State.AUTHORIZATION})
TRANS_ONLY = frozenset({State.TRANSACTION})
ANY_STATE = frozenset({State.AUTHORIZATION, State.TRANSACTION})


class Pop3SyntaxError(Exception):
    """The command line cannot be understood. `str()` is the sentence for the -ERR reply."""


class UnknownCommand(Pop3SyntaxError):
    def __init__(self, keyword: str) -> None:
        super().__init__(f"Unknown command: {keyword}" if keyword else "Empty command line.")
        self.keyword = keyword


class CommandTooLong(Pop3SyntaxError):
    def __init__(self, length: int) -> None:
        super().__init__(f"Command line too long ({length} octets; the limit is "
                         f"{MAX_COMMAND_LINE} including CRLF).")
        self.length = length


# --- commands ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Command:
    keyword: ClassVar[str] = ""
    states: ClassVar[frozenset[State]] = ANY_STATE


@dataclass(frozen=True, slots=True)
class User(Command):
    """RFC 1939 §7 USER name."""
    keyword: ClassVar[str] = "USER"
    states: ClassVar[frozenset[State]] = AUTH_ONLY
    name: str


@dataclass(frozen=True, slots=True)
class Pass(Command):
    """RFC 1939 §7 PASS string: the password may contain spaces, so it is the rest of the line."""
    keyword: ClassVar[str] = "PASS"
    states: ClassVar[frozenset[State]] = AUTH_ONLY
    password: str

    def __repr__(self) -> str:  # never let a password reach a log through repr()
        return "Pass(password=<hidden>)"


@dataclass(frozen=True, slots=True)
class Apop(Command):
    """RFC 1939 §7 APOP: recognised so the reply can say why it is refused (passwords are
    stored as one-way hashes, so the shared secret APOP needs does not exist)."""
    keyword: ClassVar[str] = "APOP"
    states: ClassVar[frozenset[State]] = AUTH_ONLY


@dataclass(frozen=True, slots=True)
class Auth(Command):
    """RFC 5034 §4 AUTH mechanism [initial-response]; bare AUTH lists the mechanisms (the
    pre-standard form Outlook and Dovecot still use)."""
    keyword: ClassVar[str] = "AUTH"
    states: ClassVar[frozenset[State]] = AUTH_ONLY
    mechanism: str | None
    initial: bytes | None  # still base64 (or "="), decoded by casella.auth.sasl

    def __repr__(self) -> str:
        return f"Auth(mechanism={self.mechanism!r}, initial={'<hidden>' if self.initial else None})"


@dataclass(frozen=True, slots=True)
class Capa(Command):
    """RFC 2449 §5, valid in both states."""
    keyword: ClassVar[str] = "CAPA"


@dataclass(frozen=True, slots=True)
class Stls(Command):
    """RFC 2595 §4, AUTHORIZATION state only (PROMISES T3)."""
    keyword: ClassVar[str] = "STLS"
    states: ClassVar[frozenset[State]] = AUTH_ONLY


@dataclass(frozen=True, slots=True)
class Quit(Command):
    keyword: ClassVar[str] = "QUIT"


@dataclass(frozen=True, slots=True)
class Stat(Command):
    keyword: ClassVar[str] = "STAT"
    states: ClassVar[frozenset[State]] = TRANS_ONLY


@dataclass(frozen=True, slots=True)
class List(Command):
    keyword: ClassVar[str] = "LIST"
    states: ClassVar[frozenset[State]] = TRANS_ONLY
    msg: int | None


@dataclass(frozen=True, slots=True)
class Uidl(Command):
    """RFC 1939 §7 UIDL [msg]."""
    keyword: ClassVar[str] = "UIDL"
    states: ClassVar[frozenset[State]] = TRANS_ONLY
    msg: int | None


@dataclass(frozen=True, slots=True)
class Retr(Command):
    keyword: ClassVar[str] = "RETR"
    states: ClassVar[frozenset[State]] = TRANS_ONLY
    msg: int


@dataclass(frozen=True, slots=True)
class Top(Command):
    """RFC 1939 §7 TOP msg n: the header, the blank line and n lines of the body."""
    keyword: ClassVar[str] = "TOP"
    states: ClassVar[frozenset[State]] = TRANS_ONLY
    msg: int
    lines: int


@dataclass(frozen=True, slots=True)
class Dele(Command):
    keyword: ClassVar[str] = "DELE"
    states: ClassVar[frozenset[State]] = TRANS_ONLY
    msg: int


@dataclass(frozen=True, slots=True)
class Noop(Command):
    keyword: ClassVar[str] = "NOOP"
    states: ClassVar[frozenset[State]] = TRANS_ONLY


@dataclass(frozen=True, slots=True)
class Rset(Command):
    keyword: ClassVar[str] = "RSET"
    states: ClassVar[frozenset[State]] = TRANS_ONLY


# --- parsing -------------------------------------------------------------------------------


def _number(keyword: str, what: str, arg: bytes) -> int:
    """A non-negative decimal number. RFC 1939 §3 allows no sign, no spaces, no other digits."""
    if not arg or len(arg) > _MAX_DIGITS or not arg.isdigit():
        shown = arg[:20].decode("ascii", "replace")
        raise Pop3SyntaxError(f"{keyword} needs {what} as a number, not {shown!r}.")
    return int(arg)


def _args(keyword: str, rest: bytes, minimum: int, maximum: int, usage: str) -> list[bytes]:
    # RFC 1939 §3 separates arguments by a single space; runs of spaces and a trailing space
    # are tolerated because some clients send them and nothing is ambiguous.
    args = rest.split()
    if len(args) < minimum:
        raise Pop3SyntaxError(f"{keyword} needs an argument: {usage}")
    if len(args) > maximum:
        raise Pop3SyntaxError(f"Too many arguments for {keyword}: {usage}")
    for arg in args:
        if len(arg) > MAX_ARGUMENT:
            raise Pop3SyntaxError(f"An argument of {keyword} is longer than {MAX_ARGUMENT} "
                                  "characters.")
    return args


def _text(data: bytes) -> str:
    # Invalid UTF-8 in a user name or password can never match an account; replacing it keeps
    # the failure on the ordinary "authentication failed" path (same answer, same delay).
    return data.decode("utf-8", "replace")


def _no_args(cls: type[Command]) -> Callable[[bytes], Command]:
    def parse(rest: bytes) -> Command:
        _args(cls.keyword, rest, 0, 0, cls.keyword)
        return cls()
    return parse


def _parse_user(rest: bytes) -> Command:
    name = rest.strip(b" ")
    if not name:
        raise Pop3SyntaxError("USER needs an argument: USER name")
    return User(_text(name))


def _parse_pass(rest: bytes) -> Command:
    # RFC 1939 §7: the server may treat spaces in the argument as part of the password, so
    # only the single separating space is removed.
    if not rest:
        raise Pop3SyntaxError("PASS needs an argument: PASS password")
    return Pass(_text(rest))


def _parse_auth(rest: bytes) -> Command:
    args = rest.split()
    if not args:
        return Auth(None, None)
    if len(args) > 2:
        raise Pop3SyntaxError("Too many arguments for AUTH: AUTH mechanism [initial-response]")
    mech = args[0]
    if len(mech) > 20 or not all(c in _SASL_NAME_CHARS for c in mech):
        raise Pop3SyntaxError("AUTH needs a SASL mechanism name: AUTH mechanism "
                              "[initial-response]")
    return Auth(mech.decode("ascii").upper(), args[1] if len(args) == 2 else None)


def _parse_msg_opt(cls: type[List | Uidl]) -> Callable[[bytes], Command]:
    def parse(rest: bytes) -> Command:
        args = _args(cls.keyword, rest, 0, 1, f"{cls.keyword} [msg]")
        return cls(_number(cls.keyword, "a message number", args[0]) if args else None)
    return parse


def _parse_msg(cls: type[Retr | Dele]) -> Callable[[bytes], Command]:
    def parse(rest: bytes) -> Command:
        args = _args(cls.keyword, rest, 1, 1, f"{cls.keyword} msg")
        return cls(_number(cls.keyword, "a message number", args[0]))
    return parse


def _parse_top(rest: bytes) -> Command:
    args = _args("TOP", rest, 2, 2, "TOP msg lines")
    return Top(_number("TOP", "a message number", args[0]),
               _number("TOP", "a non-negative line count", args[1]))


def _parse_apop(rest: bytes) -> Command:
    return Apop()


# RFC 4422 §3.1 mechanism names: upper-case letters, digits, hyphen and underscore.
_SASL_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")

_PARSERS: dict[bytes, Callable[[bytes], Command]] = {
    b"USER": _parse_user,
    b"PASS": _parse_pass,
    b"APOP": _parse_apop,
    b"AUTH": _parse_auth,
    b"CAPA": _no_args(Capa),
    b"STLS": _no_args(Stls),
    b"QUIT": _no_args(Quit),
    b"STAT": _no_args(Stat),
    b"LIST": _parse_msg_opt(List),
    b"UIDL": _parse_msg_opt(Uidl),
    b"RETR": _parse_msg(Retr),
    b"TOP": _parse_top,
    b"DELE": _parse_msg(Dele),
    b"NOOP": _no_args(Noop),
    b"RSET": _no_args(Rset),
}


def command_keyword(line: bytes) -> bytes:
    """The upper-cased first word of a command line (for limits and logging)."""
    return line.split(b" ", 1)[0][:8].upper()


def parse_command(line: bytes) -> Command:
    """Parse one command line (its CRLF already removed). Raises Pop3SyntaxError (or one of its
    subclasses UnknownCommand, CommandTooLong) and nothing else."""
    keyword_raw, _, rest = line.partition(b" ")
    keyword = keyword_raw.upper()
    # RFC 2449 §4 bounds command lines; RFC 5034 §4 lets AUTH carry a longer initial response.
    limit = MAX_AUTH_LINE if keyword == b"AUTH" else MAX_COMMAND_LINE
    if len(line) + 2 > limit:
        raise CommandTooLong(len(line) + 2)
    parser = _PARSERS.get(keyword)
    if parser is None:
        shown = keyword_raw[:16].decode("ascii", "replace")
        shown = "".join(c if c.isprintable() else "?" for c in shown)
        raise UnknownCommand(shown)
    return parser(rest)


# --- replies -------------------------------------------------------------------------------


def _clean(text: str) -> bytes:
    """One reply line's text: no CR/LF/NUL (so nothing can inject a line), at most what fits
    in RFC 2449's 512-octet response line."""
    data = text.encode("utf-8", "replace")
    if b"\r" in data or b"\n" in data or b"\x00" in data:
        data = data.replace(b"\r", b" ").replace(b"\n", b" ").replace(b"\x00", b" ")
    return data[: MAX_RESPONSE_LINE - 16]


def ok(text: str = "") -> bytes:
    return b"+OK " + _clean(text) + CRLF if text else b"+OK" + CRLF


def err(text: str, code: str | None = None) -> bytes:
    """`-ERR [CODE] text` (RFC 2449 §8 response codes, RFC 3206 SYS/TEMP, SYS/PERM, AUTH)."""
    prefix = b"-ERR [" + code.encode("ascii") + b"] " if code else b"-ERR "
    return prefix + _clean(text) + CRLF


def multiline(first: bytes, lines: Iterable[bytes]) -> bytes:
    """A +OK line, then each line (already CRLF-terminated, never starting with "."), then the
    terminator: RFC 1939 §3 multi-line response."""
    return first + b"".join(lines) + TERMINATOR


def scan_line(msg: int, size: int) -> bytes:
    """RFC 1939 §7 scan listing: `msg size`, CRLF-terminated."""
    return b"%d %d\r\n" % (msg, size)


def uidl_string(uid: int, uidvalidity: int) -> bytes:
    """Dovecot's default pop3_uidl_format `%08Xu%08Xv`: UID then UIDVALIDITY, upper-case hex,
    8 digits each. Always 16 characters in 0x30–0x46 (RFC 1939 §7 asks 1–70 in 0x21–0x7E) and
    unique because UIDs are never reused within one UIDVALIDITY (PROMISES U5)."""
    return b"%08X%08X" % (uid, uidvalidity)


def uidl_line(msg: int, uid: int, uidvalidity: int) -> bytes:
    return b"%d %08X%08X\r\n" % (msg, uid, uidvalidity)


@dataclass(frozen=True, slots=True)
class CapaOptions:
    """What the CAPA list depends on."""
    transaction: bool          # RFC 2449 §5: the list may differ after login
    stls: bool                 # STLS offered (pop3 listener, not yet TLS)
    plaintext_auth: bool       # USER and SASL usable now (TLS, or allowed without it)
    mechanisms: tuple[str, ...]
    expire_days: int           # 0 = never
    implementation: str
    expire_per_user: bool = False  # before login: accounts may set their own expiry


def capabilities(opts: CapaOptions) -> list[bytes]:
    """The capability lines of RFC 2449 §6 (and RFC 3206 §6 AUTH-RESP-CODE, RFC 2595 STLS,
    RFC 5034 SASL), each CRLF-terminated."""
    caps = [b"TOP", b"UIDL", b"RESP-CODES", b"AUTH-RESP-CODE", b"PIPELINING"]
    if not opts.transaction:
        # Before TLS with plaintext refused, USER and SASL are left out so clients go to STLS
        # first (Dovecot with disable_plaintext_auth does the same).
        if opts.plaintext_auth:
            caps.append(b"USER")
            caps.append(b"SASL " + " ".join(opts.mechanisms).encode("ascii"))
        if opts.stls:
            caps.append(b"STLS")
    # RFC 2449 §6.7: days after retrieval, or NEVER; before login "USER" says the value may
    # differ per account, and the account's own is listed after login.
    expire = b"EXPIRE %d" % opts.expire_days if opts.expire_days > 0 else b"EXPIRE NEVER"
    if opts.expire_per_user and not opts.transaction:
        expire += b" USER"
    caps.append(expire)
    caps.append(b"IMPLEMENTATION " + _clean(opts.implementation))
    return [c + CRLF for c in caps]


# --- message transforms --------------------------------------------------------------------


class DotStuffer:
    """RFC 1939 §3 byte-stuffing over a message fed in chunks: every line that starts with "."
    gets one more "." in front, and `finish()` ends the last line (adding CRLF if the message
    lacked a final line end) and appends the ".CRLF" terminator. Works on whole chunks with
    bytes.replace, never line by line."""

    __slots__ = ("_line_start",)

    def __init__(self) -> None:
        self._line_start = True

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        # `in` finds without building a copy; most messages have no line to stuff.
        out = chunk.replace(b"\n.", b"\n..") if b"\n." in chunk else chunk
        if self._line_start and chunk[:1] == b".":
            out = b"." + out
        self._line_start = chunk[-1:] == b"\n"
        return out

    def finish(self) -> bytes:
        return TERMINATOR if self._line_start else CRLF + TERMINATOR


class TopCutter:
    """Finds where TOP stops in a message fed in chunks: after the header, the blank line that
    ends it, and `lines` lines of the body (RFC 1939 §7). A message without a blank line is all
    header. `feed` returns the part of the chunk to send; once `done`, send nothing more."""

    __slots__ = ("_in_header", "_lines_left", "_tail", "done")

    def __init__(self, lines: int) -> None:
        self._lines_left = lines
        self._in_header = True
        # The message start counts as the start of a line, so a message that begins with an
        # empty line has an empty header.
        self._tail = b"\n"
        self.done = False

    def feed(self, chunk: bytes) -> bytes:
        if self.done or not chunk:
            return b""
        start = 0
        if self._in_header:
            combined = self._tail + chunk
            ends = [i for i in (combined.find(b"\n\r\n"), combined.find(b"\n\n")) if i >= 0]
            if not ends:
                self._tail = combined[-2:]
                return chunk
            first = min(ends)
            width = 3 if combined.startswith(b"\n\r\n", first) else 2
            start = first + width - len(self._tail)
            self._in_header = False
        if self._lines_left == 0:
            self.done = True
            return chunk[:start]
        body = chunk[start:]
        found = body.count(b"\n")
        if found < self._lines_left:
            self._lines_left -= found
            return chunk
        pos = -1
        for _ in range(self._lines_left):
            pos = body.find(b"\n", pos + 1)
        self._lines_left = 0
        self.done = True
        return chunk[: start + pos + 1]
