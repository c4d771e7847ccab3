"""A short memory of passwords verified right, so that a client that logs in again and again
(POP3 every few minutes, a phone reconnecting, several IMAP connections) does not run argon2
each time: Dovecot's auth_cache has the same purpose.

Lives here: `VerifiedCache`. What it keeps is an HMAC, under a random key made when the process
starts and never written anywhere, of the stored hash and the password: nothing that gives the
password back, and a changed password (a new hash) never matches an old entry. Entries live
`ttl` seconds; the oldest go first beyond `max_entries`.

Must never: remember a failed verification (every failure pays argon2 and the failure delay),
keep a password or anything reversible, or be shared between processes.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Callable


class VerifiedCache:
    def __init__(self, ttl: float, max_entries: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._key = os.urandom(32)
        self._until: OrderedDict[bytes, float] = OrderedDict()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def token(self, stored_hash: str, password: str) -> bytes:
        material = stored_hash.encode() + b"\0" + password.encode("utf-8", "surrogatepass")
        return hmac.new(self._key, material, hashlib.sha256).digest()

    def verified(self, token: bytes) -> bool:
        """Whether this (hash, password) was verified right within the last `ttl` seconds."""
        until = self._until.get(token)
        if until is None:
            return False
        if until <= self._clock():
            del self._until[token]
            return False
        return True

    def remember(self, token: bytes) -> None:
        """Call only after argon2 said yes."""
        if not self.enabled:
            return
        self._until[token] = self._clock() + self.ttl
        self._until.move_to_end(token)
        while len(self._until) > self.max_entries:
            self._until.popitem(last=False)

    def __len__(self) -> int:
        return len(self._until)
