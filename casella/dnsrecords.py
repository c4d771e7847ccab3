"""The DNS records a hosted domain publishes, and the check that they are published.

Lives here: `records` (MX, SPF, DKIM from the domain's generated keys, DMARC, the autoconfig
and autodiscover names, the RFC 6186/8314 SRV records, MTA-STS and TLS-RPT) built from the
config, `zone_text` (zone-file syntax), `mta_sts_policy` and `mta_sts_id` (the policy the
HTTPS listener serves at https://mta-sts.DOMAIN/.well-known/mta-sts.txt, as casella.http.mtasts
writes it, and the id of its TXT record), `compare` (one published answer against one expected record: OK, missing or different; pure,
table-tested) and `check` (asks the DNS with dnspython). Sits above casella.smtp (it reads the
DKIM keys) and below the CLI. Must never: print a private key, or ask any server but the
configured resolvers (`[dns] resolver`) or the system's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from casella.config import Config
from casella.http import mtasts
from casella.smtp.dkim import DkimKey

TTL = 3600                    # written on every line, so the lines stand without a $TTL

# RFC 6186 §3 and RFC 8314 §5.1: service, listener, implicit TLS. Implicit TLS comes first
# (a lower priority number) because RFC 8314 prefers it.
SRV_SERVICES: tuple[tuple[str, str, bool], ...] = (
    ("_submissions._tcp", "submissions", True),
    ("_submission._tcp", "submission", False),
    ("_imaps._tcp", "imaps", True),
    ("_imap._tcp", "imap", False),
    ("_pop3s._tcp", "pop3s", True),
    ("_pop3._tcp", "pop3", False),
)

OK = "OK"
MISSING = "missing"
DIFFERENT = "different"
UNRESOLVED = "unresolved"


@dataclass(frozen=True)
class Record:
    label: str        # what it is for, as --check names it ("MX", "SPF", "DKIM casella-rsa")
    name: str         # owner name, absolute, without the final dot
    rtype: str        # MX, TXT, CNAME, SRV
    value: str        # MX/CNAME/SRV: the rdata as a zone file writes it; TXT: the text itself


@dataclass(frozen=True)
class Result:
    record: Record
    status: str       # OK, MISSING, DIFFERENT or UNRESOLVED
    found: str = ""   # what the DNS has, when it differs (or why it could not be asked)


def mta_sts_policy(config: Config) -> str:
    """The MTA-STS policy file the HTTPS listener serves (casella.http.mtasts)."""
    http = config.http
    return mtasts.policy_text(config.hostname, http.mta_sts_mode, http.mta_sts_max_age)


def mta_sts_id(config: Config) -> str:
    """The id of the `_mta-sts` record: it changes exactly when the policy does, so senders
    fetch the new one (RFC 8461 §3.1)."""
    return mtasts.policy_id(mta_sts_policy(config))


def records(config: Config, domain: str, dkim_keys: Sequence[DkimKey]) -> list[Record]:
    host = config.hostname.lower().rstrip(".")
    report = f"mailto:postmaster@{domain}"
    out = [Record("MX", domain, "MX", f"10 {host}."),
           Record("SPF", domain, "TXT", "v=spf1 mx ~all")]
    for key in dkim_keys:
        out.append(Record(f"DKIM {key.selector}", key.txt_name, "TXT", key.txt_record))
    out += [
        Record("DMARC", f"_dmarc.{domain}", "TXT", f"v=DMARC1; p=quarantine; rua={report}"),
        Record("autoconfig", f"autoconfig.{domain}", "CNAME", f"{host}."),
        Record("autodiscover", f"autodiscover.{domain}", "CNAME", f"{host}."),
    ]
    for service, listener, tls in SRV_SERVICES:
        address = config.listen.get(listener)
        # RFC 6186 §4: a target of "." says the service is not offered at this domain.
        value = f"{0 if tls else 10} 1 {address.port} {host}." if address else "0 0 0 ."
        out.append(Record(f"SRV {service.split('.')[0]}", f"{service}.{domain}", "SRV", value))
    https = config.listen.get("https")
    if https is not None:
        # Outlook looks this SRV record up when autodiscover.<domain> does not answer.
        out.append(Record("SRV _autodiscover", f"_autodiscover._tcp.{domain}", "SRV",
                          f"0 1 {https.port} {host}."))
    out += [
        Record("MTA-STS", f"_mta-sts.{domain}", "TXT", f"v=STSv1; id={mta_sts_id(config)}"),
        Record("MTA-STS host", f"mta-sts.{domain}", "CNAME", f"{host}."),
        Record("TLS-RPT", f"_smtp._tls.{domain}", "TXT", f"v=TLSRPTv1; rua={report}"),
    ]
    return out


def _quoted(text: str) -> str:
    """TXT text as character-strings of at most 255 octets (RFC 1035 §3.3.14)."""
    chunks = [text[i:i + 255] for i in range(0, len(text), 255)] or [""]
    quoted = " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)
    return f"( {quoted} )" if len(chunks) > 1 else quoted


def zone_line(record: Record) -> str:
    value = _quoted(record.value) if record.rtype == "TXT" else record.value
    return f"{record.name + '.':<40} {TTL} IN {record.rtype:<5} {value}"


def zone_text(config: Config, domain: str, recs: Sequence[Record]) -> str:
    host = config.hostname.lower()
    lines = [f"; DNS records for {domain} (check them with: casella dns {domain} --check)",
             f"; {host} itself needs A and/or AAAA records pointing at this server."]
    if not any(r.label.startswith("DKIM") for r in recs):
        lines.append(f"; DKIM: no key yet. Run `casella dkim generate {domain}`, then publish "
                     "the records printed here.")
    lines += [zone_line(r) for r in recs]
    lines.append(f"; MTA-STS policy, served at https://mta-sts.{domain}/.well-known/"
                 f"mta-sts.txt (the certificate must cover mta-sts.{domain}):")
    lines += [f";   {line}" for line in mta_sts_policy(config).splitlines()]
    return "\n".join(lines) + "\n"


# --- comparing -------------------------------------------------------------------------------

def _tags(text: str) -> dict[str, str]:
    """tag=value pairs of a DKIM/DMARC/MTA-STS/TLS-RPT record, whitespace removed."""
    out = {}
    for part in text.split(";"):
        key, sep, value = part.partition("=")
        if sep:
            out[key.strip().lower()] = "".join(value.split())
    return out


def _txt_kind(text: str) -> str:
    """The record kind a TXT text claims by its version tag ("v=spf1", "v=DKIM1" ...)."""
    first = text.strip().split(";", 1)[0].split(" ", 1)[0].replace(" ", "")
    return first.lower() if first.lower().startswith("v=") else ""


def _txt_equal(expected: Record, found: str) -> bool:
    if expected.label == "SPF":
        return found.split() == expected.value.split()
    want, have = _tags(expected.value), _tags(found)
    if expected.label.startswith("DKIM"):
        # k= defaults to rsa (RFC 6376 §3.6.1); p= is what matters.
        return have.get("p") == want["p"] and have.get("k", "rsa") == want["k"]
    if expected.label == "MTA-STS":
        return have.get("id") == want["id"]
    return have == want


def _name(text: str) -> str:
    return text.lower().rstrip(".") or "."


def compare(expected: Record, answers: Sequence[str] | None) -> Result:
    """Compare what the DNS answered for (name, type) with the expected record. `answers`:
    the rdata of each answer (TXT: its strings joined), None when the name or type has none."""
    if expected.rtype == "TXT":
        # At the apex other TXT records sit beside SPF (site verifications...): only the one
        # saying v=spf1 counts. The other names are ours alone (and DKIM's v= is optional).
        kind = _txt_kind(expected.value)
        candidates = [a for a in answers or () if expected.label != "SPF" or
                      _txt_kind(a) == kind]
        if not candidates:
            return Result(expected, MISSING)
        if any(_txt_equal(expected, a) for a in candidates):
            return Result(expected, OK)
        return Result(expected, DIFFERENT, " | ".join(candidates))
    if not answers:
        return Result(expected, MISSING)
    if expected.rtype == "MX":
        want = _name(expected.value.split()[-1])
        ok = any(_name(a.split()[-1]) == want for a in answers if len(a.split()) == 2)
    elif expected.rtype == "SRV":
        want_port, want_target = expected.value.split()[2:4]
        ok = any(a.split()[2:3] == [want_port] and _name(a.split()[-1]) == _name(want_target)
                 for a in answers if len(a.split()) == 4)
    else:
        ok = any(_name(a) == _name(expected.value) for a in answers)
    return Result(expected, OK) if ok else Result(expected, DIFFERENT, " | ".join(answers))


# --- asking the DNS --------------------------------------------------------------------------

Lookup = Callable[[str, str], "list[str] | None"]


def dns_lookup(config: Config) -> Lookup:
    """A lookup through dnspython: the servers of `[dns] resolver`, else the system's.
    Raises LookupError (a sentence) when the DNS cannot be asked."""
    import dns.exception
    import dns.nameserver
    import dns.resolver

    if config.dns.resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [dns.nameserver.Do53Nameserver(ip, port)
                                for ip, port in config.dns.resolver]
    else:
        try:
            resolver = dns.resolver.Resolver()
        except dns.resolver.NoResolverConfiguration:
            raise LookupError("no name server is configured on this machine; set "
                              "[dns] resolver") from None
    resolver.timeout = 2.0
    resolver.lifetime = 5.0

    def lookup(name: str, rtype: str) -> list[str] | None:
        try:
            answer = resolver.resolve(name + ".", rtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return None
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise LookupError(f"no answer for {name} {rtype}: {exc.__class__.__name__}") \
                from None
        if answer.rrset is None:
            return None
        if rtype == "TXT":
            return [b"".join(r.strings).decode("utf-8", "replace") for r in answer.rrset]
        return [r.to_text() for r in answer.rrset]
    return lookup


def check(config: Config, domain: str, recs: Sequence[Record],
          lookup: Lookup) -> list[Result]:
    """Each record against the DNS, and the mail host's own address records. LookupError
    when the DNS does not answer the first question."""
    host = config.hostname.lower()
    addresses: list[str] = []
    # The first question: when the DNS cannot be asked at all, LookupError goes to the
    # caller at once rather than after a timeout per record.
    for rtype in ("A", "AAAA"):
        addresses += lookup(host, rtype) or []
    results = [Result(Record("host address", host, "A/AAAA", "this server"),
                      OK if addresses else MISSING)]
    for rec in recs:
        try:
            result = compare(rec, lookup(rec.name, rec.rtype))
            if rec.rtype == "CNAME" and result.status == MISSING and addresses:
                # Address records with the mail host's very addresses do the same job.
                own = [a for t in ("A", "AAAA") for a in lookup(rec.name, t) or []]
                if own and sorted(own) == sorted(addresses):
                    result = Result(rec, OK)
            results.append(result)
        except LookupError as exc:
            results.append(Result(rec, UNRESOLVED, str(exc)))
    if not any(r.label.startswith("DKIM") for r in recs):
        results.append(Result(Record("DKIM", f"*._domainkey.{domain}", "TXT",
                                     f"no key yet: run casella dkim generate {domain}"),
                              MISSING))
    return results
