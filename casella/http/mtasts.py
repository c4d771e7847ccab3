"""MTA-STS (RFC 8461): the policy file other mail servers fetch before they send to a hosted
domain, and the policy id its DNS record carries.

Lives here: `policy_domain` (which hosted domain a `mta-sts.<domain>` Host header asks about),
`policy_text` and `policy_id`. Pure. Must never: look anything up (the caller checks that the
domain is hosted) or serve the policy for a domain that is not.
"""

from __future__ import annotations

import hashlib

POLICY_PATH = "/.well-known/mta-sts.txt"
PREFIX = "mta-sts."


def policy_domain(host: str) -> str | None:
    """`mta-sts.example.com[:port]` -> `example.com`; None for any other host (RFC 8461 §3.3:
    the policy host is the Policy Domain with the label "mta-sts" prepended)."""
    name = host.strip().lower()
    if name.startswith("["):
        return None
    name = name.rpartition(":")[0] if ":" in name else name
    name = name.rstrip(".")
    if not name.startswith(PREFIX) or len(name) <= len(PREFIX):
        return None
    return name[len(PREFIX):]


def policy_text(mx: str, mode: str, max_age: int) -> str:
    """RFC 8461 §3.2: key/value lines separated by CRLF, "version: STSv1" first; one "mx"
    line (the server's own host name, which the domain's MX record names)."""
    lines = ["version: STSv1", f"mode: {mode}", f"mx: {mx}", f"max_age: {max_age}"]
    return "\r\n".join(lines) + "\r\n"


def policy_id(text: str) -> str:
    """An id for the `_mta-sts` TXT record (RFC 8461 §3.1: 1 to 32 letters and digits) that
    changes whenever the policy text does."""
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:32]
