"""One IMAP connection: reading commands (with their literals), the state machine, dispatch, and
turning every error into BAD / NO / BYE in one place.

Lives here: `Session.run` (greeting, command loop, the `[imap]` timeouts and budgets, NOTIFY
waiting between commands, COMPRESS switching, shutdown), the literal rules (64 KiB for ordinary
literals; the maximum message size for APPEND messages, refused before `+` when too big or over
quota, PROMISES P2/Q2, and streamed to the blob store in their stored form, casella.mail.
storeform; LITERAL- bounds non-synchronising literals to 4096 octets when configured), the per-session extension state (CONDSTORE, QRESYNC, UTF8=ACCEPT), the untagged
updates sent after each command (RFC 9051 §7.5.1: no EXPUNGE during FETCH, STORE or SEARCH), and
`_reply_for`, the one mapping from exceptions to replies. Must never: touch SQL or files (it
calls the store contract), parse protocol text itself (parser.py does), or log a password or
message body.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from casella import errors as ce
from casella import metrics
from casella.app import App
from casella.imap import commands as c
from casella.imap import responses as r
from casella.imap import utf7
from casella.imap.capabilities import capabilities
from casella.imap.errors import Bad, Bye, ImapError, No
from casella.imap.parser import (
    ParseError,
    is_literal8,
    literal_spec,
    parse_request,
    peek_command,
)
from casella.imap.selected import SelectedView
from casella.mail.storeform import binary_form, text_form
from casella.net.streams import (
    Connection,
    ConnectionClosed,
    LineTimeout,
    LineTooLong,
    ReadTimeout,
    ServerShutdown,
    StreamTransform,
)
from casella.store.changes import Subscription
from casella.store.model import Account

if TYPE_CHECKING:
    from casella.imap.notify import Notifier
    from casella.limits.connections import Slot

log = logging.getLogger("casella.imap")

MAX_LINE = 64 * 1024            # one command line (PROMISES P1)
MAX_LITERAL = 64 * 1024         # any literal but an APPEND message
MAX_LITERALS = 1001             # literals in one command (a MULTIAPPEND of 1000 messages)
MAX_NONSYNC_MINUS = 4096        # LITERAL- (RFC 7888 §5)
MAX_COMMAND = 1024 * 1024       # all lines and small literals of one command together
MAX_DISCARD = 64 * 1024 * 1024  # a refused LITERAL+ body up to this size is read and dropped
MAX_DISCARD_LITERALS = 100_000  # ... and at most this many literals of a refused command
MAX_AUTH_FAILURES = 5
MIN_LITERAL_RATE = 512          # octets a literal must bring per line_timeout (slow drip)
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


class SlowClient(Exception):
    """A started command line or literal did not arrive in time (slow drip, issue 7)."""


class Session:
    def __init__(self, app: App, conn: Connection) -> None:
        self.app = app
        self.conn = conn
        self.store = app.store
        self.cfg = app.config.imap
        self.state = NOT_AUTH
        self.account: Account | None = None
        self.rev2 = False
        self.condstore = False          # RFC 7162 §3.1: some CONDSTORE enabling command ran
        self.qresync = False            # ENABLE QRESYNC (RFC 7162 §3.2.3)
        self.utf8 = False               # ENABLE UTF8=ACCEPT (RFC 6855 §3)
        self.compressed = False
        self.selected: SelectedView | None = None
        self.subscription: Subscription | None = None
        self.notifier: Notifier | None = None
        self.saved_search: list[int] = []       # `$` (RFC 5182), as UIDs
        self.bad_commands = 0
        self.idle_commands = 0                  # commands in a row that changed nothing
        self.auth_failures = 0
        self.client_id: str = ""
        self.ending = False
        self.pending_transform: StreamTransform | None = None
        self._counted: Slot | None = None      # imap.max_connections_per_user_ip
        self._window = (0.0, 0)                 # literal rate window: (start, octets)
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
                            max_message_size=self.app.config.limits.max_message_size,
                            compressed=self.compressed,
                            literal_minus=self.cfg.literal_minus)

    @property
    def plaintext_allowed(self) -> bool:
        return self.app.config.auth.allow_plaintext_without_tls

    @property
    def timeout(self) -> float:
        """How long the client may stay silent between commands."""
        return float(self.cfg.login_timeout if self.state == NOT_AUTH else self.cfg.idle_timeout)

    def log_extra(self) -> dict[str, Any]:
        return self.conn.describe()

    # --- names on the wire (modified UTF-7, or UTF-8 after ENABLE UTF8=ACCEPT) ---------------

    def decode_name(self, raw: bytes) -> str:
        """A mailbox name as the client sent it (RFC 3501 §5.1.3, RFC 6855 §3)."""
        if self.utf8:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise No("Invalid mailbox name: not UTF-8", "CANNOT") from None
        try:
            return utf7.decode(raw)
        except utf7.Utf7Error as exc:
            raise No(f"Invalid mailbox name: {exc}", "CANNOT") from None

    def mbox(self, name: str) -> bytes:
        """A mailbox name for a response."""
        if self.utf8:
            return r.astring(name.encode("utf-8"))
        return r.mailbox(name)

    # --- state changes -------------------------------------------------------------------

    def logged_in(self, account: Account) -> None:
        self.account = account
        self.state = AUTH
        self.conn.user = account.address

    def enter_selected(self, view: SelectedView, subscription: Subscription) -> None:
        self.leave_selected()
        view.condstore = self.condstore
        view.qresync = self.qresync
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

    async def absorb_own(self, mailbox_id: int | None = None, names: bool = False) -> None:
        """This session changed a mailbox (or the mailbox list): NOTIFY should not report it
        back (RFC 5465 §5: "The server SHOULD omit notifying the client if the event is caused
        by this client")."""
        if names and self.account is not None:
            # The store publishes no event for CREATE or SUBSCRIBE; other sessions' NOTIFY
            # (MailboxName, SubscriptionChange) learn of the new list from this wake-up.
            self.store.bus.publish(self.account.id, 0, 0)
        if self.notifier is not None and self.notifier.active:
            await self.notifier.absorb(mailbox_id, names)

    def enable_condstore(self) -> bool:
        """Turn CONDSTORE on (RFC 7162 §3.1); True when this call turned it on. A mailbox
        selected before then learns its HIGHESTMODSEQ now, in an untagged OK (§3.1)."""
        if self.condstore:
            return False
        self.condstore = True
        if self.selected is not None:
            self.selected.condstore = True
            self.write(r.status("*", "OK", "Highest",
                                f"HIGHESTMODSEQ {self.selected.modseq}"))
        return True

    def enable_qresync(self) -> None:
        self.enable_condstore()
        self.qresync = True
        if self.selected is not None:
            self.selected.qresync = True

    # --- main loop -----------------------------------------------------------------------

    async def run(self) -> None:
        caps = " ".join(["CAPABILITY"] + self.capability_list())
        self.write(r.status("*", "OK", "casella IMAP server ready", caps))
        try:
            await self.flush()
            while not self.ending:
                if self.notifier is not None and self.notifier.active and \
                        not self.conn.buffered:
                    # RFC 5465 §3.1: with NOTIFY the client listens all the time.
                    await self.notifier.wait_between_commands(self.timeout)
                try:
                    request = await self.read_request()
                except _Handled:
                    await self.flush()
                    continue
                except ParseError as exc:
                    self.write(r.status(exc.tag or "*", "BAD", exc.message, exc.code))
                    log.info("BAD %s", exc.message, extra=self.log_extra())
                    await self.note_bad()
                    await self.flush()
                    continue
                await self.execute(request)
                await self.flush()
                if self.pending_transform is not None:
                    # RFC 4978 §3: compression starts right after the tagged OK.
                    self.conn.set_transform(self.pending_transform)
                    self.pending_transform = None
                    self.compressed = True
        except SlowClient:
            self.write(r.status("*", "BYE", "The command did not arrive in time", "LIMIT"))
            log.info("slow client cut off", extra=self.log_extra())
        except ReadTimeout:
            self.write(r.status("*", "BYE", "Autologout; idle for too long"))
        except ServerShutdown:
            self.write(r.status("*", "BYE", "Server shutting down", "UNAVAILABLE"))
        except Bye as exc:
            self.write(r.status("*", "BYE", exc.sentence, exc.code))
            log.info("BYE %s", exc.sentence, extra=self.log_extra())
        except ConnectionClosed:
            pass
        finally:
            if self.notifier is not None:
                self.notifier.close()
            self.leave_selected()
            await self.release_connection_slot()
            try:
                await asyncio.wait_for(self.flush(), 5.0)
            except (ConnectionClosed, TimeoutError, OSError):
                pass
            self.conn.close()

    async def note_bad(self) -> None:
        self.bad_commands += 1
        if self.bad_commands >= self.cfg.max_bad_commands:
            raise Bye("Too many invalid commands")

    def note_progress(self, progress: bool) -> None:
        """Issue 7: a client that only polls while nothing changes is cut off eventually."""
        if progress:
            self.idle_commands = 0
            return
        self.idle_commands += 1
        if self.idle_commands >= self.cfg.max_commands_without_progress:
            raise Bye("Too many commands without any change; reconnect when needed", "LIMIT")

    # --- the user+IP connection limit -----------------------------------------------------

    async def take_connection_slot(self, address: str) -> None:
        """Count this session for (user, IP) in every worker's count; BYE when the limit is
        already reached."""
        limit = self.cfg.max_connections_per_user_ip
        slot = await self.app.connections.acquire_user_ip(address, self.conn.peer_ip, limit)
        if slot is None:
            raise Bye(f"Too many connections for this user from your address "
                      f"(the limit is {limit})", "LIMIT")
        self._counted = slot

    async def release_connection_slot(self) -> None:
        slot, self._counted = self._counted, None
        await self.app.connections.release(slot)

    # --- reading a command ---------------------------------------------------------------

    async def read_line(self, timeout: float | None = None) -> bytes:
        """A line that may start after `timeout` (default: the idle timeout) and, once
        started, must be complete within `line_timeout` (issue 7: slow drip)."""
        try:
            return await self.conn.read_line(MAX_LINE,
                                             self.timeout if timeout is None else timeout,
                                             line_timeout=float(self.cfg.line_timeout))
        except LineTimeout:
            raise SlowClient() from None

    async def _rest_of_line(self) -> bytes:
        try:
            return await self.conn.read_line(MAX_LINE, float(self.cfg.line_timeout))
        except ReadTimeout:
            raise SlowClient() from None

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
        append_bytes = 0
        try:
            while (spec := literal_spec(line)) is not None:
                if len(literals) >= MAX_LITERALS:
                    await self._discard_rest(line)
                    self.write(r.status(tag or "*", "BAD", "Too many literals in one command",
                                        "LIMIT"))
                    raise _Handled()
                size, nonsync = spec
                lit = await self._read_literal(tag, name, size, nonsync, total, append_bytes,
                                               is_literal8(line))
                literals.append(lit)
                if isinstance(lit, bytes):
                    total += size
                if name == "APPEND":
                    append_bytes += size
                try:
                    line = await self._rest_of_line()
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
        """Skip a non-synchronising literal already on its way, and every literal and line
        after it that belongs to the same (refused) command. Iterative, and bounded: past
        `limit` octets or MAX_DISCARD_LITERALS literals the client is cut off instead."""
        skipped = 0
        count = 0
        current: tuple[int, bool] | None = spec
        while current is not None:
            size, nonsync = current
            if not nonsync:
                return      # the client waits for "+", which never comes: nothing to skip
            skipped += size
            count += 1
            if skipped > limit or count > MAX_DISCARD_LITERALS:
                raise Bye("Literal too big", "TOOBIG")
            await self._skip(size)
            try:
                line = await self._rest_of_line()
            except LineTooLong as exc:
                line = exc.tail       # only its end matters: does another literal follow?
            current = literal_spec(line)

    async def _discard_rest(self, line: bytes) -> None:
        """Skip the literals (and lines) still to come for a command already refused."""
        spec = literal_spec(line)
        if spec is not None:
            await self._discard_literal_and_rest(spec)

    async def _skip(self, size: int) -> None:
        remaining = size
        while remaining > 0:
            chunk = await self._literal_chunk(min(remaining, CHUNK), size - remaining)
            remaining -= len(chunk)

    async def _literal_chunk(self, most: int, so_far: int) -> bytes:
        """Part of a literal that is on its way. Every `line_timeout` must bring at least
        MIN_LITERAL_RATE octets (or the rest): a slow drip is cut off."""
        now = time.monotonic()
        start, got = self._window
        if so_far == 0 or now - start > self.cfg.line_timeout:
            start, got = now, 0
        deadline = start + self.cfg.line_timeout
        try:
            data = await self.conn.read_some(most, max(deadline - now, 0.001))
        except ReadTimeout:
            raise SlowClient() from None
        got += len(data)
        if got < MIN_LITERAL_RATE and time.monotonic() - start > self.cfg.line_timeout:
            raise SlowClient()
        self._window = (start, got)
        return data

    async def _read_literal(self, tag: str | None, name: str, size: int, nonsync: bool,
                            total: int, append_bytes: int,
                            binary: bool = False) -> bytes | c.ExternalLiteral:
        is_append = name == "APPEND" and self.state != NOT_AUTH
        refusal: tuple[str, str, str] | None = None
        if nonsync and self.cfg.literal_minus and size > MAX_NONSYNC_MINUS:
            # RFC 7888 §5: with LITERAL- a bigger non-synchronising literal is refused; for
            # APPEND the BAD carries TOOBIG.
            refusal = ("BAD", "TOOBIG", (f"Non-synchronising literals are limited to "
                                         f"{MAX_NONSYNC_MINUS} octets; send a synchronising "
                                         "literal"))
        elif is_append:
            limit = self.app.config.limits.max_message_size
            if size > limit:
                refusal = ("NO", "TOOBIG", f"Message is larger than the limit of {limit} octets")
            else:
                refusal = await self._quota_refusal(append_bytes + size)
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
            return await self._stream_message(tag, size, binary)
        data = bytearray()
        while len(data) < size:
            data += await self._literal_chunk(size - len(data), len(data))
        return bytes(data)

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

    async def _stream_message(self, tag: str | None, size: int,
                              binary: bool = False) -> c.ExternalLiteral:
        """Write a large APPEND literal to the blob store as it arrives, in its stored form
        (casella.mail.storeform: bare LF made CRLF). A literal8 is gathered first (bounded by
        the message size limit, checked before "+"): its parts are re-encoded as a whole. If
        the store cannot take it (disk full), the rest is read and dropped and the command is
        answered NO: literal bytes are never read as commands."""
        writer = self.store.blobs.writer()
        remaining = size
        carry = b""
        gathered: list[bytes] | None = [] if binary else None
        failure: ce.StorageError | None = None
        try:
            while remaining > 0:
                chunk = await self._literal_chunk(min(remaining, CHUNK), size - remaining)
                remaining -= len(chunk)
                if failure is not None:
                    continue
                if gathered is not None:
                    gathered.append(chunk)
                    continue
                data = carry + chunk if carry else chunk
                if data.endswith(b"\r") and remaining > 0:
                    carry, data = b"\r", data[:-1]
                else:
                    carry = b""
                try:
                    await writer.write(text_form(data))
                except ce.StorageError as exc:
                    failure = exc
                    writer.abort()
            if gathered is not None and failure is None:
                raw, gathered = b"".join(gathered), None
                try:
                    await writer.write(await asyncio.to_thread(binary_form, raw))
                except ce.StorageError as exc:
                    failure = exc
                    writer.abort()
                del raw
            if failure is None:
                try:
                    staged = await writer.finish(publish_early=True)
                except ce.StorageError as exc:
                    failure = exc
        except BaseException:
            writer.abort()
            raise
        if failure is not None:
            try:
                line = await self._rest_of_line()
            except LineTooLong as exc:
                line = exc.tail
            await self._discard_rest(line)
            kind, code, sentence = _reply_for(failure)
            self.write(r.status(tag or "*", kind, sentence, code))
            log.error("APPEND failed: %s", failure, extra=self.log_extra())
            raise _Handled()
        return c.ExternalLiteral(size, staged)

    # --- dispatch ------------------------------------------------------------------------

    async def execute(self, request: c.Request) -> None:
        from casella.imap.handlers import POLLING, TABLE

        tag, cmd = request.tag, request.command
        name = type(cmd).__name__.upper()
        entry = TABLE.get(type(cmd))
        started = time.monotonic()
        progress = False
        try:
            if entry is None:
                raise Bad("Unknown command")
            handler, states, after = entry
            if not self.state & states:
                raise Bad(_state_sentence(self.state, states))
            done = await handler(self, tag, cmd)
            sent_updates = False
            if self.state == SELECTED and not self.ending:
                sent_updates = await self.send_updates(after, cmd)
            if done is not None:
                self.write(r.status(tag, "OK", done.sentence, done.code))
            self.bad_commands = 0
            progress = sent_updates or type(cmd) not in POLLING
            outcome = "OK"
        except Bye:
            raise
        except ConnectionClosed:
            raise
        except (ReadTimeout, ServerShutdown, SlowClient):
            raise
        except Exception as exc:
            kind, code, sentence = _reply_for(exc)
            self.write(r.status(tag, kind, sentence, code))
            outcome = f"{kind} {sentence}"
            if kind == "NO" and code == "SERVERBUG":
                log.exception("%s failed", name, extra=self.log_extra())
            elif isinstance(exc, ce.StorageError) and not isinstance(exc, ce.BodyGone):
                log.error("%s failed: %s", name, exc, extra=self.log_extra())
            if kind == "BAD":
                self.bad_commands += 1
                if self.bad_commands >= self.cfg.max_bad_commands:
                    raise Bye("Too many invalid commands") from None
        finally:
            _discard_external(cmd)
        log.info("%s %s (%.3fs)", name, outcome, time.monotonic() - started,
                 extra=self.log_extra())
        metrics.command("imap", name, outcome.split(" ", 1)[0].lower())
        if outcome != "OK" and not outcome.startswith("BAD"):
            self.note_progress(False)
        elif outcome == "OK":
            self.note_progress(progress)

    async def send_updates(self, mode: str, cmd: object) -> bool:
        """Untagged updates before the tagged reply. `mode` from the dispatch table: "noexp"
        for FETCH/STORE/SEARCH (no EXPUNGE, RFC 9051 §7.5.1), "force" to ask the store even
        without a bus event (NOOP, CHECK), "normal" otherwise; then what this session's own
        changes did to its update contexts (RFC 5267 §4.3). True when something was sent."""
        sent = await self._sync_selected(mode, cmd)
        view = self.selected
        if view is not None and view.contexts:
            out = await view.contexts.refresh(self.store, view)
            self.write(out)
            sent = sent or bool(out)
        return sent

    async def _sync_selected(self, mode: str, cmd: object) -> bool:
        view = self.selected
        sub = self.subscription
        if view is None or sub is None:
            return False
        uid_form = bool(getattr(cmd, "uid", False))
        allow_expunge = mode != "noexp" or uid_form
        if mode != "force" and not (allow_expunge and view.pending_expunge):
            if not sub.pending:
                return False
            if not sub.pending_after(view.modseq):
                # Only this session's own change, already in the view (SelectedView.own_change).
                sub.drain()
                return False
        sub.drain()
        try:
            out = await view.sync(self.store, allow_expunge)
        except ce.MailboxNotFound:
            raise Bye("The selected mailbox was deleted") from None
        self.write(out)
        if out and self.notifier is not None:
            await self.notifier.fetch_new(view)
        return bool(out)


def _discard_handle(handle: object) -> None:
    discard = getattr(handle, "discard", None)
    if callable(discard):
        discard()


def _discard_external(cmd: object) -> None:
    for msg in getattr(cmd, "messages", ()) if isinstance(cmd, c.Append) else ():
        for part in (msg.message, *msg.catenate):
            if isinstance(part, c.ExternalLiteral):
                _discard_handle(part.handle)


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
    if isinstance(exc, ce.DiskFull):
        # Issue 7 §6: nothing was written; the session goes on and reads keep working.
        return "NO", "LIMIT", "The server's disk is full, try again later"
    if isinstance(exc, ce.BodyGone):
        # RFC 2180 §4.1.2: expunged by another session while the command ran.
        return "NO", "EXPUNGEISSUED", "Some of the messages no longer exist"
    if isinstance(exc, ce.StorageError):
        return "NO", "UNAVAILABLE", "The mail store is not available right now, try again later"
    if isinstance(exc, ce.UserError):
        return "NO", "CANNOT", str(exc)
    return "NO", "SERVERBUG", "Internal error; try again"
