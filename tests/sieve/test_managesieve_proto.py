"""The ManageSieve protocol core (RFC 5804) as table tests: tokens of a line, typed commands
(good inputs and bad ones with the error), and the response forms."""

from __future__ import annotations

import pytest

from casella.managesieve.proto import (
    Atom,
    Command,
    ProtocolError,
    String,
    capabilities,
    no,
    ok,
    parse_command,
    string,
    tokenize,
)

TOKENS = [
    (b"CAPABILITY", [Atom("CAPABILITY")], None),
    (b'putscript "main" {12+}', [Atom("PUTSCRIPT"), String(b"main")], 12),
    (b'PUTSCRIPT "x" {7}', [Atom("PUTSCRIPT"), String(b"x")], 7),
    (b'GETSCRIPT "a \\"b\\" \\\\c"', [Atom("GETSCRIPT"), String(b'a "b" \\c')], None),
    (b'HAVESPACE "s" 1024', [Atom("HAVESPACE"), String(b"s"), Atom("1024")], None),
    (b'AUTHENTICATE "PLAIN" "AGJvYgBzZWNyZXQ="',
     [Atom("AUTHENTICATE"), String(b"PLAIN"), String(b"AGJvYgBzZWNyZXQ=")], None),
    ('SETACTIVE "vacances d\'été"'.encode(),
     [Atom("SETACTIVE"), String("vacances d'été".encode())], None),
    (b"", [], None),
]


@pytest.mark.parametrize("line,tokens,literal", TOKENS)
def test_tokenize(line: bytes, tokens: list[object], literal: int | None) -> None:
    assert tokenize(line) == (tokens, literal)


BAD_LINES = [
    (b'GETSCRIPT "open', "not closed"),
    (b'GETSCRIPT "bad \\n escape"', "bad escape"),
    (b"PUTSCRIPT {x+}", "bad literal length"),
    (b'PUTSCRIPT {3+} "after"', "must end the line"),
    (b"NO\x01OP", "unexpected characters"),
    (b'GETSCRIPT "nul\x00"', "NUL"),
]


@pytest.mark.parametrize("line,words", BAD_LINES)
def test_tokenize_refuses(line: bytes, words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        tokenize(line)


COMMANDS = [
    ([Atom("LISTSCRIPTS")], Command("LISTSCRIPTS")),
    ([Atom("PUTSCRIPT"), String(b"n"), String(b"keep;")], Command("PUTSCRIPT", ("n", b"keep;"))),
    ([Atom("CHECKSCRIPT"), String(b"keep;")], Command("CHECKSCRIPT", (b"keep;",))),
    ([Atom("NOOP")], Command("NOOP")),
    ([Atom("NOOP"), String(b"tag")], Command("NOOP", ("tag",))),
    ([Atom("AUTHENTICATE"), String(b"PLAIN")], Command("AUTHENTICATE", ("PLAIN",))),
    ([Atom("HAVESPACE"), String(b"s"), Atom("10")], Command("HAVESPACE", ("s", "10"))),
    ([Atom("RENAMESCRIPT"), String(b"a"), String(b"b")], Command("RENAMESCRIPT", ("a", "b"))),
]


@pytest.mark.parametrize("tokens,command", COMMANDS)
def test_parse_command(tokens: list[object], command: Command) -> None:
    assert parse_command(tokens) == command  # type: ignore[arg-type]


BAD_COMMANDS = [
    ([], "empty"),
    ([String(b"x")], "starts with its name"),
    ([Atom("FROB")], "unknown command"),
    ([Atom("GETSCRIPT")], "takes 1 argument"),
    ([Atom("RENAMESCRIPT"), String(b"a")], "takes 2 arguments"),
    ([Atom("LISTSCRIPTS"), String(b"a")], "takes 0 arguments"),
    ([Atom("GETSCRIPT"), Atom("NAME")], "expects a string"),
    ([Atom("HAVESPACE"), String(b"s"), String(b"10")], "expects a number"),
    ([Atom("GETSCRIPT"), String(b"\xff")], "not valid UTF-8"),
]


@pytest.mark.parametrize("tokens,words", BAD_COMMANDS)
def test_parse_command_refuses(tokens: list[object], words: str) -> None:
    with pytest.raises(ProtocolError, match=words):
        parse_command(tokens)  # type: ignore[arg-type]


def test_responses() -> None:
    assert ok() == b"OK\r\n"
    assert no("Script too big", "QUOTA/MAXSIZE") == b'NO (QUOTA/MAXSIZE) "Script too big"\r\n'
    assert no('line 3: "x"') == b'NO "line 3: \\"x\\""\r\n'
    assert string("two\r\nlines") == b"{10}\r\ntwo\r\nlines"
    assert string("x" * 2000).startswith(b"{2000}\r\n")
    assert capabilities([("STARTTLS", None), ("SASL", "PLAIN")]) == \
        b'"STARTTLS"\r\n"SASL" "PLAIN"\r\n'
