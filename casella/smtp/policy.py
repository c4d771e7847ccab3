"""Who may receive and who may send: recipient resolution for the MX and submission roles, and
sender ownership on submission.

Lives here: `Policy.resolve_recipient` (alias fan-out with at most MAX_ALIAS_HOPS hops,
accounts, plus-addressing, the catch-all `@domain`, remote addresses for authenticated
submission only; refusals as SMTP replies), `Policy.owns` (PROMISES A5: an address is the
account's own, a `+tag` form of it, or an alias whose destinations include it), and the
RCPT-time quota check. Asks the store, never writes to it. Must never: touch sockets, relay for
an unauthenticated client (PROMISES M4), or accept an unknown local user (PROMISES M5).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from enum import Enum

from casella.errors import InvalidName
from casella.mail.addresses import (
    normalize_address,
    normalize_domain,
    normalize_local_part,
    split_address,
    strip_plus_tag,
)
from casella.smtp import proto
from casella.smtp.proto import Path, ReplyError
from casella.store.base import Store
from casella.store.model import Account, Alias

log = logging.getLogger("casella.smtp")

MAX_ALIAS_HOPS = 10
# A `+tag` names a mailbox only when it looks like a plain folder name; anything else (and a
# tag naming no mailbox) goes to INBOX, which store.deliver does by itself.
_TAG_MAILBOX_RE = re.compile(r"[\w][\w.\- ]{0,99}")

ALIAS_LOOP = proto.reply(550, "5.4.6", "Alias expansion loop or too many hops")
BAD_DOMAIN = proto.reply(501, "5.1.3", "Bad destination domain name")
ADDRESS_LITERAL = proto.reply(550, "5.7.1", "Address literals are not accepted as recipients")


class Role(Enum):
    MX = "mx"                  # mail for hosted domains from anyone; never relays
    SUBMISSION = "submission"  # authenticated customers: local delivery or the outbound queue


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


class _Expansion:
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
                await self.expand(_canonical(dest), depth + 1)
            return
        if account is not None:
            self.add_local(account)
            return
        base, tag = strip_plus_tag(tag_source or local)
        if tag is not None:
            base_address = f"{_canonical_local(base)}@{domain}"
            base_alias, base_account = await self.lookup(base_address)
            if base_account is not None:
                mailbox = tag if _TAG_MAILBOX_RE.fullmatch(tag) else "INBOX"
                self.add_local(base_account, mailbox)
                return
            if base_alias is not None:
                self.seen.add(base_address)
                for dest in base_alias.destinations:
                    await self.expand(_canonical(dest), depth + 1)
                return
        catch_all = await store.get_alias("@" + domain)
        if catch_all is not None:
            for dest in catch_all.destinations:
                await self.expand(_canonical(dest), depth + 1)
            return
        self.unknown.append(address)


def _canonical(address: str) -> str:
    try:
        return normalize_address(address)
    except InvalidName:
        return address.lower()


def _canonical_local(local: str) -> str:
    try:
        return normalize_local_part(local)
    except InvalidName:
        return local.lower()


class Policy:
    def __init__(self, store: Store, hostname: str, role: Role) -> None:
        self.store = store
        self.hostname = hostname
        self.role = role

    async def resolve_recipient(self, path: Path, account: Account | None) -> Resolution:
        """Expand one RCPT TO, or raise ReplyError with the refusal. `account` is the
        authenticated submitter (None on the MX role)."""
        if path.is_postmaster:
            # RFC 5321 §4.1.1.3: <postmaster> alone means the postmaster of this host.
            path = Path("postmaster", self.hostname)
        if path.domain.startswith("["):
            raise ReplyError(ADDRESS_LITERAL)
        relay_form = "%" in path.local or "!" in path.local or "@" in path.local
        try:
            domain = normalize_domain(path.domain)
        except InvalidName:
            if self.role is Role.MX or account is None:
                raise ReplyError(proto.RELAY_DENIED)
            raise ReplyError(BAD_DOMAIN)
        exp = _Expansion(self.store)
        if not relay_form:
            try:
                canonical = f"{normalize_local_part(path.local)}@{domain}"
            except InvalidName:
                pass
            else:
                # The domain, the alias and the account in one round trip; the checks below
                # keep their order.
                await exp.lookup(canonical)
        hosted = await exp.is_hosted(domain)
        if not hosted:
            if self.role is Role.SUBMISSION and account is not None:
                local_part = path.address.rsplit("@", 1)[0]
                return Resolution(path.address, remote=[f"{local_part}@{domain}"])
            raise ReplyError(proto.RELAY_DENIED)
        if relay_form:
            # PROMISES M4: user%remote@hosted, remote!user@hosted and "user@remote"@hosted are
            # routing requests, not hosted mailboxes.
            raise ReplyError(proto.SOURCE_ROUTE_DENIED)
        try:
            local = normalize_local_part(path.local)
        except InvalidName:
            raise ReplyError(proto.UNKNOWN_USER)
        address = f"{local}@{domain}"
        await exp.expand(address, 0, tag_source=path.local)
        if exp.too_deep and not exp.result_local and not exp.result_remote:
            raise ReplyError(ALIAS_LOOP)
        if exp.too_deep:
            log.warning("alias expansion of %s stopped after %d hops", address, MAX_ALIAS_HOPS)
        res = Resolution(address, list(exp.result_local.values()), list(exp.result_remote))
        if res.empty:
            raise ReplyError(proto.UNKNOWN_USER)
        if not res.remote and all(is_full(t.account) for t in res.local):
            # PROMISES Q1 / the issue: an account already full is refused at RCPT, temporarily.
            raise ReplyError(proto.MAILBOX_FULL_TEMP)
        return res

    async def route(self, address: str) -> Resolution:
        """Where mail the server writes itself (DSNs) goes: hosted addresses expanded like a
        recipient, anything else remote. Empty when a hosted address does not exist."""
        exp = _Expansion(self.store)
        canonical = _canonical(address)
        if "@" not in canonical:
            return Resolution(address)
        await exp.expand(canonical, 0)
        return Resolution(canonical, list(exp.result_local.values()), list(exp.result_remote))

    async def owns(self, account: Account, address: str) -> bool:
        """PROMISES A5: may `account` use `address` as MAIL FROM or From:? Its own address,
        its own address with a +tag, or an exact alias (not a catch-all) that delivers to it."""
        try:
            addr = normalize_address(address)
        except InvalidName:
            return False
        if addr == account.address:
            return True
        local, domain = split_address(addr)
        base, tag = strip_plus_tag(local)
        candidates = [addr]
        if tag is not None:
            base_addr = f"{base}@{domain}"
            if base_addr == account.address:
                return True
            candidates.append(base_addr)
        for candidate in candidates:
            alias = await self.store.get_alias(candidate)
            if alias is not None and account.address in (_canonical(d) for d in
                                                          alias.destinations):
                return True
        return False
