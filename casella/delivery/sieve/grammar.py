"""The Sieve grammar (RFC 5228 §8): bytes of a script in, a tree of commands out.

Lives here: the lexer (identifiers, :tags, numbers with K/M/G, quoted strings with their two
escapes, `text:` multi-line strings with dot-unstuffing, both comment forms), the recursive
parser with an explicit nesting bound, and `SieveError` carrying the line it points at.
Semantic rules (which commands exist, their arguments, `require`) are casella.delivery.sieve
.validate's. Must never: do I/O, import asyncio, config or the store, or recurse deeper than
`max_nesting` (PROMISES P1; a script is customer input).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# RFC 5228 §8.1: identifier = (ALPHA / "_") *(ALPHA / DIGIT / "_")
_ID_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_ID_CHARS = _ID_START | frozenset("0123456789")
_QUANTIFIERS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
MAX_NUMBER = (1 << 63) - 1       # RFC 5228 §2.4.1: at least 2^31 - 1; we take 63 bits


class SieveError(Exception):
    """A script that does not parse, validate or run; `line` is 1-based (0: no line)."""

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(f"line {line}: {message}" if line else message)
        self.message = message
        self.line = line


@dataclass(frozen=True, slots=True)
class Tag:
    name: str          # lower case, without the colon
    line: int


@dataclass(frozen=True, slots=True)
class Number:
    value: int
    line: int


@dataclass(frozen=True, slots=True)
class StringList:
    values: tuple[str, ...]
    line: int
    single: bool = False   # written as one string, not a bracketed list


Argument = Tag | Number | StringList


@dataclass(slots=True)
class Test:
    name: str          # lower case
    args: list[Argument]
    tests: list[Test]
    line: int


@dataclass(slots=True)
class Command:
    name: str          # lower case
    args: list[Argument]
    test: list[Test]                 # zero or one test, or the tests of a test-list
    block: list[Command] | None      # None: the command ends with ";"
    line: int
    test_list: bool = False          # the tests were written in parentheses
    extra: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str          # id tag num str lbr rbr lpar rpar lbrace rbrace comma semi eof
    value: object
    line: int


def _lex(text: str) -> list[_Token]:
    out: list[_Token] = []
    i, n, line = 0, len(text), 1
    while i < n:
        c = text[i]
        if c in " \t":
            i += 1
        elif c == "\r":
            if i + 1 < n and text[i + 1] == "\n":
                i += 1
                continue
            raise SieveError("a bare CR outside a string", line)
        elif c == "\n":
            line += 1
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c == "/" and text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise SieveError("a /* comment is never closed", line)
            line += text.count("\n", i, end)
            i = end + 2
        elif c in _ID_START:
            j = i + 1
            while j < n and text[j] in _ID_CHARS:
                j += 1
            word = text[i:j]
            if word.lower() == "text" and j < n and text[j] == ":":
                value, i, lines = _multiline(text, j + 1, line)
                out.append(_Token("str", value, line))
                line += lines
                continue
            out.append(_Token("id", word.lower(), line))
            i = j
        elif c == ":":
            j = i + 1
            if j >= n or text[j] not in _ID_START:
                raise SieveError("':' must start a tag such as :is", line)
            while j < n and text[j] in _ID_CHARS:
                j += 1
            out.append(_Token("tag", text[i + 1:j].lower(), line))
            i = j
        elif c.isdigit() and c.isascii():
            j = i
            while j < n and text[j].isascii() and text[j].isdigit():
                j += 1
            value = int(text[i:j])
            if j < n and text[j].upper() in _QUANTIFIERS:
                value *= _QUANTIFIERS[text[j].upper()]
                j += 1
            if value > MAX_NUMBER:
                raise SieveError(f"the number {text[i:j]} is too large", line)
            if j < n and text[j] in _ID_CHARS:
                raise SieveError(f"bad number {text[i:j + 1]!r}", line)
            out.append(_Token("num", value, line))
            i = j
        elif c == '"':
            value, i, lines = _quoted(text, i + 1, line)
            out.append(_Token("str", value, line))
            line += lines
        else:
            kind = {"[": "lbr", "]": "rbr", "(": "lpar", ")": "rpar", "{": "lbrace",
                    "}": "rbrace", ",": "comma", ";": "semi"}.get(c)
            if kind is None:
                raise SieveError(f"unexpected character {c!r}", line)
            out.append(_Token(kind, c, line))
            i += 1
    out.append(_Token("eof", None, line))
    return out


def _quoted(text: str, i: int, line: int) -> tuple[str, int, int]:
    """RFC 5228 §2.4.2: only \\\\ and \\" mean something; any other backslash is dropped."""
    parts: list[str] = []
    start_line, lines = line, 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == '"':
            return "".join(parts), i + 1, lines
        if c == "\\":
            if i + 1 >= n:
                break
            parts.append(text[i + 1])
            if text[i + 1] == "\n":
                lines += 1
            i += 2
            continue
        if c == "\n":
            lines += 1
        parts.append(c)
        i += 1
    raise SieveError("a quoted string is never closed", start_line)


def _multiline(text: str, i: int, line: int) -> tuple[str, int, int]:
    """`text:` then blanks or a comment to the end of the line, then lines up to a line of
    a single "."; a leading ".." stands for "." (RFC 5228 §2.4.2)."""
    n = len(text)
    while i < n and text[i] in " \t":
        i += 1
    if text.startswith("#", i):
        while i < n and text[i] != "\n":
            i += 1
    if text.startswith("\r\n", i):
        i += 2
    elif text.startswith("\n", i):
        i += 1
    else:
        raise SieveError("text: must be followed by the end of the line", line)
    lines = 1
    out: list[str] = []
    while i < n:
        end = text.find("\n", i)
        if end < 0:
            break
        raw = text[i:end]
        stripped = raw.removesuffix("\r")
        lines += 1
        i = end + 1
        if stripped == ".":
            return "".join(out), i, lines
        if stripped.startswith(".."):
            stripped = stripped[1:]
        out.append(stripped + "\r\n")
    raise SieveError("a text: string is never ended by a line with a single '.'", line)


class _Parser:
    def __init__(self, tokens: list[_Token], max_nesting: int, max_commands: int) -> None:
        self.tokens = tokens
        self.pos = 0
        self.max_nesting = max_nesting
        self.max_commands = max_commands
        self.nodes = 0

    def peek(self) -> _Token:
        return self.tokens[self.pos]

    def take(self, kind: str, what: str) -> _Token:
        tok = self.tokens[self.pos]
        if tok.kind != kind:
            raise SieveError(f"expected {what}, found {_describe(tok)}", tok.line)
        self.pos += 1
        return tok

    def _count(self, line: int) -> None:
        self.nodes += 1
        if self.nodes > self.max_commands:
            raise SieveError(f"the script has more than {self.max_commands} commands and "
                             "tests", line)

    def commands(self, depth: int) -> list[Command]:
        out: list[Command] = []
        while self.peek().kind not in ("eof", "rbrace"):
            out.append(self.command(depth))
        return out

    def command(self, depth: int) -> Command:
        tok = self.take("id", "a command name")
        self._count(tok.line)
        args = self.arguments()
        tests: list[Test] = []
        test_list = False
        nxt = self.peek()
        if nxt.kind == "lpar":
            tests, test_list = self.test_list(depth + 1), True
        elif nxt.kind == "id":
            tests = [self.test(depth + 1)]
        nxt = self.peek()
        if nxt.kind == "semi":
            self.pos += 1
            return Command(tok.value, args, tests, None, tok.line, test_list)  # type: ignore[arg-type]
        if nxt.kind == "lbrace":
            if depth + 1 > self.max_nesting:
                raise SieveError(f"blocks are nested more than {self.max_nesting} deep",
                                 nxt.line)
            self.pos += 1
            block = self.commands(depth + 1)
            self.take("rbrace", "'}'")
            return Command(tok.value, args, tests, block, tok.line, test_list)  # type: ignore[arg-type]
        raise SieveError(f"expected ';' or '{{' after {tok.value}, found {_describe(nxt)}",
                         nxt.line)

    def arguments(self) -> list[Argument]:
        out: list[Argument] = []
        while True:
            tok = self.peek()
            if tok.kind == "tag":
                out.append(Tag(tok.value, tok.line))  # type: ignore[arg-type]
            elif tok.kind == "num":
                out.append(Number(tok.value, tok.line))  # type: ignore[arg-type]
            elif tok.kind == "str":
                out.append(StringList((tok.value,), tok.line, single=True))  # type: ignore[arg-type]
            elif tok.kind == "lbr":
                out.append(self.string_list())
                continue
            else:
                return out
            self.pos += 1

    def string_list(self) -> StringList:
        start = self.take("lbr", "'['")
        values = [self.take("str", "a string").value]
        while self.peek().kind == "comma":
            self.pos += 1
            values.append(self.take("str", "a string").value)
        self.take("rbr", "']' or ','")
        return StringList(tuple(values), start.line)  # type: ignore[arg-type]

    def test_list(self, depth: int) -> list[Test]:
        start = self.take("lpar", "'('")
        if depth > self.max_nesting:
            raise SieveError(f"tests are nested more than {self.max_nesting} deep", start.line)
        out = [self.test(depth)]
        while self.peek().kind == "comma":
            self.pos += 1
            out.append(self.test(depth))
        self.take("rpar", "')' or ','")
        return out

    def test(self, depth: int) -> Test:
        tok = self.take("id", "a test")
        self._count(tok.line)
        if depth > self.max_nesting:
            raise SieveError(f"tests are nested more than {self.max_nesting} deep", tok.line)
        args = self.arguments()
        nxt = self.peek()
        tests: list[Test] = []
        if nxt.kind == "lpar":
            tests = self.test_list(depth + 1)
        elif nxt.kind == "id":
            tests = [self.test(depth + 1)]
        return Test(tok.value, args, tests, tok.line)  # type: ignore[arg-type]


def _describe(tok: _Token) -> str:
    if tok.kind == "eof":
        return "the end of the script"
    if tok.kind == "str":
        return "a string"
    if tok.kind == "num":
        return f"the number {tok.value}"
    if tok.kind == "tag":
        return f"the tag :{tok.value}"
    if tok.kind == "id":
        return f"{tok.value!r}"
    return f"{tok.value!r}"


def parse(script: bytes | str, *, max_nesting: int = 15, max_commands: int = 2000
          ) -> list[Command]:
    """The commands of a script, or SieveError naming the line. A script is UTF-8
    (RFC 5228 §2.1)."""
    if isinstance(script, bytes):
        try:
            text = script.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = script[:exc.start].count(b"\n") + 1
            raise SieveError("the script is not valid UTF-8", line) from None
    else:
        text = script
    if "\x00" in text:
        raise SieveError("the script contains a NUL character",
                         text[:text.index("\x00")].count("\n") + 1)
    parser = _Parser(_lex(text), max_nesting, max_commands)
    out = parser.commands(0)
    tok = parser.peek()
    if tok.kind != "eof":
        raise SieveError("a '}' without a matching '{'", tok.line)
    return out
