"""What an account's rules do to a message delivered to it: its active Sieve script and its
forward, turned into deliveries, refusals, forwarded copies and vacation replies.

Lives here: `Filtering` (one per store: the compiled-script cache and the SRS signer), `Arrival`
(one local recipient of a message: the account, the mailbox it would go to, the address the
client gave), `plan` (every arrival's rules evaluated; a script error keeps the message in the
default mailbox and is logged, RFC 5228 §2.10.6), `send_on` (redirects and forwards: into a
hosted mailbox directly, or through the outbound queue with an SRS sender, counted against the
account's sending limits, never when the message has looped, PROMISES "never a spam cannon")
and `reply_vacations` (RFC 5230 with the RFC 3834 rules). Must never: lose a message (when in
doubt it is kept in the recipient's mailbox), send anything for the null sender other than
what RFC 3834 allows, or import a protocol package.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import secrets
import time
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate, getaddresses
from pathlib import Path

from casella.config import Config
from casella.config_delivery import srs_secret_path
from casella.delivery.recipients import LocalTarget, route
from casella.delivery.sieve import (
    Envelope,
    FileInto,
    Limits,
    MessageView,
    Reject,
    Script,
    SieveError,
    Vacation,
    compile_script,
    run,
)
from casella.delivery.srs import Srs, SrsError
from casella.errors import CasellaError
from casella.limits.sendlimit import check_send_limits
from casella.mail.headers import encode_word
from casella.store.base import Store
from casella.store.model import Account, DeliveryTarget, QueueRecipient
from casella.store.sieverules import DeliveryRules

log = logging.getLogger("casella.delivery")

_CACHE_SIZE = 512
LoadMessage = Callable[[], Awaitable[bytes]]
# RFC 3834 §2 and RFC 5230 §4.5: mail from these never gets an automatic reply.
_LIST_FIELDS = ("list-id", "list-help", "list-subscribe", "list-unsubscribe", "list-post",
                "list-owner", "list-archive")
_ROBOT_LOCAL = re.compile(r"(?i)^(mailer-daemon|postmaster|listserv|majordomo|owner-.*|"
                          r".*-request|.*-owner|.*-bounces?|no-?reply)$")
_UNSAFE = re.compile(r"[\r\n\x00]")


@dataclass(frozen=True, slots=True)
class Arrival:
    """One hosted account a message is being delivered to."""

    target: LocalTarget
    recipient: str               # the RCPT TO address as given (Sieve's envelope "to")


@dataclass(slots=True)
class ArrivalPlan:
    arrival: Arrival
    targets: list[DeliveryTarget] = field(default_factory=list)
    reject: Reject | None = None
    send_to: list[str] = field(default_factory=list)      # redirects and the forward
    vacation: Vacation | None = None
    error: str | None = None

    def keep(self) -> None:
        """Make sure the message stays in the recipient's default mailbox."""
        t = self.arrival.target
        if not self.targets:
            self.targets.append(DeliveryTarget(t.account.id, t.mailbox))


@dataclass(slots=True)
class Plan:
    arrivals: list[ArrivalPlan]
    message: bytes | None = None           # the message as read for the rules
    view: MessageView | None = None

    @property
    def all_rejected(self) -> bool:
        return bool(self.arrivals) and all(a.reject is not None for a in self.arrivals)


def _default_targets(arrivals: list[Arrival]) -> list[ArrivalPlan]:
    return [ArrivalPlan(a, [DeliveryTarget(a.target.account.id, a.target.mailbox)])
            for a in arrivals]


class Filtering:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self._scripts: OrderedDict[tuple[int, str, str], Script | SieveError] = OrderedDict()
        self._srs: Srs | None = None
        cfg = config.sieve
        self.limits = Limits(max_steps=cfg.max_steps, max_run_time=cfg.max_run_time,
                             max_actions=cfg.max_actions, max_redirects=cfg.max_redirects,
                             max_variables=cfg.max_variables,
                             max_variable_size=cfg.max_variable_size)

    # --- scripts ------------------------------------------------------------------------

    def compile(self, text: str | bytes) -> Script:
        """Check a script against this server's bounds (ManageSieve, the CLI, delivery)."""
        cfg = self.config.sieve
        return compile_script(text, max_size=cfg.max_script_size, max_nesting=cfg.max_nesting,
                              max_commands=cfg.max_commands,
                              max_string=cfg.max_script_size)

    def _script(self, rules: DeliveryRules) -> Script | SieveError:
        assert rules.script is not None and rules.script_name is not None
        # The text itself is part of the key: a script replaced within the same second.
        key = (rules.account_id, rules.script_name,
               hashlib.sha256(rules.script.encode("utf-8")).hexdigest())
        found = self._scripts.get(key)
        if found is not None:
            self._scripts.move_to_end(key)
            return found
        try:
            found = self.compile(rules.script)
        except SieveError as exc:
            found = exc
        self._scripts[key] = found
        while len(self._scripts) > _CACHE_SIZE:
            self._scripts.popitem(last=False)
        return found

    # --- SRS --------------------------------------------------------------------------------

    @property
    def srs_domain(self) -> str:
        return (self.config.srs.domain or self.config.hostname).lower()

    async def srs(self) -> Srs:
        if self._srs is None:
            secret = self.config.srs.secret.encode("utf-8") if self.config.srs.secret else \
                await asyncio.to_thread(_secret_file, self.config)
            self._srs = Srs([secret], self.srs_domain, self.config.srs.max_age_days)
        return self._srs

    async def reverse_srs(self, address: str) -> str | None:
        """The sender a bounce to one of our SRS addresses goes back to; None when `address`
        is not an SRS address of our domain; SrsError when it is one but does not verify."""
        _local, _, domain = address.rpartition("@")
        if domain.lower() != self.srs_domain or not Srs.is_srs(address):
            return None
        return (await self.srs()).reverse(address)

    # --- the plan -------------------------------------------------------------------------

    async def plan(self, arrivals: list[Arrival], sender: str,
                   load: LoadMessage) -> Plan:
        """Evaluate every arrival's rules. `load` reads the message when some rule needs it
        (accounts without a script or a forward cost one store read for all of them)."""
        if not arrivals:
            return Plan([])
        try:
            rules = await self.store.delivery_rules(
                sorted({a.target.account.id for a in arrivals}))
        except CasellaError as exc:
            # PROMISES: the rules must never cost a message; without them it is kept.
            log.error("delivery rules could not be read, delivering without them: %s", exc)
            return Plan(_default_targets(arrivals))
        if not rules or not (self.config.sieve.enabled or
                             any(r.forward_to for r in rules.values())):
            return Plan(_default_targets(arrivals))
        data = await load()
        view = MessageView(data, self.config.sieve.max_body_size)
        plans = [await self._evaluate(a, rules.get(a.target.account.id), sender, view)
                 for a in arrivals]
        return Plan(plans, data, view)

    async def _evaluate(self, arrival: Arrival, rules: DeliveryRules | None, sender: str,
                  view: MessageView) -> ArrivalPlan:
        plan = ArrivalPlan(arrival)
        account = arrival.target.account
        if rules is None:
            plan.keep()
            return plan
        if rules.forward_to:
            plan.send_to.extend(rules.forward_to[:self.config.forwarding.max_destinations])
            if not rules.forward_keep:
                # Sent on without a copy: the script has nothing to file (README: forwarding).
                return plan
        if rules.script is None or not self.config.sieve.enabled:
            plan.keep()
            return plan
        script = self._script(rules)
        if isinstance(script, SieveError):
            plan.error = f"script {rules.script_name!r} does not compile: {script}"
            plan.keep()
            return plan
        mailboxes: frozenset[str] = frozenset()
        if "mailbox" in script.require:
            mailboxes = frozenset(m.name for m in await self.store.list_mailboxes(account.id)
                                  if m.selectable)
        try:
            outcome = run(script, view, Envelope(sender, arrival.recipient), limits=self.limits,
                          mailboxes=mailboxes)
        except SieveError as exc:
            plan.error = f"script {rules.script_name!r} failed: {exc}"
            log.warning("Sieve script of %s failed, message kept: %s", account.address, exc)
            plan.keep()
            return plan
        for d in outcome.deliveries:
            if d.create and d.mailbox and d.mailbox not in mailboxes:
                await self._create(account, d.mailbox)
            plan.targets.append(self._target(arrival, d))
        plan.send_to.extend(r.address for r in outcome.redirects)
        plan.reject = outcome.reject
        plan.vacation = outcome.vacation
        _dedupe(plan)
        return plan

    def _target(self, arrival: Arrival, item: FileInto) -> DeliveryTarget:
        mailbox = item.mailbox or arrival.target.mailbox
        return DeliveryTarget(arrival.target.account.id, mailbox, item.flags)

    # --- after the plan --------------------------------------------------------------------

    async def _create(self, account: Account, name: str) -> None:
        """RFC 5490 §3.2 fileinto :create. A name that cannot be a mailbox is left to
        delivery, which files into INBOX instead."""
        try:
            if await self.store.get_mailbox(account.id, name) is None:
                await self.store.create_mailbox(account.id, name)
                log.info("fileinto :create made %r for %s", name, account.address)
        except CasellaError as exc:
            log.info("fileinto :create %r for %s: %s; INBOX instead", name, account.address,
                     exc)

    async def send_on(self, plan: Plan, sender: str, hostname: str) -> None:
        """Redirects and forwards, before the local copies are stored (so a crash in between
        duplicates rather than loses). Each arrival whose copies cannot go (a loop, the
        sending limits, a storage error) keeps the message instead."""
        for ap in plan.arrivals:
            if not ap.send_to:
                continue
            account = ap.arrival.target.account
            reason = self._loop_reason(plan, account)
            own = {account.address.lower(), ap.arrival.recipient.lower()}
            wanted = [a for a in ap.send_to if a.lower() not in own]
            if len(wanted) < len(ap.send_to):
                log.info("redirect of a message for %s to itself ignored; kept",
                         account.address)
                ap.keep()
            if not wanted:
                continue
            if reason is not None:
                log.warning("not forwarding a message for %s: %s; kept", account.address,
                            reason)
                ap.keep()
                continue
            try:
                sent = await self._forward(plan, ap, account, wanted, sender, hostname)
            except CasellaError as exc:
                log.error("forwarding a message for %s failed, kept instead: %s",
                          account.address, exc)
                sent = False
            if not sent:
                ap.keep()

    def _loop_reason(self, plan: Plan, account: Account) -> str | None:
        assert plan.view is not None
        delivered = [v.strip().strip("<>").lower() for v in plan.view.header("delivered-to")]
        if account.address.lower() in delivered:
            return f"a forwarding loop (Delivered-To: {account.address} is already there)"
        if len(delivered) >= self.config.forwarding.max_hops:
            return f"too many hops ({len(delivered)} Delivered-To fields)"
        return None

    async def _forward(self, plan: Plan, ap: ArrivalPlan, account: Account,
                       addresses: list[str], sender: str, hostname: str) -> bool:
        assert plan.message is not None
        local: list[DeliveryTarget] = []
        remote: list[str] = []
        for address in addresses:
            try:
                where = await route(self.store, address)
            except CasellaError:
                where = None
            if where is None or where.empty:
                log.info("forward of a message for %s to %s: no such address here",
                         account.address, address)
                continue
            # A hosted destination gets the message straight into its mailbox: its own rules
            # do not run again, so no loop can form inside the server.
            local += [DeliveryTarget(t.account.id) for t in where.local
                      if t.account.id != account.id]
            remote += [a for a in where.remote if a not in remote]
        copy = _forwarded_copy(plan.message, account.address)
        if local:
            blob = await self.store.blobs.stage(copy)
            try:
                outcomes = await self.store.deliver(blob, local)
            finally:
                blob.discard()
            for o in outcomes:
                if o.error is not None:
                    log.info("forward of a message for %s into account %d failed: %s",
                             account.address, o.target.account_id, o.error)
        if not remote:
            return bool(local)
        refusal = await check_send_limits(self.store, self.config.limits, account, 0,
                                          len(remote))
        if refusal is not None:
            log.warning("not forwarding a message for %s: %s", account.address, refusal)
            return False
        envelope_sender = ""
        if sender:
            domain = sender.rpartition("@")[2].lower()
            hosted = await self.store.get_domain(domain) is not None if domain else False
            try:
                envelope_sender = sender if hosted else (await self.srs()).forward(sender)
            except SrsError:
                envelope_sender = ""
        blob = await self.store.blobs.stage(copy)
        try:
            await self.store.enqueue(blob, envelope_sender, [QueueRecipient(a) for a in remote],
                                     account.id, count=True)
        finally:
            blob.discard()
        log.info("message for %s forwarded to %d address(es) as <%s>", account.address,
                 len(remote), envelope_sender)
        return True

    async def reply_vacations(self, plan: Plan, sender: str, hostname: str) -> None:
        """RFC 5230 after the message is stored: failures are logged, never answered."""
        for ap in plan.arrivals:
            if ap.vacation is None or ap.reject is not None:
                continue
            try:
                await self._vacation(plan, ap, ap.vacation, sender, hostname)
            except CasellaError as exc:
                log.error("vacation reply for %s failed: %s", ap.arrival.target.account.address,
                          exc)

    async def _vacation(self, plan: Plan, ap: ArrivalPlan, v: Vacation, sender: str,
                        hostname: str) -> None:
        assert plan.view is not None
        account = ap.arrival.target.account
        why = vacation_refusal(plan.view, sender, account.address, ap.arrival.recipient,
                               v.addresses)
        if why is not None:
            log.info("no vacation reply from %s to <%s>: %s", account.address, sender, why)
            return
        cfg = self.config.sieve
        days = min(max(v.days or cfg.vacation_default_days, cfg.vacation_min_days),
                   cfg.vacation_max_days)
        key = hashlib.sha256(f"{v.handle}\x00{sender.lower()}".encode()).hexdigest()
        if not await self.store.vacation_note(account.id, key, int(time.time()), days * 86400):
            log.info("no vacation reply from %s to <%s>: already answered within %d days",
                     account.address, sender, days)
            return
        refusal = await check_send_limits(self.store, self.config.limits, account, 0, 1)
        if refusal is not None:
            log.warning("no vacation reply from %s: %s", account.address, refusal)
            return
        data = vacation_message(plan.view, v, account.address, sender, hostname)
        where = await route(self.store, sender)
        if where.local:
            blob = await self.store.blobs.stage(b"Return-Path: <>\r\n" + data)
            try:
                await self.store.deliver(blob, [DeliveryTarget(t.account.id)
                                                for t in where.local])
            finally:
                blob.discard()
        if where.remote:
            blob = await self.store.blobs.stage(data)
            try:
                # RFC 3834 §3.3: the null reverse path; counted all the same (issue 20).
                await self.store.enqueue(blob, "", [QueueRecipient(a) for a in where.remote],
                                         account.id, count=True)
            finally:
                blob.discard()
        log.info("vacation reply from %s sent to <%s>", account.address, sender)


def _dedupe(plan: ArrivalPlan) -> None:
    """One delivery per mailbox (flags merged): `keep` and `fileinto "INBOX"` are one."""
    merged: dict[tuple[int, str], DeliveryTarget] = {}
    for t in plan.targets:
        key = (t.account_id, "inbox" if t.mailbox.upper() == "INBOX" else t.mailbox)
        if key in merged:
            old = merged[key]
            flags = tuple(dict.fromkeys([*old.flags, *t.flags]))
            merged[key] = DeliveryTarget(old.account_id, old.mailbox, flags)
        else:
            merged[key] = t
    plan.targets = list(merged.values())
    seen: dict[str, str] = {}
    for a in plan.send_to:
        seen.setdefault(a.lower(), a)
    plan.send_to = list(seen.values())


def _forwarded_copy(data: bytes, address: str) -> bytes:
    """The message as it is sent on: without the Return-Path of our final delivery, with
    `Delivered-To:` naming the account (Postfix's loop marker) on top."""
    if data[:12].lower() == b"return-path:":
        end = data.find(b"\n") + 1
        while end < len(data) and data[end:end + 1] in (b" ", b"\t"):
            end = data.find(b"\n", end) + 1 or len(data)
        data = data[end:]
    return f"Delivered-To: {address}\r\n".encode() + data


def vacation_refusal(view: MessageView, sender: str, account: str, recipient: str,
                     addresses: tuple[str, ...]) -> str | None:
    """Why no automatic reply may go to this message (RFC 3834 §2, RFC 5230 §4.5), or None."""
    if not sender:
        return "the null sender"
    local = sender.rpartition("@")[0]
    if _ROBOT_LOCAL.match(local):
        return f"a robot's address ({sender})"
    own = {account.lower(), recipient.lower(), *(a.lower() for a in addresses)}
    if sender.lower() in own:
        return "a message from the account itself"
    for name in _LIST_FIELDS:
        if view.header(name):
            return f"a mailing list ({name})"
    for value in view.header("auto-submitted"):
        if value.split(";")[0].strip().lower() != "no":
            return "an automatic message (Auto-Submitted)"
    for value in view.header("precedence"):
        if value.strip().lower() in ("bulk", "junk", "list"):
            return f"bulk mail (Precedence: {value.strip()})"
    if view.header("x-auto-response-suppress") or view.header("x-autorespond"):
        return "an automatic message"
    named = set()
    for field_name in ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc"):
        for value in view.header(field_name):
            named |= {addr.lower() for _, addr in getaddresses([value]) if addr}
    if not named & own:
        return "the account is not among To/Cc"
    return None


def vacation_message(view: MessageView, v: Vacation, account: str, sender: str,
                     hostname: str, now: float | None = None) -> bytes:
    """The reply (RFC 5230 §5 and RFC 3834 §3): Auto-Submitted, In-Reply-To, References."""
    from_ = account
    if v.from_:
        candidates = [a for _, a in getaddresses([_UNSAFE.sub(" ", v.from_)]) if a]
        # Only an address of the account's own domain: a script cannot spoof others.
        if candidates and candidates[0].rpartition("@")[2].lower() == \
                account.rpartition("@")[2].lower():
            from_ = candidates[0]
    if v.subject is not None:
        subject = _UNSAFE.sub(" ", v.subject)
    else:
        original = (view.header("subject") or [""])[0]
        subject = "Auto: " + _UNSAFE.sub(" ", original) if original else "Automatic reply"
    msgid = (view.header("message-id") or [""])[0].strip()
    refs = " ".join((view.header("references") or [""])[0].split())
    lines = [
        f"Date: {formatdate(now or time.time(), localtime=False)}",
        f"From: <{from_}>",
        f"To: <{sender}>",
        "Subject: " + encode_word(subject[:300]).decode("ascii"),
        f"Message-ID: <vacation-{os.urandom(8).hex()}@{hostname}>",
        "Auto-Submitted: auto-replied (vacation)",
    ]
    if msgid and not _UNSAFE.search(msgid):
        lines.append(f"In-Reply-To: {msgid}")
        lines.append(f"References: {(refs + ' ' + msgid).strip()}"[:998])
    lines.append("MIME-Version: 1.0")
    reason = v.reason.replace("\r\n", "\n").replace("\n", "\r\n")
    if v.mime:
        # RFC 5230 §4.3: the reason is a MIME entity, its own header first.
        return ("\r\n".join(lines) + "\r\n" + reason).encode("utf-8")
    lines += ["Content-Type: text/plain; charset=utf-8", "Content-Transfer-Encoding: 8bit"]
    if not reason.endswith("\r\n"):
        reason += "\r\n"
    return ("\r\n".join(lines) + "\r\n\r\n" + reason).encode("utf-8")


async def staged_bytes(data: bytes | None, path: os.PathLike[str] | None) -> bytes:
    """The bytes of a staged message (in memory, or its temporary file read off the loop)."""
    if data is not None:
        return data
    assert path is not None
    return await asyncio.to_thread(Path(path).read_bytes)


def _secret_file(config: Config) -> bytes:
    """The SRS secret kept in data_dir (made on first use, readable by the server only)."""
    path = srs_secret_path(config.data_dir)
    try:
        secret = path.read_bytes().strip()
        if secret:
            return secret
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secrets.token_hex(32).encode() + b"\n")
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)        # a concurrent worker's secret wins; both then read it
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    return path.read_bytes().strip()


_instances: weakref.WeakKeyDictionary[Store, Filtering] = weakref.WeakKeyDictionary()


def filtering_for(store: Store, config: Config) -> Filtering:
    """The one Filtering of a store (its script cache is shared by every session)."""
    found = _instances.get(store)
    if found is None or found.config is not config:
        found = _instances[store] = Filtering(store, config)
    return found
