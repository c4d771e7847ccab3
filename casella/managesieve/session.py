"""One ManageSieve connection (RFC 5804): the state machine, dispatch, and the place errors
become NO/BYE.

Lives here: `Session` (capabilities, STARTTLS with the plaintext thrown away, AUTHENTICATE with
SASL PLAIN/LOGIN through the same Authenticator and brute-force defence as IMAP, plaintext
refused without TLS unless allowed, the script commands over the store contract, quotas on the
number and size of scripts, UNAUTHENTICATE, LOGOUT, and the `[managesieve]` timeouts and error
budget). Scripts are checked with casella.delivery.filtering before they are stored, so a
script that does not compile is never installed. Must never: store an unchecked script, log a
password, or read pipelined plaintext after STARTTLS.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from casella.auth import sasl
from casella.delivery.filtering import filtering_for
from casella.delivery.sieve import EXTENSIONS, SieveError
from casella.errors import (
    AlreadyExists,
    CasellaError,
    InvalidName,
    NotFound,
    QuotaExceeded,
    StorageError,
    UserError,
)
from casella.managesieve import proto
from casella.managesieve.proto import Command, ProtocolError, String, Token
from casella.net.streams import (
    ConnectionClosed,
    LineTimeout,
    LineTooLong,
    ReadTimeout,
    ServerShutdown,
)
from casella.store.model import Account
from casella.store.sieverules import check_script_name

if TYPE_CHECKING:
    from casella.managesieve.server import ManageSieveService
    from casella.net.streams import Connection

log = logging.getLogger("casella.managesieve")

_AUTHENTICATED = frozenset({"LISTSCRIPTS", "GETSCRIPT", "PUTSCRIPT", "CHECKSCRIPT", "SETACTIVE",
                            "DELETESCRIPT", "RENAMESCRIPT", "HAVESPACE", "UNAUTHENTICATE"})
_ANY_STATE = frozenset({"CAPABILITY", "LOGOUT", "NOOP"})


class _Close(Exception):
    def __init__(self, response: bytes) -> None:
        super().__init__(response.decode("utf-8", "replace"))
        self.response = response


class Session:
    def __init__(self, service: ManageSieveService, conn: Connection) -> None:
        self.app = service.app
        self.conn = conn
        self.config = self.app.config
        self.limits = self.config.managesieve
        self.rules = filtering_for(self.app.store, self.config)
        self.account: Account | None = None
        self.errors = 0
        self.auth_failures = 0
        self.implicit_tls = service.implicit_tls

    @property
    def plaintext_ok(self) -> bool:
        return self.conn.tls or self.config.auth.allow_plaintext_without_tls

    def capabilities(self) -> bytes:
        cfg = self.config.sieve
        items: list[tuple[str, str | None]] = [
            ("IMPLEMENTATION", "casella"),
            # PROMISES A1: no password mechanism offered on a connection in the clear.
            ("SASL", " ".join(sasl.MECHANISMS) if self.plaintext_ok else ""),
            ("SIEVE", " ".join(EXTENSIONS)),
            ("MAXREDIRECTS", str(cfg.max_redirects)),
            ("VERSION", "1.0"),
        ]
        if not self.conn.tls:
            items.insert(2, ("STARTTLS", None))
        if self.account is not None:
            items.append(("OWNER", self.account.address))
        return proto.capabilities(items)

    async def send(self, data: bytes) -> None:
        self.conn.write(data)
        await self.conn.drain()

    async def run(self) -> None:
        try:
            await self.send(self.capabilities() + proto.ok("casella ManageSieve ready"))
            while True:
                try:
                    tokens = await self.read_command()
                    cmd = proto.parse_command(tokens)
                    response = await self.dispatch(cmd)
                except ProtocolError as exc:
                    response = proto.no(str(exc))
                    self.errors += 1
                    if self.errors >= self.limits.max_bad_commands:
                        raise _Close(proto.bye("Too many errors")) from None
                except LineTooLong:
                    response = proto.no("The line is too long")
                    self.errors += 1
                    if self.errors >= self.limits.max_bad_commands:
                        raise _Close(proto.bye("Too many errors")) from None
                if response:
                    await self.send(response)
        except _Close as exc:
            await self._close(exc.response)
        except LineTimeout:
            await self._close(proto.bye("The command took too long to arrive"))
        except ReadTimeout:
            await self._close(proto.bye("Idle for too long", "TRYLATER"))
        except ServerShutdown:
            await self._close(proto.bye("Server shutting down", "TRYLATER"))
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("ManageSieve session error", extra=self.conn.describe())
            await self._close(proto.bye("Internal server error"))

    async def _close(self, response: bytes) -> None:
        try:
            await self.send(response)
        except (ConnectionClosed, OSError):
            pass
        self.conn.close()

    @property
    def timeout(self) -> float:
        return float(self.limits.idle_timeout if self.account else self.limits.login_timeout)

    async def read_command(self) -> list[Token]:
        """A command line and the literals it carries (RFC 5804 §4)."""
        tokens: list[Token] = []
        line = await self.conn.read_line(proto.MAX_LINE, timeout=self.timeout,
                                         line_timeout=self.limits.line_timeout)
        while True:
            toks, literal = proto.tokenize(line)
            tokens += toks
            if len(tokens) > proto.MAX_ARGS:
                raise ProtocolError("too many arguments")
            if literal is None:
                return tokens
            limit = self.config.sieve.max_script_size + 1024
            if literal > limit:
                # The client sends the bytes anyway (non-synchronizing literal): rather than
                # read a huge upload, the connection ends (RFC 5804 allows BYE at any time).
                raise _Close(proto.bye(f"A literal of more than {limit} bytes",
                                       "QUOTA/MAXSIZE"))
            tokens.append(String(await self.conn.read_exactly(literal, timeout=self.timeout)))
            line = await self.conn.read_line(proto.MAX_LINE, timeout=self.timeout,
                                             line_timeout=self.limits.line_timeout)

    async def dispatch(self, cmd: Command) -> bytes | None:
        name = cmd.name
        if name in _AUTHENTICATED and self.account is None:
            return proto.no("Log in first")
        if name not in _AUTHENTICATED and name not in _ANY_STATE and self.account is not None:
            return proto.no("Already logged in")
        log.info("%s", name, extra=self.conn.describe())
        if name == "CAPABILITY":
            return self.capabilities() + proto.ok()
        if name == "LOGOUT":
            raise _Close(proto.ok("Logout completed"))
        if name == "NOOP":
            if cmd.args:
                return b"OK (TAG " + proto.string(str(cmd.args[0])) + b') "Done"\r\n'
            return proto.ok("Done")
        if name == "STARTTLS":
            return await self.starttls()
        if name == "AUTHENTICATE":
            return await self.authenticate(cmd)
        if name == "UNAUTHENTICATE":
            self.account = None
            self.conn.user = None
            return proto.ok("Logged out; log in again")
        try:
            return await self.script_command(cmd)
        except QuotaExceeded as exc:
            return proto.no(str(exc), "QUOTA/MAXSCRIPTS")
        except NotFound as exc:
            return proto.no(str(exc), "NONEXISTENT")
        except AlreadyExists as exc:
            return proto.no(str(exc), "ALREADYEXISTS")
        except InvalidName as exc:
            return proto.no(str(exc))
        except UserError as exc:
            return proto.no(str(exc), "ACTIVE" if "active" in str(exc) else None)
        except StorageError as exc:
            log.error("storage failure: %s", exc, extra=self.conn.describe())
            return proto.no("Temporary server failure; try again", "TRYLATER")

    async def starttls(self) -> bytes | None:
        if self.conn.tls:
            return proto.no("TLS is already active")
        await self.send(proto.ok("Begin TLS negotiation now"))
        # PROMISES T1: anything pipelined in the clear is thrown away by start_tls.
        await self.conn.start_tls(self.app.tls_context)
        # RFC 5804 §2.2: the capabilities again, now over TLS.
        return self.capabilities() + proto.ok("TLS negotiation successful")

    async def authenticate(self, cmd: Command) -> bytes:
        if not self.plaintext_ok:
            return proto.no("Use STARTTLS first", "ENCRYPT-NEEDED")
        try:
            mech = sasl.mechanism(str(cmd.args[0]))
        except sasl.SaslError:
            return proto.no(f"Unsupported mechanism {str(cmd.args[0])[:40]}")
        try:
            initial = sasl.decode_response(str(cmd.args[1]).encode()) \
                if len(cmd.args) > 1 else None
            step = mech.start(initial)
            while isinstance(step, sasl.Challenge):
                await self.send(proto.string(sasl.encode_challenge(step.data)) + b"\r\n")
                tokens = await self.read_command()
                if len(tokens) != 1 or not isinstance(tokens[0], String):
                    return self._auth_failed("Expected a string with the response")
                step = mech.step(sasl.decode_response(tokens[0].value))
        except sasl.SaslCancelled:
            return proto.no("Authentication cancelled")
        except sasl.SaslError as exc:
            return self._auth_failed(str(exc))
        account = await self.app.auth.login(step.authcid, step.password,
                                            remote_ip=self.conn.peer_ip,
                                            protocol="managesieve", authzid=step.authzid)
        if account is None:
            return self._auth_failed("Authentication failed")
        self.account = account
        self.conn.user = account.address
        return proto.ok("Logged in")

    def _auth_failed(self, text: str) -> bytes:
        self.auth_failures += 1
        if self.auth_failures >= self.limits.max_auth_failures:
            raise _Close(proto.bye("Too many failed logins"))
        return proto.no(text)

    def _check(self, script: bytes) -> bytes | None:
        """The NO for a script that cannot be installed, naming the line; None when fine."""
        if len(script) > self.config.sieve.max_script_size:
            return proto.no(f"The script is {len(script)} bytes; at most "
                            f"{self.config.sieve.max_script_size} are allowed",
                            "QUOTA/MAXSIZE")
        try:
            self.rules.compile(script)
        except SieveError as exc:
            return proto.no(str(exc))
        return None

    async def script_command(self, cmd: Command) -> bytes:
        store = self.app.store
        assert self.account is not None
        aid = self.account.id
        name = cmd.name
        if name == "LISTSCRIPTS":
            out = b""
            for s in await store.sieve_list(aid):
                out += proto.string(s.name) + (b" ACTIVE" if s.active else b"") + b"\r\n"
            return out + proto.ok()
        if name == "GETSCRIPT":
            found = await store.sieve_get(aid, str(cmd.args[0]))
            if found is None:
                return proto.no("There is no such script", "NONEXISTENT")
            data = found.content.encode("utf-8")
            return b"{%d}\r\n" % len(data) + data + b"\r\n" + proto.ok()
        if name == "CHECKSCRIPT":
            assert isinstance(cmd.args[0], bytes)
            return self._check(cmd.args[0]) or proto.ok("The script is valid")
        if name == "PUTSCRIPT":
            script_name = check_script_name(str(cmd.args[0]))
            assert isinstance(cmd.args[1], bytes)
            refusal = self._check(cmd.args[1])
            if refusal is not None:
                return refusal
            await store.sieve_put(aid, script_name, cmd.args[1].decode("utf-8"),
                                  max_scripts=self.config.sieve.max_scripts)
            return proto.ok("Stored")
        if name == "SETACTIVE":
            target = str(cmd.args[0])
            await store.sieve_set_active(aid, target or None)
            return proto.ok("Active script set" if target else "No script is active")
        if name == "DELETESCRIPT":
            await store.sieve_delete(aid, str(cmd.args[0]))
            return proto.ok("Deleted")
        if name == "RENAMESCRIPT":
            await store.sieve_rename(aid, str(cmd.args[0]), str(cmd.args[1]))
            return proto.ok("Renamed")
        if name == "HAVESPACE":
            check_script_name(str(cmd.args[0]))
            size = int(cmd.args[1])
            if size > self.config.sieve.max_script_size:
                return proto.no(f"At most {self.config.sieve.max_script_size} bytes per script",
                                "QUOTA/MAXSIZE")
            scripts = await store.sieve_list(aid)
            if len(scripts) >= self.config.sieve.max_scripts and \
                    all(s.name != cmd.args[0] for s in scripts):
                return proto.no(f"At most {self.config.sieve.max_scripts} scripts",
                                "QUOTA/MAXSCRIPTS")
            return proto.ok()
        raise CasellaError(f"unhandled command {name}")
