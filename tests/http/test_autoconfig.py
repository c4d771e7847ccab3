"""Client autoconfiguration over real sockets (issue 18 §2): Thunderbird, Outlook (POX and
JSON), Apple profiles (signed when the certificate is not self-signed) and the MTA-STS policy
(RFC 8461), for hosted domains only, with the same answer whether an account exists or not."""

from __future__ import annotations

import dataclasses
import datetime
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from casella.config import parse_hostport
from tests.conftest import RunningServer, build_test_config
from tests.http.conftest import base_url
from tests.http.test_clientconfig import (
    BILLION_LAUGHS,
    XXE,
    check_pox_response,
    check_profile,
    check_thunderbird,
    pox,
)

TB_PATHS = ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml")


@pytest.mark.parametrize("path", TB_PATHS)
def test_thunderbird(web: RunningServer, client: httpx.Client, path: str) -> None:
    r = client.get(path, params={"emailaddress": "alice@example.test"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/xml")
    provider = check_thunderbird(r.content, "example.test")
    ports = [int(s.findtext("port") or 0) for s in provider if s.tag.endswith("Server")]
    assert ports == [web.port(n) for n in ("imaps", "imap", "pop3s", "pop3", "submissions",
                                           "submission")]
    assert {s.findtext("hostname") for s in provider if s.tag.endswith("Server")} == \
        {"mail.example.test"}
    # Unknown local part: the same document (nothing tells whether an account exists).
    other = client.get(path, params={"emailaddress": "nobody@example.test"})
    assert other.content == r.content
    # The domain from the host the client asked when no address is given.
    by_host = client.get(path, headers={"Host": "autoconfig.example.test"})
    assert by_host.content == r.content
    assert client.get(path, params={"emailaddress": "a@other.test"}).status_code == 404
    assert client.get(path, headers={"Host": "autoconfig.other.test"}).status_code == 404
    assert client.get(path, params={"emailaddress": "no-at-sign"}).status_code == 400


def test_thunderbird_lists_only_listeners_that_are_on(make_server, tmp_path: Path) -> None:
    cfg = build_test_config(tmp_path / "few")
    cfg = dataclasses.replace(cfg, listen={n: parse_hostport("127.0.0.1:0") for n in
                                           ("imaps", "submission", "http", "https")})
    srv = RunningServer(cfg)
    try:
        srv.add_user("alice@example.test")
        with httpx.Client(base_url=base_url(srv), timeout=30) as c:
            r = c.get(TB_PATHS[0], params={"emailaddress": "alice@example.test"})
            provider = check_thunderbird(r.content, "example.test")
            assert [(s.get("type"), int(s.findtext("port") or 0)) for s in provider
                    if s.tag.endswith("Server")] == [("imap", srv.port("imaps")),
                                                     ("smtp", srv.port("submission"))]
            xml = c.post("/autodiscover/autodiscover.xml",
                         content=pox("alice@example.test")).text
            assert "POP3" not in xml
            assert c.get("/apple/alice@example.test.mobileconfig",
                         params={"protocol": "pop3"}).status_code == 404
    finally:
        srv.stop()


def test_autodiscover_pox(web: RunningServer, client: httpx.Client) -> None:
    r = client.post("/autodiscover/autodiscover.xml", content=pox("Alice@Example.TEST"))
    assert r.status_code == 200
    account = check_pox_response(r.content)
    assert "alice@example.test" in r.text
    unknown = client.post("/Autodiscover/Autodiscover.xml", content=pox("zed@example.test"))
    assert unknown.status_code == 200
    assert unknown.text == r.text.replace("alice@example.test", "zed@example.test")
    assert len(account) == 2 + 6
    assert client.post("/autodiscover/autodiscover.xml",
                       content=pox("alice@other.test")).status_code == 404


@pytest.mark.parametrize("body", [
    b"<Autodiscover><Request><EMailAddress><script>alert(1)</script>",
    b"<script>alert(1)</script>", BILLION_LAUGHS, XXE, pox("<b>x</b>@example.test"),
    pox("not-an-address"),
])
def test_autodiscover_bad_xml_gets_400_with_nothing_echoed(client: httpx.Client,
                                                           body: bytes) -> None:
    r = client.post("/autodiscover/autodiscover.xml", content=body)
    assert r.status_code == 400
    assert "<ErrorCode>600</ErrorCode>" in r.text
    for fragment in ("script", "alert", "passwd", "not-an-address", "<b>"):
        assert fragment not in r.text


def test_autodiscover_other_schema(client: httpx.Client) -> None:
    r = client.post("/autodiscover/autodiscover.xml", content=pox(
        "alice@example.test",
        "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/responseschema/2006"))
    assert r.status_code == 200 and "<ErrorCode>601</ErrorCode>" in r.text


def test_autodiscover_json(web: RunningServer, client: httpx.Client) -> None:
    want = {"Protocol": "AutodiscoverV1",
            "Url": f"https://mail.example.test:{web.port('https')}"
                   "/autodiscover/autodiscover.xml"}
    for address in ("alice@example.test", "nobody@example.test"):
        r = client.get(f"/autodiscover/autodiscover.json/v1.0/{address}",
                       params={"Protocol": "AutodiscoverV1"})
        assert (r.status_code, r.json()) == (200, want)
    r = client.get("/autodiscover/autodiscover.json",
                   params={"Email": "alice@example.test", "Protocol": "autodiscoverv1"})
    assert (r.status_code, r.json()) == (200, want)
    r = client.get("/autodiscover/autodiscover.json/v1.0/alice@example.test",
                   params={"Protocol": "Ews"})
    assert r.status_code == 400 and r.json()["ErrorCode"] == "InvalidProtocol"
    assert client.get("/autodiscover/autodiscover.json/v1.0/a@other.test",
                      params={"Protocol": "AutodiscoverV1"}).status_code == 404
    assert client.get("/autodiscover/autodiscover.json/v1.0/garbage",
                      params={"Protocol": "AutodiscoverV1"}).status_code == 400


def test_apple_profile_unsigned_with_a_self_signed_certificate(
        web: RunningServer, client: httpx.Client) -> None:
    r = client.get("/apple/alice@example.test.mobileconfig")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/x-apple-aspen-config")
    assert "attachment" in r.headers["Content-Disposition"]
    mail = check_profile(r.content)
    assert (mail["IncomingMailServerPortNumber"], mail["OutgoingMailServerPortNumber"]) == \
        (web.port("imaps"), web.port("submissions"))
    unknown = client.get("/apple/nobody@example.test.mobileconfig")
    assert unknown.status_code == 200
    other = check_profile(unknown.content)       # the same document, for that address
    assert other["EmailAddress"] == "nobody@example.test" and set(other) == set(mail)
    pop = check_profile(client.get("/apple/alice@example.test.mobileconfig",
                                   params={"protocol": "pop3"}).content)
    assert pop["IncomingMailServerPortNumber"] == web.port("pop3s")
    assert client.get("/apple/a@other.test.mobileconfig").status_code == 404
    assert client.get("/apple/garbage.mobileconfig").status_code == 400
    assert client.get("/apple/alice@example.test.mobileconfig",
                      params={"protocol": "x"}).status_code == 400


def _ca_issued(dir: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it issued (so not self-signed): (chain, key, ca)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=30))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME,
                                                        "mail.example.test")]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("mail.example.test")]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    dir.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (dir / "chain.pem").write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    (dir / "key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                    serialization.NoEncryption()))
    (dir / "ca.pem").write_bytes(ca.public_bytes(pem))
    return dir / "chain.pem", dir / "key.pem", dir / "ca.pem"


def test_apple_profile_signed_with_the_tls_certificate(make_server, tmp_path: Path) -> None:
    """With a certificate a CA issued, the profile is a CMS SignedData holding the plist,
    signed by the TLS certificate (verified with openssl when it is installed)."""
    from cryptography.hazmat.primitives.serialization import pkcs7

    chain, key, ca = _ca_issued(tmp_path / "tls")
    srv = make_server(tls={"cert": str(chain), "key": str(key)})
    srv.add_user("alice@example.test")
    with httpx.Client(base_url=base_url(srv), timeout=30) as c:
        r = c.get("/apple/alice@example.test.mobileconfig")
    assert r.status_code == 200
    signed = r.content
    assert not signed.startswith(b"<?xml")
    certs = pkcs7.load_der_pkcs7_certificates(signed)
    assert any("mail.example.test" in cert.subject.rfc4514_string() for cert in certs)
    assert b"com.apple.mail.managed" in signed      # the content travels inside
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed: the signature itself was not verified")
    out = subprocess.run(["openssl", "cms", "-verify", "-inform", "DER", "-CAfile", str(ca),
                          "-purpose", "any"], input=signed, capture_output=True, timeout=60,
                         check=False)
    assert out.returncode == 0, out.stderr
    check_profile(out.stdout)


def test_mta_sts_policy(web: RunningServer, client: httpx.Client) -> None:
    """RFC 8461 §3.3: the policy at https://mta-sts.<domain>/.well-known/mta-sts.txt, for
    hosted domains only."""
    r = client.get("/.well-known/mta-sts.txt", headers={"Host": "mta-sts.example.test"})
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    assert r.text == ("version: STSv1\r\nmode: enforce\r\nmx: mail.example.test\r\n"
                      "max_age: 604800\r\n")
    with httpx.Client(base_url=base_url(web, "https"), verify=web.ssl_context()) as s:
        assert s.get("/.well-known/mta-sts.txt",
                     headers={"Host": "mta-sts.example.test"}).text == r.text
    assert client.get("/.well-known/mta-sts.txt",
                      headers={"Host": "mta-sts.other.test"}).status_code == 404
    assert client.get("/.well-known/mta-sts.txt",
                      headers={"Host": "example.test"}).status_code == 404


def test_mta_sts_policy_as_configured(make_server) -> None:
    srv = make_server(http={"mta_sts_mode": "testing", "mta_sts_max_age": "1d"})
    srv.add_user("alice@example.test")
    with httpx.Client(base_url=base_url(srv), timeout=30) as c:
        text = c.get("/.well-known/mta-sts.txt", headers={"Host": "mta-sts.example.test"}).text
    assert "mode: testing\r\n" in text and "max_age: 86400\r\n" in text
