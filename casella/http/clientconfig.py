"""Mail-client autoconfiguration documents: what to connect to, as each client family asks.

Lives here: `MailSettings` (the server name and the IMAP, POP3 and submission endpoints that are
listening), built from the bound listeners; the Thunderbird autoconfig document (Mozilla's
config-v1.1 format); the Outlook autodiscover POX request parser and its response and error
documents (the "outlook/responseschema/2006a" schema); the autodiscover JSON v1.0 answer. Pure:
text or bytes in, a document or a typed error out. Must never: import aiohttp, the store or
the config loader, look at whether an account exists (the answer for every local part of a
hosted domain is the same), or parse XML with entities or a DTD.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass

import defusedxml.ElementTree as SafeET
from defusedxml import DefusedXmlException

from casella.config import HostPort

# Listener name -> (protocol, security) in the order clients should prefer them: implicit TLS
# first (RFC 8314 §3.3 prefers it over STARTTLS for IMAP, POP3 and submission).
LISTENER_ENDPOINTS: tuple[tuple[str, str, str], ...] = (
    ("imaps", "imap", "tls"),
    ("imap", "imap", "starttls"),
    ("pop3s", "pop3", "tls"),
    ("pop3", "pop3", "starttls"),
    ("submissions", "smtp", "tls"),
    ("submission", "smtp", "starttls"),
)


@dataclass(frozen=True, slots=True)
class Endpoint:
    protocol: str      # imap, pop3 or smtp (submission)
    port: int
    security: str      # "tls" (implicit TLS) or "starttls"

    @property
    def implicit_tls(self) -> bool:
        return self.security == "tls"


@dataclass(frozen=True, slots=True)
class MailSettings:
    hostname: str
    endpoints: tuple[Endpoint, ...]

    def of(self, protocol: str) -> list[Endpoint]:
        """The endpoints of one protocol, preferred first."""
        return [e for e in self.endpoints if e.protocol == protocol]

    def preferred(self, protocol: str) -> Endpoint | None:
        found = self.of(protocol)
        return found[0] if found else None


def mail_settings(hostname: str, bound: Mapping[str, HostPort]) -> MailSettings:
    """The endpoints of the listeners that are on; a listener that is off is not offered."""
    return MailSettings(hostname, tuple(
        Endpoint(protocol, bound[name].port, security)
        for name, protocol, security in LISTENER_ENDPOINTS if name in bound))


def _xml(root: ET.Element) -> bytes:
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    el = ET.SubElement(parent, tag, attrs)
    if text is not None:
        el.text = text
    return el


# --- Thunderbird ------------------------------------------------------------------------------

def thunderbird_config(settings: MailSettings, domain: str) -> bytes:
    """Mozilla's autoconfig file format (wiki.mozilla.org/Thunderbird:Autoconfiguration:
    ConfigFileFormat): clientConfig/emailProvider with its domain, names and one server
    element per endpoint; the user name is the full address."""
    root = ET.Element("clientConfig", {"version": "1.1"})
    provider = _sub(root, "emailProvider", id=domain)
    _sub(provider, "domain", domain)
    _sub(provider, "displayName", f"{domain} mail")
    _sub(provider, "displayShortName", domain)
    for e in settings.endpoints:
        tag = "outgoingServer" if e.protocol == "smtp" else "incomingServer"
        server = _sub(provider, tag, type=e.protocol)
        _sub(server, "hostname", settings.hostname)
        _sub(server, "port", str(e.port))
        _sub(server, "socketType", "SSL" if e.implicit_tls else "STARTTLS")
        _sub(server, "authentication", "password-cleartext")
        _sub(server, "username", "%EMAILADDRESS%")
        if e.protocol == "pop3":
            # "Leave a copy on the server" is the safe default: the customer's other devices
            # (or IMAP) still see the mail; the POP3 policy on the server decides the rest.
            pop3 = _sub(server, "pop3")
            _sub(pop3, "leaveMessagesOnServer", "true")
    return _xml(root)


# --- Outlook autodiscover (POX) ----------------------------------------------------------------

POX_REQUEST_NS = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
POX_RESPONSE_NS = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
OUTLOOK_RESPONSE_NS = \
    "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
MAX_POX_REQUEST = 16 * 1024


class AutodiscoverError(Exception):
    """A request the autodiscover service cannot answer. The message is fixed text, never
    anything taken from the request."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class PoxRequest:
    email: str
    response_schema: str


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def parse_pox_request(body: bytes) -> PoxRequest:
    """The request of the POX protocol: Autodiscover/Request/(EMailAddress,
    AcceptableResponseSchema). Parsed without DTDs or entities (defusedxml); namespaces are
    not insisted on, since clients differ. AutodiscoverError(600) for anything malformed."""
    if len(body) > MAX_POX_REQUEST:
        raise AutodiscoverError(600, "Invalid Request")
    try:
        root = SafeET.fromstring(body, forbid_dtd=True, forbid_entities=True,
                                 forbid_external=True)
    except (ET.ParseError, DefusedXmlException, ValueError, UnicodeError):
        raise AutodiscoverError(600, "Invalid Request") from None
    if _local(root.tag) != "Autodiscover":
        raise AutodiscoverError(600, "Invalid Request")
    request = next((c for c in root if _local(c.tag) == "Request"), None)
    if request is None:
        raise AutodiscoverError(600, "Invalid Request")
    fields = {_local(c.tag): (c.text or "").strip() for c in request}
    email = fields.get("EMailAddress", "")
    if not email:
        raise AutodiscoverError(600, "Invalid Request")
    return PoxRequest(email, fields.get("AcceptableResponseSchema", OUTLOOK_RESPONSE_NS))


def pox_response(settings: MailSettings, email: str) -> bytes:
    """Autodiscover/Response/Account with AccountType "email", Action "settings" and one
    Protocol per endpoint (Type, Server, Port, DomainRequired, LoginName, SPA, SSL,
    AuthRequired, and Encryption, which names STARTTLS as "TLS")."""
    root = ET.Element("Autodiscover", {"xmlns": POX_RESPONSE_NS})
    response = _sub(root, "Response", xmlns=OUTLOOK_RESPONSE_NS)
    account = _sub(response, "Account")
    _sub(account, "AccountType", "email")
    _sub(account, "Action", "settings")
    names = {"imap": "IMAP", "pop3": "POP3", "smtp": "SMTP"}
    for e in settings.endpoints:
        proto = _sub(account, "Protocol")
        _sub(proto, "Type", names[e.protocol])
        _sub(proto, "Server", settings.hostname)
        _sub(proto, "Port", str(e.port))
        _sub(proto, "DomainRequired", "off")
        _sub(proto, "LoginName", email)
        _sub(proto, "SPA", "off")
        _sub(proto, "SSL", "on")
        _sub(proto, "AuthRequired", "on")
        _sub(proto, "Encryption", "SSL" if e.implicit_tls else "TLS")
    return _xml(root)


def pox_error(error: AutodiscoverError, when: str, request_id: str) -> bytes:
    """Autodiscover/Response/Error (Time and Id attributes; ErrorCode, Message, DebugData)."""
    root = ET.Element("Autodiscover", {"xmlns": POX_RESPONSE_NS})
    response = _sub(root, "Response")
    err = _sub(response, "Error", Time=when, Id=request_id)
    _sub(err, "ErrorCode", str(error.code))
    _sub(err, "Message", error.message)
    _sub(err, "DebugData", "")
    return _xml(root)


# --- autodiscover JSON (v1.0) -------------------------------------------------------------------

def autodiscover_json(protocol: str, xml_url: str) -> tuple[int, dict[str, str]]:
    """The JSON protocol's answer (status, body): only "AutodiscoverV1", which points Outlook
    at the POX service; any other protocol (EWS, ActiveSync, …) is not served here, and the
    client falls back to AutodiscoverV1."""
    if protocol.lower() == "autodiscoverv1":
        return 200, {"Protocol": "AutodiscoverV1", "Url": xml_url}
    if not protocol:
        return 400, {"ErrorCode": "MandatoryParameterMissing",
                     "ErrorMessage": "A valid value must be provided for the query parameter "
                                     "'Protocol'."}
    return 400, {"ErrorCode": "InvalidProtocol",
                 "ErrorMessage": "The given protocol value is invalid. Supported values are "
                                 "'AutodiscoverV1'."}
