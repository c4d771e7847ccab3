"""The HTTP listeners (`http`, `https`): aiohttp.web on casella's own event loop and sockets.

Lives here: `create_application` (the aiohttp Application: the guard middleware, the health
checks, client autoconfiguration, MTA-STS, the customer's page, and the mount points for the
admin API, `casella.http.api.create_api(app)` under /api/v1, and for the metrics routes,
`casella.http.metrics.routes(app)`, each added only when its module exists), `WebStack` (one
AppRunner per process, opened and closed with the server) and `HTTPService`, the listener
service. Connections are accepted by casella.net.listener like every other protocol's (same
connection limits, TLS handshake, worker processes and graceful stop), then handed to aiohttp's
protocol, which parses the requests. Must never: serve files from disk, trust proxy headers,
or answer anything but the routes registered here.

Limits: request line and each header field 8190 bytes, 100 header fields (aiohttp answers 400
or 431 beyond); `[http] max_body_size` (413 beyond); `[http] request_timeout` seconds to send a
request's headers (counted from the connection or the previous response, which is also how
long an idle kept-alive connection is kept) and again to send its body (408 beyond).
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from casella.app import App
from casella.auth import sessionkey
from casella.http import autoconfig, customer, rules
from casella.http.common import (
    APP,
    LIFECYCLE,
    SESSIONS,
    SIGNER,
    TEMPLATES,
    USER,
    Lifecycle,
    ProfileSigner,
    peer_ip,
    template_environment,
)
from casella.http.mobileconfig import load_identity
from casella.http.sessions import SessionCodec
from casella.net.listener import Service
from casella.net.streams import Connection, ConnectionClosed
from casella.net.tls import certificate_files

log = logging.getLogger("casella.http")

MAX_LINE = 8190
MAX_HEADERS = 100
READY_TIMEOUT = 5.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Every response: no sniffing, no framing, no referrer leaking an address in a query string.
_SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# HTML pages: only this site's own style sheet and forms; no scripts at all.
_PAGE_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self' data:; "
                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


def _log_extra(request: web.Request) -> dict[str, str]:
    return {"proto": "https" if request.secure else "http",
            "remote": peer_ip(request) or "-",
            "user": request.get(USER, "-")}


@web.middleware
async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Body size and body time limits before any handler runs, the security headers on every
    answer, one log line per request, and a plain 500 for a handler that failed."""
    cfg = request.app[APP].config.http
    failure: web.HTTPException | None = None
    try:
        resp = await _limited(request, handler, cfg.max_body_size, cfg.request_timeout)
    except web.HTTPException as exc:
        resp = failure = exc
        if request.path.startswith("/api/") and exc.status == 413:
            # The admin API answers in JSON, also when the body limit here refused it.
            resp = web.json_response({"error": f"the request body is larger than "
                                      f"{cfg.max_body_size} bytes", "field": None}, status=413)
            failure = None
    except Exception:
        log.exception("%s %s failed", request.method, request.path, extra=_log_extra(request))
        resp = web.Response(status=500, text="internal error\n")
    for name, value in _SECURITY_HEADERS.items():
        resp.headers.setdefault(name, value)
    if resp.content_type == "text/html":
        resp.headers.setdefault("Content-Security-Policy", _PAGE_POLICY)
    if request.secure:
        resp.headers.setdefault("Strict-Transport-Security", "max-age=31536000")
    if request.app[LIFECYCLE].stopping and not resp.prepared:
        resp.force_close()
    log.info("%s %s %d", request.method, request.path[:200], resp.status,
             extra=_log_extra(request))
    if failure is not None:
        raise failure
    return resp


async def _limited(request: web.Request, handler: Handler, max_body: int,
                   timeout: float) -> web.StreamResponse:
    if request.content_length is not None and request.content_length > max_body:
        raise web.HTTPRequestEntityTooLarge(max_size=max_body,
                                            actual_size=request.content_length,
                                            text="request body too large\n")
    if request.can_read_body:
        # Read here, within the time limit, and kept by aiohttp for the handler; a chunked
        # body over the limit raises 413 from inside read().
        try:
            async with asyncio.timeout(timeout):
                await request.read()
        except TimeoutError:
            exc = web.HTTPRequestTimeout(text="the request body did not arrive in time\n")
            exc.force_close()
            raise exc from None
    return await handler(request)


async def health(request: web.Request) -> web.Response:
    """The older check, still used by monitoring: 200 "ok" when the store answers."""
    return await _store_answers(request, "ok\n")


async def healthz(request: web.Request) -> web.Response:
    """Liveness: this process serves HTTP (whatever the store does)."""
    return web.Response(text="ok\n")


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the store answers a query within READY_TIMEOUT seconds."""
    return await _store_answers(request, "ready\n")


async def _store_answers(request: web.Request, text: str) -> web.Response:
    try:
        async with asyncio.timeout(READY_TIMEOUT):
            await request.app[APP].store.list_domains()
    except Exception as exc:  # noqa: BLE001 (whatever the store raises, it is not ready)
        log.warning("store check failed: %s", exc, extra=_log_extra(request))
        return web.Response(status=503, text="store unavailable\n")
    return web.Response(text=text)


def _optional(module: str) -> object | None:
    """A module of another part of the web side, when this tree has it."""
    try:
        if importlib.util.find_spec(module) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(module)


def create_application(app: App, session_key: bytes) -> web.Application:
    config = app.config
    web_app = web.Application(middlewares=[guard], client_max_size=config.http.max_body_size)
    web_app[APP] = app
    web_app[LIFECYCLE] = Lifecycle()
    web_app[TEMPLATES] = template_environment()
    web_app[SESSIONS] = SessionCodec(session_key, config.http.session_lifetime)
    chain, key = certificate_files(config)
    web_app[SIGNER] = ProfileSigner(load_identity(chain, key))
    web_app.add_routes([web.get("/health", health), web.get("/healthz", healthz),
                        web.get("/readyz", readyz)])
    web_app.add_routes(autoconfig.routes())
    web_app.add_routes(customer.routes())
    web_app.add_routes(rules.routes())
    api = _optional("casella.http.api")
    if api is not None:
        web_app.add_subapp("/api/v1", api.create_api(app))  # type: ignore[attr-defined]
    metrics = _optional("casella.http.metrics")
    if metrics is not None:
        web_app.add_routes(metrics.routes(app))  # type: ignore[attr-defined]
    return web_app


class _Tracked(asyncio.Protocol):
    """aiohttp's protocol for one connection, with word to the session when it is gone."""

    def __init__(self, inner: RequestHandler, lost: asyncio.Future[None]) -> None:
        self.inner = inner
        self.lost = lost

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        self.inner.eof_received()
        return None

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        try:
            self.inner.connection_lost(exc)
        finally:
            if not self.lost.done():
                self.lost.set_result(None)


class WebStack:
    """The aiohttp application and its runner in this process, shared by both listeners."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.runner: web.AppRunner | None = None

    async def open(self) -> None:
        config = self.app.config
        key = await asyncio.get_running_loop().run_in_executor(
            None, sessionkey.load_or_create, config.data_dir)
        runner = web.AppRunner(create_application(self.app, key), handle_signals=False,
                               access_log=None, keepalive_timeout=config.http.request_timeout,
                               shutdown_timeout=config.server.shutdown_grace_seconds,
                               max_line_size=MAX_LINE, max_field_size=MAX_LINE,
                               max_headers=MAX_HEADERS)
        await runner.setup()
        self.runner = runner

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    def stopping(self) -> None:
        if self.runner is not None:
            self.runner.app[LIFECYCLE].stopping = True

    def protocol(self) -> RequestHandler:
        assert self.runner is not None and self.runner.server is not None
        return self.runner.server()


class HTTPService:
    """One listener (`http` or `https`) served by the process's WebStack."""

    def __init__(self, stack: WebStack, name: str, implicit_tls: bool) -> None:
        self.stack = stack
        self.name = name
        self.implicit_tls = implicit_tls

    async def open(self) -> None:
        if self.stack.runner is None:
            await self.stack.open()

    async def close(self) -> None:
        await self.stack.close()

    def refuse(self, conn: Connection, reason: str) -> bytes:
        body = reason + "\n"
        return (f"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8"
                f"\r\nContent-Length: {len(body)}\r\nRetry-After: 10\r\n"
                f"Connection: close\r\n\r\n{body}").encode()

    async def handle(self, conn: Connection) -> None:
        loop = asyncio.get_running_loop()
        handler = self.stack.protocol()
        lost: asyncio.Future[None] = loop.create_future()
        stopping: asyncio.Future[None] = loop.create_future()

        def stop() -> None:
            self.stack.stopping()
            if not stopping.done():
                stopping.set_result(None)

        conn.on_shutdown = stop
        try:
            conn.hand_over(_Tracked(handler, lost))
        except ConnectionClosed:
            return
        if conn.shutting_down:
            stop()
        try:
            await asyncio.wait([lost, stopping], return_when=asyncio.FIRST_COMPLETED)
            if not lost.done():
                # The server is stopping: the request in flight may finish (its answer says
                # Connection: close), an idle kept-alive connection is closed now.
                await handler.shutdown(self.stack.app.config.server.shutdown_grace_seconds)
                await lost
        except asyncio.CancelledError:
            handler.force_close()
            raise


def services(app: App) -> dict[str, Service]:
    stack = WebStack(app)
    return {"http": HTTPService(stack, "http", implicit_tls=False),
            "https": HTTPService(stack, "https", implicit_tls=True)}
