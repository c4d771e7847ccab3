"""One IMAP connection: reading commands (with their literals), the state machine, dispatch, and
turning every error into BAD / NO / BYE in one place.

Lives here: `Session.run` (greeting, command loop, timeouts, shutdown), the literal rules
(64 KiB for ordinary literals; the maximum message size for APPEND, refused before `+` when too
big or over quota, PROMISES P2/Q2), the table of which command runs in which state, the untagged
updates sent after each command (RFC 9051 §7.5.1: no EXPUNGE during FETCH, STORE or SEARCH),
and `_reply_for`, the one mapping from exceptions to replies. Must never: touch SQL or files
(it calls the store contract), parse protocol text itself (parser.py does), or log a password
or message body.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from casella import errors as ce
from casella.app import App
from casella.imap import commands as c
from casella.imap import responses as r
from casella.imap.capabilities import capabilities
from casella.imap.errors import Bad, Bye, ImapError, No
from casella.imap.parser import ParseError, literal_spec, parse_request, peek_command
from casella.imap.selected import SelectedView
from casella.net.streams import (
    Connection,
    ConnectionClosed,
    LineTooLong,
    ReadTimeout,
    ServerShutdown,
)
from casella.store.changes import Subscription
from casella.store.model import Account

log = logging.getLogger("casella.imap")

MAX_LINE = 64 * 1024            # one command line (PROMISES P1)
MAX_LITERAL = 64 * 1024         # any literal but an APPEND message
MAX_COMMAND = 1024 * 1024       # all lines and small literals of one command together
MAX_DISCARD = 64 * 1024 * 1024  # a refused LITERAL+ body up to this size is read and dropped
PRE_AUTH_TIMEOUT = 60.0         # seconds before login
AUTOLOGOUT = 30 * 60.0          # RFC 9051 §5.4: at least 30 minutes after login
MAX_BAD_COMMANDS = 20           # PROMISES P5: then BYE
MAX_AUTH_FAILURES = 5
CHUNK = 256 * 1024              # streaming unit for message bodies
OUTPUT_HIGH_WATER = 256 * 1024  # queued output beyond this goes to the connection at once

NOT_AUTH, AUTH, SELECTED = 1, 2, 4
ANY = NOT_AUTH | AUTH | SELECTED
LOGGED_IN = AUTH | SELECTED


@dataclass(frozen=True, slots=True)
class Done:
    """A handler's tagged OK."""
    sentence: str = "completed"
    code: str | None = None


Handler = Callable[["Session", str, Any], Awaitable["Done | None"]]


class _Handled(Exception):
    """The command was already answered while it was being read (a refused literal)."""


class Session:
    def __init__(self, app: App, conn: Connection) -> None:
        self.app = app
        self.conn = conn
        self.store = app.store
        self.state = NOT_AUTH
        self.account: Account | None = None
        self.rev2 = False
        self.selected: SelectedView | None = None
        self.subscription: Subscription | None = None
        self.saved_search: list[int] = []       # `$` (RFC 5182), as UIDs
        self.bad_commands = 0
        self.auth_failures = 0
        self.client_id: str = ""
        self.ending = False
        self._out = bytearray()

    # --- output --------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Queue output; `flush` sends it. A command's answer leaves in one piece, so a client
        never waits on Nagle's algorithm for the tagged line after the untagged ones."""
        if data:
            self._out += data
            if len(self._out) >= OUTPUT_HIGH_WATER:
                self.conn.write(bytes(self._out))
                self._out.clear()

    async def flush(self) -> None:
        if self._out:
            self.conn.write(bytes(self._out))
            self._out.clear()
        await self.conn.drain()

    def capability_list(self) -> list[str]:
        return capabilities(tls_active=self.conn.tls,
                            authenticated=self.state != NOT_AUTH,
                            plaintext_allowed=self.plaintext_allowed,
                            max_message_size=self.app.config.limits.max_message_size)

    @property
    def plaintext_allowed(self) -> bool:
        return self.app.config.auth.allow_plaintext_without_tls

    @property
    def timeout(self) -> float:
        return PRE_AUTH_TIMEOUT if self.state == NOT_AUTH else AUTOLOGOUT

    def log_extra(self) -> dict[str, Any]:
        return self.conn.describe()

    # --- state changes -------------------------------------------------------------------

    def logged_in(self, account: Account) -> None:
        self.account = account
        self.state = AUTH
        self.conn.user = account.address

    def enter_selected(self, view: SelectedView, subscription: Subscription) -> None:
        self.leave_selected()
        self.selected = view
        self.subscription = subscription
        self.state = SELECTED

    def leave_selected(self) -> None:
        if self.subscription is not None:
            self.subscription.close()
        self.subscription = None
        self.selected = None
        self.saved_search = []
        if self.state == SELECTED:
            self.state = AUTH

    # --- main loop -----------------------------------------------------------------------

    async def run(self) -> None:
        caps = " ".join(["CAPABILITY"] + self.capability_list())
        self.write(r.status("*", "OK", "casella IMAP server ready", caps))
        try:
            await self.flush()
            while not self.ending:
                try:
                    request = await self.read_request()
                except _Handled:
                    await self.flush()
                    continue
                except ParseError as exc:
                    self.write(r.status(exc.tag or "*", "BAD", exc.message))
                    log.info("BAD %s", exc.message, extra=self.log_extra())
                    await self.note_bad()
                    await self.flush()
                    continue
                await self.execute(request)
                await self.flush()
        except ReadTimeout:
            self.write(r.status("*", "BYE", "Autologout; idle for too long"))
        except ServerShutdown:
            self.write(r.status("*", "BYE", "Server shutting down", "UNAVAILABLE"))
        except Bye as exc:
            self.write(r.status("*", "BYE", exc.sentence, exc.code))
        except ConnectionClosed:
            pass
        finally:
            self.leave_selected()
            try:
                await asyncio.wait_for(self.flush(), 5.0)
            except (ConnectionClosed, TimeoutError, OSError):
                pass
            self.conn.close()

    async def note_bad(self) -> None:
        self.bad_commands += 1
        if self.bad_commands >= MAX_BAD_COMMANDS:
            raise Bye("Too many invalid commands")

    # --- reading a command ---------------------------------------------------------------

    async def read_line(self, timeout: float | None = None) -> bytes:
        return await self.conn.read_line(MAX_LINE, self.timeout if timeout is None else timeout)

    async def read_request(self) -> c.Request:
        """Read one command with its literals. Refused literals are answered here (_Handled)."""
        try:
            line = await self.read_line()
        except LineTooLong as exc:
            await self._line_too_long(exc)
            raise _Handled() from None
        lines = [line]
        literals: list[bytes | c.ExternalLiteral] = []
        tag, name = peek_command(line)
        total = len(line)
        try:
            while (spec := literal_spec(line)) is not None:
                size, nonsync = spec
                literals.append(await self._read_literal(tag, name, size, nonsync, total))
                total += size if isinstance(literals[-1], bytes) else 0
                try:
                    line = await self.read_line()
                except LineTooLong as exc:
                    await self._line_too_long(exc, tag)
                    raise _Handled() from None
                lines.append(line)
                total += len(line)
                if total > MAX_COMMAND:
                    await self._discard_rest(line)
                    self.write(r.status(tag or "*", "BAD", "Command too long", "TOOBIG"))
                    raise _Handled()
            return parse_request(lines, literals)
        except BaseException:
            for lit in literals:
                if isinstance(lit, c.ExternalLiteral):
                    _discard_handle(lit.handle)
            raise

    async def _line_too_long(self, exc: LineTooLong, tag: str | None = None) -> None:
        """A line over 64 KiB was dropped. If it announced a LITERAL+ literal, that literal
        must not be read as commands (PROMISES P2)."""
        if tag is None:
            tag = peek_command(exc.head)[0] if exc.head else None
        spec = literal_spec(exc.tail)
        if spec is not None:
            await self._discard_literal_and_rest(spec)
        self.write(r.status(tag or "*", "BAD", "Command line too long", "TOOBIG"))
        await self.note_bad()

    async def _discard_literal_and_rest(self, spec: tuple[int, bool],
                                        limit: int = MAX_DISCARD) -> None:
        size, nonsync = spec
        if not nonsync:
            return      # the client waits for "+", which never comes: nothing to skip
        if size > limit:
            raise Bye("Literal too big", "TOOBIG")
        await self._skip(size)
        try:
            line = await self.read_line()
        except LineTooLong as exc:
            line = exc.tail       # only its end matters: does another literal follow?
        await self._discard_rest(line)

    async def _discard_rest(self, line: bytes) -> None:
        """Skip the literals (and lines) still to come for a command already refused."""
        spec = literal_spec(line)
        if spec is not None:
            await self._discard_literal_and_rest(spec)

    async def _skip(self, size: int) -> None:
        remaining = size
        while remaining > 0:
            chunk = await self.conn.read_some(min(remaining, CHUNK), self.timeout)
            remaining -= len(chunk)

    async def _read_literal(self, tag: str | None, name: str, size: int, nonsync: bool,
                            total: int) -> bytes | c.ExternalLiteral:
        is_append = name == "APPEND" and self.state != NOT_AUTH
        refusal: tuple[str, str, str] | None = None
        if is_append:
            limit = self.app.config.limits.max_message_size
            if size > limit:
                refusal = ("NO", "TOOBIG", f"Message is larger than the limit of {limit} octets")
            else:
                refusal = await self._quota_refusal(size)
        elif size > MAX_LITERAL or total + size > MAX_COMMAND:
            refusal = ("BAD", "TOOBIG", f"Literal larger than {MAX_LITERAL} octets")
        if refusal is not None:
            kind, code, sentence = refusal
            if nonsync:
                # RFC 7888 §4: the bytes are on their way; read and drop them (or hang up
                # when that is unreasonable), then refuse the whole command.
                limit = max(MAX_DISCARD, 2 * self.app.config.limits.max_message_size)
                if size > limit:
                    raise Bye(sentence, code)
                await self._discard_literal_and_rest((size, True), limit)
            self.write(r.status(tag or "*", kind, sentence, code))
            log.info("%s %s refused: %s", name or "?", kind, sentence, extra=self.log_extra())
            raise _Handled()
        if not nonsync:
            self.write(r.continuation())
            await self.flush()
        if is_append and size > MAX_LITERAL:
            return await self._stream_message(size)
        return await self.conn.read_exactly(size, self.timeout)

    async def _quota_refusal(self, size: int) -> tuple[str, str, str] | None:
        """Q2: refuse an APPEND that cannot fit before the client sends it."""
        assert self.account is not None
        acct = await self.store.get_account_by_id(self.account.id)
        if acct is None:
            raise Bye("The account no longer exists")
        if acct.quota_bytes and acct.used_bytes + size > acct.quota_bytes:
            return ("NO", "OVERQUOTA", "The mailbox is full (quota exceeded)")
        if acct.quota_messages and acct.used_messages + 1 > acct.quota_messages:
            return ("NO", "OVERQUOTA", "The mailbox holds the most messages allowed")
        return None

    async def _stream_message(self, size: int) -> c.ExternalLiteral:
        """Write a large APPEND literal to the blob store as it arrives, bare LF made CRLF."""
        writer = self.store.blobs.writer()
        remaining = size
        carry = b""
        try:
            while remaining > 0:
                chunk = await self.conn.read_some(min(remaining, CHUNK), self.timeout)
                remaining -= len(chunk)
                data = carry + chunk if carry else chunk
                if data.endswith(b"\r") and remaining > 0:
                    carry, data = b"\r", data[:-1]
                else:
                    carry = b""
                await writer.write(to_crlf(data))
            staged = await writer.finish()
        except BaseException:
            writer.abort()
            raise
        return c.ExternalLiteral(size, staged)

    # --- dispatch ------------------------------------------------------------------------

    async def execute(self, request: c.Request) -> None:
        from casella.imap.handlers import TABLE

        tag, cmd = request.tag, request.command
        name = type(cmd).__name__.upper()
        entry = TABLE.get(type(cmd))
        started = time.monotonic()
        try:
            if entry is None:
                raise Bad("Unknown command")
            handler, states, after = entry
            if not self.state & states:
                raise Bad(_state_sentence(self.state, states))
            done = await handler(self, tag, cmd)
            if self.state == SELECTED and not self.ending:
                await self.send_updates(after, cmd)
            if done is not None:
                self.write(r.status(tag, "OK", done.sentence, done.code))
            self.bad_commands = 0
            outcome = "OK"
        except Bye:
            raise
        except ConnectionClosed:
            raise
        except (ReadTimeout, ServerShutdown):
            raise
        except Exception as exc:
            kind, code, sentence = _reply_for(exc)
            self.write(r.status(tag, kind, sentence, code))
            outcome = f"{kind} {sentence}"
            if kind == "NO" and code == "SERVERBUG":
                log.exception("%s failed", name, extra=self.log_extra())
            if kind == "BAD":
                self.bad_commands += 1
                if self.bad_commands >= MAX_BAD_COMMANDS:
                    raise Bye("Too many invalid commands") from None
        finally:
            _discard_external(cmd)
        log.info("%s %s (%.3fs)", name, outcome, time.monotonic() - started,
                 extra=self.log_extra())

    async def send_updates(self, mode: str, cmd: object) -> None:
        """Untagged updates before the tagged reply. `mode` from the dispatch table: "noexp"
        for FETCH/STORE/SEARCH (no EXPUNGE, RFC 9051 §7.5.1), "force" to ask the store even
        without a bus event (NOOP, CHECK), "normal" otherwise."""
        view = self.selected
        sub = self.subscription
        if view is None or sub is None:
            return
        uid_form = bool(getattr(cmd, "uid", False))
        allow_expunge = mode != "noexp" or uid_form
        if mode != "force" and not sub.pending and not (allow_expunge and view.pending_expunge):
            return
        sub.drain()
        try:
            self.write(await view.sync(self.store, allow_expunge))
        except ce.MailboxNotFound:
            raise Bye("The selected mailbox was deleted") from None


def to_crlf(data: bytes) -> bytes:
    """Bare LF becomes CRLF; CRLF stays (APPEND bodies are stored with CRLF line ends)."""
    if b"\n" not in data:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def _discard_handle(handle: object) -> None:
    discard = getattr(handle, "discard", None)
    if callable(discard):
        discard()


def _discard_external(cmd: object) -> None:
    message = getattr(cmd, "message", None)
    if isinstance(message, c.ExternalLiteral):
        _discard_handle(message.handle)


def _state_sentence(state: int, allowed: int) -> str:
    if state == NOT_AUTH:
        return "Log in first"
    if allowed == NOT_AUTH:
        return "Already logged in"
    if allowed & SELECTED and not allowed & AUTH:
        return "No mailbox selected"
    return "Not allowed while a mailbox is selected"


def _reply_for(exc: BaseException) -> tuple[str, str | None, str]:
    """The one place where errors become IMAP replies (RFC 5530 response codes)."""
    if isinstance(exc, Bad):
        return "BAD", exc.code, exc.sentence
    if isinstance(exc, LineTooLong):
        # A continuation line (AUTHENTICATE, IDLE) over the limit; it was skipped whole.
        return "BAD", "TOOBIG", "Line too long"
    if isinstance(exc, No):
        return "NO", exc.code, exc.sentence
    if isinstance(exc, ImapError):
        return "NO", exc.code, exc.sentence
    if isinstance(exc, ce.MailboxNotFound):
        return "NO", "NONEXISTENT", str(exc)
    if isinstance(exc, ce.MailboxExists):
        return "NO", "ALREADYEXISTS", str(exc)
    if isinstance(exc, ce.NotFound):
        return "NO", "NONEXISTENT", str(exc)
    if isinstance(exc, ce.AlreadyExists):
        return "NO", "ALREADYEXISTS", str(exc)
    if isinstance(exc, (ce.InvalidName, ce.MailboxNotAllowed)):
        return "NO", "CANNOT", str(exc)
    if isinstance(exc, ce.QuotaExceeded):
        return "NO", "OVERQUOTA", str(exc)
    if isinstance(exc, ce.MessageTooBig):
        return "NO", "TOOBIG", str(exc)
    if isinstance(exc, ce.StorageError):
        return "NO", "UNAVAILABLE", f"{exc}; try again"
    if isinstance(exc, ce.UserError):
        return "NO", "CANNOT", str(exc)
    return "NO", "SERVERBUG", "Internal error; try again"
