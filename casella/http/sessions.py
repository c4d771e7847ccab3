"""The customer page's sessions: a signed cookie, and the CSRF token that goes with it.

Lives here: `Session` (a random id, the account it is logged in as or none, a fingerprint of
that account's password hash, and when it ends), `SessionCodec` (HMAC-SHA256 signing and
checking of the cookie value, the CSRF token derived from the session id) and the cookie's
attributes. Nothing is kept on the server: every worker process checks the cookie with the
same key (casella.auth.sessionkey), and a changed password ends every other session because
the fingerprint no longer matches. Must never: put the password hash itself, or anything a
client could use to log in elsewhere, into the cookie; accept a cookie whose signature does
not verify; compare secrets other than in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

COOKIE_NAME = "casella_session"
CSRF_FIELD = "csrf"
MAX_COOKIE = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class Session:
    sid: str               # random; a new one at every login and logout
    account_id: int        # 0: not logged in
    fingerprint: str       # of the account's password hash when it logged in
    expires: int           # unix time

    @property
    def logged_in(self) -> bool:
        return self.account_id > 0


class SessionCodec:
    def __init__(self, key: bytes, lifetime: int) -> None:
        self._key = key
        self.lifetime = lifetime

    def _mac(self, purpose: bytes, data: bytes) -> bytes:
        return hmac.new(self._key, purpose + b"\0" + data, hashlib.sha256).digest()

    def fingerprint(self, password_hash: str) -> str:
        """Tells password hashes apart without revealing anything about them."""
        return _b64(self._mac(b"password", password_hash.encode("utf-8"))[:12])

    def new(self, account_id: int = 0, password_hash: str = "",
            now: float | None = None) -> Session:
        now = time.time() if now is None else now
        return Session(_b64(secrets.token_bytes(18)), account_id,
                       self.fingerprint(password_hash) if account_id else "",
                       int(now) + self.lifetime)

    def encode(self, session: Session) -> str:
        payload = _b64(json.dumps([session.sid, session.account_id, session.fingerprint,
                                   session.expires], separators=(",", ":")).encode())
        return payload + "." + _b64(self._mac(b"session", payload.encode("ascii")))

    def decode(self, value: str | None, now: float | None = None) -> Session | None:
        """The session in a cookie value, or None when it is missing, malformed, forged or
        expired."""
        if not value or len(value) > MAX_COOKIE or value.count(".") != 1:
            return None
        payload, _, mac = value.partition(".")
        try:
            given = _unb64(mac)
            expected = self._mac(b"session", payload.encode("ascii"))
            if not hmac.compare_digest(given, expected):
                return None
            sid, account_id, fingerprint, expires = json.loads(_unb64(payload))
        except (ValueError, binascii.Error, UnicodeError, TypeError):
            return None
        if not (isinstance(sid, str) and isinstance(account_id, int)
                and isinstance(fingerprint, str) and isinstance(expires, int)):
            return None
        if expires <= (time.time() if now is None else now):
            return None
        return Session(sid, account_id, fingerprint, expires)

    def csrf_token(self, session: Session) -> str:
        """The token every form of this session carries (the synchronizer-token pattern: it
        is bound to the session id, which a page on another site cannot read)."""
        return _b64(self._mac(b"csrf", session.sid.encode("ascii"))[:24])

    def check_csrf(self, session: Session | None, token: str) -> bool:
        if session is None or not token:
            return False
        return hmac.compare_digest(self.csrf_token(session).encode("ascii"),
                                   token.encode("utf-8", "replace"))


def cookie_attributes(secure: bool, max_age: int) -> dict[str, object]:
    """HttpOnly (no script reads it), SameSite=Strict (no other site's page sends it), Secure
    when the page is served over TLS, and Path=/ so every page of the site gets it."""
    return {"httponly": True, "samesite": "Strict", "secure": secure, "path": "/",
            "max_age": max_age}
