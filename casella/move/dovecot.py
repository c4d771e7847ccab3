"""The files of a Dovecot Maildir, parsed (Dovecot 2.x, Maildir++ layout: INBOX in the
Maildir itself, each other folder a `.Name.Sub` directory beside cur/ new/ tmp/).

Lives here: pure parsers with typed results and DovecotFormatError: `parse_uidlist`
(dovecot-uidlist, versions 1 and 3: UIDVALIDITY, the next UID, each file's UID and extension
fields such as the POP3 UIDL `P`), `parse_keywords` (dovecot-keywords), `maildir_flags` (the
`:2,` flags of a file name: D F R S T and the keyword letters a-z), `parse_subscriptions`,
`folder_name` (`.Lists.dev` -> `Lists/dev`, modified UTF-7 decoded) and `expand_uidl_format`
(what Dovecot's pop3_uidl_format gives). Must never: open a file, or guess a UID.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from casella.errors import UserError
from casella.imap.utf7 import decode as decode_utf7
from casella.store.model import ANSWERED, DELETED, DRAFT, FLAGGED, SEEN

# Maildir flag letters (cr.yp.to/proto/maildir.html). P ("passed") has no IMAP flag and
# Dovecot shows it to no client, so it is dropped like any other letter it does not know.
MAILDIR_FLAGS = {"D": DRAFT, "F": FLAGGED, "R": ANSWERED, "S": SEEN, "T": DELETED}
INFO_SEPARATOR = ":2,"
DEFAULT_UIDL_FORMAT = "%08Xu%08Xv"      # Dovecot's pop3_uidl_format default


class DovecotFormatError(UserError):
    """A Dovecot file that is not what Dovecot writes."""


@dataclass(frozen=True)
class UidlistEntry:
    uid: int
    filename: str                       # the base name: without the ":2,flags" part
    fields: dict[str, str] = field(default_factory=dict)   # P (POP3 UIDL), G (GUID), S, W …


@dataclass(frozen=True)
class Uidlist:
    uidvalidity: int
    next_uid: int
    entries: tuple[UidlistEntry, ...]


def _number(text: str, what: str) -> int:
    if not text.isdigit():
        raise DovecotFormatError(f"dovecot-uidlist: {what} {text!r} is not a number")
    return int(text)


def parse_uidlist(text: str) -> Uidlist:
    """dovecot-uidlist. Version 3 (Dovecot 1.1 on): `3 V<uidvalidity> N<next uid> G<guid>`,
    then `<uid> [<key><value> …] :<file base>` per message; version 1: `1 <uidvalidity>
    <next uid>`, then `<uid> <file base>`."""
    lines = text.split("\n")
    head = lines[0].split()
    if not head:
        raise DovecotFormatError("dovecot-uidlist: empty header")
    entries: list[UidlistEntry] = []
    if head[0] == "1":
        if len(head) != 3:
            raise DovecotFormatError(f"dovecot-uidlist: bad version 1 header {lines[0]!r}")
        uidvalidity, next_uid = _number(head[1], "UIDVALIDITY"), _number(head[2], "next UID")
        for line in lines[1:]:
            if not line.strip():
                continue
            uid, _, name = line.partition(" ")
            if not name:
                raise DovecotFormatError(f"dovecot-uidlist: bad line {line!r}")
            entries.append(UidlistEntry(_number(uid, "UID"), name.strip()))
    elif head[0] == "3":
        keys = {item[0]: item[1:] for item in head[1:] if item}
        if "V" not in keys or "N" not in keys:
            raise DovecotFormatError(f"dovecot-uidlist: header {lines[0]!r} lacks V or N")
        uidvalidity, next_uid = _number(keys["V"], "UIDVALIDITY"), _number(keys["N"], "next UID")
        for line in lines[1:]:
            if not line.strip():
                continue
            before, sep, name = line.partition(" :")
            if not sep:
                # A line with no extension fields: "<uid> :<name>" has the space; tolerate
                # "<uid>:<name>" too.
                before, sep, name = line.partition(":")
            parts = before.split()
            if not sep or not parts or not name:
                raise DovecotFormatError(f"dovecot-uidlist: bad line {line!r}")
            fields = {p[0]: p[1:] for p in parts[1:] if p}
            entries.append(UidlistEntry(_number(parts[0], "UID"), name, fields))
    else:
        raise DovecotFormatError(f"dovecot-uidlist version {head[0]!r} is not supported "
                                 "(1 or 3)")
    if not 0 < uidvalidity < 2**32:
        raise DovecotFormatError(f"dovecot-uidlist: UIDVALIDITY {uidvalidity} out of range")
    previous = 0
    for e in entries:
        if e.uid <= previous:
            raise DovecotFormatError(f"dovecot-uidlist: UID {e.uid} does not ascend")
        previous = e.uid
    return Uidlist(uidvalidity, max(next_uid, previous + 1), tuple(entries))


def parse_keywords(text: str) -> dict[int, str]:
    """dovecot-keywords: `<index> <keyword>` per line; index 0 is the letter a."""
    out: dict[int, str] = {}
    for line in text.splitlines():
        index, _, name = line.strip().partition(" ")
        if index.isdigit() and name and int(index) < 26:
            out[int(index)] = name.strip()
    return out


def split_filename(name: str) -> tuple[str, str]:
    """(base, info letters) of a Maildir file name; no info part (a file in new/): ""."""
    base, sep, info = name.partition(INFO_SEPARATOR)
    return base, info if sep else ""


def maildir_flags(info: str, keywords: dict[int, str]) -> tuple[str, ...]:
    """IMAP flags from the letters after `:2,`: upper-case ones are system flags, a-z are
    keywords by their index in dovecot-keywords (letters it does not list are dropped)."""
    out: list[str] = []
    for letter in info:
        if letter in MAILDIR_FLAGS:
            out.append(MAILDIR_FLAGS[letter])
        elif "a" <= letter <= "z":
            keyword = keywords.get(ord(letter) - ord("a"))
            if keyword is not None:
                out.append(keyword)
    return tuple(dict.fromkeys(out))


def _decode_name(raw: str) -> str:
    """One level of a folder name: modified UTF-7, or UTF-8 as it stands (a Dovecot whose
    mail_location has the UTF-8 option keeps names that way)."""
    if not raw.isascii():
        return raw
    try:
        return decode_utf7(raw.encode("ascii"))
    except ValueError:
        raise DovecotFormatError(f"folder name {raw!r} is not modified UTF-7") from None


def folder_name(dirname: str) -> str:
    """casella's name of a Maildir++ folder directory: `.Lists.dev` -> `Lists/dev`; each
    level is modified UTF-7 on disk (RFC 3501 §5.1.3), as Dovecot keeps it by default."""
    if not dirname.startswith(".") or dirname in (".", ".."):
        raise DovecotFormatError(f"{dirname!r} is not a Maildir++ folder")
    levels = dirname[1:].split(".")
    if any(not level for level in levels):
        raise DovecotFormatError(f"{dirname!r} has an empty level")
    return "/".join(_decode_name(level) for level in levels)


def parse_subscriptions(text: str) -> list[str]:
    """The `subscriptions` file: version 2 (`V\\t2`, a blank line, then one name per line
    with a tab between levels) or the older plain list (levels separated by the namespace's
    separator, "." for Maildir++)."""
    lines = text.split("\n")
    if lines and lines[0] == "V\t2":
        names = [line.split("\t") for line in lines[2:] if line]
    else:
        names = [line.split(".") for line in lines if line]
    out = []
    for levels in names:
        if all(levels):
            name = "/".join(_decode_name(level) for level in levels)
            out.append("INBOX" if name.upper() == "INBOX" else name)
    return list(dict.fromkeys(out))


_VAR = re.compile(r"%(?P<pad>0?)(?P<width>\d*)(?P<mods>[XLU]*)(?P<var>[uvfg%])")


def expand_uidl_format(fmt: str, uid: int, uidvalidity: int, filename: str,
                       guid: str | None = None) -> str:
    """Dovecot's pop3_uidl_format for one message: %u (UID), %v (UIDVALIDITY), %f (the
    Maildir file's base name), %g (its GUID: the uidlist's G field, else the base name, as
    Dovecot's Maildir does), %%; with a width (`%08u`, zero-padded with 0) and the modifiers
    X (hexadecimal, in lower case as Dovecot writes it), L and U (lower, upper case)."""
    out: list[str] = []
    pos = 0
    for m in _VAR.finditer(fmt):
        if "%" in fmt[pos:m.start()]:
            raise DovecotFormatError(f"pop3_uidl_format {fmt!r}: only %u %v %f %g and %% "
                                     "are supported")
        out.append(fmt[pos:m.start()])
        pos = m.end()
        var = m.group("var")
        if var == "%":
            out.append("%")
            continue
        values: dict[str, str] = {"u": str(uid), "v": str(uidvalidity), "f": filename,
                                  "g": guid or filename}
        text = values[var]
        for mod in m.group("mods"):
            if mod == "X":
                if not text.isdigit():
                    raise DovecotFormatError(f"pop3_uidl_format {fmt!r}: %X needs a number")
                text = format(int(text), "x")
            elif mod == "L":
                text = text.lower()
            elif mod == "U":
                text = text.upper()
        if m.group("width"):
            text = text.rjust(int(m.group("width")), "0" if m.group("pad") else " ")
        out.append(text)
    if "%" in fmt[pos:]:
        raise DovecotFormatError(f"pop3_uidl_format {fmt!r}: only %u %v %f %g and %% are "
                                 "supported")
    out.append(fmt[pos:])
    return "".join(out)
