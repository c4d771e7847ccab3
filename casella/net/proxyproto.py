"""The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2): what a load
balancer sends before anything else on a connection, naming the client it relays.

Lives here: `parse_proxy_header`, a pure parser: the bytes received so far in, a
`ProxyHeader`, None (incomplete: every byte so far belongs to the header, read on) or a
`ProxyHeaderError` out; and the bounds it keeps. Must never: import asyncio, sockets, the
config or the store, or decide whom to trust (casella.net.listener parses only connections
from `[listen] proxy_protocol_from`, proxy-protocol.txt §5).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
# proxy-protocol.txt §2.1: the longest version 1 line, CRLF included.
V1_MAX_LENGTH = 107
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED = 16
# Version 2 may announce up to 16 + 65535 bytes; addresses take at most 216 and the TLVs
# load balancers send (SSL details, unique id, cloud endpoint ids) a few hundred more. Like
# nginx, casella takes at most 4 KiB and refuses a longer header.
V2_MAX_LENGTH = 4096
MAX_LENGTH = V2_MAX_LENGTH

_V2_COMMANDS = {0x0: "LOCAL", 0x1: "PROXY"}
_AF_UNSPEC, _AF_INET, _AF_INET6, _AF_UNIX = 0, 1, 2, 3
_STREAM = 1
_ADDRESS_BLOCK = {_AF_INET: 12, _AF_INET6: 36, _AF_UNIX: 216}


class ProxyHeaderError(ValueError):
    """Not a valid PROXY protocol header: the connection must be closed (§2.1: "must be
    discarded and cause the receiver to abort the connection")."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    version: int                             # 1 or 2
    length: int                              # bytes the header takes on the wire
    source: tuple[str, int] | None = None    # the client's address and port
    destination: tuple[str, int] | None = None
    # None above: use the connection's own addresses (v2 LOCAL, a health check; v1 UNKNOWN;
    # v2 UNSPEC, UNIX or UDP, which §2.2 lets a receiver treat as UNSPEC).


def _is_prefix(data: bytes, of: bytes) -> bool:
    return of.startswith(data[:len(of)]) if len(data) < len(of) else False


def parse_proxy_header(data: bytes) -> ProxyHeader | None:
    """The header at the start of `data`; None while it is incomplete."""
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    if _is_prefix(data, V2_SIGNATURE) or _is_prefix(data, V1_PREFIX):
        return None
    raise ProxyHeaderError("the connection does not start with a PROXY protocol header")


# --- version 1: one line of text ------------------------------------------------------------


def _port(text: bytes) -> int:
    # §2.1: decimal 0..65535, no leading zeroes.
    if not text.isdigit() or (len(text) > 1 and text[:1] == b"0") or int(text) > 65535:
        raise ProxyHeaderError(f"bad port {text[:8]!r}")
    return int(text)


def _address(text: bytes, family: bytes) -> str:
    try:
        raw = text.decode("ascii")
        if family == b"TCP4":
            return str(ipaddress.IPv4Address(raw))     # refuses leading zeroes too
        if "%" in raw:
            raise ValueError("scoped")
        return str(ipaddress.IPv6Address(raw))
    except ValueError:
        raise ProxyHeaderError(f"bad {family.decode()} address {text[:45]!r}") from None


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX_LENGTH)
    if end < 0:
        lf = data.find(b"\n", 0, V1_MAX_LENGTH)
        if lf >= 0:
            raise ProxyHeaderError("a version 1 header must end with CRLF, not a bare LF")
        if len(data) >= V1_MAX_LENGTH:
            raise ProxyHeaderError(f"no CRLF in the first {V1_MAX_LENGTH} bytes")
        return None
    line = data[:end]
    if any(b < 0x20 or b > 0x7E for b in line):
        raise ProxyHeaderError("a version 1 header is printable US-ASCII")
    parts = line.split(b" ")
    if len(parts) >= 2 and parts[1] == b"UNKNOWN":
        # §2.1: the rest of the line is ignored; the real connection's addresses apply.
        return ProxyHeader(1, end + 2)
    if len(parts) != 6 or parts[1] not in (b"TCP4", b"TCP6"):
        raise ProxyHeaderError(f"bad version 1 header {line[:60]!r}")
    family = parts[1]
    source = (_address(parts[2], family), _port(parts[4]))
    destination = (_address(parts[3], family), _port(parts[5]))
    return ProxyHeader(1, end + 2, source, destination)


# --- version 2: binary ----------------------------------------------------------------------


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < V2_FIXED:
        return None
    ver_cmd, fam, length = struct.unpack_from("!BBH", data, 12)
    if ver_cmd >> 4 != 2:
        raise ProxyHeaderError(f"PROXY protocol version {ver_cmd >> 4} is not 2")
    command = _V2_COMMANDS.get(ver_cmd & 0x0F)
    if command is None:
        raise ProxyHeaderError(f"unknown PROXY protocol command {ver_cmd & 0x0F}")
    family, transport = fam >> 4, fam & 0x0F
    if family > _AF_UNIX or transport > 2:
        raise ProxyHeaderError(f"unknown address family or protocol 0x{fam:02x}")
    total = V2_FIXED + length
    if total > V2_MAX_LENGTH:
        raise ProxyHeaderError(f"a {total}-byte PROXY header is longer than casella takes "
                               f"({V2_MAX_LENGTH})")
    if len(data) < total:
        return None
    if command == "LOCAL":
        # §2.2: a connection of the proxy's own (a health check): the real endpoints apply,
        # and whatever the block holds is skipped.
        return ProxyHeader(2, total)
    need = _ADDRESS_BLOCK.get(family, 0)
    if length < need:
        raise ProxyHeaderError(f"an address block of {length} bytes is too short for "
                               f"family {family} (needs {need})")
    if family not in (_AF_INET, _AF_INET6) or transport != _STREAM:
        return ProxyHeader(2, total)        # UNSPEC, UNIX, UDP: treated as UNSPEC
    block = data[V2_FIXED:V2_FIXED + need]
    size = 4 if family == _AF_INET else 16
    src_port, dst_port = struct.unpack_from("!HH", block, 2 * size)
    # The TLVs after the address block (up to `total`) are skipped unread (§2.2).
    return ProxyHeader(2, total, (str(ipaddress.ip_address(block[:size])), src_port),
                       (str(ipaddress.ip_address(block[size:2 * size])), dst_port))
