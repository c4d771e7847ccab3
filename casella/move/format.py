"""The export format (docs/export-format.md): one directory per account, one per mailbox, each
message as `<uid>.eml` with its identity and state as one JSON line.

Lives here: the layout's names, the records (domain, alias, account, mailbox, message) with
their JSON form, and the checks an import makes on them (a bad record raises FormatError
naming the file). Must never: touch the store, or read more than the file it is given.
"""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from casella.errors import UserError

FORMAT_NAME = "casella-export"
FORMAT_VERSION = 1
MANIFEST = "casella-export.json"        # written last: its "complete" says the export finished
DOMAINS = "domains.json"
ALIASES = "aliases.json"
ACCOUNTS = "accounts"
ACCOUNT = "account.json"
MAILBOXES = "mailboxes"
MAILBOX = "mailbox.json"
MESSAGES = "messages.jsonl"

LIMIT_KEYS = ("messages_per_hour", "defers_failures_per_hour", "defers_failures_percent")


class FormatError(UserError):
    """An export directory that is not what docs/export-format.md describes."""


def account_dir_name(address: str) -> str:
    """A file name for an address: anything but letters, digits and @ . + - _ = is
    percent-encoded (a local part may hold a slash)."""
    return urllib.parse.quote(address, safe="@.+-_=")


def mailbox_dir_name(index: int) -> str:
    return f"{index:04d}"


def eml_name(uid: int) -> str:
    return f"{uid}.eml"


@dataclass(frozen=True)
class DomainRecord:
    name: str
    messages_per_hour: int | None = None
    defers_failures_per_hour: int | None = None
    defers_failures_percent: int | None = None


@dataclass(frozen=True)
class AliasRecord:
    source: str
    destinations: tuple[str, ...]


@dataclass(frozen=True)
class AccountRecord:
    address: str
    password_hash: str
    quota_bytes: int
    quota_messages: int
    sending_held: bool = False
    messages_per_hour: int | None = None
    defers_failures_per_hour: int | None = None
    defers_failures_percent: int | None = None
    subscriptions: tuple[str, ...] = ()
    created: int = 0
    pop3_delete: str | None = None        # the account's own POP3 policy; None: the config's
    pop3_expire_days: int | None = None


@dataclass(frozen=True)
class MailboxRecord:
    name: str
    uidvalidity: int
    uidnext: int
    highestmodseq: int
    special_use: str | None = None
    selectable: bool = True
    messages: int = 0
    expunged: tuple[tuple[int, int], ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class MessageRecord:
    uid: int
    modseq: int
    flags: tuple[str, ...]
    internaldate: int
    savedate: int | None
    size: int
    sha256: str
    pop3_uidl: str | None = None
    pop3_retrieved: int | None = None
    pop3_hidden: bool = False


def to_json(record: Any) -> str:
    return json.dumps(asdict(record), ensure_ascii=False, separators=(",", ":"))


# --- reading and checking ------------------------------------------------------------------


def _int(where: str, data: dict[str, Any], key: str, low: int = 0,
         optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise FormatError(f"{where}: {key} must be a whole number >= {low}, not {value!r}")
    return value


def _str(where: str, data: dict[str, Any], key: str, optional: bool = False) -> Any:
    value = data.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise FormatError(f"{where}: {key} must be a string, not {value!r}")
    return value


def _strings(where: str, data: dict[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormatError(f"{where}: {key} must be a list of strings")
    return tuple(value)


def _object(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FormatError(f"{where}: expected a JSON object")
    return value


def load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError(f"{path} is missing") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{path}: not readable JSON ({exc})") from None


def check_manifest(path: Path) -> dict[str, Any]:
    data = _object(str(path), load_json(path))
    if data.get("format") != FORMAT_NAME:
        raise FormatError(f"{path}: not a casella export")
    if data.get("version") != FORMAT_VERSION:
        raise FormatError(f"{path}: export format version {data.get('version')!r}; this "
                          f"casella reads version {FORMAT_VERSION}")
    if data.get("complete") is not True:
        raise FormatError(f"{path}: the export did not finish; export again")
    return data


def domain_from(where: str, value: Any) -> DomainRecord:
    d = _object(where, value)
    return DomainRecord(_str(where, d, "name"),
                        *(_int(where, d, k, optional=True) for k in LIMIT_KEYS))


def alias_from(where: str, value: Any) -> AliasRecord:
    d = _object(where, value)
    return AliasRecord(_str(where, d, "source"), _strings(where, d, "destinations"))


def account_from(where: str, value: Any) -> AccountRecord:
    d = _object(where, value)
    return AccountRecord(
        address=_str(where, d, "address"), password_hash=_str(where, d, "password_hash"),
        quota_bytes=_int(where, d, "quota_bytes"), quota_messages=_int(where, d, "quota_messages"),
        sending_held=bool(d.get("sending_held", False)),
        messages_per_hour=_int(where, d, "messages_per_hour", optional=True),
        defers_failures_per_hour=_int(where, d, "defers_failures_per_hour", optional=True),
        defers_failures_percent=_int(where, d, "defers_failures_percent", optional=True),
        subscriptions=_strings(where, d, "subscriptions"),
        created=_int(where, d, "created", optional=True) or 0,
        pop3_delete=_str(where, d, "pop3_delete", optional=True),
        pop3_expire_days=_int(where, d, "pop3_expire_days", optional=True))


def mailbox_from(where: str, value: Any) -> MailboxRecord:
    d = _object(where, value)
    expunged = d.get("expunged", [])
    if not isinstance(expunged, list) or not all(
            isinstance(e, list) and len(e) == 2 and all(
                isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in e)
            for e in expunged):
        raise FormatError(f"{where}: expunged must be a list of [uid, modseq] pairs")
    return MailboxRecord(
        name=_str(where, d, "name"), uidvalidity=_int(where, d, "uidvalidity", 1),
        uidnext=_int(where, d, "uidnext", 1), highestmodseq=_int(where, d, "highestmodseq", 1),
        special_use=_str(where, d, "special_use", optional=True),
        selectable=bool(d.get("selectable", True)), messages=_int(where, d, "messages"),
        expunged=tuple((e[0], e[1]) for e in expunged))


def message_from(where: str, line: str) -> MessageRecord:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{where}: not a JSON line ({exc})") from None
    d = _object(where, value)
    sha = _str(where, d, "sha256")
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise FormatError(f"{where}: sha256 must be 64 lower-case hex digits")
    return MessageRecord(
        uid=_int(where, d, "uid", 1), modseq=_int(where, d, "modseq", 1),
        flags=_strings(where, d, "flags"), internaldate=_int(where, d, "internaldate"),
        savedate=_int(where, d, "savedate", optional=True), size=_int(where, d, "size"),
        sha256=sha, pop3_uidl=_str(where, d, "pop3_uidl", optional=True),
        pop3_retrieved=_int(where, d, "pop3_retrieved", optional=True),
        pop3_hidden=bool(d.get("pop3_hidden", False)))
