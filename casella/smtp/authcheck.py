"""Inbound checks on the MX: SPF (RFC 7208) for MAIL FROM and HELO, DKIM verification
(RFC 6376, Ed25519 per RFC 8463), DMARC (RFC 7489) alignment and policy, and the
Authentication-Results header (RFC 8601) that records them.

Lives here: `check_inbound` (the hook the MX session calls after the end of data; returns an
`InboundVerdict`: the header to add and accept / junk / reject), the three checks on their own
(`check_spf`, `verify_dkim`, `evaluate_dmarc`), and `add_header` (re-stages a received message
with the Authentication-Results field inserted below Return-Path). Libraries: pyspf (SPF
evaluation, its DNS answered by casella's resolver), dkimpy (DKIM), publicsuffixlist (the
organizational domain), authres (the header). Every DNS lookup goes through
casella.smtp.resolver. Must never: block the event loop (pyspf and dkimpy run in threads),
reject on a temporary DNS error (that is "accept, temperror"), or let a header value carry CR/LF.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from casella.smtp.resolver import DnsTempError, NXDomain, Resolver, get_resolver
from casella.store.base import Store
from casella.store.blobs import StagedBlob

log = logging.getLogger("casella.smtp")

DNS_WAIT = 20.0                  # seconds a check may wait for one DNS answer (RFC 7208 §4.6.4)
MAX_DKIM_SIGNATURES = 5          # verify at most this many signatures per message
_SAFE = re.compile(r"[^A-Za-z0-9.\-_:@+=\[\]/]")

ACCEPT = "accept"
JUNK = "junk"
REJECT = "reject"


@dataclass(frozen=True)
class SpfOutcome:
    result: str                  # pass fail softfail neutral none temperror permerror
    scope: str                   # mfrom | helo
    domain: str
    identity: str                # the address or HELO name checked
    explanation: str = ""


@dataclass(frozen=True)
class DkimOutcome:
    result: str                  # pass fail neutral temperror permerror none
    domain: str = ""             # d=
    selector: str = ""           # s=
    algorithm: str = ""          # a=
    reason: str = ""


@dataclass(frozen=True)
class DmarcOutcome:
    result: str                  # pass fail none temperror permerror
    from_domain: str = ""
    policy: str = ""             # the published p= (or sp=) that applied
    disposition: str = "none"    # what we do: none | quarantine | reject


@dataclass(frozen=True)
class InboundVerdict:
    action: str                  # accept | junk | reject
    header: bytes                # "Authentication-Results: …\r\n"
    spf: SpfOutcome
    helo_spf: SpfOutcome
    dkim: tuple[DkimOutcome, ...] = field(default_factory=tuple)
    dmarc: DmarcOutcome = DmarcOutcome("none")
    reply_code: int = 0          # for reject: 550
    reply_status: str = ""       # 5.7.1
    reply_text: str = ""

    @property
    def mailbox(self) -> str:
        """Where the message goes: Junk when DMARC says quarantine."""
        return "Junk" if self.action == JUNK else "INBOX"


def _safe(value: str, limit: int = 255) -> str:
    return _SAFE.sub("", value)[:limit]


# --- SPF --------------------------------------------------------------------------------------

class _SyncDns:
    """pyspf's DNS, answered by casella's async resolver from pyspf's worker thread."""

    def __init__(self, resolver: Resolver, loop: asyncio.AbstractEventLoop) -> None:
        self.resolver = resolver
        self.loop = loop

    def __call__(self, name: str, qtype: str) -> list[Any]:
        import spf

        if qtype not in ("A", "AAAA", "MX", "TXT", "PTR"):
            return []
        future = asyncio.run_coroutine_threadsafe(self.resolver.query(name, qtype), self.loop)
        try:
            answers = future.result(DNS_WAIT)
        except NXDomain:
            return []
        except DnsTempError as exc:
            raise spf.TempError(f"DNS {exc}") from None
        except TimeoutError:
            future.cancel()
            raise spf.TempError(f"DNS lookup of {name} timed out") from None
        if qtype == "TXT":
            return [[a] for a in answers]      # pyspf joins a record's strings itself
        return list(answers)


def _spf_query_class() -> type:
    import spf

    class Query(spf.query):
        """pyspf's evaluator with DNS from casella's resolver (RFC 7208 §4.6.4 limits kept:
        pyspf counts lookups; void lookups are counted here as pyspf's own dns() does)."""

        sync_dns: _SyncDns

        def dns(self, name: str, qtype: str, cnames: Any = None,
                ignore_void: bool = False) -> list[Any]:
            name = str(name).rstrip(".")
            if not name or any(not 0 < len(label) < 64 for label in name.split(".")):
                return []
            key = (name.lower(), qtype)
            if key in self.cache:
                return list(self.cache[key])
            result = self.sync_dns(name, qtype)
            self.cache[key] = result
            if not result and not ignore_void:
                self.void_lookups += 1
                if self.void_lookups > spf.MAX_VOID_LOOKUPS:
                    raise spf.PermError(f"Void lookup limit of {spf.MAX_VOID_LOOKUPS} "
                                        "exceeded")
            return list(result)

    return Query


def _run_spf(sync_dns: _SyncDns, ip: str, sender: str, helo: str) -> tuple[str, str]:
    Query = _spf_query_class()
    q = Query(i=ip, s=sender, h=helo, timeout=DNS_WAIT)
    q.sync_dns = sync_dns
    result, _code, explanation = q.check()
    return str(result), str(explanation)


async def check_spf(ip: str, identity: str, helo: str, scope: str = "mfrom",
                    resolver: Resolver | None = None) -> SpfOutcome:
    """SPF for the MAIL FROM address (`identity`) or, with scope "helo", for the HELO name."""
    resolver = resolver or get_resolver()
    if scope == "helo":
        sender = f"postmaster@{helo}"
        domain = helo
    else:
        sender = identity
        domain = identity.rsplit("@", 1)[-1]
    if not domain or "." not in domain or domain.startswith("["):
        return SpfOutcome("none", scope, domain, identity or helo, "no domain to check")
    sync_dns = _SyncDns(resolver, asyncio.get_running_loop())
    try:
        result, why = await asyncio.to_thread(_run_spf, sync_dns, ip, sender, helo)
    # pyspf raising past check() is its bug, not the sender's: temperror.
    except Exception as exc:  # noqa: BLE001
        log.warning("SPF check of %s failed: %s", domain, exc)
        result, why = "temperror", str(exc)
    return SpfOutcome(result, scope, domain.lower(), identity or helo, why)


# --- DKIM -------------------------------------------------------------------------------------

def _signatures(message: bytes) -> list[dict[bytes, bytes]]:
    import dkim
    from dkim.util import parse_tag_value

    headers, _ = dkim.rfc822_parse(message)
    out = []
    for name, value in headers:
        if name.lower() == b"dkim-signature":
            try:
                out.append(parse_tag_value(value))
            # A malformed signature: its verification below reports permerror.
            except Exception:  # noqa: BLE001
                out.append({})
    return out


def _verify_one(message: bytes, idx: int, records: dict[bytes, bytes | None]) -> bool:
    import dkim

    d = dkim.DKIM(message, minkey=1024)
    return bool(d.verify(idx=idx, dnsfunc=lambda name, timeout=5: records.get(name)))


async def verify_dkim(message: bytes, resolver: Resolver | None = None) -> list[DkimOutcome]:
    """Every DKIM-Signature (up to MAX_DKIM_SIGNATURES), topmost first; [] when unsigned."""
    resolver = resolver or get_resolver()
    try:
        sigs = await asyncio.to_thread(_signatures, message)
    except Exception as exc:  # noqa: BLE001 - dkimpy on hostile input
        return [DkimOutcome("permerror", reason=f"unparsable message: {exc}")]
    out = []
    for idx, sig in enumerate(sigs[:MAX_DKIM_SIGNATURES]):
        d = sig.get(b"d", b"").decode("ascii", "replace").lower()
        s = sig.get(b"s", b"").decode("ascii", "replace")
        a = sig.get(b"a", b"").decode("ascii", "replace")
        if not d or not s:
            out.append(DkimOutcome("permerror", d, s, a, "signature without d= or s="))
            continue
        name = f"{s}._domainkey.{d}"
        records: dict[bytes, bytes | None] = {}
        try:
            txt = await resolver.query(name, "TXT")
            records[(name + ".").encode()] = txt[0] if txt else None
        except NXDomain:
            records[(name + ".").encode()] = None
        except DnsTempError as exc:
            out.append(DkimOutcome("temperror", d, s, a, str(exc)))
            continue
        try:
            ok = await asyncio.to_thread(_verify_one, message, idx, records)
        # dkimpy raises on mismatches, bad keys and bad signatures.
        except Exception as exc:  # noqa: BLE001
            import dkim as dkimpy

            # RFC 8601 §2.7.1: a body hash mismatch is "fail"; a broken signature or key
            # record is "permerror".
            result = "fail" if isinstance(exc, dkimpy.ValidationError) else "permerror"
            out.append(DkimOutcome(result, d, s, a, str(exc)[:200]))
            continue
        if ok:
            out.append(DkimOutcome("pass", d, s, a))
        elif records[(name + ".").encode()] is None:
            out.append(DkimOutcome("permerror", d, s, a, "no key published"))
        else:
            out.append(DkimOutcome("fail", d, s, a, "signature did not verify"))
    return out


# --- DMARC ------------------------------------------------------------------------------------

_psl: Any = None


def organizational_domain(domain: str) -> str:
    """RFC 7489 §3.2: the public suffix plus one label."""
    global _psl
    if _psl is None:
        from publicsuffixlist import PublicSuffixList

        _psl = PublicSuffixList()
    org = _psl.privatesuffix(domain.lower().rstrip("."))
    return str(org) if org else domain.lower()


def parse_dmarc(text: str) -> dict[str, str] | None:
    """The tags of a DMARC record (RFC 7489 §6.3), or None when it is not one."""
    tags: dict[str, str] = {}
    for part in text.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            tags.setdefault(key.strip().lower(), value.strip())
    if tags.get("v") != "DMARC1":
        return None
    p = tags.get("p", "").lower()
    if p not in ("none", "quarantine", "reject"):
        # §6.6.3: a record with rua= but a bad or missing p= counts as p=none.
        if "rua" not in tags:
            return None
        tags["p"] = "none"
    return tags


async def _dmarc_record(domain: str, resolver: Resolver) -> dict[str, str] | None:
    try:
        texts = await resolver.query(f"_dmarc.{domain}", "TXT")
    except NXDomain:
        return None
    records = [r for r in (parse_dmarc(t.decode("utf-8", "replace")) for t in texts) if r]
    return records[0] if len(records) == 1 else None     # §6.6.3: several: none


def _aligned(a: str, b: str, mode: str) -> bool:
    a, b = a.lower().rstrip("."), b.lower().rstrip(".")
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


async def evaluate_dmarc(from_domain: str | None, spf: SpfOutcome, dkim: Sequence[DkimOutcome],
                         resolver: Resolver | None = None,
                         rng: random.Random | None = None) -> DmarcOutcome:
    """RFC 7489 §6.6: policy discovery (the From domain, then its organizational domain),
    identifier alignment (relaxed unless adkim/aspf=s), the result and the disposition
    (p=, or sp= for a subdomain; pct= sampling downgrades reject→quarantine→none)."""
    resolver = resolver or get_resolver()
    if not from_domain:
        return DmarcOutcome("none")
    from_domain = from_domain.lower()
    org = organizational_domain(from_domain)
    try:
        record = await _dmarc_record(from_domain, resolver)
        via_org = False
        if record is None and org != from_domain:
            record = await _dmarc_record(org, resolver)
            via_org = True
    except DnsTempError:
        return DmarcOutcome("temperror", from_domain)
    if record is None:
        return DmarcOutcome("none", from_domain)
    spf_ok = spf.result == "pass" and _aligned(spf.domain, from_domain, record.get("aspf", "r"))
    dkim_ok = any(d.result == "pass" and _aligned(d.domain, from_domain,
                                                  record.get("adkim", "r")) for d in dkim)
    policy = record["p"].lower()
    if via_org and record.get("sp", "").lower() in ("none", "quarantine", "reject"):
        policy = record["sp"].lower()
    if spf_ok or dkim_ok:
        return DmarcOutcome("pass", from_domain, policy, "none")
    disposition = policy
    try:
        pct = int(record.get("pct", "100"))
    except ValueError:
        pct = 100
    if pct < 100 and (rng or random).randrange(100) >= pct:
        disposition = {"reject": "quarantine", "quarantine": "none"}.get(policy, "none")
    return DmarcOutcome("fail", from_domain, policy, disposition)


# --- the hook ---------------------------------------------------------------------------------

def _from_domain(message: bytes) -> str | None:
    """RFC 7489 §6.6.1: exactly one From: author; None when absent or several domains."""
    from casella.smtp.delivery import from_addresses

    end = message.find(b"\r\n\r\n")
    header = message[: end + 2] if end >= 0 else message
    domains = {a.rsplit("@", 1)[-1].lower() for a in from_addresses(header)}
    return domains.pop() if len(domains) == 1 else None


def authentication_results(authserv_id: str, spf: SpfOutcome, helo_spf: SpfOutcome,
                           dkim: Sequence[DkimOutcome], dmarc: DmarcOutcome) -> bytes:
    """The RFC 8601 header field, folded one method per line."""
    import authres
    import authres.dmarc

    results: list[Any] = []
    if spf.identity:
        results.append(authres.SPFAuthenticationResult(
            result=spf.result, smtp_mailfrom=_safe(spf.identity)))
    results.append(authres.SPFAuthenticationResult(result=helo_spf.result,
                                                   smtp_helo=_safe(helo_spf.domain) or "unknown"))
    if dkim:
        for d in dkim:
            results.append(authres.DKIMAuthenticationResult(
                result=d.result, header_d=_safe(d.domain) or None,
                header_s=_safe(d.selector) or None, header_a=_safe(d.algorithm) or None))
    else:
        results.append(authres.DKIMAuthenticationResult(result="none"))
    results.append(authres.dmarc.DMARCAuthenticationResult(
        result=dmarc.result, header_from=_safe(dmarc.from_domain) or None,
        policy=dmarc.policy or None))
    header = authres.AuthenticationResultsHeader(authserv_id=_safe(authserv_id),
                                                 results=results)
    text = str(header).replace("; ", ";\r\n\t")
    return text.encode("ascii", "replace") + b"\r\n"


async def check_inbound(*, hostname: str, ip: str, helo: str, mail_from: str, message: bytes,
                        resolver: Resolver | None = None) -> InboundVerdict:
    """The MX hook after the end of data. `mail_from` is "" for the null sender; `message`
    is the message as received (trace headers may be included: they are not signed).

    Returns the verdict: the Authentication-Results header to add, and `action`:
    reject (DMARC p=reject failed: answer 550 5.7.1 with `reply_text`, store nothing),
    junk (p=quarantine failed: deliver into Junk), or accept."""
    resolver = resolver or get_resolver()
    helo_spf, dkim = await asyncio.gather(
        check_spf(ip, "", helo, "helo", resolver), verify_dkim(message, resolver))
    if mail_from:
        spf = await check_spf(ip, mail_from, helo, "mfrom", resolver)
    else:
        # RFC 7208 §2.4: for the null sender the MAIL FROM check uses postmaster@HELO.
        spf = SpfOutcome(helo_spf.result, "mfrom", helo_spf.domain, "", helo_spf.explanation)
    from_domain = _from_domain(message)
    # RFC 7489 §4.1: the SPF identity for DMARC is MAIL FROM, or HELO when it is null.
    dmarc = await evaluate_dmarc(from_domain, spf if mail_from else helo_spf, dkim, resolver)
    header = authentication_results(hostname, spf, helo_spf, dkim, dmarc)
    if dmarc.result == "fail" and dmarc.disposition == "reject":
        return InboundVerdict(REJECT, header, spf, helo_spf, tuple(dkim), dmarc, 550, "5.7.1",
                              f"Message rejected: it fails the DMARC policy of "
                              f"{_safe(dmarc.from_domain)} (p=reject)")
    action = JUNK if dmarc.result == "fail" and dmarc.disposition == "quarantine" else ACCEPT
    return InboundVerdict(action, header, spf, helo_spf, tuple(dkim), dmarc)


async def read_staged(staged: StagedBlob) -> bytes:
    """The bytes of a staged (received, not yet stored) message; a file is read off the
    loop."""
    if staged.data is not None:
        return staged.data
    assert staged.tmp_path is not None
    return await asyncio.to_thread(staged.tmp_path.read_bytes)


def insert_header(data: bytes, header: bytes) -> bytes:
    """`header` inserted after a leading Return-Path field (RFC 5321 §4.4 keeps Return-Path
    first), else at the top."""
    if data[:12].lower() == b"return-path:":
        end = data.find(b"\r\n") + 2
        return b"".join((data[:end], header, data[end:]))
    return header + data


async def add_header(store: Store, staged: StagedBlob, header: bytes,
                     data: bytes | None = None) -> StagedBlob:
    """A new staged blob: the staged message with `header` inserted (`insert_header`). `data`
    is the staged message when the caller has read it already. The caller discards both
    blobs afterwards. (The session uses this only for a message too big to have been kept in
    memory; otherwise it inserts the header before the message is first staged.)"""
    if data is None:
        data = await read_staged(staged)
    return await store.blobs.stage(insert_header(data, header), publish_early=True)
