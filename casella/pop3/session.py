"""One POP3 session: the AUTHORIZATION → TRANSACTION → UPDATE state machine (RFC 1939 §3).

Lives here: `Pop3Session`, which reads command lines, lets `casella.pop3.proto` parse them,
checks the command is valid in the current state, runs its handler, and turns every failure
into a `-ERR` reply in one place (`_error_reply`); authentication by USER/PASS and by AUTH
(RFC 5034) through `app.auth`; STLS (RFC 2595); streaming RETR/TOP with byte-stuffing; QUIT
and the UPDATE state. Must never: parse protocol syntax itself, touch SQL or files, log a
password or message content, or reply +OK to QUIT before the store call that deletes returned.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from casella import metrics
from casella.app import App
from casella.auth import sasl
from casella.config import Pop3Config
from casella.errors import CasellaError, DiskFull, QuotaExceeded, StorageError
from casella.net.streams import (
    Connection,
    ConnectionClosed,
    LineTimeout,
    LineTooLong,
    ReadTimeout,
    ServerShutdown,
)
from casella.pop3 import proto
from casella.pop3.maildrop import (
    READ_CHUNK,
    TOP_CHUNK,
    Maildrop,
    MaildropLocks,
    OpenMessage,
    Pop3Error,
)
from casella.pop3.proto import State
from casella.store.model import Account

log = logging.getLogger("casella.pop3")

# The timeouts and the bad-command budget are `[pop3]` config keys (casella.config.Pop3Config):
# login_timeout (the whole AUTHORIZATION state), idle_timeout (RFC 1939 §3: an autologout
# timer must be at least 10 minutes), line_timeout (a started command line must be complete
# within it: slow-drip clients are cut off) and max_bad_commands (PROMISES P5).
# Failed logins on one connection before it is closed; the authenticator delays each one.
MAX_AUTH_FAILURES = 5

GREETING = "casella POP3 server ready."
IMPLEMENTATION = "casella"
PLAINTEXT_REFUSED = ("Plaintext authentication is not allowed on an unencrypted connection: "
                     "use STLS first, or the POP3S port.")


class WrongState(proto.Pop3SyntaxError):
    """A known command sent in a state that does not allow it."""


class _StreamBroken(Exception):
    """A multi-line answer failed after its +OK was sent: the client cannot be told with a
    -ERR any more, so the connection is closed."""


def effective_policy(config: Pop3Config, account: Account) -> tuple[str, int]:
    """(delete policy, expire days) for the account: its own choice (the customer page) where
    it made one, else `[pop3] delete` / `expire_days`."""
    delete = account.pop3_delete if account.pop3_delete is not None else config.delete
    days = account.pop3_expire_days if account.pop3_expire_days is not None \
        else config.expire_days
    return delete, days


def _now() -> int:
    return int(time.time())


class Pop3Session:
    def __init__(self, app: App, conn: Connection, locks: MaildropLocks, *,
                 implicit_tls: bool) -> None:
        self.app = app
        self.conn = conn
        self.locks = locks
        self.implicit_tls = implicit_tls
        self.state = State.AUTHORIZATION
        self.pending_user: str | None = None
        self.account: Account | None = None
        self.maildrop: Maildrop | None = None
        self.cfg = app.config.pop3
        self.bad_commands = 0
        self._login_deadline = conn.loop.time() + self.cfg.login_timeout
        self.auth_failures = 0
        self._closing = False
        self._handlers: dict[type[proto.Command], Callable[[proto.Command], Awaitable[None]]] = {
            proto.Capa: self._capa,
            proto.Quit: self._quit,
            proto.Stls: self._stls,
            proto.User: self._user,
            proto.Pass: self._pass,
            proto.Apop: self._apop,
            proto.Auth: self._auth,
            proto.Stat: self._stat,
            proto.List: self._list,
            proto.Uidl: self._uidl,
            proto.Retr: self._retr,
            proto.Top: self._top,
            proto.Dele: self._dele,
            proto.Noop: self._noop,
            proto.Rset: self._rset,
        }

    # --- the loop ------------------------------------------------------------------------

    @property
    def _extra(self) -> dict[str, object]:
        return self.conn.describe()

    async def run(self) -> None:
        try:
            await self.conn.send(proto.ok(GREETING))
            while not self._closing:
                try:
                    line = await self.read_line()
                except LineTooLong as exc:
                    await self._fail(b"?", proto.CommandTooLong(exc.length))
                    continue
                await self._command(line)
        except LineTimeout:
            log.info("command line not completed in time", extra=self._extra)
            await self._last_words(proto.err("Command line not completed in time; closing."))
        except ReadTimeout:
            if self.state is State.AUTHORIZATION and self._login_time_left() <= 0:
                log.info("login timeout", extra=self._extra)
                await self._last_words(proto.err("Not logged in in time; closing."))
            else:
                log.info("idle timeout", extra=self._extra)
                await self._last_words(proto.err("Disconnected for inactivity."))
        except ServerShutdown:
            await self._last_words(proto.err("Server shutting down; try again shortly.",
                                             "SYS/TEMP"))
        except (ConnectionClosed, _StreamBroken) as exc:
            log.info("connection ended: %s", exc, extra=self._extra)
        finally:
            await self._end()

    def _login_time_left(self) -> float:
        return self._login_deadline - self.conn.loop.time()

    async def read_line(self) -> bytes:
        """One line of the client: within the idle timeout (before login: within what is left
        of the login timeout), and once started, complete within the line timeout."""
        timeout = float(self.cfg.idle_timeout)
        if self.state is State.AUTHORIZATION:
            timeout = min(timeout, self._login_time_left())
            if timeout <= 0:
                raise ReadTimeout()
        return await self.conn.read_line(proto.MAX_AUTH_LINE, timeout,
                                         line_timeout=float(self.cfg.line_timeout))

    async def _last_words(self, reply: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.conn.send(reply)

    async def _command(self, line: bytes) -> None:
        keyword = proto.command_keyword(line)
        name = "UNKNOWN"      # the metrics' label: never a word the client made up
        try:
            cmd = proto.parse_command(line)
            name = cmd.keyword
            if self.state not in cmd.states:
                raise self._wrong_state(cmd)
            await self._handlers[type(cmd)](cmd)
            metrics.command("pop3", name, "ok")
        except (ConnectionClosed, _StreamBroken, ServerShutdown, ReadTimeout):
            raise
        except Exception as exc:  # noqa: BLE001  (every failure becomes a -ERR, in one place)
            metrics.command("pop3", name, "bad" if isinstance(exc, proto.Pop3SyntaxError)
                            else "error")
            await self._fail(keyword, exc)

    def _wrong_state(self, cmd: proto.Command) -> WrongState:
        kw = cmd.keyword
        if self.state is State.AUTHORIZATION:
            return WrongState(f"{kw} is only valid after logging in (USER and PASS, or AUTH).")
        if kw == "STLS":
            return WrongState("STLS is only valid before logging in.")
        return WrongState(f"{kw} is not valid after logging in: you are already logged in.")

    # --- errors: the one place that maps them to replies ---------------------------------

    def _error_reply(self, exc: Exception) -> bytes:
        code, text = self._classify(exc)
        return proto.err(text, code)

    def _classify(self, exc: Exception) -> tuple[str | None, str]:
        """(response code, sentence) for any failure of a command."""
        if isinstance(exc, proto.Pop3SyntaxError):
            self.bad_commands += 1
            return None, str(exc)
        if isinstance(exc, Pop3Error):
            return exc.code, str(exc)
        if isinstance(exc, sasl.SaslCancelled):
            return None, "Authentication cancelled."  # RFC 5034 §4: "*" cancels
        if isinstance(exc, sasl.SaslError):
            self.bad_commands += 1
            return None, f"Authentication exchange failed: {exc}."
        # RFC 3206 §4: SYS/TEMP for a passing problem on the server, SYS/PERM for one that
        # will not go away by retrying.
        if isinstance(exc, QuotaExceeded):
            return "SYS/PERM", _sentence(exc)
        if isinstance(exc, DiskFull):
            return "SYS/TEMP", "The server's disk is full; try again later."
        if isinstance(exc, StorageError):
            return "SYS/TEMP", "The mail store is temporarily unavailable; try again later."
        if isinstance(exc, CasellaError):
            return "SYS/PERM", _sentence(exc)
        log.exception("pop3 command failed", extra=self._extra)
        return "SYS/TEMP", "Internal server error; try again later."

    async def _fail(self, keyword: bytes, exc: Exception) -> None:
        reply = self._error_reply(exc)
        log.info("%s failed: %s", keyword.decode("ascii", "replace"),
                 reply[5:].rstrip(b"\r\n").decode("utf-8", "replace"), extra=self._extra)
        if self.bad_commands >= self.cfg.max_bad_commands:
            await self._last_words(reply + proto.err("Too many bad commands; closing."))
            self._closing = True
            return
        if self.auth_failures >= MAX_AUTH_FAILURES:
            await self._last_words(reply + proto.err("Too many failed logins; closing.",
                                                     "AUTH"))
            self._closing = True
            return
        await self.conn.send(reply)

    def _ok(self, keyword: str, detail: str = "") -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s ok%s", keyword, f" {detail}" if detail else "", extra=self._extra)

    # --- AUTHORIZATION -------------------------------------------------------------------

    @property
    def plaintext_allowed(self) -> bool:
        return self.conn.tls or self.app.config.auth.allow_plaintext_without_tls

    @property
    def stls_offered(self) -> bool:
        return not self.implicit_tls and not self.conn.tls

    async def _capa(self, cmd: proto.Command) -> None:
        opts = proto.CapaOptions(
            transaction=self.state is State.TRANSACTION,
            stls=self.stls_offered,
            plaintext_auth=self.plaintext_allowed,
            mechanisms=sasl.MECHANISMS,
            expire_days=(effective_policy(self.app.config.pop3, self.account)[1]
                         if self.account is not None else self.app.config.pop3.expire_days),
            implementation=IMPLEMENTATION, expire_per_user=True)
        await self.conn.send(proto.multiline(proto.ok("Capability list follows."),
                                             proto.capabilities(opts)))
        self._ok("CAPA")

    async def _stls(self, cmd: proto.Command) -> None:
        # RFC 2595 §4: STLS only in AUTHORIZATION (checked by the state table) and only once.
        if not self.stls_offered:
            raise Pop3Error("TLS is already active on this connection.")
        await self.conn.send(proto.ok("Begin TLS negotiation now."))
        # Plaintext pipelined after STLS is discarded by start_tls (PROMISES T1).
        await self.conn.start_tls(self.app.tls_context)
        self.pending_user = None
        log.info("STLS ok %s", self.conn.tls_version, extra=self._extra)

    async def _user(self, cmd: proto.Command) -> None:
        assert isinstance(cmd, proto.User)
        if not self.plaintext_allowed:
            raise Pop3Error(PLAINTEXT_REFUSED, "AUTH")
        # PROMISES A3: USER always succeeds; the verdict comes after PASS, the same for an
        # unknown user and a wrong password.
        self.pending_user = cmd.name
        await self.conn.send(proto.ok())
        self._ok("USER")

    async def _pass(self, cmd: proto.Command) -> None:
        assert isinstance(cmd, proto.Pass)
        if not self.plaintext_allowed:
            raise Pop3Error(PLAINTEXT_REFUSED, "AUTH")
        user, self.pending_user = self.pending_user, None
        if user is None:
            raise Pop3Error("Send USER before PASS.")
        await self._login(user, cmd.password, "")

    async def _apop(self, cmd: proto.Command) -> None:
        raise Pop3Error("APOP is not available: passwords are stored hashed. "
                        "Use USER and PASS, or AUTH, over TLS.")

    async def _auth(self, cmd: proto.Command) -> None:
        assert isinstance(cmd, proto.Auth)
        if not self.plaintext_allowed:
            # PLAIN and LOGIN both send the password as it is: same rule as USER/PASS.
            raise Pop3Error(PLAINTEXT_REFUSED, "AUTH")
        if cmd.mechanism is None:
            # Pre-RFC 5034 clients (Outlook) send a bare AUTH to list the mechanisms.
            lines = [m.encode("ascii") + proto.CRLF for m in sasl.MECHANISMS]
            await self.conn.send(proto.multiline(proto.ok(), lines))
            self._ok("AUTH")
            return
        try:
            mech = sasl.mechanism(cmd.mechanism)
        except sasl.SaslError:
            raise Pop3Error(f"Unsupported authentication mechanism {cmd.mechanism}; "
                            f"use one of {' '.join(sasl.MECHANISMS)}.") from None
        initial = sasl.decode_response(cmd.initial) if cmd.initial is not None else None
        step = mech.start(initial)
        while isinstance(step, sasl.Challenge):
            # RFC 5034 §4: "+ " and the base64 challenge; the answer is one base64 line.
            await self.conn.send(b"+ " + sasl.encode_challenge(step.data) + proto.CRLF)
            try:
                line = await self.read_line()
            except LineTooLong:
                raise Pop3Error(f"Authentication response longer than {proto.MAX_AUTH_LINE} "
                                "octets.") from None
            step = mech.step(sasl.decode_response(line))
        await self._login(step.authcid, step.password, step.authzid)

    async def _login(self, user: str, password: str, authzid: str) -> None:
        account = await self.app.auth.login(user, password, remote_ip=self.conn.peer_ip,
                                            protocol="pop3", authzid=authzid)
        if account is None:
            self.auth_failures += 1
            # RFC 3206 §4 [AUTH]: the credentials are wrong; same sentence whether the user
            # exists or not (PROMISES A3).
            raise Pop3Error("Authentication failed.", "AUTH")
        # RFC 1939 §4: the maildrop is locked for the whole session; RFC 2449 §8.1.2 [IN-USE].
        if not self.locks.acquire(account.id):
            raise Pop3Error("Your mailbox is open in another POP3 session; try again when it "
                            "has ended.", "IN-USE")
        try:
            policy, expire_days = effective_policy(self.app.config.pop3, account)
            self.maildrop = await Maildrop.open(
                self.app.store, account, policy=policy, expire_days=expire_days,
                now=_now(), log_extra={**self._extra, "user": account.address})
        except BaseException:
            self.locks.release(account.id)
            raise
        self.account = account
        self.conn.user = account.address
        self.state = State.TRANSACTION
        md = self.maildrop
        log.info("logged in: %d messages, %d octets%s", md.count, md.octets,
                 f", {md.expired} expired" if md.expired else "", extra=self._extra)
        await self.conn.send(proto.ok(f"Logged in: {_count(md.count, 'message')} "
                                      f"({md.octets} octets)."))

    # --- TRANSACTION ---------------------------------------------------------------------

    @property
    def _md(self) -> Maildrop:
        assert self.maildrop is not None
        return self.maildrop

    async def _stat(self, cmd: proto.Command) -> None:
        # RFC 1939 §5: messages marked deleted are not counted.
        md = self._md
        await self.conn.send(b"+OK %d %d\r\n" % (md.count, md.octets))
        self._ok("STAT")

    async def _list(self, cmd: proto.Command) -> None:
        assert isinstance(cmd, proto.List)
        md = self._md
        if cmd.msg is None:
            first = proto.ok(f"{_count(md.count, 'message')} ({md.octets} octets)")
            self.conn.write(first + md.scan_listing() + proto.TERMINATOR)
            await self.conn.drain()
        else:
            i = md.index(cmd.msg)
            await self.conn.send(b"+OK %d %d\r\n" % (cmd.msg, md.sizes[i]))
        self._ok("LIST")

    async def _uidl(self, cmd: proto.Command) -> None:
        assert isinstance(cmd, proto.Uidl)
        md = self._md
        if cmd.msg is None:
            self.conn.write(proto.ok() + md.uidl_listing() + proto.TERMINATOR)
            await self.conn.drain()
        else:
            i = md.index(cmd.msg)
            await self.conn.send(b"+OK %d %s\r\n" % (cmd.msg, md.uidl(i)))
        self._ok("UIDL")

    async def _retr(self, cmd: proto.Command) -> None:
        assert isinstance(cmd, proto.Retr)
        md = self._md
        msg = await md.open_message(cmd.msg, READ_CHUNK, read_ahead=True)
        # RFC 1939 §7: the size is the one LIST gave (the stored CRLF size, before stuffing).
        await self._stream(f"RETR {cmd.msg}", b"+OK %d octets\r\n" % msg.size, msg, None)
        md.downloaded(msg.index)
        self._ok("RETR", str(cmd.msg))

    async def _top(self, cmd: proto.Command) -> None:
        assert isinstance(cmd, proto.Top)
        md = self._md
        msg = await md.open_message(cmd.msg, TOP_CHUNK)
        sent = await self._stream(f"TOP {cmd.msg}", proto.ok("Top of message follows."), msg,
                                  proto.TopCutter(cmd.lines))
        if sent == msg.size:
            md.downloaded(msg.index)  # TOP with enough lines sent the whole message
        self._ok("TOP", f"{cmd.msg} {cmd.lines}")

    async def _stream(self, what: str, head: bytes, msg: OpenMessage,
                      cutter: proto.TopCutter | None) -> int:
        """Send `head`, the message (cut by `cutter` for TOP) byte-stuffed, and the terminator.
        One piece is held back so that a message of one piece goes out in a single write
        with its +OK line and terminator (no small trailing segment for Nagle and delayed ACK
        to stall). Returns how many message octets were sent."""
        stuffer = proto.DotStuffer()
        if msg.complete:
            # The whole message is read already (most are): one write, no generator.
            piece = msg.first if cutter is None else cutter.feed(msg.first)
            self.conn.write(b"".join((head, stuffer.feed(piece), stuffer.finish())))
            await self.conn.drain()
            return len(piece)
        held = head
        holding_piece = False
        wrote = False
        sent = 0
        try:
            async with contextlib.aclosing(msg.pieces(READ_CHUNK)) as pieces:
                async for piece in pieces:
                    if cutter is not None:
                        piece = cutter.feed(piece)
                    sent += len(piece)
                    if holding_piece:
                        self.conn.write(held)
                        wrote = True
                        held = b""
                        await self.conn.drain()
                    held += stuffer.feed(piece)
                    holding_piece = True
                    if cutter is not None and cutter.done:
                        break
            self.conn.write(held + stuffer.finish())
            wrote = True
            await self.conn.drain()
        except ConnectionClosed:
            raise
        except Exception as exc:
            if wrote:
                log.error("%s broke off: %s", what, exc, extra=self._extra)
                raise _StreamBroken(f"{what} failed after +OK: {exc}") from exc
            raise
        return sent

    async def _dele(self, cmd: proto.Command) -> None:
        assert isinstance(cmd, proto.Dele)
        # RFC 1939 §6: only marked now; removed in the UPDATE state after QUIT.
        self._md.delete(cmd.msg)
        await self.conn.send(proto.ok(f"Message {cmd.msg} marked for deletion."))
        self._ok("DELE", str(cmd.msg))

    async def _noop(self, cmd: proto.Command) -> None:
        await self.conn.send(proto.ok())
        self._ok("NOOP")

    async def _rset(self, cmd: proto.Command) -> None:
        md = self._md
        md.reset()
        await self.conn.send(proto.ok(f"Maildrop has {_count(md.count, 'message')} "
                                      f"({md.octets} octets)."))
        self._ok("RSET")

    # --- QUIT and UPDATE -----------------------------------------------------------------

    async def _quit(self, cmd: proto.Command) -> None:
        self._closing = True
        if self.state is State.AUTHORIZATION:
            # RFC 1939 §4: QUIT before login ends the session without an UPDATE state.
            await self._last_words(proto.ok("Logging out."))
            log.info("QUIT", extra=self._extra)
            return
        md = self._md
        # RFC 1939 §6: the UPDATE state. Downloads first, so that if the deletions fail the
        # downloads still count.
        try:
            await md.record_downloads(_now(), skip_deleted=md.policy == "expunge")
        except CasellaError as exc:
            log.warning("could not record POP3 downloads: %s", exc, extra=self._extra)
        try:
            removed = await md.update()
        except CasellaError as exc:
            log.error("UPDATE failed: %s", exc, extra=self._extra)
            code, text = self._classify(exc)
            reply = proto.err(f"Some deleted messages were not removed: {text}", code)
        else:
            if removed:
                verb = {"hide": "hidden from POP3", "move-to-trash": "moved to Trash"}.get(
                    md.policy, "deleted")
                text = f"Logging out, {_count(removed, 'message')} {verb}."
            else:
                text = "Logging out."
            log.info("QUIT: %d marked messages handled (pop3.delete = %s)", removed,
                     md.policy, extra=self._extra)
            reply = proto.ok(text)
        # The lock goes before the answer, so a client that reconnects as soon as it reads it
        # is not told [IN-USE] by its own finished session.
        self._release()
        await self._last_words(reply)

    async def _end(self) -> None:
        """Whatever ended the session: record completed downloads (also when the client
        vanished without QUIT), release the subscription and the maildrop lock."""
        md = self.maildrop
        if md is None:
            return
        try:
            await md.record_downloads(_now(), skip_deleted=False)
        except Exception as exc:  # noqa: BLE001  (cleanup must not stop the lock release)
            log.warning("could not record POP3 downloads: %s", exc, extra=self._extra)
        finally:
            self._release()

    def _release(self) -> None:
        md, self.maildrop = self.maildrop, None
        if md is not None:
            md.close()
        if self.account is not None:
            self.locks.release(self.account.id)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _sentence(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."
