"""DKIM keys and signing for mail leaving casella (RFC 6376, Ed25519 per RFC 8463).

Lives here: `generate_keys` (an RSA-2048 and an Ed25519 key per domain and selector, written
0600 under the key directory), `load_keys`, `DkimKey.txt_record` / `dns_records` (what the
admin publishes), `signing_domain` (the From: domain a message is signed for, so DMARC aligns)
and `Signer` (dkimpy signing with both keys, relaxed/relaxed). Layout on disk:
`<key_dir>/<domain>/<selector>-rsa.key` (PEM), `<selector>-ed25519.key` (base64 seed, the form
dkimpy takes) and `current` (the selector in use). Must never: log or print a private key,
write a key readable by others, or sign for a domain whose key it does not hold. Signing is
CPU work: callers run `Signer.sign` off the event loop.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from casella.errors import AlreadyExists, InvalidName, NotFound, UserError
from casella.mail.addresses import normalize_domain

log = logging.getLogger("casella.dkim")

DEFAULT_SELECTOR = "casella"
ALGORITHMS = ("rsa", "ed25519")
_SELECTOR_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,40}[a-z0-9])?$")


@dataclass(frozen=True)
class DkimKey:
    domain: str
    selector: str            # the full selector, e.g. "casella-rsa"
    algorithm: str           # rsa | ed25519
    private: bytes           # PEM (rsa) or base64 seed (ed25519): what dkimpy takes
    public: str              # base64 of the p= value

    @property
    def txt_name(self) -> str:
        return f"{self.selector}._domainkey.{self.domain}"

    @property
    def txt_record(self) -> str:
        """The TXT record text (RFC 6376 §3.6.1; k=ed25519 per RFC 8463 §4.2)."""
        return f"v=DKIM1; k={self.algorithm}; p={self.public}"

    @property
    def signature_algorithm(self) -> bytes:
        return b"rsa-sha256" if self.algorithm == "rsa" else b"ed25519-sha256"


def _selector(base: str) -> str:
    s = base.strip().lower()
    if not _SELECTOR_RE.match(s):
        raise UserError(f"bad selector {base!r}: use letters, digits and '-' (at most 42)")
    return s


def _domain_dir(key_dir: Path, domain: str) -> Path:
    try:
        return key_dir / normalize_domain(domain)
    except InvalidName as exc:
        raise UserError(str(exc)) from None


def _write_private(path: Path, data: bytes) -> None:
    """0600 from the start, fsynced, renamed into place (never a partial key)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def generate_keys(key_dir: Path, domain: str, selector: str = DEFAULT_SELECTOR) -> list[DkimKey]:
    """Create `<selector>-rsa` (2048 bits) and `<selector>-ed25519` for the domain and make
    them the ones in use. AlreadyExists when that selector was generated before."""
    base = _selector(selector)
    ddir = _domain_dir(key_dir, domain)
    ddir.mkdir(parents=True, exist_ok=True, mode=0o700)
    rsa_path = ddir / f"{base}-rsa.key"
    ed_path = ddir / f"{base}-ed25519.key"
    if rsa_path.exists() or ed_path.exists():
        raise AlreadyExists(f"DKIM selector {base} already exists for {ddir.name}; "
                            "choose another --selector to rotate keys")
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_pem = rsa_key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.TraditionalOpenSSL,
                                    serialization.NoEncryption())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_seed = ed_key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                   serialization.NoEncryption())
    _write_private(rsa_path, rsa_pem)
    _write_private(ed_path, base64.b64encode(ed_seed) + b"\n")
    _write_private(ddir / "current", base.encode() + b"\n")
    return load_keys(key_dir, ddir.name)


def _public_rsa(pem: bytes) -> str:
    key = serialization.load_pem_private_key(pem, password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def _public_ed25519(seed_b64: bytes) -> str:
    key = ed25519.Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed_b64))
    raw = key.public_key().public_bytes(serialization.Encoding.Raw,
                                        serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def load_keys(key_dir: Path, domain: str) -> list[DkimKey]:
    """The keys in use for `domain` (empty when none were generated)."""
    ddir = _domain_dir(key_dir, domain)
    try:
        base = (ddir / "current").read_text().strip()
    except FileNotFoundError:
        return []
    keys = []
    for algorithm in ALGORITHMS:
        path = ddir / f"{base}-{algorithm}.key"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            continue
        public = _public_rsa(data) if algorithm == "rsa" else _public_ed25519(data.strip())
        keys.append(DkimKey(ddir.name, f"{base}-{algorithm}", algorithm,
                            data if algorithm == "rsa" else data.strip(), public))
    return keys


def dns_records(keys: list[DkimKey]) -> list[str]:
    """Zone-file lines; TXT text longer than 255 octets is split into several
    character-strings (RFC 1035 §3.3.14, RFC 6376 §3.6.2.2)."""
    out = []
    for k in keys:
        text = k.txt_record
        chunks = [text[i:i + 255] for i in range(0, len(text), 255)]
        quoted = " ".join(f'"{c}"' for c in chunks)
        out.append(f"{k.txt_name}. IN TXT ( {quoted} )" if len(chunks) > 1
                   else f"{k.txt_name}. IN TXT {quoted}")
    return out


def signing_domain(message: bytes) -> str | None:
    """The domain of the (first) From: address, lower case; None when there is none."""
    from casella.smtp.delivery import from_addresses

    end = message.find(b"\r\n\r\n")
    header = message[: end + 2] if end >= 0 else message
    addresses = from_addresses(header)
    if not addresses:
        return None
    try:
        return normalize_domain(addresses[0].rsplit("@", 1)[1])
    except (InvalidName, IndexError):
        return None


class Signer:
    """Signs with the keys of the From: domain when the key directory has them. Keys are
    re-read when the domain's `current` file changes, so `casella dkim generate` takes effect
    without a restart."""

    def __init__(self, key_dir: Path) -> None:
        self.key_dir = key_dir
        self._cache: dict[str, tuple[float, list[DkimKey]]] = {}
        self._lock = threading.Lock()

    def keys_for(self, domain: str) -> list[DkimKey]:
        path = self.key_dir / domain / "current"
        try:
            mtime = path.stat().st_mtime
        except (FileNotFoundError, NotADirectoryError):
            return []
        with self._lock:
            cached = self._cache.get(domain)
            if cached is not None and cached[0] == mtime:
                return cached[1]
        try:
            keys = load_keys(self.key_dir, domain)
        except (OSError, ValueError, UserError) as exc:
            log.error("DKIM keys of %s cannot be loaded: %s", domain, exc)
            keys = []
        with self._lock:
            self._cache[domain] = (mtime, keys)
        return keys

    def sign(self, message: bytes) -> bytes:
        """The DKIM-Signature header fields to prepend (b"" when not signing). Blocking."""
        import dkim

        domain = signing_domain(message)
        if domain is None:
            return b""
        out = []
        for key in self.keys_for(domain):
            try:
                out.append(dkim.sign(message, key.selector.encode(), domain.encode(),
                                     key.private, canonicalize=(b"relaxed", b"relaxed"),
                                     signature_algorithm=key.signature_algorithm))
            except dkim.DKIMException as exc:
                log.error("DKIM signing for %s with %s failed: %s", domain, key.selector, exc)
        return b"".join(out)


def find_keys_or_fail(key_dir: Path, domain: str) -> list[DkimKey]:
    keys = load_keys(key_dir, domain)
    if not keys:
        raise NotFound(f"no DKIM key for {domain}; create one with casella dkim generate")
    return keys
