"""Inbound checks with a fixed DNS table: SPF (RFC 7208), DKIM (RFC 6376/8463), DMARC
(RFC 7489) outcomes for pass, fail, none, errors and a DMARC reject; the
Authentication-Results header (RFC 8601)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from casella.smtp import authcheck
from casella.smtp.authcheck import (
    ACCEPT,
    JUNK,
    REJECT,
    DkimOutcome,
    SpfOutcome,
    check_inbound,
    check_spf,
    evaluate_dmarc,
    verify_dkim,
)
from casella.smtp.dkim import Signer, generate_keys
from casella.smtp.resolver import TIMEOUT, StaticResolver
from casella.store.sqlite import SQLiteStore

IP = "192.0.2.10"


def msg(from_domain: str = "sender.test", body: str = "Hi.\r\n") -> bytes:
    return (f"From: Someone <someone@{from_domain}>\r\nTo: <u@example.test>\r\n"
            f"Subject: test\r\nMessage-ID: <1@{from_domain}>\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n{body}").encode()


@pytest.fixture
def dns() -> StaticResolver:
    r = StaticResolver()
    r.add("sender.test", "TXT", ["v=spf1 ip4:192.0.2.0/24 -all"])
    r.add("soft.test", "TXT", ["v=spf1 ~all"])
    r.add("neutral.test", "TXT", ["v=spf1 ?all"])
    r.add("norecord.test", "A", ["192.0.2.99"])
    r.add("broken.test", "TXT", ["v=spf1 ip4:not-an-ip -all"])
    r.add("slow.test", "TXT", TIMEOUT)
    r.add("incl.test", "TXT", ["v=spf1 include:sender.test -all"])
    r.add("mxmech.test", "TXT", ["v=spf1 mx -all"])
    r.add("mxmech.test", "MX", [(10, "mail.mxmech.test")])
    r.add("mail.mxmech.test", "A", [IP])
    r.add("voids.test", "TXT", ["v=spf1 a:n1.voids.test a:n2.voids.test a:n3.voids.test -all"])
    r.add("helo.sender.test", "TXT", ["v=spf1 ip4:192.0.2.10 -all"])
    return r


@pytest.mark.parametrize("sender,ip,expected", [
    ("a@sender.test", IP, "pass"),
    ("a@sender.test", "198.51.100.1", "fail"),
    ("a@soft.test", IP, "softfail"),
    ("a@neutral.test", IP, "neutral"),
    ("a@norecord.test", IP, "none"),
    ("a@nowhere.test", IP, "none"),
    ("a@broken.test", IP, "permerror"),
    ("a@slow.test", IP, "temperror"),
    ("a@incl.test", IP, "pass"),
    ("a@mxmech.test", IP, "pass"),
    ("a@voids.test", IP, "permerror"),        # RFC 7208 §4.6.4: more than 2 void lookups
])
async def test_spf_results(dns: StaticResolver, sender: str, ip: str, expected: str) -> None:
    out = await check_spf(ip, sender, "helo.sender.test", resolver=dns)
    assert out.result == expected, out
    assert out.scope == "mfrom" and out.domain == sender.split("@")[1]


async def test_spf_for_helo(dns: StaticResolver) -> None:
    assert (await check_spf(IP, "", "helo.sender.test", "helo", dns)).result == "pass"
    assert (await check_spf("192.0.2.11", "", "helo.sender.test", "helo", dns)).result == "fail"
    assert (await check_spf(IP, "", "[192.0.2.10]", "helo", dns)).result == "none"


@pytest.fixture
def signer(tmp_path: Path, dns: StaticResolver) -> Signer:
    for domain in ("sender.test", "other.test"):
        for key in generate_keys(tmp_path / "dkim", domain, "s1"):
            dns.add(key.txt_name, "TXT", [key.txt_record])
    return Signer(tmp_path / "dkim")


async def test_dkim_pass_for_rsa_and_ed25519(signer: Signer, dns: StaticResolver) -> None:
    m = msg()
    signed = signer.sign(m) + m
    out = await verify_dkim(signed, dns)
    assert [(d.result, d.algorithm, d.domain) for d in out] == [
        ("pass", "rsa-sha256", "sender.test"), ("pass", "ed25519-sha256", "sender.test")]


async def test_dkim_fail_none_and_missing_key(signer: Signer, dns: StaticResolver,
                                              tmp_path: Path) -> None:
    m = msg()
    signed = signer.sign(m) + m
    tampered = signed.replace(b"Hi.", b"Ho.")
    assert {d.result for d in await verify_dkim(tampered, dns)} == {"fail"}
    assert await verify_dkim(m, dns) == []
    bare = StaticResolver()
    assert {d.result for d in await verify_dkim(signed, bare)} == {"permerror"}
    slow = StaticResolver({("s1-rsa._domainkey.sender.test", "TXT"): TIMEOUT,
                           ("s1-ed25519._domainkey.sender.test", "TXT"): TIMEOUT})
    assert {d.result for d in await verify_dkim(signed, slow)} == {"temperror"}


def spf(result: str, domain: str) -> SpfOutcome:
    return SpfOutcome(result, "mfrom", domain, f"x@{domain}")


def dkim(result: str, domain: str) -> list[DkimOutcome]:
    return [DkimOutcome(result, domain, "s", "rsa-sha256")]


async def test_dmarc_alignment_and_policies() -> None:
    r = StaticResolver()
    r.add("_dmarc.strict.test", "TXT", ["v=DMARC1; p=reject; adkim=s; aspf=s"])
    r.add("_dmarc.relaxed.test", "TXT", ["v=DMARC1; p=quarantine"])
    r.add("_dmarc.org.test", "TXT", ["v=DMARC1; p=reject; sp=none"])
    r.add("_dmarc.slow.test", "TXT", TIMEOUT)
    r.add("_dmarc.half.test", "TXT", ["v=DMARC1; p=reject; pct=50"])
    # Relaxed alignment: a subdomain's DKIM aligns with the organizational domain.
    out = await evaluate_dmarc("relaxed.test", spf("fail", "x.test"),
                               dkim("pass", "mail.relaxed.test"), r)
    assert (out.result, out.disposition) == ("pass", "none")
    # Strict: the same subdomain does not align.
    out = await evaluate_dmarc("strict.test", spf("pass", "mail.strict.test"),
                               dkim("pass", "mail.strict.test"), r)
    assert (out.result, out.policy, out.disposition) == ("fail", "reject", "reject")
    # SPF alone can pass DMARC when aligned.
    out = await evaluate_dmarc("strict.test", spf("pass", "strict.test"), [], r)
    assert out.result == "pass"
    out = await evaluate_dmarc("relaxed.test", spf("softfail", "relaxed.test"), [], r)
    assert (out.result, out.disposition) == ("fail", "quarantine")
    # A subdomain without its own record: the organizational domain's sp= applies.
    out = await evaluate_dmarc("news.org.test", spf("fail", "x.test"), [], r)
    assert (out.result, out.policy, out.disposition) == ("fail", "none", "none")
    assert (await evaluate_dmarc("none.test", spf("fail", "x.test"), [], r)).result == "none"
    assert (await evaluate_dmarc("slow.test", spf("fail", "x.test"), [], r)).result == \
        "temperror"
    outs = {(await evaluate_dmarc("half.test", spf("fail", "x.test"), [], r,
                                  random.Random(seed))).disposition for seed in range(20)}
    assert outs == {"reject", "quarantine"}       # pct=50 samples


async def test_dmarc_record_parsing() -> None:
    assert authcheck.parse_dmarc("v=DMARC1; p=none") == {"v": "DMARC1", "p": "none"}
    assert authcheck.parse_dmarc("v=DMARC1; p=bogus") is None
    assert authcheck.parse_dmarc("v=DMARC1; p=bogus; rua=mailto:a@b.test")["p"] == "none"
    assert authcheck.parse_dmarc("v=spf1 -all") is None


@pytest.fixture
def world(dns: StaticResolver, signer: Signer) -> StaticResolver:
    dns.add("_dmarc.sender.test", "TXT", ["v=DMARC1; p=reject"])
    dns.add("_dmarc.other.test", "TXT", ["v=DMARC1; p=quarantine"])
    dns.add("other.test", "TXT", ["v=spf1 -all"])
    return dns


async def test_check_inbound_pass_with_header(world: StaticResolver, signer: Signer) -> None:
    m = msg()
    v = await check_inbound(hostname="mx.example.test", ip=IP, helo="helo.sender.test",
                            mail_from="bounce@sender.test", message=signer.sign(m) + m,
                            resolver=world)
    assert v.action == ACCEPT and v.mailbox == "INBOX"
    text = v.header.decode()
    assert text.startswith("Authentication-Results: mx.example.test;")
    assert "spf=pass smtp.mailfrom=bounce@sender.test" in text
    assert "spf=pass smtp.helo=helo.sender.test" in text
    assert "dkim=pass header.d=sender.test" in text
    assert "dmarc=pass header.from=sender.test policy.dmarc=reject" in text
    assert text.endswith("\r\n") and all(len(line) < 200 for line in text.split("\r\n"))


async def test_check_inbound_dmarc_reject_and_quarantine(world: StaticResolver) -> None:
    v = await check_inbound(hostname="mx.example.test", ip="203.0.113.5", helo="evil.test",
                            mail_from="x@evil.test", message=msg(), resolver=world)
    assert v.action == REJECT and (v.reply_code, v.reply_status) == (550, "5.7.1")
    assert "DMARC" in v.reply_text and b"dmarc=fail" in v.header
    v = await check_inbound(hostname="mx.example.test", ip="203.0.113.5", helo="evil.test",
                            mail_from="", message=msg("other.test"), resolver=world)
    assert v.action == JUNK and v.mailbox == "Junk"
    v = await check_inbound(hostname="mx.example.test", ip="203.0.113.5", helo="evil.test",
                            mail_from="x@nowhere.test", message=msg("nowhere.test"),
                            resolver=world)
    assert v.action == ACCEPT and b"dmarc=none" in v.header and b"dkim=none" in v.header


async def test_add_header_keeps_return_path_first(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "d")
    await store.open()
    try:
        staged = await store.blobs.stage(b"Return-Path: <a@b.test>\r\nSubject: x\r\n\r\nbody\r\n")
        new = await authcheck.add_header(store, staged, b"Authentication-Results: h; none\r\n")
        assert await authcheck.read_staged(new) == (b"Return-Path: <a@b.test>\r\nAuthentication-"
                                             b"Results: h; none\r\nSubject: x\r\n\r\nbody\r\n")
        staged.discard()
        new.discard()
    finally:
        await store.close()
