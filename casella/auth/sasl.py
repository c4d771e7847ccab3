"""SASL mechanisms as pure state machines (RFC 4422): PLAIN (RFC 4616) and LOGIN.

Lives here: turning client responses (already base64-decoded) into credentials, and the base64
rules shared by IMAP, SMTP and POP3 (`=` for an empty initial response, `*` to cancel). Must
never: do I/O, check a password, or import asyncio, config or the store.
"""

from __future__ import annotations

import binascii
from dataclasses import dataclass

MECHANISMS = ("PLAIN", "LOGIN")


class SaslError(Exception):
    """The exchange is malformed; the protocol answers with its syntax/auth error."""


class SaslCancelled(SaslError):
    """The client sent `*` (RFC 4422 §3.5)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    authcid: str        # the identity whose password is checked
    password: str
    authzid: str = ""   # the identity to act as; must be empty or equal authcid (PROMISES A4)


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes         # raw bytes; the protocol base64-encodes them


def decode_response(line: bytes) -> bytes:
    """Decode one base64 client response. `*` cancels, `=` is an empty response."""
    text = line.strip()
    if text == b"*":
        raise SaslCancelled("authentication cancelled")
    if text == b"=":
        return b""
    try:
        return binascii.a2b_base64(text, strict_mode=True) if text else b""
    except (binascii.Error, ValueError):
        raise SaslError("invalid base64 in the authentication response") from None


def encode_challenge(data: bytes) -> bytes:
    return binascii.b2a_base64(data, newline=False)


def _utf8(data: bytes, what: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError(f"the {what} is not valid UTF-8") from None
    if "\x00" in text:
        raise SaslError(f"the {what} contains NUL")
    return text


class Mechanism:
    """One exchange. `start()` then `step()` until a Credentials comes back."""

    name = ""

    def start(self, initial: bytes | None) -> Challenge | Credentials:
        raise SaslError("unsupported mechanism")

    def step(self, response: bytes) -> Challenge | Credentials:
        raise SaslError("unexpected response")


class Plain(Mechanism):
    name = "PLAIN"

    def start(self, initial: bytes | None) -> Challenge | Credentials:
        if initial is None:
            return Challenge(b"")
        return self.step(initial)

    def step(self, response: bytes) -> Challenge | Credentials:
        parts = response.split(b"\x00")
        if len(parts) != 3:
            raise SaslError("PLAIN needs authzid NUL authcid NUL password")
        authzid, authcid, password = parts
        if not authcid or not password:
            raise SaslError("PLAIN needs a user name and a password")
        return Credentials(authcid=_utf8(authcid, "user name"),
                           password=_utf8(password, "password"),
                           authzid=_utf8(authzid, "authorization identity"))


class Login(Mechanism):
    """The widespread non-standard LOGIN mechanism (draft-murchison-sasl-login)."""

    name = "LOGIN"

    def __init__(self) -> None:
        self._user: str | None = None

    def start(self, initial: bytes | None) -> Challenge | Credentials:
        if initial is not None and initial != b"":
            self._user = _utf8(initial, "user name")
            return Challenge(b"Password:")
        return Challenge(b"Username:")

    def step(self, response: bytes) -> Challenge | Credentials:
        if self._user is None:
            if not response:
                raise SaslError("LOGIN needs a user name")
            self._user = _utf8(response, "user name")
            return Challenge(b"Password:")
        if not response:
            raise SaslError("LOGIN needs a password")
        return Credentials(authcid=self._user, password=_utf8(response, "password"))


def mechanism(name: str) -> Mechanism:
    """A fresh mechanism by (case-insensitive) name; SaslError when unknown."""
    upper = name.upper()
    if upper == "PLAIN":
        return Plain()
    if upper == "LOGIN":
        return Login()
    raise SaslError(f"unsupported mechanism {name}")
