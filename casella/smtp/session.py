"""One SMTP connection: the state machine, dispatch, and the one place errors become replies.

Lives here: `Session` (greeting, EHLO/HELO, STARTTLS with the RFC 3207 reset, AUTH PLAIN/LOGIN
over casella.auth, the MAIL/RCPT/DATA/BDAT transaction with PIPELINING reply batching, and the
`[smtp]` limits: line length, recipients, message size, authentication failures, protocol
errors, commands without progress, the idle time per command, a deadline per command line
against slow-drip clients and a total time bound on one message's data), and the checks at the
end of data (SPF/DKIM/DMARC from casella.smtp.authcheck, Rspamd from casella.smtp.spamcheck).
Policy (who may send or receive) is asked of casella.smtp.policy; storing is done by
casella.smtp.delivery. Must never: reply 250 to the end of data before the store call returned,
read pipelined plaintext after STARTTLS, log a password or message content.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from casella import metrics
from casella.auth import sasl
from casella.delivery.filtering import filtering_for
from casella.delivery.recipients import LocalTarget, Resolution, route
from casella.delivery.srs import SrsError
from casella.errors import CasellaError, DiskFull, NotFound, QuotaExceeded, StorageError
from casella.limits.sendlimit import check_send_limits
from casella.net.streams import (
    ConnectionClosed,
    LineTimeout,
    LineTooLong,
    ReadTimeout,
    ServerShutdown,
)
from casella.smtp import proto, spamcheck
from casella.smtp.authcheck import (
    REJECT,
    InboundVerdict,
    check_inbound,
    insert_header,
    read_staged,
)
from casella.smtp.data import BdatScanner, DataScanner
from casella.smtp.delivery import (
    Envelope,
    MessageSink,
    Recipient,
    commit,
    from_addresses,
    new_message_id,
)
from casella.smtp.policy import Policy, Role
from casella.smtp.proto import (
    Auth,
    Bdat,
    Command,
    Data,
    Expn,
    Helo,
    Help,
    Mail,
    Noop,
    Quit,
    Rcpt,
    Reply,
    ReplyError,
    Rset,
    StartTls,
    Vrfy,
    parse_command,
)
from casella.store.model import Account

if TYPE_CHECKING:
    from casella.net.streams import Connection
    from casella.smtp.server import SmtpService

log = logging.getLogger("casella.smtp")

# The timeouts and budgets are `[smtp]` config keys (casella.config.SmtpConfig); these are not.
READ_CHUNK = 64 * 1024
MAX_PENDING_REPLIES = 64 * 1024   # flush before this much output waits for the pipeline to end

AUTH_LINE_TOO_LONG = proto.reply(500, "5.5.6", "Authentication exchange line is too long")
INTERNAL_ERROR = proto.reply(421, "4.3.0", "Internal server error; closing the connection")
_COUNTED_ERRORS = frozenset({500, 501, 502, 503, 504, 555})
_VERBS = frozenset({"HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT",
                    "VRFY", "EXPN", "HELP", "AUTH", "STARTTLS"})
# Commands that move no message forward: after `max_commands_without_progress` of them since
# the last accepted message the client is cut off (Postfix's smtpd_junk_command_limit).
_NO_PROGRESS = (Helo, Rset, Noop, Vrfy, Expn, Help)


class CloseSession(Exception):
    """Send this reply and end the session."""

    def __init__(self, r: Reply) -> None:
        super().__init__(str(r))
        self.reply = r


def reply_for_error(exc: Exception) -> Reply:
    """The one place where errors from policy, parser and store become SMTP replies."""
    if isinstance(exc, ReplyError):
        return exc.reply
    if isinstance(exc, DiskFull):
        return proto.STORAGE_FULL
    if isinstance(exc, StorageError):
        return proto.LOCAL_ERROR
    if isinstance(exc, QuotaExceeded):
        return proto.MAILBOX_FULL
    if isinstance(exc, NotFound):
        return proto.UNKNOWN_USER
    return proto.LOCAL_ERROR


@dataclass(slots=True)
class _Chunking:
    """A BDAT transaction in progress (RFC 3030)."""

    scanner: BdatScanner
    sink: MessageSink
    deadline: float                       # loop time by which BDAT LAST must have arrived
    failure: StorageError | None = None   # a write failed: the rest is read and dropped


def _describe(cmd: Command) -> str:
    """The command as logged: never an AUTH response (it carries the password)."""
    if isinstance(cmd, Mail):
        return f"MAIL FROM:<{cmd.sender.address if cmd.sender else ''}>"
    if isinstance(cmd, Rcpt):
        return f"RCPT TO:<{cmd.recipient.address}>"
    if isinstance(cmd, Auth):
        return f"AUTH {cmd.mechanism}"
    if isinstance(cmd, Bdat):
        return f"BDAT {cmd.size}{' LAST' if cmd.last else ''}"
    if isinstance(cmd, Helo):
        return f"{'EHLO' if cmd.extended else 'HELO'} {cmd.domain}"
    return type(cmd).__name__.upper()


class Session:
    def __init__(self, service: SmtpService, conn: Connection) -> None:
        self.service = service
        self.app = service.app
        self.conn = conn
        self.role = service.role
        self.hostname = self.app.hostname
        self.max_size = self.app.config.limits.max_message_size
        self.policy = Policy(self.app.store, self.hostname, self.role)
        self.helo: str | None = None
        self.esmtp = False
        self.account: Account | None = None
        self.tx: Envelope | None = None
        self.chunking: _Chunking | None = None
        self.limits = self.app.config.smtp
        self.auth_failures = 0
        self.errors = 0
        self.without_progress = 0
        self._out: list[bytes] = []
        self._out_size = 0
        self._note = ""          # extra detail for the command's log line
        self._verb = ""          # the first word of the command line being answered

    # --- output --------------------------------------------------------------------------

    def send(self, r: Reply) -> None:
        data = r.render()
        self._out.append(data)
        self._out_size += len(data)

    async def flush(self) -> None:
        if self._out:
            data = b"".join(self._out)
            self._out.clear()
            self._out_size = 0
            self.conn.write(data)
            await self.conn.drain()

    async def _close_with(self, r: Reply, logged: bool = False) -> None:
        self.send(r)
        try:
            await self.flush()
        except (ConnectionClosed, OSError):
            pass
        if not logged:
            log.info("closing: %s", r, extra=self.conn.describe())
        self.conn.close()

    def _log(self, what: str, r: Reply | None) -> None:
        outcome = f"{r.code} {r.status}".rstrip() if r is not None else "-"
        # The one place every answered command passes: count it by its verb (a client's
        # made-up word counts as UNKNOWN, never as a label of its own).
        verb = what.split(" ", 1)[0] if what != "?" else self._verb
        metrics.command(self.service.name, verb if verb in _VERBS else "UNKNOWN",
                        "ok" if r is None or r.code < 400 else
                        "bad" if r.code in _COUNTED_ERRORS else "error")
        note = f" {self._note}" if self._note else ""
        log.info("%s -> %s%s", what, outcome, note, extra=self.conn.describe())
        self._note = ""

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._loop()
        except ConnectionClosed:
            pass
        finally:
            self._reset_transaction()

    async def _loop(self) -> None:
        self.send(proto.greeting(self.hostname))
        while True:
            # RFC 2920 §3.2: answer a pipelined group once the client's input is consumed; a
            # client that pipelines without end is answered as it goes, so its replies wait
            # on its own reading (TCP flow control) rather than pile up here.
            if not self.conn.buffered or self._out_size >= MAX_PENDING_REPLIES:
                await self.flush()
            what = "?"
            try:
                try:
                    line = await self.conn.read_line(proto.MAX_COMMAND_LINE,
                                                     timeout=self.limits.command_timeout,
                                                     line_timeout=self.limits.line_timeout)
                except LineTooLong:
                    what = "(long line)"
                    raise ReplyError(proto.LINE_TOO_LONG)
                self._verb = line[:9].split(b" ", 1)[0].decode("ascii", "replace").upper()
                cmd = parse_command(line)
                what = _describe(cmd)
                self._count_progress(cmd)
                r = await self._dispatch(cmd)
            except CloseSession as exc:
                self._log(what, exc.reply)
                await self._close_with(exc.reply, logged=True)
                return
            except LineTimeout:
                await self._close_with(proto.LINE_TIMEOUT)
                return
            except ReadTimeout:
                await self._close_with(proto.IDLE_TIMEOUT)
                return
            except ServerShutdown:
                await self._close_with(proto.SHUTTING_DOWN)
                return
            except ConnectionClosed:
                raise
            except (ReplyError, CasellaError) as exc:
                r = reply_for_error(exc)
                if isinstance(exc, StorageError):
                    log.error("storage failure: %s", exc, extra=self.conn.describe())
            except Exception:
                log.exception("SMTP session error", extra=self.conn.describe())
                await self._close_with(INTERNAL_ERROR)
                return
            if r is None:
                continue      # the handler has answered and logged already (STARTTLS)
            self._log(what, r)
            self.send(r)
            if r.code in _COUNTED_ERRORS:
                self.errors += 1
                if self.errors >= self.limits.max_bad_commands:
                    await self._close_with(proto.TOO_MANY_ERRORS)
                    return

    def _count_progress(self, cmd: Command) -> None:
        """PROMISES P5 / issue 7 §3: a client that keeps a connection busy without ever
        sending a message is cut off; an accepted message starts the count again."""
        if isinstance(cmd, _NO_PROGRESS):
            self.without_progress += 1
            if self.without_progress > self.limits.max_commands_without_progress:
                raise CloseSession(proto.NO_PROGRESS)

    async def _dispatch(self, cmd: Command) -> Reply | None:
        if isinstance(cmd, Helo):
            return self._helo(cmd)
        if isinstance(cmd, Mail):
            return await self._mail(cmd)
        if isinstance(cmd, Rcpt):
            return await self._rcpt(cmd)
        if isinstance(cmd, Data):
            return await self._data()
        if isinstance(cmd, Bdat):
            return await self._bdat(cmd)
        if isinstance(cmd, Rset):
            self._reset_transaction()
            return proto.RESET_OK
        if isinstance(cmd, Noop):
            return proto.NOOP_OK
        if isinstance(cmd, Quit):
            raise CloseSession(proto.closing(self.hostname))
        if isinstance(cmd, Vrfy):
            return proto.VRFY_NO      # RFC 5321 §3.5.3: 252 reveals nothing
        if isinstance(cmd, Expn):
            return proto.EXPN_NO
        if isinstance(cmd, Help):
            return proto.HELP
        if isinstance(cmd, Auth):
            return await self._auth(cmd)
        if isinstance(cmd, StartTls):
            return await self._starttls()
        raise AssertionError(f"unhandled command {cmd!r}")

    def _reset_transaction(self) -> None:
        if self.chunking is not None:
            self.chunking.sink.abort()
            self.chunking = None
        self.tx = None

    # --- greeting and TLS ----------------------------------------------------------------

    @property
    def auth_offered(self) -> bool:
        """A1: AUTH only on submission, and only over TLS unless the admin allowed plaintext."""
        return self.role is Role.SUBMISSION and (
            self.conn.tls or self.app.config.auth.allow_plaintext_without_tls)

    def _helo(self, cmd: Helo) -> Reply:
        self._reset_transaction()          # RFC 5321 §4.1.4: EHLO/HELO imply RSET
        self.helo = cmd.domain
        self.esmtp = cmd.extended
        if not cmd.extended:
            return proto.helo_reply(self.hostname)
        caps = ["PIPELINING", f"SIZE {self.max_size}", "8BITMIME", "SMTPUTF8", "CHUNKING",
                "ENHANCEDSTATUSCODES", "DSN"]
        if not self.conn.tls:
            caps.append("STARTTLS")
        if self.auth_offered:
            caps.append("AUTH " + " ".join(sasl.MECHANISMS))
        return proto.ehlo_reply(self.hostname, cmd.domain, caps)

    async def _starttls(self) -> Reply | None:
        if self.conn.tls:
            return proto.TLS_ALREADY
        self.send(proto.READY_TLS)
        await self.flush()
        # Connection.start_tls throws away whatever the client pipelined after STARTTLS
        # (RFC 3207 §4.2, PROMISES T1) before the handshake.
        await self.conn.start_tls(self.app.tls_context)
        # RFC 3207 §4.2 / PROMISES T2: forget everything learnt before TLS.
        self._reset_transaction()
        self.helo = None
        self.esmtp = False
        self.account = None
        self.conn.user = None
        self._note = f"{self.conn.tls_version} {self.conn.tls_cipher}"
        self._log("STARTTLS", proto.READY_TLS)
        return None

    # --- AUTH ----------------------------------------------------------------------------

    async def _auth(self, cmd: Auth) -> Reply:
        if self.role is not Role.SUBMISSION:
            return proto.AUTH_NOT_AVAILABLE
        if not self.auth_offered:
            return proto.AUTH_NEEDS_TLS
        if not self.esmtp:
            return proto.NEED_EHLO
        if self.account is not None:
            return proto.AUTH_ALREADY
        if self.tx is not None:
            return proto.AUTH_IN_TRANSACTION
        try:
            mech = sasl.mechanism(cmd.mechanism)
        except sasl.SaslError:
            return proto.AUTH_UNKNOWN_MECH
        try:
            initial = sasl.decode_response(cmd.initial) if cmd.initial is not None else None
            step = mech.start(initial)
            while isinstance(step, sasl.Challenge):
                self.send(proto.Reply(334, "", (sasl.encode_challenge(step.data).decode(),)))
                await self.flush()
                try:
                    line = await self.conn.read_line(proto.MAX_AUTH_LINE,
                                                     timeout=self.limits.command_timeout,
                                                     line_timeout=self.limits.line_timeout)
                except LineTooLong:
                    return AUTH_LINE_TOO_LONG
                step = mech.step(sasl.decode_response(line))
        except sasl.SaslCancelled:
            return proto.AUTH_CANCELLED
        except sasl.SaslError as exc:
            self._note = str(exc)
            return self._auth_failed(proto.AUTH_BAD_BASE64 if "base64" in str(exc)
                                     else proto.AUTH_FAILED)
        account = await self.app.auth.login(step.authcid, step.password,
                                            remote_ip=self.conn.peer_ip,
                                            protocol=self.service.name, authzid=step.authzid)
        if account is None:
            self._note = f"user={proto.safe_text(step.authcid, 64)}"
            return self._auth_failed(proto.AUTH_FAILED)
        self.account = account
        self.conn.user = account.address
        return proto.AUTH_OK

    def _auth_failed(self, r: Reply) -> Reply:
        self.auth_failures += 1
        if self.auth_failures >= self.limits.max_auth_failures:
            raise CloseSession(proto.AUTH_TOO_MANY)
        return r

    # --- the mail transaction ------------------------------------------------------------

    async def _mail(self, cmd: Mail) -> Reply:
        if self.helo is None:
            return proto.NEED_EHLO
        if self.tx is not None:
            return proto.NESTED_MAIL
        if self.role is Role.SUBMISSION and self.account is None:
            return proto.AUTH_NEEDS_TLS if not self.auth_offered else proto.AUTH_REQUIRED
        if cmd.has_params and not self.esmtp:
            return proto.reply(555, "5.5.4", "MAIL parameters need EHLO")
        if cmd.size is not None and cmd.size > self.max_size:
            return proto.TOO_BIG           # RFC 1870 §6 / PROMISES Q5
        sender = cmd.sender
        if sender is not None and not sender.is_ascii and not cmd.smtputf8:
            return proto.NEED_SMTPUTF8
        if self.role is Role.SUBMISSION:
            assert self.account is not None
            if sender is None:
                return proto.NULL_SENDER_SUBMISSION
            if not await self.policy.owns(self.account, sender.address):
                return proto.SENDER_NOT_OWNED
        self.tx = Envelope(
            id=new_message_id(), mail=cmd, sender=sender.address if sender else "",
            account=self.account, helo=self.helo, peer_ip=self.conn.peer_ip, esmtp=self.esmtp,
            tls_version=self.conn.tls_version if self.conn.tls else None,
            tls_cipher=self.conn.tls_cipher if self.conn.tls else None)
        self._note = f"id={self.tx.id}"
        return proto.SENDER_OK

    async def _rcpt(self, cmd: Rcpt) -> Reply:
        tx = self.tx
        if tx is None:
            return proto.NEED_MAIL
        if self.chunking is not None:
            return proto.BAD_SEQUENCE
        if cmd.has_params and not self.esmtp:
            return proto.reply(555, "5.5.4", "RCPT parameters need EHLO")
        if len(tx.recipients) >= self.limits.max_recipients:
            return proto.TOO_MANY_RECIPIENTS
        if not cmd.recipient.is_ascii and not tx.mail.smtputf8:
            return proto.NEED_SMTPUTF8
        resolution = await self._srs_bounce(cmd) if self.role is Role.MX else None
        if resolution is None:
            resolution = await self.policy.resolve_recipient(cmd.recipient, self.account)
        if self.role is Role.SUBMISSION and self.account is not None and resolution.remote:
            # Issue 6: the hourly and defers-and-failures limits (and an admin hold), checked
            # before the message is taken, as a temporary 450 4.7.1 the client retries.
            pending = sum(len(r.resolution.remote) for r in tx.recipients)
            refusal = await check_send_limits(self.app.store, self.app.config.limits,
                                              self.account, pending, len(resolution.remote))
            if refusal is not None:
                return proto.reply(refusal.code, refusal.status, refusal.text)
        tx.recipients.append(Recipient(cmd, resolution))
        return proto.RECIPIENT_OK

    async def _srs_bounce(self, cmd: Rcpt) -> Resolution | None:
        """Issue 20: a bounce to an SRS address of ours (a message we forwarded) goes back to
        the original sender; one whose hash or age does not check is refused here."""
        rules = filtering_for(self.app.store, self.app.config)
        try:
            original = await rules.reverse_srs(cmd.recipient.address)
        except SrsError as exc:
            self._note = f"srs: {exc}"
            raise ReplyError(proto.reply(550, "5.1.1", "Invalid or expired SRS address"))
        if original is None:
            return None
        where = await route(self.app.store, original)
        if where.empty:
            raise ReplyError(proto.UNKNOWN_USER)
        self._note = "srs reversed"
        return Resolution(cmd.recipient.address, where.local, where.remote)

    async def _data(self) -> Reply:
        tx = self.tx
        if tx is None:
            return proto.NEED_MAIL
        if self.chunking is not None:
            return proto.DATA_AFTER_BDAT
        if not tx.recipients:
            return proto.NO_VALID_RECIPIENTS   # RFC 2920 §3.1 / RFC 5321 §3.3
        tx.received_at = datetime.now(UTC).replace(microsecond=0)
        sink = MessageSink(self.app.store, self.hostname, tx)
        scanner = DataScanner(self.max_size)
        deadline = self.conn.loop.time() + self.limits.data_timeout
        failure: StorageError | None = None
        try:
            try:
                await sink.start()
            except StorageError as exc:
                failure = exc       # still read the data through its end, to stay in step
                sink.abort()
            self.send(proto.START_DATA)
            await self.flush()
            while True:
                chunk = await self.conn.read_some(READ_CHUNK, timeout=self._data_wait(deadline))
                out, leftover = scanner.feed(chunk)
                if scanner.refused or failure is not None:
                    if not sink.aborted:
                        sink.abort()
                elif out:
                    try:
                        await sink.write(out)
                    except StorageError as exc:
                        # PROMISES M2/D2: the disk filled mid-message. The rest of the data
                        # is read and dropped up to the real terminator, so no line of the
                        # message is ever taken for a command; the answer comes after it.
                        failure = exc
                        sink.abort()
                if leftover is not None:
                    self.conn.unread(leftover)   # pipelined commands after the end of data
                    break
        except ReadTimeout:
            sink.abort()
            self.tx = None
            raise CloseSession(proto.DATA_TIMEOUT) from None
        except BaseException:
            # Disconnect, timeout or shutdown in the middle: nothing is stored or queued.
            sink.abort()
            self.tx = None
            raise
        if failure is not None and not scanner.refused:
            self.tx = None
            self._note = f"id={tx.id}"
            raise failure
        return await self._end_of_message(sink, scanner.bare, scanner.too_big, scanner.size)

    def _data_wait(self, deadline: float) -> float:
        """How long the next read of message data may wait: the idle time per command, cut
        short by the total bound on one message's transfer (`data_timeout`)."""
        remaining = deadline - self.conn.loop.time()
        if remaining <= 0:
            raise ReadTimeout()
        return min(float(self.limits.command_timeout), remaining)

    async def _discard(self, n: int) -> None:
        """Read and drop the data of a refused BDAT (RFC 3030 §2: it must still be read)."""
        deadline = self.conn.loop.time() + self.limits.data_timeout
        try:
            while n > 0:
                chunk = await self.conn.read_some(min(n, READ_CHUNK),
                                                  timeout=self._data_wait(deadline))
                n -= len(chunk)
        except ReadTimeout:
            raise CloseSession(proto.DATA_TIMEOUT) from None

    async def _bdat(self, cmd: Bdat) -> Reply:
        tx = self.tx
        refusal = None
        if not self.esmtp:
            refusal = proto.NEED_EHLO
        elif tx is None:
            refusal = proto.BDAT_NO_TRANSACTION
        elif not tx.recipients:
            refusal = proto.NO_VALID_RECIPIENTS
        if refusal is not None or tx is None:
            await self._discard(cmd.size)
            return refusal or proto.BAD_SEQUENCE
        if self.chunking is None:
            tx.received_at = datetime.now(UTC).replace(microsecond=0)
            sink = MessageSink(self.app.store, self.hostname, tx)
            self.chunking = _Chunking(BdatScanner(self.max_size), sink,
                                      self.conn.loop.time() + self.limits.data_timeout)
            try:
                await sink.start()
            except StorageError as exc:
                self.chunking.failure = exc
                sink.abort()
        st = self.chunking
        remaining = cmd.size
        try:
            while remaining > 0:
                chunk = await self.conn.read_some(min(remaining, READ_CHUNK),
                                                  timeout=self._data_wait(st.deadline))
                remaining -= len(chunk)
                out = st.scanner.feed(chunk)
                if st.scanner.refused or st.failure is not None:
                    if not st.sink.aborted:
                        st.sink.abort()
                elif out:
                    try:
                        await st.sink.write(out)
                    except StorageError as exc:
                        st.failure = exc     # the chunk is still read through its end
                        st.sink.abort()
        except ReadTimeout:
            self._reset_transaction()
            raise CloseSession(proto.DATA_TIMEOUT) from None
        except BaseException:
            self._reset_transaction()
            raise
        if st.failure is not None:
            # The transaction is over (RFC 3030 §2: later chunks get 503 and are discarded).
            failure = st.failure
            self._reset_transaction()
            raise failure
        if st.scanner.refused:
            # The transaction is over; later chunks of it get 503 and are discarded.
            self._note = f"size>={st.scanner.size}"
            r = proto.BARE_NEWLINE if st.scanner.bare else proto.TOO_BIG
            self._reset_transaction()
            return r
        if not cmd.last:
            return proto.chunk_accepted(cmd.size)
        st.scanner.finish()
        self.chunking = None
        return await self._end_of_message(st.sink, st.scanner.bare, st.scanner.too_big,
                                          st.scanner.size)

    async def _end_of_message(self, sink: MessageSink, bare: bool, too_big: bool,
                              size: int) -> Reply:
        """After DATA's terminator or BDAT LAST: check, store, answer. The transaction ends
        here whatever the outcome (RFC 5321 §4.1.1.4)."""
        env = self.tx
        self.tx = None
        assert env is not None
        self._note = f"id={env.id} size={size} rcpts={len(env.recipients)}"
        if bare:
            sink.abort()
            return proto.BARE_NEWLINE
        if too_big:
            sink.abort()
            return proto.TOO_BIG
        if self.role is Role.SUBMISSION:
            refusal = await self._check_from(sink)
            if refusal is not None:
                sink.abort()
                return refusal
        mx = self.role is Role.MX and sink.local is not None
        inbound = mx and self.app.config.inbound.checks
        spam = self.app.spam
        scan = spam is not None and spam.wants(size, self.role is Role.SUBMISSION)
        junk = False
        data = sink.local_data() if mx and (inbound or scan) else None
        if data is not None:
            # Issue 6 §5 and issue 20: SPF, DKIM, DMARC and Rspamd on what arrives, checked
            # while the message is still in memory, so it is written to disk once, marked.
            refusal, marked, junk = await self._check_message(env, data, inbound, scan)
            if refusal is not None:
                sink.abort()
                return refusal
            local, queued = await sink.finish(marked)
        else:
            local, queued = await sink.finish()
            staged = local if local is not None else queued
            if (inbound or scan) and staged is not None:
                # Too big to have been kept in memory (or a submission): read back.
                data = await read_staged(staged)
                refusal, marked, junk = await self._check_message(env, data, inbound, scan)
                if refusal is not None:
                    for blob in (local, queued):
                        if blob is not None:
                            blob.discard()
                    return refusal
                if mx and local is not None and marked is not data:
                    checked = await self.app.store.blobs.stage(marked, publish_early=True)
                    local.discard()
                    local = checked
        try:
            if junk:
                for r in env.recipients:
                    r.resolution.local = [
                        LocalTarget(t.account, await spamcheck.junk_mailbox(self.app.store,
                                                                     t.account.id))
                        for t in r.resolution.local]
            result = await commit(self.app.store, self.hostname, env, local, queued, sink,
                                  self.conn.describe(),
                                  filtering_for(self.app.store, self.app.config))
            if result.positive:
                self.without_progress = 0
                metrics.message("received")
            return result
        finally:
            for blob in (local, queued):
                if blob is not None:
                    blob.discard()

    async def _check_message(self, env: Envelope, data: bytes, inbound: bool, scan: bool
                             ) -> tuple[Reply | None, bytes, bool]:
        """The checks at the end of data: (a refusal, or None; the message as it is to be
        stored; whether it goes to Junk). DMARC first: a message it rejects is not scanned."""
        header = b""
        junk = False
        if inbound:
            verdict = await self._check_inbound(env, data)
            if verdict.action == REJECT:
                return proto.reply(verdict.reply_code, verdict.reply_status,
                                   verdict.reply_text), data, False
            header = verdict.header
            junk = verdict.mailbox != "INBOX"
        if scan:
            assert self.app.spam is not None
            submission = self.role is Role.SUBMISSION
            spam = await spamcheck.scan(self.app.spam, env, data, submission)
            self._note += f" spam={spam.summary}"
            if spam.reply is not None:
                if submission and spam.outcome == spamcheck.REFUSE:
                    try:
                        await spamcheck.count_refused(self.app.store, self.app.config.limits,
                                                      self.hostname, env, spam,
                                                      self.conn.describe())
                    except StorageError as exc:
                        # The refusal stands; only its bookkeeping is lost.
                        log.error("could not count refused message %s against %s: %s",
                                  env.id, env.account.address if env.account else "?", exc,
                                  extra=self.conn.describe())
                return proto.reply(*spam.reply), data, False
            if not submission:
                data = spamcheck.mark_message(data, spam)
                junk = junk or spam.outcome == spamcheck.TO_JUNK
        return None, insert_header(data, header) if header else data, junk

    async def _check_inbound(self, env: Envelope, data: bytes) -> InboundVerdict:
        verdict = await check_inbound(hostname=self.hostname, ip=self.conn.peer_ip,
                                      helo=env.helo, mail_from=env.sender, message=data)
        self._note += f" dmarc={verdict.dmarc.result}"
        return verdict

    async def _check_from(self, sink: MessageSink) -> Reply | None:
        """PROMISES A5 for the header: every From: address must be the submitter's own."""
        assert self.account is not None
        header = sink.head.header
        if header is None:
            return proto.HEADER_TOO_BIG
        addresses = from_addresses(header)
        if not addresses:
            return proto.FROM_MISSING
        for address in addresses:
            if not await self.policy.owns(self.account, address):
                self._note = f"from={proto.safe_text(address, 100)}"
                return proto.FROM_NOT_OWNED
        return None
