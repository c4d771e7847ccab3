"""TLS for every listener: the server context, and a self-signed certificate when none is set.

Lives here: building the one server `SSLContext` (TLS 1.2 and 1.3 only) from `[tls]`, and
generating a self-signed certificate into data_dir with the `cryptography` package. Must never:
accept TLS below 1.2, or read anything but the configured certificate and key.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from pathlib import Path

from casella.config import Config
from casella.errors import ConfigError


def ensure_self_signed(cert_path: Path, key_path: Path, hostname: str) -> bool:
    """Write a self-signed certificate for `hostname` (plus localhost and 127.0.0.1) unless both
    files exist. Returns True when it created them."""
    if cert_path.exists() and key_path.exists():
        return False
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt_names: list[x509.GeneralName] = [x509.DNSName(hostname), x509.DNSName("localhost"),
                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    key_bytes = key.private_bytes(serialization.Encoding.PEM,
                                  serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    tmp_key = key_path.with_suffix(".tmp")
    fd = os.open(tmp_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key_bytes)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp_key, key_path)
    tmp_cert = cert_path.with_suffix(".tmp")
    with open(tmp_cert, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp_cert, cert_path)
    return True


def server_context(config: Config) -> ssl.SSLContext:
    """The TLS context every listener uses; generates a self-signed pair when [tls] is unset."""
    cert, key = config.tls_cert_path, config.tls_key_path
    if config.tls.cert is None:
        ensure_self_signed(cert, key, config.hostname)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    try:
        ctx.load_cert_chain(str(cert), str(key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"tls.cert = {str(cert)!r}: cannot load certificate and key: "
                          f"{getattr(exc, 'strerror', None) or exc}")
    return ctx


def certificate_files(config: Config) -> tuple[bytes, bytes]:
    """The PEM bytes of the certificate chain and key the listeners use (what signs Apple
    configuration profiles); ConfigError when they cannot be read."""
    cert, key = config.tls_cert_path, config.tls_key_path
    try:
        return cert.read_bytes(), key.read_bytes()
    except OSError as exc:
        raise ConfigError(f"tls.cert = {str(cert)!r}: cannot load certificate and key: "
                          f"{exc.strerror or exc}")


def client_context_for_tests(cafile: Path) -> ssl.SSLContext:
    """A client context that trusts one certificate (the generated one), for tests and tools."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.check_hostname = False
    return ctx
