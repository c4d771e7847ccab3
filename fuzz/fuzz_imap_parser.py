"""Fuzz target: the IMAP command parser (casella.imap.parser) as the session drives it — a byte
stream cut into command lines and literals by `literal_spec`, then `parse_request` — and the
sequence-set parser. Anything but ParseError / SeqSetError is a bug, and so is a ParseError
whose message could break the reply line."""

from __future__ import annotations

import _harness

with _harness.instrumented():
    from casella.imap import seqset
    from casella.imap.parser import ParseError, literal_spec, parse_request, peek_command

NAME = "imap"


def frames(stream: bytes) -> list[tuple[list[bytes], list[bytes]]]:
    out = []
    rest = stream
    while rest:
        line, sep, rest = rest.partition(b"\n")
        if not sep:
            break
        lines, literals = [line.rstrip(b"\r")], []
        while (spec := literal_spec(lines[-1])) is not None:
            if spec[0] > len(rest):
                return out
            literals.append(rest[:spec[0]])
            line, sep, rest = rest[spec[0]:].partition(b"\n")
            if not sep:
                return out
            lines.append(line.rstrip(b"\r"))
        out.append((lines, literals))
    return out


def TestOneInput(data: bytes) -> None:
    for lines, literals in frames(data + b"\r\n"):
        peek_command(lines[0])
        try:
            parse_request(lines, literals)
        except ParseError as exc:
            if "\r" in exc.message or "\n" in exc.message:
                raise AssertionError(f"reply-breaking message {exc.message!r}") from None
    for word in data.split(b" ")[:8]:
        try:
            seqset.parse(word).resolve(1000)
        except seqset.SeqSetError:
            pass


if __name__ == "__main__":
    _harness.main(TestOneInput)
