"""The configuration file: one TOML file loaded into frozen, typed objects with defaults.

Lives here: the schema of DESIGN.md, size and address parsing, and the one-line errors that stop
start-up (naming the key and the value). Must never: open sockets, touch the store, or read any
file other than the config file itself.
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from casella.config_delivery import (
    ForwardingConfig,
    ManageSieveConfig,
    SieveConfig,
    SrsConfig,
    delivery_sections,
)
from casella.errors import ConfigError

LISTENER_NAMES = ("smtp", "submission", "submissions", "imap", "imaps", "pop3", "pop3s", "http",
                  "https", "managesieve")

DEV_LISTEN: dict[str, str] = {
    "smtp": "127.0.0.1:2525",
    "submission": "127.0.0.1:2587",
    "submissions": "127.0.0.1:2465",
    "imap": "127.0.0.1:2143",
    "imaps": "127.0.0.1:2993",
    "pop3": "127.0.0.1:2110",
    "pop3s": "127.0.0.1:2995",
    "http": "127.0.0.1:8080",
    "https": "127.0.0.1:8443",
    "managesieve": "127.0.0.1:4190",
}

_SIZE_RE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(I?B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(value: object) -> int:
    """Parse `512K`, `50M`, `1G` or a plain byte count into bytes; raise ValueError otherwise."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"not a size: {value!r}")
        return value
    if not isinstance(value, str):
        raise ValueError(f"not a size: {value!r}")
    m = _SIZE_RE.match(value)
    if not m:
        raise ValueError(f"not a size: {value!r}")
    return int(m.group(1)) * _SIZE_UNITS[m.group(2).upper()]


def format_size(n: int) -> str:
    """Render a byte count the way an admin writes it (1G, 512M, 1536K, 1000)."""
    for unit in ("T", "G", "M", "K"):
        mult = _SIZE_UNITS[unit]
        if n >= mult and n % mult == 0:
            return f"{n // mult}{unit}"
    return str(n)


def human_size(n: int) -> str:
    """A byte count for people to read (574 bytes, 1.5 MB, 1.0 GB: units of 1024), as the
    customer page, the quota warnings and the admin CLI all show sizes."""
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB"):
        if size < 1024:
            return f"{n} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_hostport(value: object) -> HostPort:
    """Parse `host:port` or `[v6]:port`; raise ValueError on anything else."""
    if not isinstance(value, str):
        raise ValueError(f"not host:port: {value!r}")
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})", value) or re.fullmatch(
        r"([A-Za-z0-9.\-]+|\*):(\d{1,5})", value
    )
    if not m:
        raise ValueError(f"not host:port: {value!r}")
    port = int(m.group(2))
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {value!r}")
    host = m.group(1)
    return HostPort("" if host == "*" else host, port)


@dataclass(frozen=True)
class ProxyProtocolConfig:
    """[listen] proxy_protocol_from / proxy_protocol_timeout (issue 19): connections from
    these networks must start with a PROXY protocol header (v1 or v2) naming the real client;
    connections from elsewhere are never parsed for one."""
    trusted: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    timeout: float = 5.0                  # seconds for the header to arrive


@dataclass(frozen=True)
class TLSConfig:
    cert: Path | None = None
    key: Path | None = None


@dataclass(frozen=True)
class AuthConfig:
    allow_plaintext_without_tls: bool = False
    failure_delay: float = 2.0            # seconds before answering the first failed login
    max_failure_delay: float = 15.0       # the delay doubles per failure up to this
    block_after: int = 10                 # failures from one IP within block_window: blocked
    block_window: int = 900               # seconds
    block_duration: int = 900             # seconds an IP stays blocked
    verified_cache_ttl: int = 300         # seconds a right password is remembered (0: never)


@dataclass(frozen=True)
class StoreConfig:
    backend: str = "sqlite"
    dsn: str = ""
    # Giving the space of deleted mail back to the file system, online (issue 21).
    vacuum_threshold: int = 16 * 1024**2   # start once this much of the database is free
    vacuum_step_pages: int = 256           # pages per step (0: never online)
    vacuum_interval: float = 0.1           # seconds between two steps while giving back
    vacuum_check_interval: float = 60.0    # seconds between looks at the free space
    # The full-text search index (issue 21): SEARCH TEXT/BODY from FTS5 trigrams, at a cost
    # on every write; off, SEARCH reads the messages (as Dovecot without an FTS plugin).
    search_index: bool = False


@dataclass(frozen=True)
class LimitsConfig:
    default_quota: int = 1024**3
    max_message_size: int = 50 * 1024**2
    messages_per_hour: int = 180
    defers_failures_per_hour: int = 5
    defers_failures_percent: int = 55
    max_connections: int = 5000           # open connections per process, all listeners
    max_connections_per_ip: int = 50      # from one client address, all listeners and workers


@dataclass(frozen=True)
class Pop3Config:
    delete: str = "expunge"
    expire_days: int = 0
    login_timeout: int = 60               # seconds to log in after connecting
    idle_timeout: int = 600               # RFC 1939 §3: at least 10 minutes
    line_timeout: int = 60                # a started command line must end within this
    max_bad_commands: int = 20            # per connection, then the connection is closed


@dataclass(frozen=True)
class ImapConfig:
    login_timeout: int = 60               # seconds to log in after connecting
    idle_timeout: int = 1800              # RFC 9051 §5.4 autologout: at least 30 minutes
    line_timeout: int = 60                # a started command line must end within this
    max_connections_per_user_ip: int = 10  # like Dovecot's mail_max_userip_connections
    max_bad_commands: int = 20            # in a row, then BYE
    max_commands_without_progress: int = 1000  # e.g. NOOPs with nothing changing, then BYE
    literal_minus: bool = False           # advertise LITERAL- instead of LITERAL+ (RFC 7888 §5)


_QUOTA_BODY = (
    "Your mailbox {address} is now {percent}% full: {used} of {limit} are used.\r\n\r\n"
    "When it is full, new mail to you will be refused. Delete old messages (and empty the\r\n"
    "Trash) to make room.\r\n")


@dataclass(frozen=True)
class QuotaConfig:
    """Quota warnings (issue 9): one message into INBOX per threshold (80 %, 95 %) crossed
    upwards. Placeholders: {percent} {address} {used} {limit}."""
    warning_from: str = ""                # "" = postmaster@<hostname>
    warning_subject: str = "Your mailbox is {percent}% full"
    warning_body: str = _QUOTA_BODY


@dataclass(frozen=True)
class SmtpConfig:
    command_timeout: int = 300            # RFC 5321 §4.5.3.2: 5 minutes per command
    line_timeout: int = 60                # a started command line must end within this
    data_timeout: int = 600               # the whole DATA/BDAT transfer
    max_recipients: int = 100             # per message (452 4.5.3 beyond)
    max_auth_failures: int = 3            # per connection, then 421
    max_bad_commands: int = 20            # protocol errors (500-504, 555) per connection: 421
    max_commands_without_progress: int = 100  # NOOP, RSET, VRFY, HELP… between messages: 421


@dataclass(frozen=True)
class DeliveryConfig:
    routes: Mapping[str, HostPort] = field(default_factory=dict)
    # Outbound queue (issue 6): AUTH for routed smarthosts, the retry schedule, notices.
    route_auth: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    retry_initial: int = 5 * 60             # first retry after 5m, doubling each time ...
    retry_max: int = 4 * 3600               # ... capped at 4h
    give_up_after: int = 5 * 86400          # then a bounce after 5 days in the queue
    delay_notice_after: int = 4 * 3600      # one "still trying" notice after 4h
    concurrency: int = 20                   # connections delivering at once


@dataclass(frozen=True)
class DkimConfig:
    key_dir: Path | None = None             # None: data_dir/dkim
    sign: bool = True


@dataclass(frozen=True)
class InboundConfig:
    checks: bool = True                     # SPF, DKIM, DMARC on the MX listener


MTA_STS_MODES = ("enforce", "testing", "none")


# Issue 18: who may use /api and /metrics unless `[http] admin_from` says otherwise.
_LOOPBACK_NETS = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


@dataclass(frozen=True)
class HttpConfig:
    """The web listeners (`http`, `https`: casella.http)."""
    max_body_size: int = 1024**2          # request bodies above this get 413
    request_timeout: int = 30             # seconds to send a request's headers, then its body
    session_lifetime: int = 8 * 3600      # a customer stays logged in this long
    mta_sts_mode: str = "enforce"         # RFC 8461 §3.2: enforce, testing or none
    mta_sts_max_age: int = 7 * 86400      # seconds senders cache the MTA-STS policy
    # the clients that may use /api and /metrics (by the TCP peer's address)
    admin_from: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = _LOOPBACK_NETS


@dataclass(frozen=True)
class SpamConfig:
    """Spam filtering with Rspamd (issue 20, casella.delivery.spam)."""
    rspamd: str = ""                        # the normal worker's URL; "" = no spam check
    timeout: float = 15.0                   # seconds for one check: connect, send, answer
    connect_timeout: float = 5.0            # seconds to connect (within `timeout`)
    on_error: str = "accept"                # Rspamd down, slow or talking garbage: or tempfail
    check_submission: bool = False          # scan what our own users send too
    max_size: int = 50 * 1024**2            # bigger messages are not scanned (Rspamd's own)
    max_reply_size: int = 1024**2           # a longer answer is garbage
    controller: str = ""                    # the controller worker's URL; "" = no learning
    controller_password: str = ""
    learn_concurrency: int = 2              # learn requests in flight per process
    learn_backlog: int = 1000               # messages waiting to be learnt; more are skipped


@dataclass(frozen=True)
class ServerConfig:
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)  # processes
    shutdown_grace_seconds: float = 5.0
    user: str = ""                        # started as root: run as this user after binding
    allow_root: bool = False              # keep running as root (not recommended)
    event_loop: str = "auto"              # auto (uvloop when installed), uvloop, asyncio


@dataclass(frozen=True)
class DnsConfig:
    """`casella dns --check` (issue 18): the name servers it asks (none: the system's)."""
    resolver: tuple[tuple[str, int], ...] = ()


@dataclass(frozen=True)
class Config:
    hostname: str = "localhost"
    data_dir: Path = Path("var")
    listen: Mapping[str, HostPort] = field(default_factory=dict)
    proxy_protocol: ProxyProtocolConfig = ProxyProtocolConfig()
    tls: TLSConfig = TLSConfig()
    auth: AuthConfig = AuthConfig()
    store: StoreConfig = StoreConfig()
    limits: LimitsConfig = LimitsConfig()
    pop3: Pop3Config = Pop3Config()
    imap: ImapConfig = ImapConfig()
    quota: QuotaConfig = QuotaConfig()
    smtp: SmtpConfig = SmtpConfig()
    delivery: DeliveryConfig = DeliveryConfig()
    server: ServerConfig = ServerConfig()
    dkim: DkimConfig = DkimConfig()
    inbound: InboundConfig = InboundConfig()
    http: HttpConfig = HttpConfig()
    # issue 20 (casella.config_delivery): Sieve, ManageSieve, SRS, forwarding
    sieve: SieveConfig = SieveConfig()
    managesieve: ManageSieveConfig = ManageSieveConfig()
    srs: SrsConfig = SrsConfig()
    forwarding: ForwardingConfig = ForwardingConfig()
    spam: SpamConfig = SpamConfig()
    source: Path | None = None
    dns: DnsConfig = DnsConfig()

    @property
    def dkim_key_dir(self) -> Path:
        return self.dkim.key_dir if self.dkim.key_dir else self.data_dir / "dkim"

    @property
    def tls_cert_path(self) -> Path:
        return self.tls.cert if self.tls.cert else self.data_dir / "tls" / "cert.pem"

    @property
    def tls_key_path(self) -> Path:
        return self.tls.key if self.tls.key else self.data_dir / "tls" / "key.pem"


# --- loading -------------------------------------------------------------------------------


def _expect(key: str, value: object, kind: type | tuple[type, ...], what: str) -> Any:
    if isinstance(value, bool) and kind is not bool and bool not in (
        kind if isinstance(kind, tuple) else (kind,)
    ):
        raise ConfigError(f"{key} = {value!r}: expected {what}")
    if not isinstance(value, kind):
        raise ConfigError(f"{key} = {value!r}: expected {what}")
    return value


def _check_keys(section: str, table: Mapping[str, object], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            name = f"{section}.{key}" if section else key
            raise ConfigError(f"unknown key {name}")


def _field_names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def _section(raw: Mapping[str, object], name: str) -> Mapping[str, object]:
    table = raw.get(name, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{name} = {table!r}: expected a table [{name}]")
    return table


def _event_loop(value: object) -> str:
    from casella.eventloop import CHOICES, loop_factory
    v = _expect("server.event_loop", value, str, "auto, uvloop or asyncio")
    if v not in CHOICES:
        raise ConfigError(f"server.event_loop = {value!r}: expected auto, uvloop or asyncio")
    try:
        loop_factory(v)
    except ImportError:
        raise ConfigError("server.event_loop = 'uvloop': uvloop is not installed "
                          "(pip install uvloop, or use auto)")
    return v


def _int(key: str, value: object, minimum: int = 0, maximum: int | None = None) -> int:
    v = _expect(key, value, int, "a whole number")
    if v < minimum or (maximum is not None and v > maximum):
        bound = f"between {minimum} and {maximum}" if maximum is not None else f">= {minimum}"
        raise ConfigError(f"{key} = {value!r}: expected a number {bound}")
    return int(v)


def _size(key: str, value: object) -> int:
    try:
        return parse_size(value)
    except ValueError:
        raise ConfigError(f"{key} = {value!r}: expected a size such as 512K, 50M, 1G or bytes")


def _seconds(key: str, value: object, maximum: float = 3600.0) -> float:
    v = _expect(key, value, (int, float), "a number of seconds")
    if not 0 <= v <= maximum:
        raise ConfigError(f"{key} = {value!r}: expected between 0 and {maximum:g} seconds")
    return float(v)


def _hostport(key: str, value: object) -> HostPort:
    try:
        return parse_hostport(value)
    except ValueError:
        raise ConfigError(f"{key} = {value!r}: expected host:port")


def config_from_mapping(raw: Mapping[str, object], base_dir: Path | None = None,
                        source: Path | None = None) -> Config:
    """Build a Config from parsed TOML, validating every key. Relative paths are taken relative
    to `base_dir` (the config file's directory)."""
    top_keys = {"hostname", "data_dir", "listen", "tls", "auth", "store", "limits", "pop3",
                "imap", "quota", "smtp", "delivery", "server", "dkim", "inbound", "http",
                "sieve", "managesieve", "srs", "forwarding", "spam", "dns"}
    _check_keys("", raw, top_keys)
    base = base_dir or Path.cwd()

    def path(key: str, value: object) -> Path:
        p = Path(_expect(key, value, str, "a path"))
        return p if p.is_absolute() else base / p

    hostname = _expect("hostname", raw.get("hostname", "localhost"), str, "a host name")
    if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9.\-]*[A-Za-z0-9])?", hostname):
        raise ConfigError(f"hostname = {hostname!r}: expected a host name")
    data_dir = path("data_dir", raw.get("data_dir", "var"))

    proxy_protocol = ProxyProtocolConfig()
    if "listen" in raw:
        listen_raw = dict(_section(raw, "listen"))
        _check_keys("listen", listen_raw, set(LISTENER_NAMES) | set(_PROXY_KEYS))
        proxy_protocol = _proxy_protocol({k: listen_raw.pop(k) for k in _PROXY_KEYS
                                          if k in listen_raw})
        listen = {k: _hostport(f"listen.{k}", v) for k, v in listen_raw.items()}
    else:
        listen = {k: parse_hostport(v) for k, v in DEV_LISTEN.items()}

    tls_raw = _section(raw, "tls")
    _check_keys("tls", tls_raw, _field_names(TLSConfig))
    tls = TLSConfig(
        cert=path("tls.cert", tls_raw["cert"]) if "cert" in tls_raw else None,
        key=path("tls.key", tls_raw["key"]) if "key" in tls_raw else None,
    )
    if (tls.cert is None) != (tls.key is None):
        raise ConfigError("tls: set both tls.cert and tls.key, or neither")

    auth_raw = _section(raw, "auth")
    _check_keys("auth", auth_raw, _field_names(AuthConfig))
    auth = AuthConfig(
        allow_plaintext_without_tls=_expect(
            "auth.allow_plaintext_without_tls",
            auth_raw.get("allow_plaintext_without_tls", False), bool, "true or false"),
        failure_delay=_seconds("auth.failure_delay", auth_raw.get("failure_delay", 2.0)),
        max_failure_delay=_seconds("auth.max_failure_delay",
                                   auth_raw.get("max_failure_delay", 15.0)),
        block_after=_int("auth.block_after", auth_raw.get("block_after", 10)),
        block_window=_int("auth.block_window", auth_raw.get("block_window", 900), 1),
        block_duration=_int("auth.block_duration", auth_raw.get("block_duration", 900)),
        verified_cache_ttl=_int("auth.verified_cache_ttl",
                                auth_raw.get("verified_cache_ttl", 300), 0, 86400),
    )

    store_raw = _section(raw, "store")
    _check_keys("store", store_raw, _field_names(StoreConfig))
    backend = _expect("store.backend", store_raw.get("backend", "sqlite"), str, "sqlite or postgres")
    if backend not in ("sqlite", "postgres"):
        raise ConfigError(f"store.backend = {backend!r}: expected sqlite or postgres")
    dsn = _expect("store.dsn", store_raw.get("dsn", ""), str, "a connection string")
    if backend == "postgres" and not dsn:
        raise ConfigError("store.dsn = '': the postgres backend needs a dsn")
    ds = StoreConfig()

    def between(key: str, low: float, high: float) -> float:
        raw_value = store_raw.get(key, getattr(ds, key))
        value = _expect(f"store.{key}", raw_value, (int, float), "a number of seconds")
        if not low <= value <= high:
            raise ConfigError(f"store.{key} = {raw_value!r}: expected between {low:g} and "
                              f"{high:g} seconds")
        return float(value)

    store = StoreConfig(
        backend=backend, dsn=dsn,
        vacuum_threshold=_size("store.vacuum_threshold",
                               store_raw.get("vacuum_threshold", ds.vacuum_threshold)),
        vacuum_step_pages=_int("store.vacuum_step_pages",
                               store_raw.get("vacuum_step_pages", ds.vacuum_step_pages), 0,
                               100000),
        vacuum_interval=between("vacuum_interval", 0.01, 60),
        vacuum_check_interval=between("vacuum_check_interval", 1, 86400),
        search_index=_expect("store.search_index",
                             store_raw.get("search_index", ds.search_index), bool,
                             "true or false"))

    lim_raw = _section(raw, "limits")
    _check_keys("limits", lim_raw, _field_names(LimitsConfig))
    d = LimitsConfig()
    limits = LimitsConfig(
        default_quota=_size("limits.default_quota", lim_raw.get("default_quota", d.default_quota)),
        max_message_size=_size("limits.max_message_size",
                               lim_raw.get("max_message_size", d.max_message_size)),
        messages_per_hour=_int("limits.messages_per_hour",
                               lim_raw.get("messages_per_hour", d.messages_per_hour)),
        defers_failures_per_hour=_int("limits.defers_failures_per_hour",
                                      lim_raw.get("defers_failures_per_hour",
                                                  d.defers_failures_per_hour)),
        defers_failures_percent=_int("limits.defers_failures_percent",
                                     lim_raw.get("defers_failures_percent",
                                                 d.defers_failures_percent), 0, 100),
        max_connections=_int("limits.max_connections",
                             lim_raw.get("max_connections", d.max_connections), 1),
        max_connections_per_ip=_int("limits.max_connections_per_ip",
                                    lim_raw.get("max_connections_per_ip",
                                                d.max_connections_per_ip), 1),
    )
    if limits.max_message_size < 1024:
        raise ConfigError(f"limits.max_message_size = {limits.max_message_size!r}: "
                          "expected at least 1K")

    pop_raw = _section(raw, "pop3")
    _check_keys("pop3", pop_raw, _field_names(Pop3Config))
    delete = _expect("pop3.delete", pop_raw.get("delete", "expunge"), str,
                     "expunge, move-to-trash or hide")
    if delete not in ("expunge", "move-to-trash", "hide"):
        raise ConfigError(f"pop3.delete = {delete!r}: expected expunge, move-to-trash or hide")
    pd = Pop3Config()
    pop3 = Pop3Config(
        delete=delete, expire_days=_int("pop3.expire_days", pop_raw.get("expire_days", 0)),
        login_timeout=_int("pop3.login_timeout", pop_raw.get("login_timeout",
                                                              pd.login_timeout), 1),
        idle_timeout=_int("pop3.idle_timeout", pop_raw.get("idle_timeout", pd.idle_timeout), 1),
        line_timeout=_int("pop3.line_timeout", pop_raw.get("line_timeout", pd.line_timeout), 1),
        max_bad_commands=_int("pop3.max_bad_commands",
                              pop_raw.get("max_bad_commands", pd.max_bad_commands), 1))

    imap_raw = _section(raw, "imap")
    _check_keys("imap", imap_raw, _field_names(ImapConfig))
    imap_values: dict[str, Any] = {
        f.name: _expect(f"imap.{f.name}", imap_raw.get(f.name, f.default), bool,
                        "true or false") if f.type == "bool" else
        _int(f"imap.{f.name}", imap_raw.get(f.name, f.default), 1) for f in fields(ImapConfig)}
    imap = ImapConfig(**imap_values)
    quota = _quota_config(_section(raw, "quota"))
    smtp_raw = _section(raw, "smtp")
    _check_keys("smtp", smtp_raw, _field_names(SmtpConfig))
    smtp = SmtpConfig(**{f.name: _int(f"smtp.{f.name}", smtp_raw.get(f.name, f.default), 1)
                         for f in fields(SmtpConfig)})

    del_raw = _section(raw, "delivery")
    _check_keys("delivery", del_raw, _field_names(DeliveryConfig))
    routes_raw = del_raw.get("routes", {})
    if not isinstance(routes_raw, dict):
        raise ConfigError(f"delivery.routes = {routes_raw!r}: expected a table of domain = host:port")
    routes = {str(k).lower(): _hostport(f"delivery.routes.{k}", v) for k, v in routes_raw.items()}
    delivery = _delivery_extras(del_raw, routes)

    dkim_raw = _section(raw, "dkim")
    _check_keys("dkim", dkim_raw, _field_names(DkimConfig))
    dkim = DkimConfig(
        key_dir=path("dkim.key_dir", dkim_raw["key_dir"]) if "key_dir" in dkim_raw else None,
        sign=_expect("dkim.sign", dkim_raw.get("sign", True), bool, "true or false"))

    in_raw = _section(raw, "inbound")
    _check_keys("inbound", in_raw, _field_names(InboundConfig))
    inbound = InboundConfig(checks=_expect("inbound.checks", in_raw.get("checks", True), bool,
                                           "true or false"))

    srv_raw = _section(raw, "server")
    _check_keys("server", srv_raw, _field_names(ServerConfig))
    server = ServerConfig(
        workers=_int("server.workers", srv_raw.get("workers", os.cpu_count() or 1), 1, 256),
        shutdown_grace_seconds=_seconds("server.shutdown_grace_seconds",
                                        srv_raw.get("shutdown_grace_seconds", 5.0), 600.0),
        user=_expect("server.user", srv_raw.get("user", ""), str, "a user name"),
        allow_root=_expect("server.allow_root", srv_raw.get("allow_root", False), bool,
                           "true or false"),
        event_loop=_event_loop(srv_raw.get("event_loop", "auto")),
    )

    sieve, managesieve, srs, forwarding = delivery_sections(raw)

    return Config(hostname=hostname, data_dir=data_dir, listen=listen,
                  proxy_protocol=proxy_protocol, tls=tls, auth=auth,
                  store=store, limits=limits, pop3=pop3, imap=imap, quota=quota, smtp=smtp,
                  delivery=delivery, server=server, dkim=dkim, inbound=inbound,
                  http=_http_config(_section(raw, "http")), sieve=sieve,
                  managesieve=managesieve, srs=srs, forwarding=forwarding,
                  spam=_spam_config(_section(raw, "spam")), source=source,
                  dns=_dns_config(_section(raw, "dns")))


def _http_config(table: Mapping[str, object]) -> HttpConfig:
    _check_keys("http", table, _field_names(HttpConfig))
    d = HttpConfig()
    nets = table.get("admin_from", [str(n) for n in d.admin_from])
    if not isinstance(nets, list):
        raise ConfigError(f"http.admin_from = {nets!r}: expected a list of networks such as "
                          "[\"127.0.0.1/32\", \"10.0.0.0/8\"]")
    admin_from = []
    for net in nets:
        try:
            admin_from.append(ipaddress.ip_network(_expect("http.admin_from", net, str,
                                                           "a network"), strict=False))
        except ValueError:
            raise ConfigError(f"http.admin_from = {net!r}: expected a network such as "
                              "10.0.0.0/8 or an address") from None
    max_body = _size("http.max_body_size", table.get("max_body_size", d.max_body_size))
    if max_body < 1024:
        raise ConfigError(f"http.max_body_size = {table.get('max_body_size')!r}: expected at "
                          "least 1K")
    mode = _expect("http.mta_sts_mode", table.get("mta_sts_mode", d.mta_sts_mode), str,
                   "enforce, testing or none")
    if mode not in MTA_STS_MODES:
        raise ConfigError(f"http.mta_sts_mode = {mode!r}: expected enforce, testing or none")
    return HttpConfig(
        admin_from=tuple(admin_from),
        max_body_size=max_body,
        request_timeout=_int("http.request_timeout",
                             table.get("request_timeout", d.request_timeout), 1, 3600),
        session_lifetime=_duration("http.session_lifetime",
                                   table.get("session_lifetime", d.session_lifetime), 60),
        mta_sts_mode=mode,
        mta_sts_max_age=_mta_sts_max_age(table.get("mta_sts_max_age", d.mta_sts_max_age)),
    )


def _mta_sts_max_age(value: object) -> int:
    seconds = _duration("http.mta_sts_max_age", value, 1)
    if seconds > 31557600:  # RFC 8461 §3.2: at most about a year
        raise ConfigError(f"http.mta_sts_max_age = {value!r}: expected at most 31557600 "
                          "seconds (365d)")
    return seconds


_PROXY_KEYS = ("proxy_protocol_from", "proxy_protocol_timeout")


def _proxy_protocol(table: Mapping[str, object]) -> ProxyProtocolConfig:
    nets = table.get("proxy_protocol_from", [])
    if not isinstance(nets, list) or not all(isinstance(n, str) for n in nets):
        raise ConfigError(f"listen.proxy_protocol_from = {nets!r}: expected a list of "
                          "networks such as [\"10.0.0.0/8\", \"2001:db8::/32\"]")
    trusted = []
    for net in nets:
        try:
            trusted.append(ipaddress.ip_network(net, strict=True))
        except ValueError:
            raise ConfigError(f"listen.proxy_protocol_from: {net!r} is not a network "
                              "(address/prefix, host bits zero)") from None
    timeout = _seconds("listen.proxy_protocol_timeout",
                       table.get("proxy_protocol_timeout", ProxyProtocolConfig.timeout), 300.0)
    if timeout <= 0:
        raise ConfigError(f"listen.proxy_protocol_timeout = {timeout!r}: expected more than "
                          "0 seconds")
    return ProxyProtocolConfig(tuple(trusted), timeout)


def _dns_config(table: Mapping[str, object]) -> DnsConfig:
    _check_keys("dns", table, _field_names(DnsConfig))
    servers = table.get("resolver", [])
    if not isinstance(servers, list):
        raise ConfigError(f"dns.resolver = {servers!r}: expected a list such as "
                          "[\"192.0.2.53\", \"127.0.0.1:5353\"]")
    resolver = []
    for entry in servers:
        text = _expect("dns.resolver", entry, str, "an address or address:port")
        try:
            resolver.append((str(ipaddress.ip_address(text)), 53))
            continue
        except ValueError:
            pass
        try:
            hp = parse_hostport(text)
            resolver.append((str(ipaddress.ip_address(hp.host)), hp.port))
        except ValueError:
            raise ConfigError(f"dns.resolver = {text!r}: expected an IP address, optionally "
                              "with :port") from None
    return DnsConfig(resolver=tuple(resolver))


def _quota_config(table: Mapping[str, object]) -> QuotaConfig:
    _check_keys("quota", table, _field_names(QuotaConfig))
    d = QuotaConfig()
    values = {f.name: _expect(f"quota.{f.name}", table.get(f.name, getattr(d, f.name)), str,
                              "a string") for f in fields(QuotaConfig)}
    for key in ("warning_subject", "warning_body"):
        try:
            values[key].format(percent=80, address="a@b", used="1M", limit="2M")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(f"quota.{key}: bad placeholder {exc}; use {{percent}}, "
                              "{address}, {used} or {limit}")
    if "\n" in values["warning_subject"] or "\r" in values["warning_subject"]:
        raise ConfigError("quota.warning_subject: must be one line")
    return QuotaConfig(**values)


def _http_url(key: str, value: object) -> str:
    """"" (off) or an http(s) URL naming a host: the base the endpoint paths are added to."""
    from urllib.parse import urlsplit

    v = _expect(key, value, str, "an http:// URL or \"\"")
    if not v:
        return v
    try:
        parts = urlsplit(v)
        port = parts.port
    except ValueError:
        raise ConfigError(f"{key} = {v!r}: expected an http:// URL such as "
                          "http://127.0.0.1:11333") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or \
            parts.fragment or parts.username or port == 0 or any(c in v for c in " \r\n\t"):
        raise ConfigError(f"{key} = {v!r}: expected an http:// URL such as "
                          "http://127.0.0.1:11333")
    return v.rstrip("/")


def _spam_config(table: Mapping[str, object]) -> SpamConfig:
    _check_keys("spam", table, _field_names(SpamConfig))
    d = SpamConfig()

    def get(name: str) -> object:
        return table.get(name, getattr(d, name))

    on_error = _expect("spam.on_error", get("on_error"), str, "accept or tempfail")
    if on_error not in ("accept", "tempfail"):
        raise ConfigError(f"spam.on_error = {on_error!r}: expected accept or tempfail")
    timeout = _seconds("spam.timeout", get("timeout"), 600.0)
    connect_timeout = _seconds("spam.connect_timeout", get("connect_timeout"), 600.0)
    for name, value in (("timeout", timeout), ("connect_timeout", connect_timeout)):
        if value <= 0:
            raise ConfigError(f"spam.{name} = {get(name)!r}: expected more than 0 seconds")
    max_reply_size = _size("spam.max_reply_size", get("max_reply_size"))
    if max_reply_size < 1024:
        raise ConfigError(f"spam.max_reply_size = {get('max_reply_size')!r}: expected at "
                          "least 1K")
    return SpamConfig(
        rspamd=_http_url("spam.rspamd", get("rspamd")),
        timeout=timeout, connect_timeout=connect_timeout, on_error=on_error,
        check_submission=_expect("spam.check_submission", get("check_submission"), bool,
                                 "true or false"),
        max_size=_size("spam.max_size", get("max_size")),
        max_reply_size=max_reply_size,
        controller=_http_url("spam.controller", get("controller")),
        controller_password=_expect("spam.controller_password", get("controller_password"),
                                    str, "a string"),
        learn_concurrency=_int("spam.learn_concurrency", get("learn_concurrency"), 1, 100),
        learn_backlog=_int("spam.learn_backlog", get("learn_backlog"), 0, 1_000_000),
    )


_DURATION_RE = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$", re.IGNORECASE)
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(key: str, value: object, minimum: int = 1) -> int:
    """Seconds, or a number with s, m, h or d (`5m`, `4h`, `5d`)."""
    m = _DURATION_RE.match(value) if isinstance(value, str) else None
    if isinstance(value, int) and not isinstance(value, bool):
        seconds = value
    elif m:
        seconds = int(m.group(1)) * _DURATION_UNITS[m.group(2).lower()]
    else:
        raise ConfigError(f"{key} = {value!r}: expected a duration such as 30s, 5m, 4h or 5d")
    if seconds < minimum:
        raise ConfigError(f"{key} = {value!r}: expected at least {minimum} seconds")
    return seconds


def _delivery_extras(del_raw: Mapping[str, object],
                     routes: Mapping[str, HostPort]) -> DeliveryConfig:
    d = DeliveryConfig()
    auth_raw = del_raw.get("route_auth", {})
    if not isinstance(auth_raw, dict):
        raise ConfigError(f"delivery.route_auth = {auth_raw!r}: expected a table of "
                          "domain = { username = ..., password = ... }")
    route_auth: dict[str, tuple[str, str]] = {}
    for dom, creds in auth_raw.items():
        key = f"delivery.route_auth.{dom}"
        if not isinstance(creds, dict) or set(creds) != {"username", "password"} or \
                not all(isinstance(v, str) and v for v in creds.values()):
            raise ConfigError(f"{key}: expected {{ username = \"...\", password = \"...\" }}")
        if str(dom).lower() not in routes:
            raise ConfigError(f"{key}: there is no delivery.routes entry for {dom}")
        route_auth[str(dom).lower()] = (creds["username"], creds["password"])
    out = DeliveryConfig(
        routes=routes, route_auth=route_auth,
        retry_initial=_duration("delivery.retry_initial",
                                del_raw.get("retry_initial", d.retry_initial)),
        retry_max=_duration("delivery.retry_max", del_raw.get("retry_max", d.retry_max)),
        give_up_after=_duration("delivery.give_up_after",
                                del_raw.get("give_up_after", d.give_up_after)),
        delay_notice_after=_duration("delivery.delay_notice_after",
                                     del_raw.get("delay_notice_after", d.delay_notice_after)),
        concurrency=_int("delivery.concurrency", del_raw.get("concurrency", d.concurrency),
                         1, 1000),
    )
    if out.retry_max < out.retry_initial:
        raise ConfigError(f"delivery.retry_max = {out.retry_max}: expected at least "
                          f"delivery.retry_initial ({out.retry_initial} seconds)")
    return out


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Find and load the config: the given path, else $CASELLA_CONFIG, else ./casella.toml,
    else the built-in development defaults."""
    chosen: Path | None = None
    if path is not None:
        chosen = Path(path)
    elif os.environ.get("CASELLA_CONFIG"):
        chosen = Path(os.environ["CASELLA_CONFIG"])
    elif Path("casella.toml").is_file():
        chosen = Path("casella.toml")
    if chosen is None:
        # Development defaults: loopback only, so running as root is tolerated.
        return config_from_mapping({"server": {"allow_root": True}}, Path.cwd())
    try:
        text = chosen.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {chosen}: {exc.strerror}")
    try:
        raw = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {chosen} is not valid TOML: {exc}")
    return config_from_mapping(raw, chosen.resolve().parent, source=chosen)
