"""Where a message for a hosted address goes: alias fan-out, accounts, plus-addressing and the
catch-all, shared by every way mail arrives (SMTP on the MX and submission, messages the
server writes itself, Sieve redirects and forwards).

Lives here: `LocalTarget` (one hosted account and the mailbox asked for), `Resolution` (what
one address expanded to), `is_full` (the account cannot take one more message), `Expansion`
(one address's expansion with at most MAX_ALIAS_HOPS hops) and `route` (mail the server
writes itself: hosted addresses expanded, anything else remote). Asks the store, never writes
to it. Must never: import a protocol package or answer in a protocol's terms.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from casella.errors import InvalidName
from casella.mail.addresses import (
    normalize_address,
    normalize_local_part,
    split_address,
    strip_plus_tag,
)
from casella.store.base import Store
from casella.store.model import Account, Alias

MAX_ALIAS_HOPS = 10
# A `+tag` names a mailbox only when it looks like a plain folder name; anything else (and a
# tag naming no mailbox) goes to INBOX, which store.deliver does by itself.
_TAG_MAILBOX_RE = re.compile(r"[\w][\w.\- ]{0,99}")


@dataclass(frozen=True, slots=True)
class LocalTarget:
    """One hosted account a message goes to, and the mailbox asked for."""

    account: Account
    mailbox: str = "INBOX"

    @property
    def key(self) -> tuple[int, str]:
        return self.account.id, self.mailbox.lower()


@dataclass(slots=True)
class Resolution:
    """What one RCPT TO expanded to."""

    address: str                                   # the recipient as given (for DSNs, logs)
    local: list[LocalTarget] = field(default_factory=list)
    remote: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.local and not self.remote


def is_full(account: Account) -> bool:
    """The account cannot take even one more byte or message (RCPT-time check: 452 4.2.2)."""
    if account.quota_bytes and account.used_bytes >= account.quota_bytes:
        return True
    return bool(account.quota_messages and account.used_messages >= account.quota_messages)


class Expansion:
    """The state of one recipient's expansion: hops, addresses seen, domain cache."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seen: set[str] = set()
        self.hosted: dict[str, bool] = {}
        self.found: dict[str, tuple[Alias | None, Account | None]] = {}
        self.result_local: dict[tuple[int, str], LocalTarget] = {}
        self.result_remote: dict[str, None] = {}
        self.unknown: list[str] = []
        self.too_deep = False

    async def is_hosted(self, domain: str) -> bool:
        if domain not in self.hosted:
            self.hosted[domain] = await self.store.get_domain(domain) is not None
        return self.hosted[domain]

    async def lookup(self, address: str) -> tuple[Alias | None, Account | None]:
        """The exact alias and the account of a canonical address, and whether its domain is
        hosted (noted in `hosted`): one store round trip, remembered for this expansion."""
        found = self.found.get(address)
        if found is None:
            hosted, alias, account = await self.store.resolve_address(address)
            self.hosted.setdefault(split_address(address)[1], hosted)
            found = self.found[address] = (alias, account)
        return found

    def add_local(self, account: Account, mailbox: str = "INBOX") -> None:
        target = LocalTarget(account, mailbox)
        self.result_local.setdefault(target.key, target)

    async def expand(self, address: str, depth: int, tag_source: str | None = None) -> None:
        """Resolve a canonical hosted-or-remote address. The order is fixed: exact alias,
        account, plus-addressing, catch-all (the brief's order, as Postfix's virtual maps)."""
        if address in self.seen:
            return
        if depth > MAX_ALIAS_HOPS:
            self.too_deep = True
            return
        self.seen.add(address)
        local, domain = split_address(address)
        alias = account = None
        if self.hosted.get(domain) is not False:
            alias, account = await self.lookup(address)
        if not self.hosted[domain]:
            self.result_remote.setdefault(address, None)
            return
        store = self.store
        if alias is not None:
            for dest in alias.destinations:
                await self.expand(canonical_address(dest), depth + 1)
            return
        if account is not None:
            self.add_local(account)
            return
        base, tag = strip_plus_tag(tag_source or local)
        if tag is not None:
            base_address = f"{canonical_local(base)}@{domain}"
            base_alias, base_account = await self.lookup(base_address)
            if base_account is not None:
                mailbox = tag if _TAG_MAILBOX_RE.fullmatch(tag) else "INBOX"
                self.add_local(base_account, mailbox)
                return
            if base_alias is not None:
                self.seen.add(base_address)
                for dest in base_alias.destinations:
                    await self.expand(canonical_address(dest), depth + 1)
                return
        catch_all = await store.get_alias("@" + domain)
        if catch_all is not None:
            for dest in catch_all.destinations:
                await self.expand(canonical_address(dest), depth + 1)
            return
        self.unknown.append(address)


def canonical_address(address: str) -> str:
    try:
        return normalize_address(address)
    except InvalidName:
        return address.lower()


def canonical_local(local: str) -> str:
    try:
        return normalize_local_part(local)
    except InvalidName:
        return local.lower()


async def route(store: Store, address: str) -> Resolution:
    """Where mail the server writes itself (DSNs) goes: hosted addresses expanded like a
    recipient, anything else remote. Empty when a hosted address does not exist."""
    exp = Expansion(store)
    canonical = canonical_address(address)
    if "@" not in canonical:
        return Resolution(address)
    await exp.expand(canonical, 0)
    return Resolution(canonical, list(exp.result_local.values()), list(exp.result_remote))
