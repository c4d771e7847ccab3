"""Mailbox names: the rules every backend enforces before a name is stored.

Lives here: `normalize_mailbox_name` (INBOX in any case becomes INBOX, hierarchy abuse refused:
PROMISES N1-N3) and `parent_names`. Names are Unicode with "/" as the hierarchy delimiter;
protocol layers translate from their wire form (modified UTF-7) first. Must never: re-encode or
silently change a name other than INBOX's case (PROMISES N2).
"""

from __future__ import annotations

from casella.errors import InvalidName
from casella.store.model import HIERARCHY_DELIMITER

MAX_LEVEL_OCTETS = 255      # like Dovecot
MAX_NAME_OCTETS = 4096
MAX_DEPTH = 40


def normalize_mailbox_name(name: str) -> str:
    if not name:
        raise InvalidName("the mailbox name is empty")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise InvalidName("a mailbox name cannot contain control characters")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_OCTETS:
        raise InvalidName(f"the mailbox name is longer than {MAX_NAME_OCTETS} octets")
    parts = name.split(HIERARCHY_DELIMITER)
    if len(parts) > MAX_DEPTH:
        raise InvalidName(f"mailboxes cannot be nested more than {MAX_DEPTH} levels deep")
    for part in parts:
        if not part:
            raise InvalidName(f"{name!r} has an empty level (leading, trailing or doubled /)")
        if part in (".", ".."):
            raise InvalidName(f"{name!r} has a . or .. level")
        if part != part.strip():
            raise InvalidName(f"{name!r} has a level starting or ending with a space")
        if len(part.encode("utf-8", "surrogatepass")) > MAX_LEVEL_OCTETS:
            raise InvalidName(f"a level of {name!r} is longer than {MAX_LEVEL_OCTETS} octets")
    if parts[0].startswith("~"):
        raise InvalidName(f"{name!r} starts with ~")
    if parts[0].upper() == "INBOX":
        parts[0] = "INBOX"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidName("the mailbox name is not valid Unicode") from None
    return HIERARCHY_DELIMITER.join(parts)


def parent_names(name: str) -> list[str]:
    """`a/b/c` -> [`a`, `a/b`]."""
    parts = name.split(HIERARCHY_DELIMITER)
    return [HIERARCHY_DELIMITER.join(parts[:i]) for i in range(1, len(parts))]
