"""The ManageSieve protocol core (RFC 5804): command lines in, typed commands out; responses out.

Lives here: `tokenize` (one line: atoms, quoted strings, and the literal announced at its end,
`{N+}` or `{N}`), `parse_command` (the tokens of a whole command, literals included -> a typed
command with its arguments checked), the response builders (`ok`, `no`, `bye` with a response
code, strings quoted or sent as literals) and `ProtocolError`. Must never: do I/O, import
asyncio, config or the store, or accept a string with a NUL, CR or LF in a quoted form.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_LINE = 8192
MAX_ARGS = 8
_QUOTED_MAX = 1024          # RFC 5804 §4: longer strings are sent as literals


class ProtocolError(Exception):
    """A malformed command: answered NO with this text (RFC 5804 §1.3)."""


@dataclass(frozen=True, slots=True)
class Atom:
    value: str            # upper-cased


@dataclass(frozen=True, slots=True)
class String:
    value: bytes


Token = Atom | String


def tokenize(line: bytes) -> tuple[list[Token], int | None]:
    """The tokens of one line and, when it ends with a literal announcement, its length (the
    caller reads that many bytes, then the rest of the command from the next line)."""
    out: list[Token] = []
    i, n = 0, len(line)
    while i < n:
        c = line[i:i + 1]
        if c == b" ":
            i += 1
            continue
        if c == b'"':
            j = i + 1
            buf = bytearray()
            while j < n and line[j:j + 1] != b'"':
                if line[j:j + 1] == b"\\":
                    j += 1
                    if j >= n or line[j:j + 1] not in (b'"', b"\\"):
                        raise ProtocolError("bad escape in a quoted string")
                if line[j] in (0, 10, 13):
                    raise ProtocolError("a quoted string cannot hold NUL, CR or LF")
                buf += line[j:j + 1]
                j += 1
            if j >= n:
                raise ProtocolError("a quoted string is not closed")
            out.append(String(bytes(buf)))
            i = j + 1
            continue
        if c == b"{":
            end = line.find(b"}", i)
            if end != n - 1:
                raise ProtocolError("a literal must end the line: {N+} or {N}")
            spec = line[i + 1:end]
            if spec.endswith(b"+"):
                spec = spec[:-1]
            if not spec.isdigit() or len(spec) > 12:
                raise ProtocolError("bad literal length")
            return out, int(spec)
        j = i
        while j < n and line[j:j + 1] not in (b" ", b'"', b"{"):
            j += 1
        word = line[i:j]
        if not all(33 <= b < 127 for b in word):
            raise ProtocolError("unexpected characters in the command")
        out.append(Atom(word.decode("ascii").upper()))
        i = j
    return out, None


# --- commands --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Command:
    name: str
    args: tuple[str | bytes, ...] = ()


# name -> argument kinds: "s" a UTF-8 string, "b" raw bytes (a script), "n" a number,
# "?" marks the rest as optional.
_SPECS: dict[str, tuple[str, ...]] = {
    "CAPABILITY": (),
    "LOGOUT": (),
    "STARTTLS": (),
    "NOOP": ("?", "s"),
    "UNAUTHENTICATE": (),
    "AUTHENTICATE": ("s", "?", "s"),
    "LISTSCRIPTS": (),
    "GETSCRIPT": ("s",),
    "PUTSCRIPT": ("s", "b"),
    "CHECKSCRIPT": ("b",),
    "SETACTIVE": ("s",),
    "DELETESCRIPT": ("s",),
    "RENAMESCRIPT": ("s", "s"),
    "HAVESPACE": ("s", "n"),
}
COMMANDS = frozenset(_SPECS)


def _text(value: bytes, what: str) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"the {what} is not valid UTF-8") from None


def parse_command(tokens: list[Token]) -> Command:
    if not tokens:
        raise ProtocolError("empty command")
    head = tokens[0]
    if not isinstance(head, Atom):
        raise ProtocolError("a command starts with its name")
    spec = _SPECS.get(head.value)
    if spec is None:
        raise ProtocolError(f"unknown command {head.value[:40]}")
    args = tokens[1:]
    required = spec.index("?") if "?" in spec else len(spec)
    kinds = [k for k in spec if k != "?"]
    if not required <= len(args) <= len(kinds):
        raise ProtocolError(f"{head.value} takes {required}"
                            f"{'' if required == len(kinds) else f' to {len(kinds)}'} "
                            f"argument{'' if len(kinds) == 1 else 's'}")
    out: list[str | bytes] = []
    for kind, tok in zip(kinds, args):
        if kind == "n":
            if not isinstance(tok, Atom) or not tok.value.isdigit() or len(tok.value) > 12:
                raise ProtocolError(f"{head.value} expects a number")
            out.append(tok.value)
            continue
        if not isinstance(tok, String):
            raise ProtocolError(f"{head.value} expects a string, quoted or as a literal")
        out.append(tok.value if kind == "b" else _text(tok.value, "argument"))
    return Command(head.value, tuple(out))


# --- responses -------------------------------------------------------------------------------

def string(value: str | bytes) -> bytes:
    """A quoted string when that is allowed, else a literal (RFC 5804 §4)."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) <= _QUOTED_MAX and not any(b in (0, 10, 13) for b in data):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def _response(kind: str, code: str | None, text: str | None) -> bytes:
    out = kind.encode()
    if code:
        out += b" (" + code.encode("ascii") + b")"
    if text:
        out += b" " + string(text)
    return out + b"\r\n"


def ok(text: str | None = None, code: str | None = None) -> bytes:
    return _response("OK", code, text)


def no(text: str | None = None, code: str | None = None) -> bytes:
    return _response("NO", code, text)


def bye(text: str | None = None, code: str | None = None) -> bytes:
    return _response("BYE", code, text)


def capabilities(items: list[tuple[str, str | None]]) -> bytes:
    """RFC 5804 §1.7: one `"NAME" "value"` line per capability."""
    lines = []
    for name, value in items:
        line = string(name)
        if value is not None:
            line += b" " + string(value)
        lines.append(line + b"\r\n")
    return b"".join(lines)
