"""Pure parts of the outbound engine: dot-stuffing (PROMISES M3), xtext (RFC 3461 §4), reply
parsing of the client, the retry schedule, and MX routing (RFC 5321 §5.1, RFC 7505) with a
fixed DNS table."""

from __future__ import annotations

import asyncio
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casella.config import config_from_mapping
from casella.smtp.client import SmtpClient, SmtpClientError, SmtpReply, dot_stuff, encode_xtext
from casella.smtp.queue import retry_delay
from casella.smtp.queue.routing import RouteError, targets_for
from casella.smtp.resolver import TIMEOUT, StaticResolver


def unstuff(wire: bytes) -> bytes:
    assert wire.endswith(b".\r\n")
    body = wire[:-3]
    return b"\r\n".join(line[1:] if line.startswith(b".") else line
                        for line in body.split(b"\r\n"))


@pytest.mark.parametrize("data,wire", [
    (b"", b".\r\n"),
    (b"a\r\n", b"a\r\n.\r\n"),
    (b"a", b"a\r\n.\r\n"),
    (b".a\r\n", b"..a\r\n.\r\n"),
    (b"x\r\n.\r\ny\r\n", b"x\r\n..\r\ny\r\n.\r\n"),
    (b"x\n.y", b"x\r\n..y\r\n.\r\n"),           # bare LF: normalised, then stuffed
    (b"x\r.y", b"x\r\n..y\r\n.\r\n"),           # bare CR too
    (b"x\r\r\n.\n", b"x\r\n\r\n..\r\n.\r\n"),
])
def test_dot_stuff_table(data: bytes, wire: bytes) -> None:
    assert dot_stuff(data) == wire


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.lists(st.sampled_from(
    [b".", b"\r", b"\n", b"\r\n", b"a", b".."]), max_size=40).map(b"".join))
def test_dot_stuff_never_emits_bare_cr_lf_or_an_early_end(data: bytes) -> None:
    """PROMISES M3: no bare CR or LF; the only "\\r\\n.\\r\\n" is the terminator; unstuffing
    gives back the data with normalised line ends."""
    wire = dot_stuff(data)
    crlf = wire.count(b"\r\n")
    assert wire.count(b"\r") == crlf and wire.count(b"\n") == crlf
    assert (b"\r\n" + wire).find(b"\r\n.\r\n") == len(wire) - 3
    normal = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    if normal and not normal.endswith(b"\r\n"):
        normal += b"\r\n"
    assert unstuff(wire) == normal


def test_xtext() -> None:
    assert encode_xtext("a+b=c d") == "a+2Bb+3Dc+20d"
    assert encode_xtext("ü") == "+C3+BC"


def test_reply_status() -> None:
    r = SmtpReply(550, ("5.1.1 no such user", "really"))
    assert (r.status, r.permanent, str(r)) == ("5.1.1", True, "550 5.1.1 no such user really")
    r = SmtpReply(451, ("try later",))
    assert (r.status, r.temporary, str(r)) == ("4.0.0", True, "451 4.0.0 try later")


@pytest.mark.parametrize("lines,error", [
    ([b"250-a\r\n", b"251 b\r\n"], "inconsistent"),
    ([b"hello\r\n"], "garbage"),
    ([b"25\r\n"], "garbage"),
    ([b"250xok\r\n"], "garbage"),
    ([b"650 what\r\n"], "garbage"),
])
async def test_client_refuses_bad_replies(lines: list[bytes], error: str) -> None:
    client = SmtpClient("h", 25, helo="me")
    reader = asyncio.StreamReader()
    for line in lines:
        reader.feed_data(line)
    reader.feed_eof()
    client._reader = reader
    with pytest.raises(SmtpClientError, match=error):
        await client._read_reply(1)


async def test_client_reads_multiline_and_eof() -> None:
    client = SmtpClient("h", 25, helo="me")
    reader = asyncio.StreamReader()
    reader.feed_data(b"250-first\r\n250-PIPELINING\r\n250 last\r\n")
    reader.feed_eof()
    client._reader = reader
    assert (await client._read_reply(1)).lines == ("first", "PIPELINING", "last")
    with pytest.raises(SmtpClientError, match="closed"):
        await client._read_reply(1)


def test_retry_schedule() -> None:
    assert [retry_delay(n, 300, 14400) for n in range(1, 9)] == [
        300, 600, 1200, 2400, 4800, 9600, 14400, 14400]
    assert retry_delay(1000, 300, 14400) == 14400


async def test_routing_rules() -> None:
    d = config_from_mapping({"delivery": {"routes": {"routed.test": "127.0.0.9:2525",
                                                     "named.test": "relay.test:587"}}}).delivery
    r = StaticResolver()
    r.add("multi.test", "MX", [(20, "b.multi.test"), (10, "a.multi.test"),
                               (30, "gone.multi.test"), (15, "noaddr.multi.test")])
    r.add("a.multi.test", "A", ["192.0.2.1"])
    r.add("a.multi.test", "AAAA", ["2001:db8::1"])
    r.add("b.multi.test", "A", ["192.0.2.2"])
    r.add("noaddr.multi.test", "TXT", ["x"])
    r.add("mixed.test", "MX", [(0, ""), (10, "a.multi.test")])
    r.add("relay.test", "A", ["192.0.2.7"])
    r.add("tmp.test", "MX", [(10, "slow.tmp.test")])
    r.add("slow.tmp.test", "A", TIMEOUT)
    r.add("slow.tmp.test", "AAAA", TIMEOUT)
    r.add("hosts.test", "MX", [(10, "noaddr.multi.test")])
    targets = await targets_for("multi.test", d, r)
    assert [(t.host, t.addresses, t.port) for t in targets] == [
        ("a.multi.test", ("192.0.2.1", "2001:db8::1"), 25), ("b.multi.test", ("192.0.2.2",), 25)]
    assert [t.host for t in await targets_for("mixed.test", d, r)] == ["a.multi.test"]
    routed = await targets_for("routed.test", d, r)
    assert [(t.addresses, t.port, t.routed) for t in routed] == [(("127.0.0.9",), 2525, True)]
    assert (await targets_for("named.test", d, r))[0].addresses == ("192.0.2.7",)
    with pytest.raises(RouteError) as exc:
        await targets_for("tmp.test", d, r)
    assert not exc.value.permanent and exc.value.status == "4.4.3"
    with pytest.raises(RouteError) as exc:
        await targets_for("hosts.test", d, r)
    assert not exc.value.permanent and exc.value.status == "4.4.4"
