"""The customer page's vacation reply and forward, kept in the account's active Sieve script
(so ManageSieve clients see and run the same thing): read them back, check a new forward's
addresses, and write a change.

Lives here: `CurrentRules` (the settings read back, the script they live in, why the page
cannot edit it if it cannot, and what else decides delivery: the account-level forward and
`[sieve] enabled`), `load`, `check_forward_addresses`, `save_vacation` and `save_forward`.
A change edits only the page's section (casella.delivery.sieve.pagesection) of the active
script, or of a new script `casella` that is then activated when the account has no active
one; the whole script is compiled with the server's bounds before it is stored.
Must never: store a script that does not compile, overwrite a script the page cannot read,
or import a protocol package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from casella.delivery.filtering import Filtering
from casella.delivery.recipients import route
from casella.delivery.sieve import SieveError
from casella.delivery.sieve.pagesection import (
    ForwardRule,
    Found,
    PageRules,
    Unreadable,
    VacationRule,
    merge,
    read_script,
)
from casella.errors import InvalidName, QuotaExceeded, UserError
from casella.mail.addresses import normalize_address
from casella.store.base import Store
from casella.store.model import Account

SCRIPT_NAME = "casella"         # the script made for an account that has no active one
_ATTEMPTS = 3                   # re-reads when another client changes the script meanwhile


class RulesProblem(UserError):
    """A change the page cannot make; the text is a sentence for the customer."""


@dataclass(frozen=True, slots=True)
class CurrentRules:
    rules: PageRules
    script: str | None                  # the active script's name; None: no script runs
    problem: str | None                 # why the page cannot change the script (None: it can)
    outside_vacation: bool              # the customer's own part has a vacation reply
    outside_redirects: int              # and this many redirects
    account_forward: tuple[str, ...]    # the admin's `casella user forward`
    account_forward_keep: bool
    sieve_enabled: bool                 # [sieve] enabled

    @property
    def scripts_skipped(self) -> bool:
        """The account forward without a copy: its script does not run at all."""
        return bool(self.account_forward) and not self.account_forward_keep


@dataclass(frozen=True, slots=True)
class _Base:
    """The script a change starts from."""

    name: str
    text: str
    active: bool
    found: Found | None
    problem: str | None


async def _base(store: Store, filtering: Filtering, account: Account) -> _Base:
    active = next((s for s in await store.sieve_list(account.id) if s.active), None)
    name = active.name if active is not None else SCRIPT_NAME
    stored = await store.sieve_get(account.id, name)
    text = stored.content if stored is not None else ""
    shown = f"“{name}”"
    try:
        filtering.compile(text)
    except SieveError as exc:
        return _Base(name, text, active is not None, None,
                     f"Your filter script {shown} is not valid ({exc}). Correct it in your mail "
                     "program, or remove it; until then this page leaves it alone.")
    try:
        found = read_script(text)
    except Unreadable as exc:
        return _Base(name, text, active is not None, None,
                     f"This page cannot change your filter script {shown}: {exc}. Set the "
                     "vacation reply and forwarding in your mail program instead, or delete the "
                     "lines between “# casella page: begin” and “# casella page: end” there.")
    return _Base(name, text, active is not None, found, None)


async def load(store: Store, filtering: Filtering, account: Account) -> CurrentRules:
    base = await _base(store, filtering, account)
    rules = await store.delivery_rules([account.id])
    mine = rules.get(account.id)
    found = base.found
    return CurrentRules(
        # An inactive script does nothing: the page shows the settings that apply.
        rules=found.rules if found is not None and base.active else PageRules(),
        script=base.name if base.active else None,
        problem=base.problem,
        outside_vacation=found.outside_vacation if found is not None else False,
        outside_redirects=found.outside_redirects if found is not None else 0,
        account_forward=mine.forward_to if mine is not None else (),
        account_forward_keep=mine.forward_keep if mine is not None else True,
        sieve_enabled=filtering.config.sieve.enabled)


async def check_forward_addresses(store: Store, account: Account,
                                  addresses: list[str]) -> list[str]:
    """The addresses in canonical form, each once; RulesProblem naming the first one that is
    malformed, is this mailbox itself, or is a hosted address that does not exist."""
    out: list[str] = []
    for given in addresses:
        try:
            address = normalize_address(given)
        except InvalidName:
            raise RulesProblem(f"“{given}” is not an e-mail address.") from None
        if address == account.address:
            raise RulesProblem("Mail cannot be forwarded to this mailbox itself.")
        where = await route(store, address)
        if where.empty:
            raise RulesProblem(f"There is no mailbox {address} on this server.")
        if not where.remote and all(t.account.id == account.id for t in where.local):
            raise RulesProblem(f"{address} delivers into this mailbox itself.")
        if address not in out:
            out.append(address)
    return out


async def _update(store: Store, filtering: Filtering, account: Account,
                  change: Callable[[Found], PageRules]) -> None:
    for _ in range(_ATTEMPTS):
        base = await _base(store, filtering, account)
        if base.problem is not None or base.found is None:
            raise RulesProblem(base.problem or "The filter script cannot be read.")
        found = base.found
        if not base.active:
            # An inactive "casella" is written over in its section: what it said there did
            # not run, and the page showed it as off.
            found = replace(found, rules=PageRules())
        rules = change(found)
        if rules.empty and not base.active:
            return                              # nothing to run and nothing to keep
        try:
            text = merge(base.text, found, rules)
        except Unreadable as exc:
            raise RulesProblem(f"This page cannot change your filter script: {exc}.") from None
        try:
            filtering.compile(text)
        except SieveError as exc:
            raise RulesProblem(f"With this change your filter script “{base.name}” would not "
                               f"be accepted ({exc}). Nothing was changed.") from None
        # Another client (ManageSieve) may have written meanwhile: start again from its text
        # rather than overwrite it.
        again = await _base(store, filtering, account)
        if (again.name, again.text, again.active) != (base.name, base.text, base.active):
            continue
        try:
            if text != base.text:
                await store.sieve_put(account.id, base.name, text,
                                      max_scripts=filtering.config.sieve.max_scripts)
            if not base.active:
                await store.sieve_set_active(account.id, base.name)
        except QuotaExceeded:
            raise RulesProblem(f"You already have {filtering.config.sieve.max_scripts} filter "
                               "scripts, the most allowed; delete one in your mail program "
                               "first.") from None
        return
    raise RulesProblem("Your filter script kept changing while this page saved it (is a mail "
                       "program editing it?). Try again.")


async def save_vacation(store: Store, filtering: Filtering, account: Account,
                        vacation: VacationRule | None) -> None:
    def change(found: Found) -> PageRules:
        if vacation is not None and vacation.enabled and found.outside_vacation:
            # RFC 5230 §4.7 allows one vacation action per message: two would fail the run.
            raise RulesProblem("Your own filters already have a vacation reply (set up in a "
                               "mail program). Turn that one off there first.")
        return PageRules(vacation, found.rules.forward)
    await _update(store, filtering, account, change)


def forward_limit(filtering: Filtering) -> int:
    """Addresses one forward may have: `[forwarding] max_destinations`, and no more than the
    redirects one run of a script may make (`[sieve] max_redirects`)."""
    cfg = filtering.config
    return max(0, min(cfg.forwarding.max_destinations, cfg.sieve.max_redirects))


async def save_forward(store: Store, filtering: Filtering, account: Account,
                       forward: ForwardRule | None) -> None:
    def change(found: Found) -> PageRules:
        if forward is not None:
            room = filtering.config.sieve.max_redirects - found.outside_redirects
            if len(forward.addresses) > min(room, forward_limit(filtering)):
                raise RulesProblem(
                    f"Your own filters already forward mail ({found.outside_redirects} "
                    f"redirect rules) and one message may be sent on to at most "
                    f"{filtering.config.sieve.max_redirects} addresses; forward to at most "
                    f"{max(0, room)} here." if found.outside_redirects else
                    f"Mail can be forwarded to at most {forward_limit(filtering)} addresses.")
        return PageRules(found.rules.vacation, forward)
    await _update(store, filtering, account, change)
