"""HTTP test helpers: a running server with a hosted domain and a user, httpx clients for the
`http` and `https` listeners, and the customer page's login done the way a browser does it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

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
