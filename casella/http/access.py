"""Who may reach the admin side of the HTTP listener (/api and /metrics): `[http] admin_from`.

Lives here: `admin_allowed`, the one check both use. Must never: trust a header a client sets
(X-Forwarded-For and the like): only the address of the TCP peer counts.
"""

from __future__ import annotations

import ipaddress

from casella.config import Config


def admin_allowed(config: Config, remote: str | None) -> bool:
    """Whether the TCP peer `remote` is in one of `[http] admin_from`'s networks."""
    if not remote:
        return False
    try:
        ip = ipaddress.ip_address(remote.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped       # a dual-stack socket shows IPv4 peers as ::ffff:a.b.c.d
    return any(ip in net for net in config.http.admin_from)
