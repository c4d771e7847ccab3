"""Where mail for a domain goes: `[delivery] routes`, else the domain's MX hosts.

Lives here: `Target` (one host to try, with its addresses), `targets_for` (RFC 5321 §5.1: MX
records in preference order, equal preferences shuffled; no MX → the domain itself (implicit
MX, A/AAAA); a null MX (RFC 7505) → permanent failure; a domain that does not exist →
permanent failure; DNS trouble → temporary failure) and `RouteError`. Must never: call DNS
other than through casella.smtp.resolver, or route mail to a host that is not in DNS or in
the config.
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass

from casella.config import DeliveryConfig
from casella.smtp.resolver import DnsTempError, NXDomain, Resolver

MAX_MX_HOSTS = 10          # Postfix's smtp_mx_address_limit spirit: bounded work per attempt
SMTP_PORT = 25


@dataclass(frozen=True)
class Target:
    host: str                          # the name we announce in logs and Remote-MTA
    addresses: tuple[str, ...]         # to connect to, in order
    port: int = SMTP_PORT
    auth: tuple[str, str] | None = None
    routed: bool = False               # from [delivery] routes (a smarthost or a test)


class RouteError(Exception):
    """No host to try. `permanent` (with an enhanced status) or temporary."""

    def __init__(self, message: str, status: str, permanent: bool) -> None:
        super().__init__(message)
        self.status = status
        self.permanent = permanent

    @property
    def reply(self) -> str:
        code = 550 if self.permanent else 451
        return f"{code} {self.status} {self}"


def _literal(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


async def _host_addresses(resolver: Resolver, host: str) -> list[str]:
    literal = _literal(host)
    if literal is not None:
        return [literal]
    return await resolver.addresses(host)


async def targets_for(domain: str, delivery: DeliveryConfig, resolver: Resolver,
                      mx_port: int = SMTP_PORT) -> list[Target]:
    """The hosts to try for `domain`, best first. Raises RouteError. `mx_port` is 25 except
    in tests that point MX records at a fake server on loopback."""
    route = delivery.routes.get(domain) or delivery.routes.get("*")
    if route is not None:
        key = domain if domain in delivery.routes else "*"
        try:
            addresses = await _host_addresses(resolver, route.host)
        except NXDomain:
            raise RouteError(f"the configured route {route} for {domain} does not resolve",
                             "4.4.4", permanent=False) from None
        except DnsTempError as exc:
            raise RouteError(str(exc), "4.4.3", permanent=False) from None
        if not addresses:
            raise RouteError(f"the configured route {route} for {domain} has no address",
                             "4.4.4", permanent=False)
        return [Target(route.host, tuple(addresses), route.port,
                       delivery.route_auth.get(key), routed=True)]
    try:
        mx = await resolver.query(domain, "MX")
    except NXDomain:
        raise RouteError(f"the domain {domain} does not exist", "5.1.2",
                         permanent=True) from None
    except DnsTempError as exc:
        raise RouteError(f"DNS lookup for {domain} failed: {exc}", "4.4.3",
                         permanent=False) from None
    if any(host in ("", ".") for _, host in mx):
        if len(mx) == 1:
            # RFC 7505 §3: a null MX says the domain accepts no mail at all.
            raise RouteError(f"the domain {domain} accepts no mail (null MX, RFC 7505)",
                             "5.1.10", permanent=True)
        mx = [(p, h) for p, h in mx if h not in ("", ".")]
    if not mx:
        # RFC 5321 §5.1: no MX records: the domain itself is the implicit MX.
        try:
            addresses = await resolver.addresses(domain)
        except NXDomain:
            raise RouteError(f"the domain {domain} does not exist", "5.1.2",
                             permanent=True) from None
        except DnsTempError as exc:
            raise RouteError(f"DNS lookup for {domain} failed: {exc}", "4.4.3",
                             permanent=False) from None
        if not addresses:
            raise RouteError(f"the domain {domain} has no mail server (no MX, no address)",
                             "5.1.2", permanent=True)
        return [Target(domain, tuple(addresses), mx_port)]
    by_pref: dict[int, list[str]] = {}
    for pref, host in mx:
        by_pref.setdefault(pref, []).append(host)
    ordered: list[str] = []
    for pref in sorted(by_pref):
        hosts = by_pref[pref]
        random.shuffle(hosts)   # RFC 5321 §5.1: spread load over equal preferences
        ordered.extend(hosts)
    targets = []
    temp_error: DnsTempError | None = None
    for host in ordered[:MAX_MX_HOSTS]:
        try:
            addresses = await _host_addresses(resolver, host)
        except NXDomain:
            continue
        except DnsTempError as exc:
            temp_error = exc
            continue
        if addresses:
            targets.append(Target(host, tuple(addresses), mx_port))
    if not targets:
        if temp_error is not None:
            raise RouteError(f"DNS lookup of the mail servers of {domain} failed: "
                             f"{temp_error}", "4.4.3", permanent=False)
        # Postfix defers here too: an MX host without an address is usually a DNS mistake
        # the domain's owner fixes; the give-up time turns it into a bounce eventually.
        raise RouteError(f"the mail servers of {domain} have no address", "4.4.4",
                         permanent=False)
    return targets
