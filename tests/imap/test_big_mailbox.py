"""A 100,000-message mailbox stays usable (issue 3 part 7): SELECT and STATUS come from the
mailbox record and the UID list (never message bodies) and answer well under a second; FETCH of
flags and envelopes for the whole mailbox comes from precomputed data; BODY[] streams."""

from __future__ import annotations

import time

import pytest

from casella.store.model import AppendItem
from tests.imap.util import Raw, get_mailbox, message, new_user

N = 100_000


@pytest.fixture(scope="module")
def big(srv):
    acct = new_user(srv)
    mb = get_mailbox(srv, acct)

    async def fill() -> None:
        blobs = [await srv.store.blobs.stage(message(f"bulk {i}", b"body %d\r\n" % i))
                 for i in range(20)]
        try:
            for start in range(0, N, 10_000):
                items = [AppendItem(blobs[i % 20], ("\\Seen",) if i % 3 else ())
                         for i in range(start, min(N, start + 10_000))]
                await srv.store.append(mb.id, items)
        finally:
            for b in blobs:
                b.discard()
    srv.run(fill(), timeout=300)
    return acct


def until_tagged(raw: Raw, tag: bytes) -> bytes:
    """Read a large answer quickly (the test client must not be the bottleneck)."""
    buf = bytearray(raw.buf)
    raw.buf = b""
    end = b"\r\n" + tag + b" "
    while end not in buf[-300:]:
        buf += raw.sock.recv(1 << 20)
    return bytes(buf)


def test_select_and_status_are_fast(srv, big) -> None:
    raw = Raw(srv)
    raw.login(big)
    started = time.monotonic()
    lines = raw.ok("SELECT INBOX")
    elapsed = time.monotonic() - started
    assert b"* %d EXISTS" % N in lines
    assert elapsed < 1.0, f"SELECT of {N} messages took {elapsed:.2f}s"
    started = time.monotonic()
    (status,) = raw.ok("STATUS INBOX (MESSAGES UNSEEN UIDNEXT SIZE)")
    assert status.startswith(b"* STATUS INBOX (MESSAGES %d UNSEEN %d UIDNEXT %d" %
                             (N, (N + 2) // 3, N + 1))
    assert time.monotonic() - started < 1.0
    raw.close()


def test_whole_mailbox_fetch_and_search(srv, big) -> None:
    raw = Raw(srv)
    raw.login(big)
    raw.ok("EXAMINE INBOX")
    raw.send(b"f1 FETCH 1:* (UID FLAGS ENVELOPE)\r\n")
    data = until_tagged(raw, b"f1")
    assert data.count(b" FETCH (UID ") == N and b"\r\nf1 OK FETCH completed" in data
    raw.send(b"s1 UID SEARCH UNSEEN\r\n")
    data = until_tagged(raw, b"s1")
    assert data.startswith(b"* SEARCH 1 4 7 ") and data.count(b" ") > N // 3
    got = raw.ok("FETCH 99999:* (BODY.PEEK[])")
    assert len(got) == 2 and got[1].startswith(b"* 100000 FETCH (BODY[] {")
    raw.close()
