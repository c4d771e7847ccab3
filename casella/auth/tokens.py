"""Bearer tokens of the admin API: made by `casella token create`, checked on every API request.

Lives here: the token format `casella_<id>_<secret>` (a public id of 48 random bits that names
the token, and a secret of 256 random bits), its SHA-256 (all the store keeps), `create` and
`verify`. A fast hash is enough: the secret is random and as long as a key, so there is no
dictionary to try, unlike a password. Must never: store, log or print a secret except the one
time `create` hands the new token to the admin; compare secrets other than in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

from casella.errors import UserError
from casella.store.base import Store
from casella.store.model import ApiToken

PREFIX = "casella"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOKEN_RE = re.compile(r"^casella_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
# Hashed when a token's id is unknown, so that an unknown id costs what a known one does.
_DUMMY_HASH = hashlib.sha256(b"no such token").hexdigest()


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode("ascii")).hexdigest()


def parse(token: str) -> tuple[str, str] | None:
    """(id, secret) of a well-formed token, else None."""
    m = _TOKEN_RE.match(token)
    return (m.group(1), m.group(2)) if m else None


def check_name(name: str) -> str:
    if not _NAME_RE.match(name):
        raise UserError(f"bad token name {name!r}: use letters, digits, '.', '_' and '-' "
                        "(at most 64, starting with a letter or digit)")
    return name


async def create(store: Store, name: str, domain: str | None) -> tuple[str, ApiToken]:
    """A new token: (the token to hand to the admin once, its stored record)."""
    check_name(name)
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = await store.add_api_token(token_id, name, domain, hash_secret(secret))
    return f"{PREFIX}_{token_id}_{secret}", record


async def verify(store: Store, token: str) -> ApiToken | None:
    """The token's record when `token` is a valid, unrevoked token, else None."""
    parts = parse(token)
    if parts is None:
        return None
    token_id, secret = parts
    record = await store.get_api_token(token_id)
    expected = record.secret_hash if record is not None else _DUMMY_HASH
    if hmac.compare_digest(hash_secret(secret), expected) and record is not None:
        return record
    return None
