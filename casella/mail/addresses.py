"""Mailbox addresses and domain names: validation and the one canonical form casella stores.

Lives here: `normalize_domain` (lower case, IDNA A-labels), `normalize_address` (lower-case
local part in NFC, canonical domain), `split_address`, and the checks an admin or an SMTP
client's address must pass. Must never: do DNS lookups or I/O.

The canonical form is what the store keys on: `Alice@Example.TEST` and `alice@example.test` are
one account, as hosting customers expect (RFC 5321 §2.4 lets the receiving host decide).
"""

from __future__ import annotations

import re
import unicodedata

from casella.errors import InvalidName

_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# RFC 5322 atext, plus any non-ASCII character (RFC 6531 SMTPUTF8).
_ATEXT = r"A-Za-z0-9!#$%&'*+/=?^_`{|}~\-\u0080-\U0010FFFF"
_DOT_ATOM_RE = re.compile(rf"^[{_ATEXT}]+(\.[{_ATEXT}]+)*$")
MAX_LOCAL_PART = 64
MAX_ADDRESS = 254


def normalize_domain(domain: str) -> str:
    """Lower-case a domain and turn Unicode labels into A-labels; InvalidName when malformed."""
    name = domain.strip().rstrip(".").lower()
    if not name:
        raise InvalidName("the domain name is empty")
    if not name.isascii():
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidName(f"{domain!r} is not a valid domain name") from None
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2:
        raise InvalidName(f"{domain!r} is not a valid domain name (it needs a dot)")
    for label in labels:
        if not _LABEL_RE.match(label):
            raise InvalidName(f"{domain!r} is not a valid domain name")
    if labels[-1].isdigit():
        raise InvalidName(f"{domain!r} is not a valid domain name")
    return name


def split_address(address: str) -> tuple[str, str]:
    """(local part, domain) of `local@domain`, split at the last `@`."""
    if "@" not in address:
        raise InvalidName(f"{address!r} is not an address of the form user@domain")
    local, _, domain = address.rpartition("@")
    return local, domain


def normalize_local_part(local: str) -> str:
    local = unicodedata.normalize("NFC", local).lower()
    if not local:
        raise InvalidName("the user part of the address is empty")
    if len(local.encode("utf-8")) > MAX_LOCAL_PART:
        raise InvalidName(f"{local!r} is longer than {MAX_LOCAL_PART} octets")
    if not _DOT_ATOM_RE.match(local):
        raise InvalidName(f"{local!r} is not a valid user name (letters, digits, . - _ + …)")
    return local


def normalize_address(address: str) -> str:
    """The canonical `local@domain` of a hosted address; InvalidName when malformed.
    Quoted local parts are refused: nobody hosts such an account."""
    local, domain = split_address(address.strip())
    result = f"{normalize_local_part(local)}@{normalize_domain(domain)}"
    if len(result.encode("utf-8")) > MAX_ADDRESS:
        raise InvalidName(f"{address!r} is too long")
    return result


def normalize_alias_source(source: str) -> str:
    """`user@domain` or the catch-all `@domain`."""
    if source.startswith("@"):
        return "@" + normalize_domain(source[1:])
    return normalize_address(source)


def strip_plus_tag(local: str, separator: str = "+") -> tuple[str, str | None]:
    """`user+tag` -> ("user", "tag"); no tag -> (local, None). Only the first separator counts."""
    base, sep, tag = local.partition(separator)
    if not sep or not base:
        return local, None
    return base, tag
