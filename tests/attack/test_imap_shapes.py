"""IMAP input shaped to blow up a server (issue 7 §3, PROMISES P1): sequence sets spanning the
whole UID space (`1:4294967295` must work as a range, never be materialized), sets of many
thousands of numbers, deeply nested parentheses, SEARCH programs of thousands of terms, deep
NOT/OR chains, thousands of keywords and literals. Each is answered quickly with OK or the
protocol's own refusal (BAD/NO, never an internal error), and the session goes on."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.attack.util import Imap, add_user, deliver, message

QUICK = 5.0      # seconds: generous, a materialized 2^32 range would take far longer


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.conftest import RunningServer, build_test_config
    server = RunningServer(build_test_config(tmp_path_factory.mktemp("shapes") / "var",
                                             auth={"allow_plaintext_without_tls": True}))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def imap(srv: Any) -> Iterator[Imap]:
    user = add_user(srv)
    deliver(srv, user, message("shapes"), count=5)
    with Imap(srv.port("imap")) as c:
        assert c.login(user.address).startswith(b"OK")
        assert c.status("SELECT INBOX").startswith(b"OK")
        yield c


def answered(c: Imap, command: bytes | str, allowed: tuple[bytes, ...] = (b"OK", b"NO", b"BAD")
             ) -> tuple[list[bytes], bytes]:
    started = time.monotonic()
    untagged, tagged = c.cmd(command)
    elapsed = time.monotonic() - started
    status = tagged.split(b" ", 2)[1]
    assert status in allowed, tagged[:300]
    assert b"SERVERBUG" not in tagged, tagged[:300]
    assert elapsed < QUICK, (elapsed, tagged[:200])
    assert c.status("NOOP").startswith(b"OK")      # the session goes on
    return untagged, tagged


@pytest.mark.parametrize("command", [
    "UID FETCH 1:4294967295 (UID FLAGS)",
    "UID FETCH 4294967295:1 (UID)",
    "UID SEARCH UID 1:4294967295",
    "UID STORE 1:4294967295 +FLAGS.SILENT (\\Seen)",
    "UID COPY 1:4294967295 INBOX",
    "SEARCH 1:4294967295",
    "UID SEARCH UID 1:4294967295,1:4294967295,2:4294967294",
])
def test_whole_uid_space_is_a_range(imap: Imap, command: str) -> None:
    """RFC 9051 §9 seq-range: `1:4294967295` names every message, as `1:*`; the server treats
    it as a range (answers at once), never as four billion numbers."""
    untagged, _ = answered(imap, command, (b"OK",))
    if command.startswith("UID FETCH 1:"):
        assert len([u for u in untagged if b" FETCH " in u]) == 5


@pytest.mark.parametrize("command", [
    "FETCH 1:4294967295 (FLAGS)",
    "STORE 1:4294967295 +FLAGS.SILENT (\\Flagged)",
    "FETCH 4294967296 (FLAGS)",
    "UID FETCH 0:4294967296 (FLAGS)",
    "FETCH 99999999999999999999999 (FLAGS)",
])
def test_out_of_range_sequence_numbers(imap: Imap, command: str) -> None:
    """Message sequence numbers past the mailbox, or numbers past 2^32-1: OK for what exists or
    BAD, at once."""
    answered(imap, command)


def test_ten_thousand_separate_numbers(imap: Imap) -> None:
    """A set of 10,000 separate numbers (as long as one line may be): answered at once, with
    OK or a refusal ([LIMIT] / [TOOBIG])."""
    numbers = ",".join(str(n) for n in range(1, 20001, 2))
    answered(imap, f"UID FETCH {numbers} (FLAGS)")
    answered(imap, f"UID SEARCH UID {numbers}")


@pytest.mark.parametrize("depth", [200, 5000, 30000])
def test_deeply_nested_parentheses(imap: Imap, depth: int) -> None:
    """Nesting is bounded: BAD, never a RecursionError or a crash."""
    answered(imap, "SEARCH " + "(" * depth + "ALL" + ")" * depth)
    answered(imap, "FETCH 1 " + "(" * depth + "FLAGS" + ")" * depth)
    answered(imap, "APPEND INBOX " + "(" * depth + "\\Seen" + ")" * depth + " {3+}\r\nabc")
    answered(imap, "STATUS INBOX " + "(" * depth + "MESSAGES" + ")" * depth)


@pytest.mark.parametrize("depth", [1000, 10000])
def test_deep_not_and_or_chains(imap: Imap, depth: int) -> None:
    """`NOT NOT NOT … ALL` and `OR OR OR … ALL ALL …` nest without parentheses."""
    answered(imap, "SEARCH " + "NOT " * depth + "ALL")
    answered(imap, "SEARCH " + "OR " * depth + "ALL " * (depth + 1))


@pytest.mark.parametrize("terms", [1000, 5000])
def test_search_of_thousands_of_terms(imap: Imap, terms: int) -> None:
    """A SEARCH program of thousands of terms (within one 64 KiB line) is answered at once or
    refused with [LIMIT]."""
    answered(imap, "SEARCH " + " ".join(["SUBJECT x"] * terms))
    answered(imap, "UID SEARCH " + " ".join(f"UID {n}" for n in range(1, terms + 1)))
    answered(imap, "SEARCH " + " ".join(["BODY shapes"] * min(terms, 3000)))


def test_thousands_of_keywords(imap: Imap) -> None:
    """STORE with 5,000 keywords: stored or refused ([LIMIT]); never a crash."""
    keywords = " ".join(f"k{n}" for n in range(5000))
    answered(imap, f"STORE 1 +FLAGS ({keywords})")
    answered(imap, "FETCH 1:* (FLAGS)")


def test_hundreds_of_literals(imap: Imap) -> None:
    """One command carrying 500 one-byte LITERAL+ literals: bounded, answered."""
    parts = b"".join(b" SUBJECT {1+}\r\nx" for _ in range(500))
    answered(imap, b"SEARCH" + parts)


def test_thousands_of_literals(imap: Imap) -> None:
    """One command carrying 20,000 one-byte LITERAL+ literals: bounded, answered."""
    parts = b"".join(b" SUBJECT {1+}\r\nx" for _ in range(20000))
    answered(imap, b"SEARCH" + parts)
