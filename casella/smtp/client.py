"""The outbound SMTP client engine: one connection to one remote host, one or more mail
transactions over it.

Lives here: `SmtpClient` (greeting, EHLO with HELO fallback, STARTTLS when offered, AUTH PLAIN
or LOGIN for a smarthost, MAIL/RCPT/DATA with PIPELINING when offered, the SIZE, BODY=8BITMIME,
SMTPUTF8 and DSN parameters when needed and offered, QUIT), `dot_stuff` (the DATA payload:
bare CR and LF normalised to CRLF, every line starting with "." doubled, PROMISES M3), the
RFC 5321 §4.5.3.2 timeouts, and typed replies and errors. Must never: put CR, LF or other
control characters into a command line (PROMISES M7), send a password over plaintext to a
host that is not on loopback, decide retries (the queue runner does), or touch the store.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import logging
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field

log = logging.getLogger("casella.smtp.client")

MAX_REPLY_LINE = 8192          # RFC 5321 §4.5.3.1.5 says 512; be lenient, but bounded
MAX_REPLY_LINES = 200
WRITE_CHUNK = 64 * 1024

_NEWLINES = re.compile(rb"\r\n|\r|\n")
_ENHANCED = re.compile(r"^([245]\.\d{1,3}\.\d{1,3})(?:\s|$)")
_UNSAFE = re.compile(r"[\x00-\x20<>\x7f]")


@dataclass(frozen=True)
class Timeouts:
    """RFC 5321 §4.5.3.2 minimums (seconds); `connect` is ours (the RFC sets none)."""

    connect: float = 30.0
    greeting: float = 300.0      # §4.5.3.2.1 initial 220
    command: float = 300.0       # §4.5.3.2.2/3 MAIL, RCPT (and EHLO, STARTTLS, AUTH, RSET)
    data_init: float = 120.0     # §4.5.3.2.4 DATA → 354
    data_block: float = 180.0    # §4.5.3.2.5 each block of data written
    data_end: float = 600.0      # §4.5.3.2.6 final "." → 250


@dataclass(frozen=True)
class SmtpReply:
    code: int
    lines: tuple[str, ...]

    @property
    def status(self) -> str:
        """The enhanced status code (RFC 3463) if the server gave one, else derived."""
        m = _ENHANCED.match(self.lines[0]) if self.lines else None
        if m:
            return m.group(1)
        return f"{self.code // 100}.0.0"

    @property
    def text(self) -> str:
        return " ".join(line.strip() for line in self.lines if line.strip())

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 400

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def __str__(self) -> str:
        text = self.text
        if _ENHANCED.match(text):
            return f"{self.code} {text}"[:500]
        return f"{self.code} {self.status} {text}".rstrip()[:500]


class SmtpClientError(Exception):
    """The conversation with this host broke down before a transaction outcome: connection
    refused or lost, timeout, garbage, TLS failure, a refusal at greeting/EHLO/AUTH. Always
    a reason to try the next host or later, unless `permanent`."""

    def __init__(self, message: str, reply: SmtpReply | None = None,
                 permanent: bool = False) -> None:
        super().__init__(message)
        self.reply = reply
        self.permanent = permanent

    @property
    def status(self) -> str:
        if self.reply is not None:
            return self.reply.status
        return "5.0.0" if self.permanent else "4.4.2"


class TlsFailed(SmtpClientError):
    """The STARTTLS handshake failed: the caller may try the host again without TLS."""


@dataclass(frozen=True)
class OutRecipient:
    address: str
    notify: tuple[str, ...] = ()
    orcpt: str | None = None        # "addr-type;address", decoded


@dataclass
class TransactionResult:
    """Per-recipient outcome of one transaction. A recipient is delivered iff its RCPT reply
    is positive AND `data_reply` is positive (RFC 5321 §3.3: one final reply for all)."""

    mail_reply: SmtpReply
    rcpt_replies: list[SmtpReply | None] = field(default_factory=list)
    data_reply: SmtpReply | None = None

    def delivered(self, i: int) -> bool:
        r = self.rcpt_replies[i]
        return bool(r is not None and r.ok and self.data_reply is not None
                    and self.data_reply.ok)


def dot_stuff(data: bytes) -> bytes:
    """The DATA payload for `data` (RFC 5321 §4.5.2), terminator included: line ends
    normalised to CRLF (a bare CR or LF becomes CRLF, PROMISES M3), a "." starting any line
    doubled, a final CRLF added when missing, then ".\\r\\n"."""
    crlf = data.count(b"\r\n")
    if data.count(b"\r") != crlf or data.count(b"\n") != crlf:
        data = _NEWLINES.sub(b"\r\n", data)
    if data.startswith(b"."):
        data = b"." + data
    data = data.replace(b"\r\n.", b"\r\n..")
    if data and not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def encode_xtext(text: str) -> str:
    """RFC 3461 §4: xtext; every octet outside "!".."~", and "+" and "=", as +HH."""
    out = []
    for b in text.encode("utf-8"):
        if 33 <= b <= 126 and b not in (43, 61):
            out.append(chr(b))
        else:
            out.append(f"+{b:02X}")
    return "".join(out)


def _check_address(address: str) -> str:
    if _UNSAFE.search(address):
        raise SmtpClientError(f"refusing to send an unsafe address {address!r}",
                              permanent=True)
    return address


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def opportunistic_tls_context() -> ssl.SSLContext:
    """RFC 7435 opportunistic TLS for MX delivery: encrypt, do not authenticate (an MX
    certificate is rarely valid for the MX name; Postfix's "may" level)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class SmtpClient:
    """One connection. Use `connect()`, then `send()` one or more times, then `quit()`;
    `close()` always (idempotent)."""

    def __init__(self, host: str, port: int, *, helo: str, timeouts: Timeouts | None = None,
                 tls_context: ssl.SSLContext | None = None, starttls: bool = True,
                 auth: tuple[str, str] | None = None, server_hostname: str | None = None,
                 connect_host: str | None = None) -> None:
        self.host = host                       # the name (for logs, Remote-MTA)
        self.connect_host = connect_host or host
        self.port = port
        self.helo = helo
        self.timeouts = timeouts or Timeouts()
        self.tls_context = tls_context
        self.use_starttls = starttls
        self.auth = auth
        self.server_hostname = server_hostname
        self.extensions: dict[str, str] = {}
        self.esmtp = False
        self.tls = False
        self.data_started = False     # the message itself was (partly) sent
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    # --- plumbing ------------------------------------------------------------------------

    async def _read_reply(self, timeout: float) -> SmtpReply:
        assert self._reader is not None
        lines: list[str] = []
        code = 0
        while True:
            try:
                raw = await asyncio.wait_for(self._reader.readuntil(b"\n"), timeout)
            except TimeoutError:
                raise SmtpClientError(f"{self.host}: no reply within {timeout:g} s") from None
            except asyncio.IncompleteReadError:
                raise SmtpClientError(f"{self.host}: connection closed by the server") from None
            except asyncio.LimitOverrunError:
                raise SmtpClientError(f"{self.host}: reply line too long") from None
            except (ConnectionError, OSError) as exc:
                raise SmtpClientError(f"{self.host}: connection lost: {exc}") from None
            line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
            if len(line) < 3 or not line[:3].isdigit() or line[0] not in "2345" or \
                    (len(line) > 3 and line[3] not in " -"):
                raise SmtpClientError(f"{self.host}: garbage reply {line[:80]!r}")
            this = int(line[:3])
            if code and this != code:
                raise SmtpClientError(f"{self.host}: inconsistent multi-line reply")
            code = this
            lines.append(line[4:])
            if len(line) == 3 or line[3] == " ":
                return SmtpReply(code, tuple(lines))
            if len(lines) >= MAX_REPLY_LINES:
                raise SmtpClientError(f"{self.host}: reply too long")

    async def _write(self, data: bytes, timeout: float) -> None:
        assert self._writer is not None
        try:
            self._writer.write(data)
            await asyncio.wait_for(self._writer.drain(), timeout)
        except TimeoutError:
            raise SmtpClientError(f"{self.host}: stalled while we were sending") from None
        except (ConnectionError, OSError) as exc:
            raise SmtpClientError(f"{self.host}: connection lost: {exc}") from None

    async def _command(self, line: str, timeout: float | None = None) -> SmtpReply:
        await self._write(line.encode("utf-8") + b"\r\n", self.timeouts.command)
        return await self._read_reply(timeout or self.timeouts.command)

    # --- connection set-up ---------------------------------------------------------------

    async def connect(self) -> None:
        try:
            self._reader, self._writer = await asyncio.wait_for(
                asyncio.open_connection(self.connect_host, self.port, limit=MAX_REPLY_LINE),
                self.timeouts.connect)
        except TimeoutError:
            raise SmtpClientError(f"{self.host}: connection timed out") from None
        except OSError as exc:
            raise SmtpClientError(f"{self.host}: cannot connect: "
                                  f"{exc.strerror or exc}") from None
        greeting = await self._read_reply(self.timeouts.greeting)
        if greeting.code != 220:
            # RFC 5321 §3.1: a 554 greeting means "no service here"; try elsewhere or later.
            raise SmtpClientError(f"{self.host} refused the connection: {greeting}", greeting)
        await self._ehlo()
        if self.use_starttls and "STARTTLS" in self.extensions and self.tls_context is not None:
            await self._starttls()
        if self.auth is not None:
            await self._authenticate()

    async def _ehlo(self) -> None:
        reply = await self._command(f"EHLO {self.helo}")
        if reply.ok:
            self.esmtp = True
            self.extensions = {}
            for line in reply.lines[1:]:
                keyword, _, params = line.strip().partition(" ")
                if keyword:
                    self.extensions[keyword.upper()] = params.strip()
            return
        if reply.code == 421:
            raise SmtpClientError(f"{self.host} closed the session: {reply}", reply)
        # RFC 5321 §3.2: a server without ESMTP answers EHLO with an error; fall back to HELO.
        reply = await self._command(f"HELO {self.helo}")
        if not reply.ok:
            raise SmtpClientError(f"{self.host} refused HELO: {reply}", reply)
        self.esmtp = False
        self.extensions = {}

    async def _starttls(self) -> None:
        reply = await self._command("STARTTLS")
        if reply.code != 220:
            return      # RFC 3207 §4: 454 means carry on in plaintext (opportunistic)
        assert self._writer is not None and self.tls_context is not None
        try:
            await asyncio.wait_for(self._writer.start_tls(
                self.tls_context, server_hostname=self.server_hostname or None),
                self.timeouts.command)
        except (TimeoutError, ssl.SSLError, ConnectionError, OSError) as exc:
            raise TlsFailed(f"{self.host}: TLS handshake failed: {exc}") from None
        self.tls = True
        await self._ehlo()       # RFC 3207 §4.2: forget what was learnt before TLS

    async def _authenticate(self) -> None:
        assert self.auth is not None
        if not self.tls and not is_loopback(self.connect_host):
            raise SmtpClientError(f"{self.host} offers no TLS: refusing to send the "
                                  "password in clear")
        mechs = self.extensions.get("AUTH", "").upper().split()
        user, password = self.auth
        if "PLAIN" in mechs:
            token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
            reply = await self._command(f"AUTH PLAIN {token}")
        elif "LOGIN" in mechs:
            reply = await self._command("AUTH LOGIN")
            if reply.code == 334:
                reply = await self._command(base64.b64encode(user.encode()).decode())
            if reply.code == 334:
                reply = await self._command(base64.b64encode(password.encode()).decode())
        else:
            raise SmtpClientError(f"{self.host} offers no AUTH PLAIN or LOGIN")
        if reply.code != 235:
            # A smarthost refusing our credentials is an admin's problem to fix: defer.
            raise SmtpClientError(f"{self.host} refused our credentials: {reply}", reply)

    # --- a transaction -------------------------------------------------------------------

    def _size_limit(self) -> int:
        try:
            return int(self.extensions.get("SIZE", "0") or 0)
        except ValueError:
            return 0

    async def send(self, sender: str, recipients: Sequence[OutRecipient], message: bytes, *,
                   envid: str | None = None, ret: str | None = None) -> TransactionResult:
        """One mail transaction. Raises SmtpClientError when the connection breaks; the
        result says per recipient what happened otherwise."""
        _check_address(sender)
        for r in recipients:
            _check_address(r.address)
        need_utf8 = not sender.isascii() or any(not r.address.isascii() for r in recipients)
        if need_utf8 and "SMTPUTF8" not in self.extensions:
            # RFC 6531 §3.2: without the extension the addresses cannot be sent at all.
            refusal = SmtpReply(553, (("5.6.7 the receiving server does not support SMTPUTF8 "
                                       "(internationalized addresses)"),))
            return TransactionResult(refusal, [None] * len(recipients))
        limit = self._size_limit()
        if limit and len(message) > limit:
            refusal = SmtpReply(552, ((f"5.3.4 message too big for {self.host} "
                                       f"(its limit is {limit} bytes)"),))
            return TransactionResult(refusal, [None] * len(recipients))
        params = []
        if "SIZE" in self.extensions:
            params.append(f"SIZE={len(message)}")
        if "8BITMIME" in self.extensions and not message.isascii():
            params.append("BODY=8BITMIME")
        if need_utf8:
            params.append("SMTPUTF8")
        dsn = "DSN" in self.extensions
        if dsn and ret in ("FULL", "HDRS"):
            params.append(f"RET={ret}")
        if dsn and envid:
            params.append(f"ENVID={encode_xtext(envid)}")
        mail_line = f"MAIL FROM:<{sender}>" + "".join(" " + p for p in params)
        rcpt_lines = []
        for r in recipients:
            line = f"RCPT TO:<{r.address}>"
            if dsn and r.notify:
                line += " NOTIFY=" + ",".join(r.notify)
            if dsn and r.orcpt and ";" in r.orcpt:
                addr_type, _, addr = r.orcpt.partition(";")
                line += f" ORCPT={encode_xtext(addr_type)};{encode_xtext(addr)}"
            rcpt_lines.append(line)
        if "PIPELINING" in self.extensions:
            return await self._send_pipelined(mail_line, rcpt_lines, message)
        return await self._send_stepwise(mail_line, rcpt_lines, message)

    async def _send_pipelined(self, mail_line: str, rcpt_lines: list[str],
                              message: bytes) -> TransactionResult:
        # RFC 2920 §3.1: MAIL, every RCPT and DATA in one group; replies come in order.
        group = "".join(line + "\r\n" for line in [mail_line, *rcpt_lines, "DATA"])
        await self._write(group.encode("utf-8"), self.timeouts.command)
        result = TransactionResult(await self._read_reply(self.timeouts.command))
        for _ in rcpt_lines:
            result.rcpt_replies.append(await self._read_reply(self.timeouts.command))
        data_reply = await self._read_reply(self.timeouts.data_init)
        accepted = result.mail_reply.ok and any(r is not None and r.ok
                                                for r in result.rcpt_replies)
        if data_reply.code != 354:
            result.data_reply = data_reply if not data_reply.ok else None
            return result
        if not accepted:
            # RFC 2920 §3.1: DATA was accepted although no recipient was; end it empty.
            await self._write(b".\r\n", self.timeouts.data_block)
            await self._read_reply(self.timeouts.data_end)
            return result
        result.data_reply = await self._send_data(message)
        return result

    async def _send_stepwise(self, mail_line: str, rcpt_lines: list[str],
                             message: bytes) -> TransactionResult:
        result = TransactionResult(await self._command(mail_line))
        if not result.mail_reply.ok:
            result.rcpt_replies = [None] * len(rcpt_lines)
            return result
        for line in rcpt_lines:
            result.rcpt_replies.append(await self._command(line))
        if not any(r is not None and r.ok for r in result.rcpt_replies):
            await self.reset()
            return result
        data_reply = await self._command("DATA", self.timeouts.data_init)
        if data_reply.code != 354:
            result.data_reply = data_reply if not data_reply.ok else \
                SmtpReply(451, ("4.5.0 unexpected reply to DATA: " + str(data_reply),))
            return result
        result.data_reply = await self._send_data(message)
        return result

    async def _send_data(self, message: bytes) -> SmtpReply:
        self.data_started = True
        payload = memoryview(dot_stuff(message))
        for start in range(0, len(payload), WRITE_CHUNK):
            await self._write(bytes(payload[start:start + WRITE_CHUNK]),
                              self.timeouts.data_block)
        return await self._read_reply(self.timeouts.data_end)

    async def reset(self) -> None:
        try:
            await self._command("RSET")
        except SmtpClientError:
            pass

    async def quit(self) -> None:
        """Polite end; errors are ignored (the outcome is already recorded)."""
        if self._writer is None:
            return
        try:
            await asyncio.wait_for(self._command("QUIT"), 10.0)
        except (TimeoutError, SmtpClientError):
            pass
        await self.close()

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        try:
            writer.close()
            await asyncio.wait_for(writer.wait_closed(), 5.0)
        except (TimeoutError, ConnectionError, OSError, ssl.SSLError):
            pass
