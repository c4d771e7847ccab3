"""HTTP test helpers: a running server with a hosted domain and a user, httpx clients for the
`http` and `https` listeners, and the customer page's login done the way a browser does it;
for the admin API and /metrics, `AdminSite` (a running server's `http` listener with tokens and
API clients), `make_admin` / `admin`, and `samples` / `value` to read a Prometheus exposition."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from casella.auth import tokens
from tests.conftest import RunningServer

PASSWORD = "correct horse"


@pytest.fixture
def web(make_server: Callable[..., RunningServer]) -> RunningServer:
    srv = make_server()
    srv.add_user("alice@example.test", PASSWORD)
    return srv


def base_url(srv: RunningServer, listener: str = "http") -> str:
    scheme = "https" if listener == "https" else "http"
    return f"{scheme}://127.0.0.1:{srv.port(listener)}"


@pytest.fixture
def client(web: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url(web), timeout=30) as c:
        yield c


def https_client(srv: RunningServer, **kw: Any) -> httpx.Client:
    return httpx.Client(base_url=base_url(srv, "https"), verify=srv.ssl_context(),
                        timeout=30, **kw)


def csrf_of(page: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', page)
    assert m, "the page has no CSRF field"
    return m.group(1)


def log_in(c: httpx.Client, address: str = "alice@example.test",
           password: str = PASSWORD) -> httpx.Response:
    page = c.get("/")
    assert page.status_code == 200
    return c.post("/login", data={"csrf": csrf_of(page.text), "address": address,
                                  "password": password})


class AdminSite:
    """The `http` listener of one running server, where the admin API (/api/v1) and /metrics
    are mounted: `url(path)`, tokens, and httpx clients of the API."""

    def __init__(self, server: RunningServer) -> None:
        self.server = server
        self.store = server.store
        self.base = base_url(server)
        self.port = server.port("http")

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def token(self, name: str = "admin", domain: str | None = None) -> str:
        return self.server.run(tokens.create(self.store, name, domain))[0]

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base + "/api/v1", headers=headers, timeout=30,
                            **kwargs)


@pytest.fixture
def make_admin(make_server: Callable[..., RunningServer]) -> Callable[..., AdminSite]:
    def make(**overrides: Any) -> AdminSite:
        # Outbound mail stays queued (deferred: nothing listens there) instead of bouncing
        # at once for want of DNS, so tests find the entries they queued.
        overrides.setdefault("delivery", {"routes": {"remote.test": "127.0.0.1:1"}})
        return AdminSite(make_server(**overrides))
    return make


@pytest.fixture
def admin(make_admin: Callable[..., AdminSite]) -> AdminSite:
    return make_admin()


def samples(text: bytes | str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a Prometheus text exposition: (name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    if isinstance(text, bytes):
        text = text.decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float:
    """One sample's value (0 when the series does not exist yet)."""
    return found.get((name, frozenset(labels.items())), 0.0)
