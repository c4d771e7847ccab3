"""Fuzz target: the POP3 command parser (casella.pop3.proto.parse_command) and its reply and
dot-stuffing helpers. Only Pop3SyntaxError may come out of the parser; a parsed command must
be one of the typed commands."""

from __future__ import annotations

import _harness

with _harness.instrumented():
    from casella.pop3 import proto

NAME = "pop3"


def TestOneInput(data: bytes) -> None:
    for line in data.split(b"\r\n")[:16]:
        try:
            cmd = proto.parse_command(line)
        except proto.Pop3SyntaxError as exc:
            reply = proto.err(str(exc))
            if reply.count(b"\r\n") != 1 or not reply.endswith(b"\r\n"):
                raise AssertionError(f"reply-breaking error {exc!r}") from None
        else:
            if not isinstance(cmd, proto.Command):
                raise AssertionError(f"untyped command {cmd!r}")  # noqa: TRY004


if __name__ == "__main__":
    _harness.main(TestOneInput)
