"""Sequence sets: message sequence numbers and UID sets (RFC 9051 §9 `sequence-set`).

Lives here: `SeqSet` (parsed ranges with `*` kept symbolic, and `$` for a saved search result,
RFC 5182), resolving a set against a mailbox, and `compress`, which writes a sorted run of
numbers back as `1:4,7,9:10` for COPYUID, APPENDUID and ESEARCH. Must never: import asyncio,
config or the store.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

STAR = 0          # "*": the largest number in use; 0 is never a valid nz-number
MAX_NUMBER = 0xFFFFFFFF  # nz-number is a 32-bit unsigned value (RFC 9051 §9)
MAX_RANGES = 10_000     # bound on the work one client string can cause (PROMISES P1)

_NUM = r"(?:[1-9][0-9]{0,9}|\*)"
_SEQSET_RE = re.compile(rf"{_NUM}(?::{_NUM})?(?:,{_NUM}(?::{_NUM})?)*")


class SeqSetError(ValueError):
    """Not a valid sequence set; `code` LIMIT when it is valid but too big to serve."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class SeqSet:
    """Inclusive ranges as written (either order, STAR for `*`), or the saved result `$`."""

    ranges: tuple[tuple[int, int], ...] = ()
    saved: bool = False

    def resolve(self, largest: int) -> list[tuple[int, int]]:
        """Sorted, merged, ordered ranges with `*` replaced by `largest` (RFC 9051 §6.4.8:
        `n:*` includes the largest value even when n is above it). Empty when largest is 0
        and the set only names `*`."""
        out: list[tuple[int, int]] = []
        for lo, hi in self.ranges:
            lo = largest if lo == STAR else lo
            hi = largest if hi == STAR else hi
            if lo > hi:
                lo, hi = hi, lo
            if hi <= 0:
                continue
            out.append((max(lo, 1), hi))
        return merge(out)

    def max_number(self) -> int:
        """The largest explicit number (ignoring `*`), for range checks on sequence numbers."""
        return max((max(lo, hi) for lo, hi in self.ranges), default=0)

    def has_star(self) -> bool:
        return any(lo == STAR or hi == STAR for lo, hi in self.ranges)

    def __str__(self) -> str:
        if self.saved:
            return "$"
        parts = []
        for lo, hi in self.ranges:
            a = "*" if lo == STAR else str(lo)
            b = "*" if hi == STAR else str(hi)
            parts.append(a if lo == hi else f"{a}:{b}")
        return ",".join(parts)


def parse(text: bytes) -> SeqSet:
    """Parse `1:3,5,7:*` or `$`; SeqSetError otherwise."""
    if text == b"$":
        return SeqSet(saved=True)
    try:
        s = text.decode("ascii")
    except UnicodeDecodeError:
        raise SeqSetError("sequence set has non-ASCII characters") from None
    if not _SEQSET_RE.fullmatch(s):
        raise SeqSetError(f"invalid sequence set {s[:40]!r}")
    items = s.split(",")
    if len(items) > MAX_RANGES:
        # Checked before any work: a set of 100,000 numbers costs nothing to refuse.
        raise SeqSetError(f"sequence set has more than {MAX_RANGES} ranges", "LIMIT")
    ranges: list[tuple[int, int]] = []
    for item in items:
        a, _, b = item.partition(":")
        lo = _num(a)
        hi = _num(b) if b else lo
        ranges.append((lo, hi))
    return SeqSet(tuple(ranges))


def _num(text: str) -> int:
    if text == "*":
        return STAR
    n = int(text)
    if n > MAX_NUMBER:
        raise SeqSetError(f"number {text} is out of range")
    return n


def merge(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sort inclusive ranges and join overlapping or adjacent ones."""
    out: list[tuple[int, int]] = []
    for lo, hi in sorted(ranges):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def ranges_of(numbers: Iterable[int]) -> list[tuple[int, int]]:
    """Runs of consecutive values from ascending numbers."""
    out: list[tuple[int, int]] = []
    for n in numbers:
        if out and n == out[-1][1] + 1:
            out[-1] = (out[-1][0], n)
        elif out and n <= out[-1][1]:
            continue
        else:
            out.append((n, n))
    return out


def compress(numbers: Iterable[int]) -> bytes:
    """`1:3,5` for ascending numbers (as IMAP writes a sequence-set)."""
    return ",".join(str(lo) if lo == hi else f"{lo}:{hi}"
                    for lo, hi in ranges_of(numbers)).encode("ascii")


def compress_ordered(numbers: Sequence[int]) -> bytes:
    """Like compress, but keeps the given order (COPYUID pairs must line up, RFC 4315 §3)."""
    out: list[list[int]] = []
    for n in numbers:
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return ",".join(str(lo) if lo == hi else f"{lo}:{hi}" for lo, hi in out).encode("ascii")


def select_sorted(values: Sequence[int], ranges: Sequence[tuple[int, int]]) -> list[int]:
    """The members of ascending `values` that fall inside sorted `ranges` (bisect per range,
    so a large mailbox costs O(ranges · log n + hits))."""
    out: list[int] = []
    for lo, hi in ranges:
        i = bisect.bisect_left(values, lo)
        j = bisect.bisect_right(values, hi)
        out.extend(values[i:j])
    return out
