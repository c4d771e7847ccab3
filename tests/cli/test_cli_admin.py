"""`casella dns DOMAIN [--check]` and `casella token create|list|revoke` through the real
console script (exit 0 / 1 with one line on stderr / 2 for bad usage). `--check` asks a small
DNS server on 127.0.0.1 (tests/cli/dnsserver.py) named by `[dns] resolver`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.zone
import httpx
import pytest

from casella.config import config_from_mapping
from casella.dnsrecords import mta_sts_id, mta_sts_policy
from casella.smtp.dkim import load_keys
from tests.cli.dnsserver import ZoneServer
from tests.cli.util import fails, ok
from tests.conftest import RunningServer
from tests.http.conftest import AdminSite

CASELLA = [str(Path(sys.executable).parent / "casella")]


class Cli:
    def __init__(self, tmp_path: Path, data_dir: Path | None = None) -> None:
        self.tmp_path = tmp_path
        self.data_dir = data_dir or tmp_path / "data"
        self.extra = ""
        self.cfg = tmp_path / "casella.toml"

    def __call__(self, *args: str) -> subprocess.CompletedProcess[str]:
        self.cfg.write_text(
            f'hostname = "mail.example.test"\ndata_dir = "{self.data_dir}"\n'
            '[listen]\nsmtp = "0.0.0.0:25"\nsubmissions = "0.0.0.0:465"\n'
            'submission = "0.0.0.0:587"\nimaps = "0.0.0.0:993"\npop3s = "0.0.0.0:995"\n'
            'https = "0.0.0.0:443"\n'
            + self.extra)
        return subprocess.run(CASELLA + ["--config", str(self.cfg), *args],
                              capture_output=True, text=True, timeout=120, check=False,
                              env={**os.environ, "CASELLA_CONFIG": ""})


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


@pytest.fixture
def dns_servers() -> Iterator[Callable[..., ZoneServer]]:
    started: list[ZoneServer] = []

    def start(zone: str, refuse: bool = False) -> ZoneServer:
        server = ZoneServer(zone, "example.test.", refuse=refuse)
        started.append(server)
        return server
    yield start
    for server in started:
        server.close()


def parse_zone(text: str) -> dict[tuple[str, str], list[str]]:
    zone = dns.zone.from_text(text, origin="example.test.", relativize=False,
                              check_origin=False)
    return {(str(name), dns.rdatatype.to_text(rds.rdtype)): [r.to_text() for r in rds]
            for name, rds in zone.iterate_rdatasets()}


# --- the records -----------------------------------------------------------------------------

def test_dns_prints_every_record_in_zone_file_syntax(cli: Cli) -> None:
    ok(cli("domain", "add", "example.test"))
    before_keys = ok(cli("dns", "example.test"))
    assert "casella dkim generate example.test" in before_keys
    ok(cli("dkim", "generate", "example.test"))
    text = ok(cli("dns", "Example.TEST"))
    records = parse_zone(text)             # dnspython's zone-file parser takes every line
    assert records[("example.test.", "MX")] == ["10 mail.example.test."]
    assert records[("example.test.", "TXT")] == ['"v=spf1 mx ~all"']
    keys = {k.algorithm: k for k in load_keys(cli.data_dir / "dkim", "example.test")}
    rsa = records[("casella-rsa._domainkey.example.test.", "TXT")][0]
    assert "".join(re.findall(r'"([^"]*)"', rsa)) == keys["rsa"].txt_record   # split at 255
    assert records[("casella-ed25519._domainkey.example.test.", "TXT")] == \
        [f'"{keys["ed25519"].txt_record}"']
    assert records[("_dmarc.example.test.", "TXT")] == \
        ['"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test"']
    for name in ("autoconfig", "autodiscover", "mta-sts"):
        assert records[(f"{name}.example.test.", "CNAME")] == ["mail.example.test."]
    # RFC 6186 / 8314: the configured ports, implicit TLS preferred; "." for a service off.
    assert records[("_submissions._tcp.example.test.", "SRV")] == ["0 1 465 mail.example.test."]
    assert records[("_submission._tcp.example.test.", "SRV")] == ["10 1 587 mail.example.test."]
    assert records[("_imaps._tcp.example.test.", "SRV")] == ["0 1 993 mail.example.test."]
    assert records[("_imap._tcp.example.test.", "SRV")] == ["0 0 0 ."]
    assert records[("_pop3s._tcp.example.test.", "SRV")] == ["0 1 995 mail.example.test."]
    assert records[("_pop3._tcp.example.test.", "SRV")] == ["0 0 0 ."]
    assert records[("_autodiscover._tcp.example.test.", "SRV")] == ["0 1 443 mail.example.test."]
    config = config_from_mapping({"hostname": "mail.example.test"})
    assert records[("_mta-sts.example.test.", "TXT")] == \
        [f'"v=STSv1; id={mta_sts_id(config)}"']
    assert records[("_smtp._tls.example.test.", "TXT")] == \
        ['"v=TLSRPTv1; rua=mailto:postmaster@example.test"']
    assert ";   mode: enforce" in text and ";   mx: mail.example.test" in text
    assert "PRIVATE" not in text

    assert "not hosted" in fails(cli("dns", "other.test"))
    fails(cli("dns"), 2)


def test_the_mta_sts_id_follows_the_policy() -> None:
    """RFC 8461 §3.1: senders fetch the policy again only when the id changes; the policy is
    the one the HTTPS listener serves ([http] mta_sts_mode, mta_sts_max_age)."""
    enforce = config_from_mapping({"hostname": "mail.example.test"})
    testing = config_from_mapping({"hostname": "mail.example.test",
                                   "http": {"mta_sts_mode": "testing"}})
    assert mta_sts_policy(enforce) == ("version: STSv1\r\nmode: enforce\r\n"
                                       "mx: mail.example.test\r\nmax_age: 604800\r\n")
    assert "mode: testing\r\n" in mta_sts_policy(testing)
    assert mta_sts_id(testing) != mta_sts_id(enforce)
    assert re.fullmatch(r"[A-Za-z0-9]{1,32}", mta_sts_id(testing))


# --- --check ---------------------------------------------------------------------------------

def published(cli: Cli) -> str:
    ok(cli("domain", "add", "example.test"))
    ok(cli("dkim", "generate", "example.test"))
    return ok(cli("dns", "example.test")) + "mail.example.test. 3600 IN A 192.0.2.25\n"


def test_check_passes_when_everything_is_published(cli: Cli,
                                                   dns_servers: Callable[..., Any]) -> None:
    server = dns_servers(published(cli))
    cli.extra = f'[dns]\nresolver = ["127.0.0.1:{server.port}"]\n'
    out = ok(cli("dns", "example.test", "--check"))
    lines = [line for line in out.splitlines() if not line.startswith(" ")]
    assert all(line.startswith("OK") for line in lines[:-1]), out
    assert len(lines) - 1 == 18          # the host and 17 records (two of them DKIM keys)
    assert lines[-1] == "all 18 DNS records of example.test are published"
    assert server.queries >= 18


def test_check_reports_missing_and_different_records(cli: Cli,
                                                     dns_servers: Callable[..., Any]) -> None:
    zone = published(cli)
    lines = zone.splitlines()
    lines = [line for line in lines if not line.startswith("_dmarc.")]          # missing
    lines = [line.replace('"v=spf1 mx ~all"', '"v=spf1 a -all"') for line in lines]
    lines = [re.sub(r"id=[0-9a-f]+", "id=20240101", line) if line.startswith("_mta-sts.")
             else line for line in lines]                                       # stale id
    lines = [line.replace("0 1 993", "0 1 9993") for line in lines]              # wrong port
    lines = [line for line in lines if not line.startswith("autoconfig.")]
    lines.append("autoconfig.example.test. 3600 IN A 192.0.2.25")   # A record: does the job
    lines = [line.replace("IN CNAME mail.example.test.", "IN CNAME elsewhere.example.net.")
             if line.startswith("autodiscover.") else line for line in lines]
    lines.append('example.test. 3600 IN TXT "google-site-verification=abc"')    # beside SPF
    server = dns_servers("\n".join(lines) + "\n")
    cli.extra = f'[dns]\nresolver = ["127.0.0.1:{server.port}"]\n'
    result = cli("dns", "example.test", "--check")
    err = fails(result)
    assert "5 of 18 DNS records are missing or different" in err
    status = {m.group(2): m.group(1) for m in re.finditer(r"^(\S+)\s+(\S+(?: \S+)?)\s{2,}",
                                                           result.stdout, re.MULTILINE)}
    assert status["DMARC"] == "missing"
    assert status["SPF"] == "different"
    assert status["MTA-STS"] == "different"
    assert status["SRV _imaps"] == "different"
    assert status["autodiscover"] == "different"
    assert status["autoconfig"] == "OK"
    assert status["MX"] == "OK" and status["DKIM casella-rsa"] == "OK"
    assert "found: v=spf1 a -all" in result.stdout
    assert "found: elsewhere.example.net." in result.stdout


def test_check_without_dkim_keys_or_host_address(cli: Cli,
                                                 dns_servers: Callable[..., Any]) -> None:
    ok(cli("domain", "add", "example.test"))
    server = dns_servers(ok(cli("dns", "example.test")))
    cli.extra = f'[dns]\nresolver = ["127.0.0.1:{server.port}"]\n'
    result = cli("dns", "example.test", "--check")
    fails(result)
    assert re.search(r"^missing\s+host address", result.stdout, re.MULTILINE)
    assert re.search(r"^missing\s+DKIM .*casella dkim generate example.test", result.stdout,
                     re.MULTILINE)


def test_check_when_the_dns_cannot_be_asked(cli: Cli, dns_servers: Callable[..., Any]) -> None:
    ok(cli("domain", "add", "example.test"))
    server = dns_servers("", refuse=True)
    cli.extra = f'[dns]\nresolver = ["127.0.0.1:{server.port}"]\n'
    assert "cannot ask the DNS" in fails(cli("dns", "example.test", "--check"))
    cli.extra = '[dns]\nresolver = ["not-an-ip"]\n'
    assert "dns.resolver" in fails(cli("dns", "example.test", "--check"))


# --- tokens ----------------------------------------------------------------------------------

def test_token_commands(cli: Cli) -> None:
    ok(cli("domain", "add", "example.test"))
    result = cli("token", "create", "--name", "panel")
    token = ok(result).strip()
    assert re.fullmatch(r"casella_[0-9a-f]{12}_[A-Za-z0-9_-]{43}", token)
    assert "shown only this once" in result.stderr
    reseller = ok(cli("token", "create", "--name", "reseller", "--domain", "Example.TEST"))
    assert reseller.strip() != token
    listing = ok(cli("token", "list"))
    assert "panel" in listing and "(every domain)" in listing
    assert re.search(r"reseller\s+example\.test", listing)
    assert token not in listing and token.split("_")[2] not in listing
    assert "already exists" in fails(cli("token", "create", "--name", "panel"))
    assert "does not exist" in fails(cli("token", "create", "--name", "x",
                                         "--domain", "nowhere.test"))
    assert "bad token name" in fails(cli("token", "create", "--name", "has space"))
    fails(cli("token", "create"), 2)
    ok(cli("token", "revoke", "panel"))
    assert "panel" not in ok(cli("token", "list"))
    assert "no token" in fails(cli("token", "revoke", "panel"))
    # The secret is nowhere in the data directory: only its SHA-256.
    for path in cli.data_dir.rglob("*"):
        if path.is_file():
            assert token.split("_")[2].encode() not in path.read_bytes()


@pytest.fixture
def admin(make_server: Callable[..., RunningServer]) -> AdminSite:
    return AdminSite(make_server())


def test_a_token_from_the_cli_works_on_a_running_server(tmp_path: Path,
                                                        admin: AdminSite) -> None:
    cli = Cli(tmp_path, admin.server.data_dir)
    ok(cli("domain", "add", "example.test"))
    token = ok(cli("token", "create", "--name", "panel")).strip()
    with admin.client(token) as api:
        assert [d["name"] for d in api.get("/domains").json()] == ["example.test"]
    ok(cli("token", "revoke", "panel"))
    assert httpx.get(admin.url("/api/v1/domains"),
                     headers={"Authorization": f"Bearer {token}"}).status_code == 401
