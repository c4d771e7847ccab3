"""Fuzz target: the MIME parser (casella.mail.parse.parse_message), which runs on every message
at delivery and APPEND. It must never raise, stay within its bounds (depth 50, 5000 parts), and
render ENVELOPE, BODYSTRUCTURE and BODY as well-formed IMAP (balanced, no CR/LF/NUL in quoted
strings: PROMISES P3); stored part offsets must lie inside the message."""

from __future__ import annotations

import _harness

with _harness.instrumented():
    from casella.mail.address import parse_addresses
    from casella.mail.parse import parse_message
    from casella.mail.sections import Part, load_parts, section_range

NAME = "mime"


def _well_formed(data: bytes) -> None:
    depth = 0
    i = 0
    n = len(data)
    while i < n:
        ch = data[i]
        if ch == 0x22:                                  # quoted string
            i += 1
            while i < n and data[i] != 0x22:
                if data[i] in (0x0D, 0x0A, 0x00):
                    raise AssertionError("CR/LF/NUL in a quoted string")
                i += 2 if data[i] == 0x5C else 1
            if i >= n:
                raise AssertionError("unterminated quoted string")
        elif ch == 0x7B:                                # literal {n}\r\n
            end = data.index(b"}\r\n", i)
            i = end + 3 + int(data[i + 1:end]) - 1
        elif ch == 0x28:
            depth += 1
        elif ch == 0x29:
            depth -= 1
            if depth < 0:
                raise AssertionError("unbalanced parentheses")
        i += 1
    if depth:
        raise AssertionError("unbalanced parentheses")


def _walk(part: Part, size: int, depth: int = 0) -> int:
    if not 0 <= part.header_start <= part.body_start <= part.end <= size:
        raise AssertionError(f"part offsets outside the message: {part}")
    if depth > 60:
        raise AssertionError("MIME depth bound not applied")
    return 1 + sum(_walk(child, size, depth + 1) for child in part.children)


def TestOneInput(data: bytes) -> None:
    parsed = parse_message(data)
    for rendered in (parsed.envelope, parsed.bodystructure, parsed.body):
        _well_formed(rendered)
    root = load_parts(parsed.parts)
    if _walk(root, len(data)) > 5001:
        raise AssertionError("MIME part bound not applied")
    for path in ((), (1,), (1, 1), (2,)):
        for spec in ("", "HEADER", "TEXT", "MIME"):
            rng = section_range(root, path, spec)
            if rng is not None and not 0 <= rng[0] <= rng[1] <= len(data):
                raise AssertionError(f"section {path} {spec} outside the message")
    parse_addresses(data[:2000])


if __name__ == "__main__":
    _harness.main(TestOneInput)
