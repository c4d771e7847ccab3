"""The SMTP protocol core: command lines in, typed commands out; typed replies out as bytes.

Lives here: the command parser (RFC 5321 §4.1 grammar with the RFC 6531 SMTPUTF8 extension of
it), the MAIL/RCPT parameters of SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531), DSN
(RFC 3461), AUTH= (RFC 4954 §5), BDAT (RFC 3030), the reply catalogue with enhanced status codes
(RFC 3463 / RFC 5248 registry, RFC 2034 placement) and the EHLO reply. Must never: import
asyncio, sockets, config or the store, or decide policy (who may send or receive).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_LINE = 1000                 # RFC 5321 §4.5.3.1.6 text line, CRLF included
MAX_COMMAND_LINE = MAX_LINE - 2  # what read_line may return, without the CRLF
MAX_AUTH_LINE = 12288           # RFC 4954 §4: AUTH lines may be this long
MAX_PARAM_VALUE = 500
MAX_ENVID = 100                 # RFC 3461 §4.4

# --- replies -------------------------------------------------------------------------------

_UNSAFE_TEXT = re.compile(r"[\x00-\x1f\x7f]")


def safe_text(text: str, limit: int = 200) -> str:
    """Client-supplied text as it may appear inside a reply line: no control characters (so no
    CR/LF injection), bounded length."""
    cleaned = _UNSAFE_TEXT.sub("?", text)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 3] + "..."


@dataclass(frozen=True, slots=True)
class Reply:
    """One SMTP reply. `status` is the enhanced status code (RFC 3463); it is empty only where
    RFC 2034 §3 exempts the reply: 3xx, the greeting and the answer to EHLO/HELO."""

    code: int
    status: str
    lines: tuple[str, ...]

    def render(self) -> bytes:
        prefix = f"{self.code}"
        status = f"{self.status} " if self.status else ""
        out = []
        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            sep = " " if i == last else "-"
            out.append(f"{prefix}{sep}{status}{line}\r\n")
        return "".join(out).encode("utf-8")

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def positive(self) -> bool:
        return self.code < 400

    def __str__(self) -> str:
        return f"{self.code} {self.status} {self.text}".replace("  ", " ")


def reply(code: int, status: str, *lines: str) -> Reply:
    return Reply(code, status, tuple(lines) or ("",))


class ReplyError(Exception):
    """Raised with the reply to send instead of carrying on (parse errors, refusals)."""

    def __init__(self, r: Reply) -> None:
        super().__init__(str(r))
        self.reply = r


class ParseError(ReplyError):
    """The command line does not follow the grammar; `reply` says how (500/501/504/555)."""


# The fixed replies. Codes from RFC 5321 §4.2/§4.3.2, enhanced codes from the RFC 5248
# registry: X.5.x protocol, X.1.x addressing, X.2.x mailbox, X.3.x system, X.7.x security.
OK = reply(250, "2.0.0", "OK")
SENDER_OK = reply(250, "2.1.0", "Sender OK")
RECIPIENT_OK = reply(250, "2.1.5", "Recipient OK")
RESET_OK = reply(250, "2.0.0", "Reset OK")
NOOP_OK = reply(250, "2.0.0", "OK")
START_DATA = reply(354, "", "End data with <CR><LF>.<CR><LF>")
READY_TLS = reply(220, "2.0.0", "Ready to start TLS")
AUTH_OK = reply(235, "2.7.0", "Authentication successful")
VRFY_NO = reply(252, "2.5.0", "Cannot verify the user, but will accept mail and attempt "
                                "delivery")
EXPN_NO = reply(502, "5.5.1", "EXPN is disabled on this server (RFC 5321 §7.3)")
HELP = reply(214, "2.0.0",
             "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP AUTH STARTTLS",
             "See RFC 5321; for help with your account ask your mail provider")

SYNTAX_UNRECOGNIZED = reply(500, "5.5.2", "Command unrecognized")
LINE_TOO_LONG = reply(500, "5.5.2", f"Line too long (the limit is {MAX_LINE} octets, "
                                    "RFC 5321 §4.5.3.1)")
BAD_SEQUENCE = reply(503, "5.5.1", "Bad sequence of commands")
NEED_EHLO = reply(503, "5.5.1", "Send EHLO or HELO first")
NEED_MAIL = reply(503, "5.5.1", "Send MAIL FROM first")
NEED_RCPT = reply(503, "5.5.1", "Send RCPT TO first")
NESTED_MAIL = reply(503, "5.5.1", "A mail transaction is already in progress; send RSET first")
NO_VALID_RECIPIENTS = reply(554, "5.5.1", "No valid recipients")
DATA_AFTER_BDAT = reply(503, "5.5.1", "DATA cannot follow BDAT in one transaction (RFC 3030 §2)")
TLS_ALREADY = reply(503, "5.5.1", "TLS is already active")
TLS_UNAVAILABLE = reply(454, "4.7.0", "TLS not available")
AUTH_ALREADY = reply(503, "5.5.1", "Already authenticated (RFC 4954 §4)")
AUTH_IN_TRANSACTION = reply(503, "5.5.1", "AUTH is not allowed during a mail transaction")
AUTH_NOT_AVAILABLE = reply(503, "5.5.1", "Authentication is not available on this port; use "
                                         "the submission port")
AUTH_NEEDS_TLS = reply(530, "5.7.0", "Must issue a STARTTLS command first")
AUTH_REQUIRED = reply(530, "5.7.0", "Authentication required")
AUTH_FAILED = reply(535, "5.7.8", "Authentication credentials invalid")
AUTH_TOO_MANY = reply(421, "4.7.0", "Too many failed authentication attempts; closing the "
                                    "connection")
AUTH_CANCELLED = reply(501, "5.7.0", "Authentication cancelled")
AUTH_BAD_BASE64 = reply(501, "5.5.2", "Cannot decode the authentication response (base64)")
AUTH_UNKNOWN_MECH = reply(504, "5.5.4", "Unrecognized authentication mechanism; use PLAIN or "
                                        "LOGIN")
AUTH_TEMPFAIL = reply(454, "4.7.0", "Temporary authentication failure")
TOO_MANY_RECIPIENTS = reply(452, "4.5.3", "Too many recipients")
TOO_BIG = reply(552, "5.3.4", "Message too big for this server")
RELAY_DENIED = reply(550, "5.7.1", "Relay access denied: this server only accepts mail for the "
                                   "domains it hosts")
SOURCE_ROUTE_DENIED = reply(550, "5.7.1", "Relay access denied: sender-routed addresses "
                                          "(% ! or quoted @) are not accepted")
UNKNOWN_USER = reply(550, "5.1.1", "No such user here")
MAILBOX_FULL_TEMP = reply(452, "4.2.2", "Mailbox full: the recipient is over quota, try again "
                                        "later")
MAILBOX_FULL = reply(552, "5.2.2", "Mailbox full: the message would exceed the recipient's "
                                   "quota")
LOCAL_ERROR = reply(451, "4.3.0", "Local error while storing the message; nothing was "
                                  "delivered, please try again later")
STORAGE_FULL = reply(452, "4.3.1", "Insufficient system storage; please try again later")
BARE_NEWLINE = reply(554, "5.6.0", "Message refused: it contains a bare CR or LF; every line "
                                   "must end with CRLF (RFC 5321 §2.3.8)")
NEED_SMTPUTF8 = reply(553, "5.6.7", "Non-ASCII address without the SMTPUTF8 parameter "
                                    "(RFC 6531 §3.4)")
NEED_8BITMIME_BODY = reply(554, "5.6.0", "Message refused: 8-bit data requires BODY=8BITMIME")
SENDER_NOT_OWNED = reply(553, "5.7.1", "Sender address rejected: you may only send as your own "
                                       "address or an alias of it")
FROM_NOT_OWNED = reply(553, "5.7.1", "Message refused: the From: header must be your own "
                                     "address or an alias of it")
FROM_MISSING = reply(550, "5.6.0", "Message refused: it has no valid From: header (RFC 5322 "
                                   "§3.6)")
HEADER_TOO_BIG = reply(552, "5.3.4", "Message refused: its header is too large")
NULL_SENDER_SUBMISSION = reply(553, "5.7.1", "The null sender <> cannot be used for submission")
IDLE_TIMEOUT = reply(421, "4.4.2", "Timeout: closing the connection")
LINE_TIMEOUT = reply(421, "4.4.2", "Timeout: the command line was not completed in time; "
                                   "closing the connection")
DATA_TIMEOUT = reply(421, "4.4.2", "Timeout while receiving the message; nothing was "
                                   "delivered, closing the connection")
NO_PROGRESS = reply(421, "4.7.0", "Too many commands without sending a message; closing the "
                                  "connection")
TOO_MANY_ERRORS = reply(421, "4.7.0", "Too many errors; closing the connection")
SHUTTING_DOWN = reply(421, "4.3.2", "Server shutting down; try again later")
BDAT_NO_TRANSACTION = reply(503, "5.5.1", "BDAT without a transaction; its data was discarded")


def closing(hostname: str) -> Reply:
    return reply(221, "2.0.0", f"{hostname} closing connection")


def greeting(hostname: str) -> Reply:
    # RFC 5321 §4.2: the greeting names the host; "ESMTP" tells clients to use EHLO.
    return reply(220, "", f"{hostname} ESMTP casella")


def message_accepted(queue_id: str) -> Reply:
    return reply(250, "2.0.0", f"OK: message accepted, id {queue_id}")


def chunk_accepted(size: int) -> Reply:
    return reply(250, "2.0.0", f"{size} octets received")


def parameter_unknown(name: str) -> Reply:
    return reply(555, "5.5.4", f"Unsupported parameter {safe_text(name, 40)}")


def parameter_invalid(name: str, why: str) -> Reply:
    return reply(501, "5.5.4", f"Invalid {safe_text(name, 40)} parameter: {why}")


def ehlo_reply(hostname: str, client: str, capabilities: list[str]) -> Reply:
    """RFC 5321 §4.1.1.1: first line the server's name, then one extension per line."""
    return Reply(250, "", (f"{hostname} greets {safe_text(client, 100)}", *capabilities))


def helo_reply(hostname: str) -> Reply:
    return reply(250, "", hostname)


# --- paths ---------------------------------------------------------------------------------

# RFC 5321 §4.1.2, widened by RFC 6531 §3.3 (UTF-8 in atext, qtext and domain labels). The
# C1 controls and U+2028/U+2029 are left out: some software reads them as line breaks, and
# addresses end up in Received and Return-Path (PROMISES M7).
_U = "\u00a0-\u2027\u202a-\U0010ffff"
_ATOM = rf"[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~\-{_U}]+"
_DOT_STRING = rf"{_ATOM}(?:\.{_ATOM})*"
_QUOTED = rf'"(?:[\x20\x21\x23-\x5b\x5d-\x7e{_U}]|\\[\x20-\x7e])*"'
_LET_DIG = rf"[A-Za-z0-9{_U}]"
_SUB_DOMAIN = rf"{_LET_DIG}(?:[A-Za-z0-9\-{_U}]*{_LET_DIG})?"
_DOMAIN = rf"{_SUB_DOMAIN}(?:\.{_SUB_DOMAIN})*"
_ADDRESS_LITERAL = r"\[[\x21-\x5a\x5e-\x7e]{1,253}\]"
_ADL = rf"@{_DOMAIN}(?:,@{_DOMAIN})*:"
_PATH_RE = re.compile(
    rf"<(?P<adl>{_ADL})?(?P<local>{_DOT_STRING}|{_QUOTED})@(?P<domain>{_DOMAIN}|{_ADDRESS_LITERAL})>")
_POSTMASTER_RE = re.compile(r"<postmaster>", re.IGNORECASE)
_QUOTED_PAIR_RE = re.compile(r"\\(.)")
_DOT_STRING_RE = re.compile(_DOT_STRING)

MAX_LOCAL = 64      # RFC 5321 §4.5.3.1.1
MAX_DOMAIN = 255    # RFC 5321 §4.5.3.1.2
MAX_PATH = 256      # RFC 5321 §4.5.3.1.3


@dataclass(frozen=True, slots=True)
class Path:
    """A mailbox from a reverse- or forward-path. `local` is the unquoted local part; `domain`
    as written (a domain name or an address literal `[...]`); empty for `<postmaster>`.
    A source route is parsed and dropped (RFC 5321 §4.1.2 and Appendix C: servers SHOULD
    ignore it); `routed` records that one was given."""

    local: str
    domain: str
    quoted: bool = False
    routed: bool = False

    @property
    def address(self) -> str:
        """The mailbox as text, with the local part re-quoted when it needs quotes."""
        local = self.local
        if self.quoted and not _DOT_STRING_RE.fullmatch(local):
            local = '"' + local.replace("\\", "\\\\").replace('"', '\\"') + '"'
        return f"{local}@{self.domain}" if self.domain else local

    @property
    def is_ascii(self) -> bool:
        return self.local.isascii() and self.domain.isascii()

    @property
    def is_postmaster(self) -> bool:
        return not self.domain and self.local.lower() == "postmaster"

    def __str__(self) -> str:
        return f"<{self.address}>"


def parse_path(text: str, allow_null: bool) -> tuple[Path | None, str]:
    """Parse `<...>` at the start of `text`; returns (path or None for `<>`, rest of text)."""
    if allow_null and text.startswith("<>"):
        return None, text[2:]
    m = _PATH_RE.match(text)
    if m is None:
        pm = _POSTMASTER_RE.match(text)
        if pm is not None and not allow_null:
            # RFC 5321 §4.1.1.3: RCPT TO:<Postmaster> without a domain must be accepted.
            return Path("postmaster", ""), text[pm.end():]
        raise ParseError(reply(501, "5.1.3", "Bad address syntax; use <user@domain>"))
    local = m.group("local")
    quoted = local.startswith('"')
    if quoted:
        local = _QUOTED_PAIR_RE.sub(r"\1", local[1:-1])
    domain = m.group("domain")
    if len(local.encode("utf-8")) > MAX_LOCAL:
        raise ParseError(reply(501, "5.1.3", "The user part of the address is too long"))
    if len(domain.encode("utf-8")) > MAX_DOMAIN or len(m.group(0).encode("utf-8")) > MAX_PATH:
        raise ParseError(reply(501, "5.1.3", "The address is too long"))
    return Path(local, domain, quoted, m.group("adl") is not None), text[m.end():]


# --- parameters ----------------------------------------------------------------------------

_KEYWORD_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")
# RFC 5321 esmtp-value: any CHAR but "=", SP and controls; RFC 6531 §3.3 adds UTF-8.
_VALUE_RE = re.compile(rf"[\x21-\x3c\x3e-\x7e{_U}]+")
# RFC 3461 §4 wants upper-case hex after "+"; lower case is taken too, as Postfix does.
_XTEXT_RE = re.compile(r"(?:[\x21-\x2a\x2c-\x3c\x3e-\x7e]|\+[0-9A-Fa-f]{2})*")
_XTEXT_HEX_RE = re.compile(r"\+([0-9A-Fa-f]{2})")
_ADDR_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-]*")


def parse_params(text: str) -> list[tuple[str, str | None]]:
    """`KEY[=VALUE] ...` → [(UPPER-KEY, value or None)], refusing duplicates."""
    out: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for token in text.split(" "):
        if not token:
            continue
        key, eq, value = token.partition("=")
        if not _KEYWORD_RE.fullmatch(key):
            raise ParseError(reply(501, "5.5.4", f"Bad parameter syntax: {safe_text(token, 40)}"))
        if eq and not _VALUE_RE.fullmatch(value):
            raise ParseError(parameter_invalid(key, "bad characters in the value"))
        if len(value) > MAX_PARAM_VALUE:
            raise ParseError(parameter_invalid(key, "value too long"))
        upper = key.upper()
        if upper in seen:
            raise ParseError(parameter_invalid(key, "given twice"))
        seen.add(upper)
        out.append((upper, value if eq else None))
    return out


def decode_xtext(text: str, name: str) -> str:
    """RFC 3461 §4: xtext, `+XX` hex escapes. Decoded control characters are refused so an
    ENVID or ORCPT can never carry CR/LF into a header or the queue (PROMISES M7)."""
    if not _XTEXT_RE.fullmatch(text):
        raise ParseError(parameter_invalid(name, "not valid xtext (RFC 3461 §4)"))
    decoded = _XTEXT_HEX_RE.sub(lambda m: chr(int(m.group(1), 16)), text)
    if _UNSAFE_TEXT.search(decoded):
        raise ParseError(parameter_invalid(name, "control characters are not allowed"))
    return decoded


def encode_xtext(text: str) -> str:
    """The inverse of decode_xtext, for ASCII text."""
    return "".join(c if "\x21" <= c <= "\x7e" and c not in "+=" else f"+{ord(c):02X}"
                   for c in text)


def _no_value(name: str, value: str | None) -> None:
    if value is not None:
        raise ParseError(parameter_invalid(name, "takes no value"))


def _need_value(name: str, value: str | None) -> str:
    if value is None:
        raise ParseError(parameter_invalid(name, "needs a value"))
    return value


# --- commands ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Helo:
    domain: str
    extended: bool           # EHLO (True) or HELO


@dataclass(frozen=True, slots=True)
class Mail:
    sender: Path | None      # None: the null reverse path <>
    size: int | None = None  # RFC 1870
    body: str | None = None  # "7BIT" | "8BITMIME" (RFC 6152)
    smtputf8: bool = False   # RFC 6531
    ret: str | None = None   # "FULL" | "HDRS" (RFC 3461 §4.3)
    envid: str | None = None  # decoded (RFC 3461 §4.4)
    auth: str | None = None  # RFC 4954 §5, decoded; "<>" when the submitter is unknown
    has_params: bool = False


@dataclass(frozen=True, slots=True)
class Rcpt:
    recipient: Path
    notify: tuple[str, ...] = ()     # () default; ("NEVER",) or a subset of SUCCESS/FAILURE/DELAY
    orcpt: str | None = None         # "addr-type;address", decoded (RFC 3461 §4.2)
    has_params: bool = False


@dataclass(frozen=True, slots=True)
class Data:
    pass


@dataclass(frozen=True, slots=True)
class Bdat:
    size: int
    last: bool


@dataclass(frozen=True, slots=True)
class Rset:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True)
class Vrfy:
    argument: str


@dataclass(frozen=True, slots=True)
class Expn:
    argument: str


@dataclass(frozen=True, slots=True)
class Help:
    topic: str = ""


@dataclass(frozen=True, slots=True)
class Auth:
    mechanism: str                   # upper case
    initial: bytes | None = field(default=None, repr=False)  # base64 text as sent, or None


@dataclass(frozen=True, slots=True)
class StartTls:
    pass


Command = Helo | Mail | Rcpt | Data | Bdat | Rset | Noop | Quit | Vrfy | Expn | Help | Auth | StartTls

_HELO_ARG_RE = re.compile(r"[\x21-\x7e]{1,255}")
_MECH_RE = re.compile(r"[A-Za-z0-9\-_]{1,20}")
_BASE64_RE = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?|=")
_DIGITS_RE = re.compile(r"[0-9]{1,20}")
_NOTIFY_VALUES = frozenset({"SUCCESS", "FAILURE", "DELAY"})


def _syntax(usage: str) -> ParseError:
    return ParseError(reply(501, "5.5.4", f"Syntax: {usage}"))


def _parse_helo(arg: str, extended: bool) -> Helo:
    verb = "EHLO" if extended else "HELO"
    if not arg:
        raise _syntax(f"{verb} <your host name>")
    # RFC 5321 §4.1.1.1 wants one domain or address literal; clients send all sorts, so any
    # single visible-ASCII token is taken (it only ever appears, checked, in Received).
    if not _HELO_ARG_RE.fullmatch(arg):
        raise _syntax(f"{verb} <your host name> (one word, printable ASCII)")
    return Helo(arg, extended)


def _after_colon(arg: str, keyword: str, usage: str) -> str:
    """`FROM:<...>` → `<...>`; tolerates spaces around the colon as Postfix does."""
    head, colon, rest = arg.partition(":")
    if not colon or head.strip().upper() != keyword:
        raise _syntax(usage)
    return rest.lstrip(" ")


def _parse_mail(arg: str) -> Mail:
    usage = "MAIL FROM:<address> [parameters]"
    rest = _after_colon(arg, "FROM", usage)
    sender, rest = parse_path(rest, allow_null=True)
    if rest and not rest.startswith(" "):
        raise _syntax(usage)
    params = parse_params(rest)
    size = body = ret = envid = auth = None
    smtputf8 = False
    for name, value in params:
        if name == "SIZE":
            v = _need_value(name, value)
            if not _DIGITS_RE.fullmatch(v):
                raise ParseError(parameter_invalid(name, "expected a number of octets"))
            size = int(v)
        elif name == "BODY":
            v = _need_value(name, value).upper()
            if v == "BINARYMIME":
                raise ParseError(reply(555, "5.5.4", "BODY=BINARYMIME is not supported"))
            if v not in ("7BIT", "8BITMIME"):
                raise ParseError(parameter_invalid(name, "expected 7BIT or 8BITMIME"))
            body = v
        elif name == "SMTPUTF8":
            _no_value(name, value)
            smtputf8 = True
        elif name == "RET":
            v = _need_value(name, value).upper()
            if v not in ("FULL", "HDRS"):
                raise ParseError(parameter_invalid(name, "expected FULL or HDRS"))
            ret = v
        elif name == "ENVID":
            envid = decode_xtext(_need_value(name, value), name)
            if len(envid) > MAX_ENVID:
                raise ParseError(parameter_invalid(name, f"longer than {MAX_ENVID} characters"))
        elif name == "AUTH":
            auth = decode_xtext(_need_value(name, value), name)
        else:
            raise ParseError(parameter_unknown(name))
    return Mail(sender, size, body, smtputf8, ret, envid, auth, bool(params))


def _parse_rcpt(arg: str) -> Rcpt:
    usage = "RCPT TO:<address> [parameters]"
    rest = _after_colon(arg, "TO", usage)
    recipient, rest = parse_path(rest, allow_null=False)
    assert recipient is not None
    if rest and not rest.startswith(" "):
        raise _syntax(usage)
    params = parse_params(rest)
    notify: tuple[str, ...] = ()
    orcpt = None
    for name, value in params:
        if name == "NOTIFY":
            items = tuple(v.upper() for v in _need_value(name, value).split(","))
            # RFC 3461 §4.1: NEVER alone, or any of SUCCESS, FAILURE, DELAY.
            if items == ("NEVER",) or items and all(i in _NOTIFY_VALUES for i in items) and len(set(items)) == len(items):
                notify = items
            else:
                raise ParseError(parameter_invalid(
                    name, "expected NEVER or a list of SUCCESS, FAILURE, DELAY"))
        elif name == "ORCPT":
            v = _need_value(name, value)
            addr_type, semi, addr = v.partition(";")
            if not semi or not _ADDR_TYPE_RE.fullmatch(addr_type) or not addr:
                raise ParseError(parameter_invalid(name, "expected addr-type;address"))
            orcpt = f"{addr_type};{decode_xtext(addr, name)}"
        else:
            raise ParseError(parameter_unknown(name))
    return Rcpt(recipient, notify, orcpt, bool(params))


def _parse_bdat(arg: str) -> Bdat:
    parts = arg.split(" ")
    if not 1 <= len(parts) <= 2 or not _DIGITS_RE.fullmatch(parts[0]):
        raise _syntax("BDAT <size> [LAST]")
    last = False
    if len(parts) == 2:
        if parts[1].upper() != "LAST":
            raise _syntax("BDAT <size> [LAST]")
        last = True
    return Bdat(int(parts[0]), last)


def _parse_auth(arg: str) -> Auth:
    parts = arg.split(" ")
    if not 1 <= len(parts) <= 2 or not _MECH_RE.fullmatch(parts[0]):
        raise _syntax("AUTH <mechanism> [initial-response]")
    initial = None
    if len(parts) == 2:
        if not _BASE64_RE.fullmatch(parts[1]):
            raise ParseError(AUTH_BAD_BASE64)
        initial = parts[1].encode("ascii")
    return Auth(parts[0].upper(), initial)


def _no_argument(verb: str, arg: str, cmd: Command) -> Command:
    if arg:
        raise _syntax(verb)
    return cmd


def parse_command(line: bytes) -> Command:
    """One command line (without CRLF) → a typed command, or ParseError with the reply."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise ParseError(reply(500, "5.5.2", "Syntax error: the command is not valid UTF-8"))
    text = text.rstrip(" \t")
    verb, _, arg = text.partition(" ")
    verb = verb.upper()
    if verb in ("EHLO", "HELO"):
        return _parse_helo(arg.strip(" "), verb == "EHLO")
    if verb == "MAIL":
        return _parse_mail(arg)
    if verb == "RCPT":
        return _parse_rcpt(arg)
    if verb == "DATA":
        return _no_argument("DATA", arg, Data())
    if verb == "BDAT":
        return _parse_bdat(arg)
    if verb == "RSET":
        return _no_argument("RSET", arg, Rset())
    if verb == "NOOP":
        return Noop()         # RFC 5321 §4.1.1.9: any argument is ignored
    if verb == "QUIT":
        return _no_argument("QUIT", arg, Quit())
    if verb == "VRFY":
        if not arg:
            raise _syntax("VRFY <address>")
        return Vrfy(arg)
    if verb == "EXPN":
        if not arg:
            raise _syntax("EXPN <list>")
        return Expn(arg)
    if verb == "HELP":
        return Help(arg)
    if verb == "AUTH":
        return _parse_auth(arg)
    if verb == "STARTTLS":
        return _no_argument("STARTTLS", arg, StartTls())
    raise ParseError(SYNTAX_UNRECOGNIZED)
