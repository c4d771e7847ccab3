"""casella.dnsrecords.compare: what the DNS answered against each expected record (a table:
answers in, OK / missing / different out)."""

from __future__ import annotations

import pytest

from casella.dnsrecords import DIFFERENT, MISSING, OK, Record, compare

MX = Record("MX", "example.test", "MX", "10 mail.example.test.")
SPF = Record("SPF", "example.test", "TXT", "v=spf1 mx ~all")
DKIM = Record("DKIM casella-rsa", "casella-rsa._domainkey.example.test", "TXT",
              "v=DKIM1; k=rsa; p=MIIBIjAN")
DMARC = Record("DMARC", "_dmarc.example.test", "TXT",
               "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test")
STS = Record("MTA-STS", "_mta-sts.example.test", "TXT", "v=STSv1; id=abc123")
CNAME = Record("autoconfig", "autoconfig.example.test", "CNAME", "mail.example.test.")
SRV = Record("SRV _imaps", "_imaps._tcp.example.test", "SRV", "0 1 993 mail.example.test.")
OFF = Record("SRV _pop3", "_pop3._tcp.example.test", "SRV", "0 0 0 .")

TABLE = [
    (MX, None, MISSING),
    (MX, ["10 mail.example.test."], OK),
    (MX, ["20 MAIL.Example.Test."], OK),                 # preference and case do not matter
    (MX, ["10 other.example.net.", "20 mail.example.test."], OK),
    (MX, ["10 other.example.net."], DIFFERENT),
    (SPF, None, MISSING),
    (SPF, ["google-site-verification=x"], MISSING),       # other TXT at the apex
    (SPF, ["v=spf1  mx   ~all"], OK),
    (SPF, ["v=spf1 a -all"], DIFFERENT),
    (DKIM, ["v=DKIM1; k=rsa; p=MIIBIjAN"], OK),
    (DKIM, ["k=rsa; p=MIIB IjAN"], OK),                   # v= optional, spaces in p= ignored
    (DKIM, ["p=MIIBIjAN"], OK),                           # k= defaults to rsa
    (DKIM, ["v=DKIM1; k=rsa; p=OTHER"], DIFFERENT),
    (DKIM, [], MISSING),
    (DMARC, ["v=DMARC1;p=quarantine;rua=mailto:postmaster@example.test"], OK),
    (DMARC, ["v=DMARC1; p=reject; rua=mailto:postmaster@example.test"], DIFFERENT),
    (STS, ["v=STSv1; id=abc123"], OK),
    (STS, ["v=STSv1; id=old"], DIFFERENT),
    (CNAME, ["mail.example.test."], OK),
    (CNAME, ["web.example.test."], DIFFERENT),
    (SRV, ["5 10 993 mail.example.test."], OK),            # priority and weight are the admin's
    (SRV, ["0 1 143 mail.example.test."], DIFFERENT),
    (SRV, ["0 1 993 other.example.net."], DIFFERENT),
    (OFF, ["0 0 0 ."], OK),
    (OFF, ["0 1 110 mail.example.test."], DIFFERENT),
    (OFF, None, MISSING),
]


@pytest.mark.parametrize(("record", "answers", "status"), TABLE)
def test_compare(record: Record, answers: list[str] | None, status: str) -> None:
    result = compare(record, answers)
    assert result.status == status
    assert bool(result.found) == (status == DIFFERENT)
