"""Fuzz target: the SMTP command parser (casella.smtp.proto.parse_command) and the end-of-data
scanners (casella.smtp.data: DATA with dot-unstuffing and smuggling detection, BDAT) fed the
same bytes in arbitrary splits. Only ParseError may come out of the parser; the scanners must
never raise, must find at most one end of data, and must give the same result however the
input is split (PROMISES M1)."""

from __future__ import annotations

import _harness

with _harness.instrumented():
    from casella.smtp.data import BdatScanner, DataScanner
    from casella.smtp.proto import ParseError, parse_command

NAME = "smtp"


def _scan(data: bytes, cuts: list[int]) -> tuple[bytes, bytes | None, bool, bool]:
    scanner = DataScanner(1 << 20)
    out = []
    leftover = None
    pos = 0
    for cut in [*cuts, len(data)]:
        piece, pos = data[pos:cut], max(pos, cut)
        if not piece:
            continue
        chunk, leftover = scanner.feed(piece)
        out.append(chunk)
        if leftover is not None:
            leftover += data[pos:]
            break
    return b"".join(out), leftover, scanner.bare, scanner.too_big


def TestOneInput(data: bytes) -> None:
    for line in data.split(b"\r\n")[:16]:
        try:
            parse_command(line)
        except ParseError as exc:
            if exc.reply.code < 500 or b"\n" in exc.reply.render()[:-2]:
                raise AssertionError(f"bad parse error reply {exc.reply}") from None
    whole = _scan(data, [])
    cuts = sorted({b % (len(data) + 1) for b in data[:6]})
    split = _scan(data, cuts)
    # Once a message is refused (bare line end, too big) the session throws away what was
    # kept, so only an accepted message's bytes must match.
    if split[1:] != whole[1:] or (not whole[2] and not whole[3] and split[0] != whole[0]):
        raise AssertionError("DATA scanning depends on how the input is split")
    bdat = BdatScanner(1 << 20)
    for i in range(0, len(data), 7):
        bdat.feed(data[i:i + 7])
    bdat.finish()


if __name__ == "__main__":
    _harness.main(TestOneInput)
