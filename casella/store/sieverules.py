"""The records of what an account asks the server to do with mail as it arrives: Sieve scripts
(RFC 5228, managed over ManageSieve, RFC 5804) and the account-level forward.

Lives here: `SieveScript`, `DeliveryRules` (what delivery reads for an account in one go) and
the script-name rule of RFC 5804 §1.6 every backend enforces. Must never: import a backend, a
protocol or anything doing I/O.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from casella.errors import InvalidName

MAX_SCRIPT_NAME = 128           # characters; RFC 5804 §1.6 lets a server limit the length


@dataclass(frozen=True, slots=True)
class SieveScript:
    name: str
    content: str                # "" in listings (sieve_list), the script's text otherwise
    active: bool
    size: int                   # bytes of the script in UTF-8
    updated: int


@dataclass(frozen=True, slots=True)
class DeliveryRules:
    """An account's active Sieve script (if any) and its forward (if any)."""

    account_id: int
    script_name: str | None = None
    script: str | None = None
    script_updated: int = 0
    forward_to: tuple[str, ...] = ()
    forward_keep: bool = True


def check_script_name(name: str) -> str:
    """RFC 5804 §1.6: a script name is non-empty UTF-8 without control characters (Cc),
    U+2028 or U+2029; casella also bounds its length and keeps it in NFC."""
    if not name:
        raise InvalidName("a script name cannot be empty")
    if len(name) > MAX_SCRIPT_NAME:
        raise InvalidName(f"a script name is at most {MAX_SCRIPT_NAME} characters")
    for ch in name:
        if unicodedata.category(ch) == "Cc" or ch in "\u2028\u2029":
            raise InvalidName("a script name cannot contain control characters")
    return unicodedata.normalize("NFC", name)
