"""The PROXY protocol parser (HAProxy's proxy-protocol.txt, versions 1 and 2): good headers,
bad ones with the reason, truncated ones (incomplete until the last byte), random chunk
splits, and the bounds (v1: 107 bytes; v2: 4096)."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casella.net.proxyproto import (
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    parse_proxy_header,
)


def v2(command: int = 1, fam: int = 0x11, block: bytes = b"", version: int = 2,
       length: int | None = None) -> bytes:
    size = len(block) if length is None else length
    return V2_SIGNATURE + bytes([(version << 4) | command, fam]) + struct.pack("!H", size) + block


def inet(src: str, dst: str, sport: int, dport: int) -> bytes:
    return (ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed +
            struct.pack("!HH", sport, dport))


def tlv(kind: int, value: bytes) -> bytes:
    return bytes([kind]) + struct.pack("!H", len(value)) + value


GOOD: list[tuple[bytes, ProxyHeader]] = [
    (b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 993\r\n",
     ProxyHeader(1, 44, ("203.0.113.7", 56324), ("192.0.2.1", 993))),
    (b"PROXY TCP6 2001:db8::7 2001:db8::1 0 143\r\n",
     ProxyHeader(1, 42, ("2001:db8::7", 0), ("2001:db8::1", 143))),
    (b"PROXY TCP6 2001:DB8:0:0:0:0:0:7 ::1 65535 25\r\n",
     ProxyHeader(1, 46, ("2001:db8::7", 65535), ("::1", 25))),
    (b"PROXY UNKNOWN\r\n", ProxyHeader(1, 15)),
    (b"PROXY UNKNOWN ffff:f::f ffff:f::f 65535 65535 whatever\r\n", ProxyHeader(1, 56)),
    # The longest line §2.1 allows: 107 bytes.
    (b"PROXY UNKNOWN " + b"f" * 91 + b"\r\n", ProxyHeader(1, 107)),
    (v2(block=inet("203.0.113.7", "192.0.2.1", 56324, 995)),
     ProxyHeader(2, 28, ("203.0.113.7", 56324), ("192.0.2.1", 995))),
    (v2(fam=0x21, block=inet("2001:db8::7", "2001:db8::1", 4000, 110)),
     ProxyHeader(2, 52, ("2001:db8::7", 4000), ("2001:db8::1", 110))),
    # TLVs after the addresses are skipped: ALPN, authority (SNI), NOOP, SSL with sub-TLVs.
    (v2(block=inet("198.51.100.2", "192.0.2.1", 1, 2) + tlv(0x01, b"imap") +
        tlv(0x02, b"mail.example.com") + tlv(0x04, b"\0\0") +
        tlv(0x20, b"\x01\0\0\0\0" + tlv(0x21, b"TLSv1.3"))),
     ProxyHeader(2, 77, ("198.51.100.2", 1), ("192.0.2.1", 2))),
    # LOCAL (a health check): the real endpoints apply, whatever the block holds.
    (v2(command=0, fam=0x00), ProxyHeader(2, 16)),
    (v2(command=0, fam=0x11, block=inet("10.0.0.1", "10.0.0.2", 1, 2)), ProxyHeader(2, 28)),
    # UNSPEC, UDP and UNIX with PROXY fall back to the real endpoints (§2.2).
    (v2(fam=0x00, block=b"junk"), ProxyHeader(2, 20)),
    (v2(fam=0x12, block=inet("10.0.0.1", "10.0.0.2", 1, 2)), ProxyHeader(2, 28)),
    (v2(fam=0x31, block=b"\0" * 216), ProxyHeader(2, 232)),
    # The longest version 2 header casella takes.
    (v2(block=inet("10.0.0.1", "10.0.0.2", 1, 2) + tlv(0xE0, b"x" * (V2_MAX_LENGTH - 31))),
     ProxyHeader(2, V2_MAX_LENGTH, ("10.0.0.1", 1), ("10.0.0.2", 2))),
]


@pytest.mark.parametrize("data, header", GOOD)
def test_good_headers(data: bytes, header: ProxyHeader) -> None:
    assert parse_proxy_header(data) == header
    assert header.length == len(data)
    # What follows the header is not the parser's: the same answer with data after it.
    assert parse_proxy_header(data + b"\x16\x03\x01 a TLS hello or A1 LOGIN") == header


@pytest.mark.parametrize("data, header", GOOD)
def test_every_truncation_is_incomplete(data: bytes, header: ProxyHeader) -> None:
    for n in range(len(data)):
        assert parse_proxy_header(data[:n]) is None, n


BAD: list[tuple[bytes, str]] = [
    (b"A1 LOGIN user pass\r\n", "does not start with a PROXY"),
    (b"\x16\x03\x01\x02\x00", "does not start with a PROXY"),
    (b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "does not start with a PROXY"),
    (b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "bad version 1 header"),
    (b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n", "bad version 1 header"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "bad version 1 header"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "bad version 1 header"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bare LF"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", None),           # incomplete, see below
    (b"PROXY TCP4 1.2.3.04 5.6.7.8 1 2\r\n", "bad TCP4 address"),
    (b"PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "bad TCP4 address"),
    (b"PROXY TCP4 2001:db8::1 5.6.7.8 1 2\r\n", "bad TCP4 address"),
    (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "bad TCP6 address"),
    (b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n", "bad TCP6 address"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "bad port"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\x00\r\n", "printable US-ASCII"),
    (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 \xff\r\n", "printable US-ASCII"),
    (b"PROXY UNKNOWN " + b"f" * 92 + b"\r\n", "no CRLF in the first 107"),
    (b"PROXY " + b"x" * 200, "no CRLF in the first 107"),
    (v2(version=1, block=inet("1.2.3.4", "5.6.7.8", 1, 2)), "version 1 is not 2"),
    (v2(version=3), "version 3 is not 2"),
    (v2(command=2), "unknown PROXY protocol command 2"),
    (v2(command=0xF), "unknown PROXY protocol command 15"),
    (v2(fam=0x41), "unknown address family"),
    (v2(fam=0x13), "unknown address family"),
    (v2(fam=0x11, block=b"\0" * 11), "too short for family 1"),
    (v2(fam=0x21, block=b"\0" * 35), "too short for family 2"),
    (v2(fam=0x31, block=b"\0" * 215), "too short for family 3"),
    (v2(length=V2_MAX_LENGTH - 15), "longer than casella takes"),
    (v2(length=65535), "longer than casella takes"),
]


@pytest.mark.parametrize("data, error", [b for b in BAD if b[1] is not None])
def test_bad_headers(data: bytes, error: str) -> None:
    with pytest.raises(ProxyHeaderError, match=error):
        parse_proxy_header(data)


def test_a_lone_cr_is_not_an_end() -> None:
    """§2.1: a single CR does not end the line; the receiver waits for the LF."""
    data = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r"
    assert parse_proxy_header(data) is None
    assert parse_proxy_header(data + b"\n") == ProxyHeader(1, 32, ("1.2.3.4", 1),
                                                           ("5.6.7.8", 2))


@given(st.sampled_from(GOOD), st.lists(st.integers(0, 200), max_size=12),
       st.binary(max_size=40))
def test_random_chunk_splits(case: tuple[bytes, ProxyHeader], cuts: list[int],
                             after: bytes) -> None:
    """Fed as it arrives, in any pieces: incomplete until the header's last byte is in, then
    the same header, whatever follows it."""
    data, header = case
    stream = data + after
    points = sorted({min(c, len(stream)) for c in cuts} | {len(stream)})
    seen = b""
    result = None
    for point in points:
        seen = stream[:point]
        result = parse_proxy_header(seen)
        if len(seen) < len(data):
            assert result is None
        else:
            assert result == header
    assert result == header


@given(st.binary(max_size=300))
def test_any_bytes_give_a_header_none_or_the_error(data: bytes) -> None:
    try:
        result = parse_proxy_header(data)
    except ProxyHeaderError:
        return
    assert result is None or 0 < result.length <= len(data)
