"""Apple configuration profiles (.mobileconfig) that set up a mail account on iOS and macOS.

Lives here: the profile for one address (a Configuration profile holding one
`com.apple.mail.managed` payload: IMAP or POP3 in, submission out, the full address as user
name, no password) and its CMS (PKCS #7) signature with the server's TLS certificate, made
with the `cryptography` package. Pure: settings and an address in, bytes out. Must never:
include a password, depend on whether the account exists, or read files (the caller hands in
the signing identity).
"""

from __future__ import annotations

import plistlib
import uuid
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs7

from casella.http.clientconfig import Endpoint, MailSettings

MIME_TYPE = "application/x-apple-aspen-config"
_NAMESPACE = uuid.UUID("0f6b3c1e-6a58-4c1b-9d5e-2f1c7a4b8e90")


class NoIncomingServer(Exception):
    """The requested incoming protocol has no listener on."""


@dataclass(frozen=True)
class SigningIdentity:
    """The TLS certificate (leaf first, then its intermediates) and its private key."""
    chain: tuple[x509.Certificate, ...]
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _identifier(hostname: str) -> str:
    return ".".join(reversed(hostname.split(".")))


def profile(settings: MailSettings, address: str, incoming: str = "imap") -> bytes:
    """The XML property list of the profile. `incoming` is "imap" or "pop3"; the preferred
    endpoint of that protocol (implicit TLS when on) and of submission are used. The UUIDs
    are derived from the server and the address, so installing it again replaces the
    account rather than adding a second one."""
    inbound: Endpoint | None = settings.preferred(incoming)
    outbound = settings.preferred("smtp")
    if inbound is None or outbound is None:
        raise NoIncomingServer(incoming)
    base = _identifier(settings.hostname)
    key = f"{settings.hostname}/{address}/{incoming}"
    account_uuid = str(uuid.uuid5(_NAMESPACE, key + "/account")).upper()
    profile_uuid = str(uuid.uuid5(_NAMESPACE, key + "/profile")).upper()
    kind = "IMAP" if incoming == "imap" else "POP3"
    mail: dict[str, Any] = {
        "PayloadType": "com.apple.mail.managed",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{base}.mail.{account_uuid}",
        "PayloadUUID": account_uuid,
        "PayloadDisplayName": f"{address} ({kind})",
        "EmailAccountDescription": address,
        "EmailAccountType": "EmailTypeIMAP" if incoming == "imap" else "EmailTypePOP",
        "EmailAddress": address,
        "IncomingMailServerAuthentication": "EmailAuthPassword",
        "IncomingMailServerHostName": settings.hostname,
        "IncomingMailServerPortNumber": inbound.port,
        # On a STARTTLS port Apple Mail upgrades the connection itself; "UseSSL" means TLS
        # from the first byte.
        "IncomingMailServerUseSSL": inbound.implicit_tls,
        "IncomingMailServerUsername": address,
        "OutgoingMailServerAuthentication": "EmailAuthPassword",
        "OutgoingMailServerHostName": settings.hostname,
        "OutgoingMailServerPortNumber": outbound.port,
        "OutgoingMailServerUseSSL": outbound.implicit_tls,
        "OutgoingMailServerUsername": address,
        "OutgoingPasswordSameAsIncomingPassword": True,
    }
    top: dict[str, Any] = {
        "PayloadType": "Configuration",
        "PayloadVersion": 1,
        "PayloadIdentifier": f"{base}.profile.{profile_uuid}",
        "PayloadUUID": profile_uuid,
        "PayloadDisplayName": f"Mail: {address}",
        "PayloadDescription": f"Sets up {address} ({kind}) on {settings.hostname}.",
        "PayloadOrganization": settings.hostname,
        "PayloadRemovalDisallowed": False,
        "PayloadContent": [mail],
    }
    return plistlib.dumps(top, fmt=plistlib.FMT_XML, sort_keys=True)


def is_self_signed(cert: x509.Certificate) -> bool:
    """Issued by itself: a device cannot trust its signature, so a profile is left unsigned
    rather than shown as signed by an unknown party."""
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def load_identity(chain_pem: bytes, key_pem: bytes) -> SigningIdentity | None:
    """The signing identity from the TLS certificate chain and key (PEM), or None when the
    certificate is self-signed or its key cannot sign CMS (only RSA and EC keys can)."""
    chain = tuple(x509.load_pem_x509_certificates(chain_pem))
    if not chain or is_self_signed(chain[0]):
        return None
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        return None
    return SigningIdentity(chain, key)


def sign(data: bytes, identity: SigningIdentity) -> bytes:
    """The profile wrapped in a CMS SignedData (DER), the content inside it, with the chain
    so the device can build the path to a root it trusts."""
    builder = pkcs7.PKCS7SignatureBuilder().set_data(data).add_signer(
        identity.chain[0], identity.key, hashes.SHA256())
    for cert in identity.chain[1:]:
        builder = builder.add_certificate(cert)
    return builder.sign(serialization.Encoding.DER, [])
