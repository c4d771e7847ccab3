"""The autoconfiguration documents as pure functions: the Thunderbird file, the Outlook POX
request parser (good inputs, and bad ones with the error they get), its responses, the JSON
answer, Apple profiles and the MTA-STS policy text (RFC 8461)."""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET

import pytest

from casella.config import HostPort
from casella.http import clientconfig, mobileconfig, mtasts
from casella.http.clientconfig import AutodiscoverError, mail_settings

ALL = {"imaps": HostPort("", 993), "imap": HostPort("", 143), "pop3s": HostPort("", 995),
       "pop3": HostPort("", 110), "submissions": HostPort("", 465),
       "submission": HostPort("", 587), "smtp": HostPort("", 25), "http": HostPort("", 80)}
REQ_NS = clientconfig.POX_REQUEST_NS
RESP_2006A = clientconfig.OUTLOOK_RESPONSE_NS


def pox(email: str = "bob@example.com", schema: str = RESP_2006A, ns: str = REQ_NS) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><Autodiscover xmlns="{ns}"><Request>'
            f"<EMailAddress>{email}</EMailAddress>"
            f"<AcceptableResponseSchema>{schema}</AcceptableResponseSchema>"
            "</Request></Autodiscover>").encode()


def test_settings_follow_the_listeners_in_preference_order() -> None:
    s = mail_settings("mail.example.com", ALL)
    assert [(e.protocol, e.port, e.security) for e in s.endpoints] == [
        ("imap", 993, "tls"), ("imap", 143, "starttls"), ("pop3", 995, "tls"),
        ("pop3", 110, "starttls"), ("smtp", 465, "tls"), ("smtp", 587, "starttls")]
    only = mail_settings("m.example.com", {"imap": HostPort("", 143),
                                           "submission": HostPort("", 587)})
    assert [(e.protocol, e.port) for e in only.endpoints] == [("imap", 143), ("smtp", 587)]
    assert only.preferred("pop3") is None


@pytest.mark.parametrize("body,email", [
    (pox(), "bob@example.com"),
    (pox(ns=""), "bob@example.com"),                      # no namespace: accepted
    (pox(email="  Bob@Example.COM \n"), "Bob@Example.COM"),
    (b"\xef\xbb\xbf" + pox(), "bob@example.com"),         # a byte-order mark
])
def test_pox_request_good(body: bytes, email: str) -> None:
    assert clientconfig.parse_pox_request(body).email == email


BILLION_LAUGHS = (b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">'
                  b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
                  b"<Autodiscover><Request><EMailAddress>&b;</EMailAddress></Request>"
                  b"</Autodiscover>")
XXE = (b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
       b"<Autodiscover><Request><EMailAddress>&x;</EMailAddress></Request></Autodiscover>")


@pytest.mark.parametrize("body", [
    b"", b"not xml", b"<Autodiscover>", b"<Other><Request/></Other>",
    b"<Autodiscover><Request></Request></Autodiscover>",
    b"<Autodiscover><Request><EMailAddress> </EMailAddress></Request></Autodiscover>",
    b"<Autodiscover/>", BILLION_LAUGHS, XXE,
    b'<!DOCTYPE Autodiscover SYSTEM "http://example.com/x.dtd"><Autodiscover/>',
    b"<Autodiscover>" + b"<a>" * 5000 + b"</a>" * 5000 + b"</Autodiscover>",
    pox(email="x" * 20000),
])
def test_pox_request_bad(body: bytes) -> None:
    """Malformed XML, DTDs and entities (defused), oversized bodies: error 600, whose message
    is fixed text."""
    with pytest.raises(AutodiscoverError) as err:
        clientconfig.parse_pox_request(body)
    assert (err.value.code, err.value.message) == (600, "Invalid Request")


def _children(el: ET.Element) -> list[str]:
    return [c.tag.rpartition("}")[2] for c in el]


def check_pox_response(doc: bytes) -> ET.Element:
    """The elements the Outlook POX response schema requires (Microsoft's "POX Autodiscover
    XML elements": Autodiscover > Response > Account with AccountType and Action, and in each
    Protocol a Type first), in the 2006 / 2006a namespaces."""
    root = ET.fromstring(doc)
    assert root.tag == f"{{{clientconfig.POX_RESPONSE_NS}}}Autodiscover"
    response = root.find(f"{{{RESP_2006A}}}Response")
    assert response is not None
    account = response.find(f"{{{RESP_2006A}}}Account")
    assert account is not None
    names = _children(account)
    assert names[:2] == ["AccountType", "Action"]
    assert account.findtext(f"{{{RESP_2006A}}}AccountType") == "email"
    assert account.findtext(f"{{{RESP_2006A}}}Action") == "settings"
    for proto in account.findall(f"{{{RESP_2006A}}}Protocol"):
        fields = _children(proto)
        assert fields[0] == "Type"
        for required in ("Server", "Port", "LoginName", "SSL", "AuthRequired"):
            assert required in fields
        assert proto.findtext(f"{{{RESP_2006A}}}Type") in ("IMAP", "POP3", "SMTP")
        assert proto.findtext(f"{{{RESP_2006A}}}SSL") in ("on", "off")
    return account


def test_pox_response_lists_every_endpoint() -> None:
    account = check_pox_response(clientconfig.pox_response(
        mail_settings("mail.example.com", ALL), "bob@example.com"))
    n = f"{{{RESP_2006A}}}"
    got = [(p.findtext(n + "Type"), p.findtext(n + "Port"), p.findtext(n + "Encryption"))
           for p in account.findall(n + "Protocol")]
    assert got == [("IMAP", "993", "SSL"), ("IMAP", "143", "TLS"), ("POP3", "995", "SSL"),
                   ("POP3", "110", "TLS"), ("SMTP", "465", "SSL"), ("SMTP", "587", "TLS")]
    assert {p.findtext(n + "LoginName") for p in account.findall(n + "Protocol")} == \
        {"bob@example.com"}


def test_pox_error_document() -> None:
    root = ET.fromstring(clientconfig.pox_error(AutodiscoverError(600, "Invalid Request"),
                                                "10:00:00", "abc"))
    ns = f"{{{clientconfig.POX_RESPONSE_NS}}}"
    err = root.find(f"{ns}Response/{ns}Error")
    assert err is not None and err.get("Time") == "10:00:00" and err.get("Id") == "abc"
    assert (err.findtext(ns + "ErrorCode"), err.findtext(ns + "Message")) == \
        ("600", "Invalid Request")


def check_thunderbird(doc: bytes, domain: str) -> ET.Element:
    """Mozilla's config file format: clientConfig version 1.1 > emailProvider (id) with
    domain, displayName, and servers, each with hostname, port, socketType, authentication
    and username."""
    root = ET.fromstring(doc)
    assert root.tag == "clientConfig" and root.get("version") == "1.1"
    provider = root.find("emailProvider")
    assert provider is not None and provider.get("id") == domain
    assert provider.findtext("domain") == domain and provider.findtext("displayName")
    servers = provider.findall("incomingServer") + provider.findall("outgoingServer")
    assert provider.findall("incomingServer") and provider.findall("outgoingServer")
    for server in servers:
        assert server.get("type") in ("imap", "pop3", "smtp")
        for field in ("hostname", "port", "socketType", "authentication", "username"):
            assert server.findtext(field), field
        assert server.findtext("socketType") in ("SSL", "STARTTLS", "plain")
    return provider


def test_thunderbird_document() -> None:
    provider = check_thunderbird(clientconfig.thunderbird_config(
        mail_settings("mail.example.com", ALL), "example.com"), "example.com")
    assert [(s.get("type"), s.findtext("port"), s.findtext("socketType"))
            for s in provider if s.tag.endswith("Server")] == [
        ("imap", "993", "SSL"), ("imap", "143", "STARTTLS"), ("pop3", "995", "SSL"),
        ("pop3", "110", "STARTTLS"), ("smtp", "465", "SSL"), ("smtp", "587", "STARTTLS")]
    assert {s.findtext("username") for s in provider if s.tag.endswith("Server")} == \
        {"%EMAILADDRESS%"}


@pytest.mark.parametrize("protocol,status,key", [
    ("AutodiscoverV1", 200, "Url"), ("autodiscoverv1", 200, "Url"),
    ("Ews", 400, "ErrorCode"), ("ActiveSync", 400, "ErrorCode"), ("", 400, "ErrorCode"),
])
def test_autodiscover_json(protocol: str, status: int, key: str) -> None:
    got_status, body = clientconfig.autodiscover_json(protocol, "https://m.example.com/x.xml")
    assert got_status == status and key in body
    if status == 200:
        assert body == {"Protocol": "AutodiscoverV1", "Url": "https://m.example.com/x.xml"}


def check_profile(data: bytes) -> dict:
    """Apple's Configuration profile keys (Device Management "TopLevel": PayloadContent,
    PayloadIdentifier, PayloadType "Configuration", PayloadUUID, PayloadVersion 1,
    PayloadDisplayName) and Mail payload keys ("Mail": PayloadType com.apple.mail.managed,
    EmailAccountType, IncomingMailServerAuthentication, IncomingMailServerHostName,
    OutgoingMailServerAuthentication, OutgoingMailServerHostName)."""
    top = plistlib.loads(data)
    for key in ("PayloadContent", "PayloadIdentifier", "PayloadUUID", "PayloadDisplayName"):
        assert top.get(key), key
    assert (top["PayloadType"], top["PayloadVersion"]) == ("Configuration", 1)
    (mail,) = top["PayloadContent"]
    assert (mail["PayloadType"], mail["PayloadVersion"]) == ("com.apple.mail.managed", 1)
    for key in ("PayloadIdentifier", "PayloadUUID", "EmailAccountType",
                "IncomingMailServerAuthentication", "IncomingMailServerHostName",
                "OutgoingMailServerAuthentication", "OutgoingMailServerHostName"):
        assert mail.get(key), key
    assert mail["EmailAccountType"] in ("EmailTypeIMAP", "EmailTypePOP")
    assert "IncomingPassword" not in mail and "OutgoingPassword" not in mail
    return mail


def test_apple_profile_imap_and_pop3() -> None:
    s = mail_settings("mail.example.com", ALL)
    imap = check_profile(mobileconfig.profile(s, "bob@example.com"))
    assert (imap["EmailAccountType"], imap["IncomingMailServerPortNumber"],
            imap["IncomingMailServerUseSSL"], imap["OutgoingMailServerPortNumber"],
            imap["OutgoingMailServerUseSSL"], imap["IncomingMailServerUsername"]) == \
        ("EmailTypeIMAP", 993, True, 465, True, "bob@example.com")
    pop = check_profile(mobileconfig.profile(s, "bob@example.com", "pop3"))
    assert (pop["EmailAccountType"], pop["IncomingMailServerPortNumber"]) == \
        ("EmailTypePOP", 995)
    # Stable identifiers: installing again replaces the account.
    assert mobileconfig.profile(s, "bob@example.com") == mobileconfig.profile(
        s, "bob@example.com")
    plain = mail_settings("m.example.com", {"imap": HostPort("", 143),
                                            "submission": HostPort("", 587)})
    starttls = check_profile(mobileconfig.profile(plain, "bob@example.com"))
    assert (starttls["IncomingMailServerUseSSL"], starttls["OutgoingMailServerUseSSL"]) == \
        (False, False)
    with pytest.raises(mobileconfig.NoIncomingServer):
        mobileconfig.profile(plain, "bob@example.com", "pop3")


@pytest.mark.parametrize("host,domain", [
    ("mta-sts.example.com", "example.com"), ("MTA-STS.Example.COM:443", "example.com"),
    ("mta-sts.example.com.", "example.com"), ("example.com", None), ("mta-sts.", None),
    ("autoconfig.example.com", None), ("[::1]:443", None), ("", None),
])
def test_mta_sts_policy_host(host: str, domain: str | None) -> None:
    assert mtasts.policy_domain(host) == domain


def test_mta_sts_policy_text() -> None:
    """RFC 8461 §3.2: version first, CRLF line ends, mode, mx, max_age."""
    text = mtasts.policy_text("mail.example.com", "enforce", 604800)
    assert text == ("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
                    "max_age: 604800\r\n")
    pid = mtasts.policy_id(text)
    assert pid.isalnum() and 1 <= len(pid) <= 32
    assert mtasts.policy_id(mtasts.policy_text("mail.example.com", "testing", 604800)) != pid
