"""A scriptable remote SMTP server on loopback for the outbound tests.

Runs in its own thread with its own event loop, so it serves both asyncio tests (the queue
runner in the test's loop) and the `server` fixture (casella in its own thread). Scripting:
- `modes`: a list consumed one per connection ("accept", "greet_421", "greet_554",
  "garbage", "stall_greeting", "drop_mid_data", "drop_after_data", "stall_after_data",
  "tls_broken"); "accept" when empty.
- `rcpt_replies[address]`, `mail_reply`, `data_replies` (consumed per transaction).
- extensions: `pipelining`, `dsn`, `smtputf8`, `starttls` (needs `tls_context`), `auth`
  (username, password), `size_limit`.
Records `messages` (only those it answered 2xx at end of data), `transactions`, `commands`.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Received:
    mail_from: str
    mail_params: str
    rcpts: list[str]
    rcpt_params: list[str]
    data: bytes          # unstuffed, without the terminator
    raw: bytes           # as it came over the wire, terminator included
    tls: bool
    auth: str | None


@dataclass
class FakeMX:
    host: str = "127.0.0.1"
    bind_port: int = 0
    name: str = "mx.remote.test"
    modes: list[str] = field(default_factory=list)
    rcpt_replies: dict[str, str] = field(default_factory=dict)
    mail_reply: str = "250 2.1.0 sender ok"
    data_replies: list[str] = field(default_factory=list)
    pipelining: bool = True
    dsn: bool = True
    smtputf8: bool = True
    starttls: bool = False
    tls_context: ssl.SSLContext | None = None
    auth: tuple[str, str] | None = None
    size_limit: int = 0
    messages: list[Received] = field(default_factory=list)
    transactions: int = 0
    connections: int = 0
    commands: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True,
                                        name="fake-mx")
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        self._stall = asyncio.Event()

    async def _start(self) -> asyncio.AbstractServer:
        return await asyncio.start_server(self._handle, self.host, self.bind_port)

    def close(self) -> None:
        async def stop() -> None:
            self._server.close()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()
        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)

    # --- what the tests look at ----------------------------------------------------------

    def accepted(self) -> list[str]:
        """Every recipient of every accepted message (duplicates show)."""
        with self._lock:
            return [r for m in self.messages for r in m.rcpts]

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.messages) >= n:
                    return list(self.messages)
            time.sleep(0.05)
        raise AssertionError(f"the fake MX got {len(self.messages)} messages, not {n}")

    # --- the server ----------------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self.connections += 1
            mode = self.modes.pop(0) if self.modes else "accept"
        try:
            await self._session(mode, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError, OSError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def _session(self, mode: str, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> None:
        def send(line: str) -> None:
            writer.write(line.encode() + b"\r\n")

        if mode == "stall_greeting":
            await asyncio.sleep(3600)
        if mode == "garbage":
            writer.write(b"hello, who are you?\r\n")
            await writer.drain()
            await reader.read(1000)
            return
        if mode == "greet_421":
            send(f"421 4.3.2 {self.name} busy, try later")
            await writer.drain()
            return
        if mode == "greet_554":
            send(f"554 5.3.2 {self.name} no service")
            await writer.drain()
            await reader.read(1000)
            return
        send(f"220 {self.name} ESMTP fake")
        await writer.drain()
        tls = False
        authed: str | None = None
        mail_from = mail_params = ""
        rcpts: list[str] = []
        rcpt_params: list[str] = []
        while True:
            line = await reader.readuntil(b"\r\n")
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            with self._lock:
                self.commands.append(text)
            verb = text.split(" ", 1)[0].upper()
            if verb == "EHLO":
                caps = [f"250-{self.name} hello"]
                if self.pipelining:
                    caps.append("250-PIPELINING")
                caps.append(f"250-SIZE {self.size_limit}" if self.size_limit else "250-SIZE")
                caps.append("250-8BITMIME")
                if self.smtputf8:
                    caps.append("250-SMTPUTF8")
                if self.dsn:
                    caps.append("250-DSN")
                if self.starttls and not tls:
                    caps.append("250-STARTTLS")
                if self.auth and (tls or not self.starttls):
                    caps.append("250-AUTH PLAIN LOGIN")
                caps.append("250 ENHANCEDSTATUSCODES")
                writer.write(("\r\n".join(caps) + "\r\n").encode())
            elif verb == "HELO":
                send(f"250 {self.name}")
            elif verb == "STARTTLS":
                send("220 2.0.0 go ahead")
                await writer.drain()
                if mode == "tls_broken":
                    writer.write(b"\x15\x03\x01\x00\x02\x02\x28 not tls")
                    await writer.drain()
                    return
                assert self.tls_context is not None
                await writer.start_tls(self.tls_context)
                tls = True
                continue
            elif verb == "AUTH":
                parts = text.split()
                if len(parts) == 3 and parts[1].upper() == "PLAIN":
                    _, user, password = base64.b64decode(parts[2]).decode().split("\0")
                    if self.auth and (user, password) == self.auth:
                        authed = user
                        send("235 2.7.0 ok")
                    else:
                        send("535 5.7.8 bad credentials")
                else:
                    send("504 5.5.4 PLAIN only here")
            elif verb == "MAIL":
                mail_from = text[text.index("<") + 1:text.index(">")]
                mail_params = text[text.index(">") + 1:].strip()
                rcpts, rcpt_params = [], []
                send(self.mail_reply)
            elif verb == "RCPT":
                addr = text[text.index("<") + 1:text.index(">")]
                reply = self.rcpt_replies.get(addr, "250 2.1.5 ok")
                if reply.startswith("2"):
                    rcpts.append(addr)
                    rcpt_params.append(text[text.index(">") + 1:].strip())
                send(reply)
            elif verb == "DATA":
                if not rcpts or not self.mail_reply.startswith("2"):
                    send("554 5.5.1 no valid recipients")
                    await writer.drain()
                    continue
                send("354 go ahead")
                await writer.drain()
                if mode == "drop_mid_data":
                    await reader.read(10)
                    return
                raw = b""
                while True:
                    chunk = await reader.readuntil(b"\r\n")
                    raw += chunk
                    if chunk == b".\r\n":
                        break
                with self._lock:
                    self.transactions += 1
                if mode == "drop_after_data":
                    return
                if mode == "stall_after_data":
                    await asyncio.sleep(3600)
                body = raw[:-3]
                lines = body.split(b"\r\n")
                data = b"\r\n".join(ln[1:] if ln.startswith(b".") else ln for ln in lines)
                with self._lock:
                    reply = self.data_replies.pop(0) if self.data_replies else \
                        "250 2.0.0 queued as FAKE"
                    if reply.startswith("2"):
                        self.messages.append(Received(mail_from, mail_params, list(rcpts),
                                                      list(rcpt_params), data, raw, tls,
                                                      authed))
                send(reply)
            elif verb == "RSET":
                rcpts, rcpt_params = [], []
                send("250 2.0.0 ok")
            elif verb == "NOOP":
                send("250 2.0.0 ok")
            elif verb == "QUIT":
                send("221 2.0.0 bye")
                await writer.drain()
                return
            else:
                send("500 5.5.2 what?")
            await writer.drain()


def tls_context_for(tmp: Path) -> ssl.SSLContext:
    """A server context with a fresh self-signed certificate."""
    from casella.net.tls import ensure_self_signed

    cert, key = tmp / "mx-cert.pem", tmp / "mx-key.pem"
    ensure_self_signed(cert, key, "mx.remote.test")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx
