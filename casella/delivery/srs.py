"""The Sender Rewriting Scheme (Shevek's paper, as libsrs2 and postsrsd implement it): the
envelope sender of a forwarded message is rewritten into an address of ours that SPF at the
destination accepts and that leads a bounce back to the original sender.

Lives here: `Srs.forward` (sender -> SRS0=HHHH=TT=domain=local@ours, or SRS1 for a sender that
is already an SRS address of another forwarder) and `Srs.reverse` (an SRS address that reached
our MX -> the address it stands for, after checking its hash and age). HHHH is the first four
base64 characters of HMAC-SHA1(secret, the lower-cased parts); TT the day number modulo 1024 in
two base32 characters. Must never: do I/O, accept an SRS0 address whose hash does not verify
or whose timestamp is older than `max_age_days` (or from the future), or compare the hash
other than in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time

_B32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_PRECISION = 86400                  # one timestamp step is a day
_SLOTS = 1024                       # two base32 characters
HASH_LENGTH = 4
_SEPARATORS = "=+-"


class SrsError(ValueError):
    """Not an SRS address we can reverse (or forward): the reason says why."""


def _timestamp(now: float) -> str:
    t = int(now // _PRECISION) % _SLOTS
    return _B32[t >> 5] + _B32[t & 31]


class Srs:
    def __init__(self, secrets: list[bytes], domain: str, max_age_days: int = 21) -> None:
        """`secrets[0]` signs; every one of them is accepted when reversing (rotation)."""
        if not secrets or not all(secrets):
            raise ValueError("SRS needs a non-empty secret")
        self.secrets = secrets
        self.domain = domain.lower()
        self.max_age_days = max_age_days

    def _hash(self, *parts: str, secret: bytes | None = None) -> str:
        mac = hmac.new(secret or self.secrets[0], digestmod=hashlib.sha1)
        for p in parts:
            mac.update(p.lower().encode("utf-8"))
        return base64.b64encode(mac.digest()).decode("ascii")[:HASH_LENGTH]

    def _verify(self, given: str, *parts: str) -> bool:
        ok = False
        for secret in self.secrets:
            want = self._hash(*parts, secret=secret)
            ok |= hmac.compare_digest(want.lower().encode(), given.lower().encode())
        return ok

    @staticmethod
    def is_srs(address: str) -> bool:
        local = address.rpartition("@")[0]
        return len(local) > 5 and local[:4].upper() in ("SRS0", "SRS1") and \
            local[4] in _SEPARATORS

    def forward(self, sender: str, now: float | None = None) -> str:
        """The sender to use when forwarding a message from `sender`. An address in our own
        SRS domain is left alone (SPF passes for it already)."""
        local, at, domain = sender.rpartition("@")
        if not at or not local:
            raise SrsError("the sender has no domain")
        if domain.lower() == self.domain:
            return sender
        upper = local[:4].upper()
        if len(local) > 5 and upper == "SRS1" and local[4] in _SEPARATORS:
            # SRS1<sep>hash=firsthop=rest: keep the first hop, sign it again for our domain.
            body = local[5:]
            parts = body.split("=", 2)
            if len(parts) < 3 or not parts[1]:
                raise SrsError("a malformed SRS1 address")
            host, rest = parts[1], parts[2]
            return f"SRS1={self._hash(host, rest)}={host}={rest}@{self.domain}"
        if len(local) > 4 and upper == "SRS0" and local[4] in _SEPARATORS:
            # Another forwarder's SRS0: point back at it (SRS1) rather than wrap it again.
            rest = local[4:]
            return f"SRS1={self._hash(domain, rest)}={domain}={rest}@{self.domain}"
        ts = _timestamp(time.time() if now is None else now)
        return f"SRS0={self._hash(ts, domain, local)}={ts}={domain}={local}@{self.domain}"

    def reverse(self, address: str, now: float | None = None) -> str:
        """The address an SRS address of ours stands for; SrsError when it is not one, its
        hash is wrong or it is too old."""
        local, at, domain = address.rpartition("@")
        if not at or len(local) < 5 or local[:4].upper() not in ("SRS0", "SRS1") or \
                local[4] not in _SEPARATORS:
            raise SrsError("not an SRS address")
        if domain.lower() != self.domain:
            raise SrsError(f"not an SRS address of {self.domain}")
        if local[:4].upper() == "SRS1":
            parts = local[5:].split("=", 2)
            if len(parts) < 3 or not parts[0] or not parts[1]:
                raise SrsError("a malformed SRS1 address")
            given, host, rest = parts
            if not self._verify(given, host, rest):
                raise SrsError("the SRS1 hash does not match")
            return f"SRS0{rest}@{host}"
        parts = local[5:].split("=", 3)
        if len(parts) < 4 or not parts[0] or not parts[3]:
            raise SrsError("a malformed SRS0 address")
        given, ts, orig_domain, orig_local = parts
        if len(ts) != 2 or any(c not in _B32 for c in ts.upper()):
            raise SrsError("a malformed SRS0 timestamp")
        if not self._verify(given, ts, orig_domain, orig_local):
            raise SrsError("the SRS0 hash does not match")
        stamp = _B32.index(ts[0].upper()) << 5 | _B32.index(ts[1].upper())
        today = int((time.time() if now is None else now) // _PRECISION) % _SLOTS
        age = (today - stamp) % _SLOTS
        if age > self.max_age_days:
            # An age near 1024 days is a stamp from the future: refused the same way.
            raise SrsError("the SRS0 address has expired")
        return f"{orig_local}@{orig_domain}"
