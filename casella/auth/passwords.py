"""Password hashing: argon2id through argon2-cffi.

Lives here: hashing a new password, verifying one against a stored hash in constant time, and a
dummy hash so an unknown user costs the same time as a wrong password (PROMISES A3). Must never:
log, store or return a plaintext password. Verification is CPU-heavy: call it off the event loop.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()  # argon2id with the library's (RFC 9106 recommended) parameters
_DUMMY_HASH = _hasher.hash("casella dummy password for unknown users")


def hash_password(password: str) -> str:
    if not password:
        raise ValueError("the password is empty")
    return _hasher.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when `password` matches. With no stored hash (unknown user) a dummy hash is
    verified so the time taken is the same, and the answer is False."""
    target = stored_hash or _DUMMY_HASH
    try:
        ok = _hasher.verify(target, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return ok and stored_hash is not None


def needs_rehash(stored_hash: str) -> bool:
    try:
        return _hasher.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True
