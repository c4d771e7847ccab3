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
from enum import Enum

from casella.delivery.recipients import (
    MAX_ALIAS_HOPS,
    Expansion,
    Resolution,
    canonical_address,
    is_full,
    route,
)
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
from casella.store.model import Account

log = logging.getLogger("casella.smtp")

ALIAS_LOOP = proto.reply(550, "5.4.6", "Alias expansion loop or too many hops")
BAD_DOMAIN = proto.reply(501, "5.1.3", "Bad destination domain name")
ADDRESS_LITERAL = proto.reply(550, "5.7.1", "Address literals are not accepted as recipients")

class Role(Enum):
    MX = "mx"                  # mail for hosted domains from anyone; never relays
    SUBMISSION = "submission"  # authenticated customers: local delivery or the outbound queue


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
        exp = Expansion(self.store)
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
        """Where mail the server writes itself goes (casella.delivery.recipients.route)."""
        return await route(self.store, address)

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
            if alias is not None and account.address in (canonical_address(d) for d in
                                                          alias.destinations):
                return True
        return False
