"""DNS for outbound delivery and inbound checks: the ONE resolver object casella asks.

Lives here: `Resolver` (the interface: `query(name, rdtype)` returning typed answers, raising
`NXDomain` for a name that does not exist and `DnsTempError` for a timeout or server failure),
`DnsResolver` (dnspython's asyncio resolver, the default), `StaticResolver` (a fixed table that
tests install), and `get_resolver` / `set_resolver`, the process-wide instance the queue runner,
SPF, DKIM and DMARC all use. Must never: cache negative answers for longer than the query, log
query contents above debug level, or be bypassed (no other module calls dnspython directly).

Answer shapes, per record type:
  MX          list[tuple[int, str]]   (preference, exchange without the trailing dot; "" = null MX)
  A / AAAA    list[str]               textual addresses
  TXT         list[bytes]             each record's character-strings joined (RFC 7208 §3.3)
  PTR         list[str]               names without the trailing dot
An empty list means the name exists but has no record of that type (NOERROR/NODATA).
"""

from __future__ import annotations

import abc
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from typing import Any

log = logging.getLogger("casella.dns")

SUPPORTED_TYPES = ("MX", "A", "AAAA", "TXT", "PTR")


class DnsError(Exception):
    """Base of the resolver's errors."""


class NXDomain(DnsError):
    """The name does not exist (RCODE 3)."""


class DnsTempError(DnsError):
    """Timeout, SERVFAIL or no reachable server: try again later."""


def _canonical(name: str) -> str:
    return name.rstrip(".").lower()


def reverse_name(ip: str) -> str:
    """The in-addr.arpa / ip6.arpa name of an address (for PTR)."""
    return ipaddress.ip_address(ip).reverse_pointer


class Resolver(abc.ABC):
    """The interface. Subclasses implement `query`; the helpers build on it."""

    @abc.abstractmethod
    async def query(self, name: str, rdtype: str) -> list[Any]:
        """Answers of `rdtype` for `name` (shapes in the module docstring)."""

    async def addresses(self, name: str) -> list[str]:
        """A then AAAA records of a host (IPv4 first: most remote MX hosts prefer it).
        NXDomain when the name does not exist; an empty list when it has no address."""
        v4: list[str] = []
        v6: list[str] = []
        temp: DnsTempError | None = None
        for rdtype, out in (("A", v4), ("AAAA", v6)):
            try:
                out.extend(await self.query(name, rdtype))
            except DnsTempError as exc:
                temp = exc
        if not v4 and not v6 and temp is not None:
            raise temp
        return v4 + v6


class DnsResolver(Resolver):
    """dnspython's asyncio stub resolver, configured from /etc/resolv.conf."""

    def __init__(self, lifetime: float = 10.0) -> None:
        import dns.asyncresolver

        self._resolver = dns.asyncresolver.Resolver()
        self._resolver.lifetime = lifetime

    async def query(self, name: str, rdtype: str) -> list[Any]:
        import dns.exception
        import dns.resolver

        if rdtype not in SUPPORTED_TYPES:
            raise ValueError(f"unsupported record type {rdtype}")
        try:
            answer = await self._resolver.resolve(name, rdtype, search=False)
        except dns.resolver.NXDOMAIN:
            raise NXDomain(f"{name} does not exist") from None
        except dns.resolver.NoAnswer:
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers,
                dns.resolver.LifetimeTimeout) as exc:
            raise DnsTempError(f"DNS lookup of {name} {rdtype} failed: {exc}") from None
        except dns.exception.DNSException as exc:
            raise DnsTempError(f"DNS lookup of {name} {rdtype} failed: {exc}") from None
        out: list[Any] = []
        for rdata in answer:
            if rdtype == "MX":
                out.append((int(rdata.preference), rdata.exchange.to_text(True).rstrip(".")
                            if rdata.exchange.to_text() != "." else ""))
            elif rdtype in ("A", "AAAA"):
                out.append(rdata.address)
            elif rdtype == "TXT":
                out.append(b"".join(rdata.strings))
            elif rdtype == "PTR":
                out.append(rdata.target.to_text(True).rstrip("."))
        return out


TIMEOUT = "timeout"   # a StaticResolver table value that simulates a DNS timeout


class StaticResolver(Resolver):
    """A fixed table for tests: {(name, type): answers}. A name that appears under no type is
    NXDOMAIN; a name present with other types answers [] (NODATA); the value TIMEOUT raises
    DnsTempError. TXT answers may be given as str. `queries` records every lookup."""

    def __init__(self, table: Mapping[tuple[str, str], Sequence[Any] | str] | None = None) -> None:
        self.table: dict[tuple[str, str], Sequence[Any] | str] = {}
        self.queries: list[tuple[str, str]] = []
        for (name, rdtype), value in (table or {}).items():
            self.add(name, rdtype, value)

    def add(self, name: str, rdtype: str, value: Sequence[Any] | str) -> None:
        self.table[(_canonical(name), rdtype.upper())] = value

    async def query(self, name: str, rdtype: str) -> list[Any]:
        key = (_canonical(name), rdtype.upper())
        self.queries.append(key)
        value = self.table.get(key)
        if value is None:
            if any(n == key[0] for n, _ in self.table):
                return []
            raise NXDomain(f"{name} does not exist")
        if value == TIMEOUT:
            raise DnsTempError(f"DNS lookup of {name} {rdtype} timed out")
        assert not isinstance(value, str)
        if key[1] == "TXT":
            return [v.encode() if isinstance(v, str) else bytes(v) for v in value]
        return list(value)


_resolver: Resolver | None = None


def get_resolver() -> Resolver:
    """The process-wide resolver (a DnsResolver unless a test installed another)."""
    global _resolver
    if _resolver is None:
        _resolver = DnsResolver()
    return _resolver


def set_resolver(resolver: Resolver | None) -> Resolver | None:
    """Install `resolver` (None: back to the default); returns the previous one."""
    global _resolver
    previous, _resolver = _resolver, resolver
    return previous
