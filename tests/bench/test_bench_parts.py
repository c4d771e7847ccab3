"""Unit tests of the harness's pieces that decide numbers: the message corpus (identical for
casella and the peers), percentiles and ratios, and the load clients' response scanning
(literals, multi-line terminators) against a scripted server on loopback.
"""

from __future__ import annotations

import asyncio
import math

import pytest

from bench import corpus
from bench.clients.imap import ImapClient
from bench.clients.pop3 import Pop3Client
from bench.clients.smtp import dot_stuff
from bench.report import ratio
from bench.stats import Result, percentile


def test_corpus_is_deterministic_and_distinct_per_mailbox() -> None:
    a = corpus.message("box1k@bench.test", 7)
    assert a == corpus.message("box1k@bench.test", 7)
    assert a.data != corpus.message("box10k@bench.test", 7).data
    assert a.data != corpus.message("box1k@bench.test", 8).data


def test_corpus_messages_are_well_formed() -> None:
    sizes = []
    for i in range(300):
        m = corpus.message("x@bench.test", i)
        head, sep, _body = m.data.partition(b"\r\n\r\n")
        assert sep, "header and body are separated by an empty line"
        assert b"\n" not in m.data.replace(b"\r\n", b""), "CRLF line ends only"
        assert b"Message-ID: <" in head and b"From: " in head and b"Date: " in head
        assert all(len(line) <= 998 for line in m.data.split(b"\r\n"))
        sizes.append(len(m.data))
    assert min(sizes) < 4000 < max(sizes), "a mix of sizes"
    assert any(b"multipart/" in corpus.message("x@bench.test", i).data for i in range(50))


def test_needle_is_rare_but_present() -> None:
    hits = [i for i in range(300) if corpus.NEEDLE.encode() in
            corpus.message("x@bench.test", i).data]
    assert 1 <= len(hits) <= 10


@pytest.mark.parametrize("size", [1024, 10240, 102400])
def test_sized_message_is_exact(size: int) -> None:
    data = corpus.sized_message("a@example.net", "b@bench.test", size, 42)
    assert len(data) == size
    assert data.endswith(b"\r\n")


def test_maildir_name_carries_sizes_and_flags() -> None:
    m = corpus.Message(b"Subject: x\r\n\r\nhi\r\n", 1700000000, ("\\Seen", "\\Answered"))
    lf = corpus.to_lf(m.data)
    name = corpus.maildir_name(m, 3, len(lf))
    assert name.endswith(f",S={len(lf)},W={len(m.data)}:2,RS")


def test_dot_stuffing() -> None:
    assert dot_stuff(b".a\r\nb\r\n.c\r\n") == b"..a\r\nb\r\n..c\r\n.\r\n"


def test_percentile_and_ratio() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 99) == 4.0
    assert math.isnan(percentile([], 50))
    rate_c = Result("s", "c", "casella", "msgs/s", 200.0)
    rate_p = Result("s", "c", "postfix", "msgs/s", 100.0)
    assert ratio(rate_c, rate_p) == 2.0
    ms_c = Result("s", "c", "casella", "ms", 10.0, higher_is_better=False)
    ms_p = Result("s", "c", "dovecot", "ms", 5.0, higher_is_better=False)
    assert ratio(ms_c, ms_p) == 0.5


async def _scripted(script: list[tuple[bytes, bytes]]) -> tuple[asyncio.AbstractServer, int]:
    """A server that answers each expected line prefix with canned bytes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(script[0][1])
        for expect, answer in script[1:]:
            line = await reader.readline()
            assert line.startswith(expect), (line, expect)
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_imap_client_skips_literals_and_finds_the_tag() -> None:
    async def go() -> None:
        body = b"b1 OK not the tag\r\n* 9 EXISTS\r\n"      # looks like replies, is data
        server, port = await _scripted([
            (b"", b"* OK ready\r\n"),
            (b"b1 FETCH", b"* 1 FETCH (BODY[] {%d}\r\n" % len(body) + body +
             b")\r\n* 2 FETCH (FLAGS (\\Seen))\r\nb1 OK done\r\n"),
        ])
        async with server:
            c = await ImapClient.connect("127.0.0.1", port)
            r = await c.command(b"FETCH 1:2 (BODY[])", keep=True)
            assert r.ok and r.count == 2
            assert r.untagged[0].endswith(b")\r\n") and body in r.untagged[0]
            await c.s.aclose()
    asyncio.run(go())


def test_imap_client_finds_a_literal_whose_marker_arrived_in_two_pieces() -> None:
    """The {n} of a literal split across two reads: the data that follows is still skipped
    (it once was read as lines, and a body line starting with "+" failed the case)."""
    body = b"+ looks like a continuation\r\n* 9 EXISTS\r\n"

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK ready\r\n")
        await reader.readline()
        writer.write(b"* 1 FETCH (BODY[] {%d" % (len(body) // 10))
        await writer.drain()
        await asyncio.sleep(0.2)    # the client reads the first piece on its own
        writer.write(b"%d}\r\n" % (len(body) % 10) + body + b")\r\nb1 OK done\r\n")
        await writer.drain()
        writer.close()

    async def go() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            c = await ImapClient.connect("127.0.0.1", server.sockets[0].getsockname()[1])
            r = await c.command(b"FETCH 1 (BODY[])", keep=True)
            assert r.ok and r.count == 1 and body in r.untagged[0]
            await c.s.aclose()
    asyncio.run(go())


def test_pop3_client_reads_multiline_to_the_terminator() -> None:
    async def go() -> None:
        server, port = await _scripted([
            (b"", b"+OK hi\r\n"),
            (b"USER", b"+OK\r\n"), (b"PASS", b"+OK\r\n"),
            (b"UIDL", b"+OK\r\n1 a\r\n2 b\r\n.\r\n"),
            (b"RETR 1", b"+OK 9 octets\r\nSubject: x\r\n\r\n..dot\r\n.\r\n"),
            (b"QUIT", b"+OK bye\r\n"),
        ])
        async with server:
            c = await Pop3Client.connect("127.0.0.1", port)
            await c.login("u", "p")
            assert await c.uidl() == [(1, b"a"), (2, b"b")]
            assert await c.retr(1) > 20
            await c.quit()
    asyncio.run(go())
