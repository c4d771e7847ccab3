"""The HTTP stack (issue 18 §1, §6): aiohttp on casella's listeners, health checks, HTTPS with
the mail certificate, and the limits every listener has: body size (413), slow clients (408,
or the connection closed), connections per IP, and the graceful stop."""

from __future__ import annotations

import asyncio
import socket
import ssl
import sys
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer
from tests.http.conftest import base_url


def _recv_all(sock: socket.socket, timeout: float = 15.0) -> bytes:
    """Everything the server sends until it closes the connection (or the timeout)."""
    sock.settimeout(timeout)
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except (TimeoutError, ConnectionResetError):
            break
        if not chunk:
            break
        data += chunk
    return data


def test_health_checks(web: RunningServer, client: httpx.Client) -> None:
    """/health (kept: monitoring uses it) and /readyz answer 200 while the store answers;
    /healthz says the process is alive."""
    assert (client.get("/health").status_code, client.get("/health").text) == (200, "ok\n")
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.head("/healthz").status_code == 200


def test_readyz_is_503_when_the_store_fails(web: RunningServer, client: httpx.Client,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken() -> list[Any]:
        raise OSError("database is gone")

    monkeypatch.setattr(web.store, "list_domains", broken)
    assert client.get("/readyz").status_code == 503
    assert client.get("/health").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_https_uses_the_mail_certificate(web: RunningServer) -> None:
    """The `https` listener presents the certificate of the mail listeners."""
    https = ssl.get_server_certificate(("127.0.0.1", web.port("https")))
    imaps = ssl.get_server_certificate(("127.0.0.1", web.port("imaps")))
    assert https == imaps
    with httpx.Client(base_url=base_url(web, "https"), verify=web.ssl_context()) as c:
        r = c.get("/healthz")
        assert r.status_code == 200
        assert r.headers["Strict-Transport-Security"].startswith("max-age=")


def test_security_headers(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["X-Frame-Options"] == "DENY"
    assert "script-src" not in r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in r.headers["Content-Security-Policy"]
    assert r.headers["Cache-Control"] == "no-store"


def test_unknown_paths_and_methods(client: httpx.Client) -> None:
    assert client.get("/etc/passwd").status_code == 404
    assert client.get("/../../etc/passwd").status_code == 404
    assert client.delete("/").status_code == 405
    assert client.get("/autodiscover/autodiscover.xml").status_code == 405


def test_bodies_over_max_body_size_get_413(make_server: Callable[..., RunningServer]) -> None:
    """[http] max_body_size: a declared length over it is refused before reading, and so is a
    chunked body that grows past it."""
    srv = make_server(http={"max_body_size": "2K"})
    with httpx.Client(base_url=base_url(srv), timeout=30) as c:
        assert c.post("/autodiscover/autodiscover.xml", content=b"x" * 2049).status_code == 413

        def chunks():
            for _ in range(10):
                yield b"y" * 1000
        assert c.post("/autodiscover/autodiscover.xml", content=chunks()).status_code == 413
        # Within the limit the body reaches the handler (a malformed request: 400).
        assert c.post("/autodiscover/autodiscover.xml", content=b"z" * 2048).status_code == 400


def test_slow_headers_are_timed_out(make_server: Callable[..., RunningServer]) -> None:
    """[http] request_timeout: a client that starts a request and never finishes its headers
    (slowloris) is disconnected; so is an idle kept-alive connection."""
    srv = make_server(http={"request_timeout": 1})
    with socket.create_connection(("127.0.0.1", srv.port("http")), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert _recv_all(s) == b""
        assert time.monotonic() - started < 10
    with socket.create_connection(("127.0.0.1", srv.port("http")), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        data = _recv_all(s)
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"ok\n")


def test_slow_body_gets_408(make_server: Callable[..., RunningServer]) -> None:
    srv = make_server(http={"request_timeout": 1})
    with socket.create_connection(("127.0.0.1", srv.port("http")), timeout=10) as s:
        s.sendall(b"POST /autodiscover/autodiscover.xml HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Length: 100\r\n\r\n<Autodisc")
        data = _recv_all(s)
    assert data.startswith(b"HTTP/1.1 408")


def test_malformed_requests_get_400(client: httpx.Client, web: RunningServer) -> None:
    for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-A: " +
                b"a" * 9000 + b"\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n"):
        with socket.create_connection(("127.0.0.1", web.port("http")), timeout=10) as s:
            s.sendall(raw)
            data = _recv_all(s)
        assert data.split(b" ", 2)[1] in (b"400", b"431", b"505"), data[:80]


def test_connections_per_ip_limit(make_server: Callable[..., RunningServer]) -> None:
    """[limits] max_connections_per_ip counts HTTP connections like any other: one more gets
    a 503 and is closed."""
    srv = make_server(limits={"max_connections_per_ip": 2})
    held = [socket.create_connection(("127.0.0.1", srv.port("http")), timeout=10)
            for _ in range(2)]
    try:
        for s in held:   # both are being served (a request on each)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 200")
        with socket.create_connection(("127.0.0.1", srv.port("http")), timeout=10) as third:
            third.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _recv_all(third).startswith(b"HTTP/1.1 503")
    finally:
        for s in held:
            s.close()


def test_graceful_stop_finishes_the_request_in_flight(
        make_server: Callable[..., RunningServer], monkeypatch: pytest.MonkeyPatch) -> None:
    """At stop the listener stops accepting and the request in flight gets its answer (with
    Connection: close) within server.shutdown_grace_seconds."""
    srv = make_server(server={"shutdown_grace_seconds": 10.0, "allow_root": True})
    entered = threading.Event()
    real = srv.store.list_domains

    async def slow() -> Any:
        entered.set()
        await asyncio.sleep(1.0)
        return await real()

    monkeypatch.setattr(srv.store, "list_domains", slow)
    result: dict[str, Any] = {}

    def request() -> None:
        with httpx.Client(timeout=30) as c:
            result["response"] = c.get(base_url(srv) + "/readyz")

    t = threading.Thread(target=request)
    t.start()
    assert entered.wait(30)
    port = srv.port("http")
    srv.stop()
    t.join(30)
    r = result["response"]
    assert (r.status_code, r.text) == (200, "ready\n")
    assert r.headers.get("Connection", "").lower() == "close"
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_mount_points_for_the_api_and_metrics(make_server: Callable[..., RunningServer],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """casella.http.api.create_api (a sub-application at /api/v1) and
    casella.http.metrics.routes are used when those modules exist."""
    from importlib.machinery import ModuleSpec

    from aiohttp import web as aioweb

    api = types.ModuleType("casella.http.api")
    api.__spec__ = ModuleSpec("casella.http.api", None)

    def create_api(parent: aioweb.Application) -> aioweb.Application:
        sub = aioweb.Application()

        async def ping(request: aioweb.Request) -> aioweb.Response:
            return aioweb.json_response({"pong": True})
        sub.add_routes([aioweb.get("/ping", ping)])
        return sub
    api.create_api = create_api  # type: ignore[attr-defined]
    metrics = types.ModuleType("casella.http.metrics")
    metrics.__spec__ = ModuleSpec("casella.http.metrics", None)

    async def show(request: aioweb.Request) -> aioweb.Response:
        return aioweb.Response(text="casella_up 1\n")
    metrics.routes = lambda app: [aioweb.get("/metrics", show)]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "casella.http.api", api)
    monkeypatch.setitem(sys.modules, "casella.http.metrics", metrics)
    srv = make_server()
    with httpx.Client(base_url=base_url(srv), timeout=30) as c:
        assert c.get("/api/v1/ping").json() == {"pong": True}
        assert c.get("/metrics").text == "casella_up 1\n"
