"""POP3 test fixtures: one loopback server per test module for the read-mostly tests, each test
with an account of its own (so sessions never see each other's maildrop or lock)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import RunningServer, build_test_config
from tests.pop3.util import add_user, deliver_all, message

_accounts = itertools.count(1)
# Tests fail logins on purpose; on a shared server the brute-force defence (growing delays,
# blocking the IP) would make later tests slow or failing, so it is kept small and off.
SHARED_AUTH = {"max_failure_delay": 0.05, "block_after": 0}


@pytest.fixture(scope="module")
def shared_plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server allowing USER/PASS without TLS (loopback testing), shared by one module."""
    data_dir: Path = tmp_path_factory.mktemp("pop3") / "data"
    srv = RunningServer(build_test_config(data_dir, auth={"allow_plaintext_without_tls": True,
                                                          **SHARED_AUTH}))
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def shared_default(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with the default settings (no plaintext login before TLS), shared by one
    module."""
    srv = RunningServer(build_test_config(tmp_path_factory.mktemp("pop3") / "data",
                                          auth=SHARED_AUTH))
    try:
        yield srv
    finally:
        srv.stop()


class AccountView:
    """A shared server seen through one test's own account (`user`)."""

    def __init__(self, srv: RunningServer, user: str) -> None:
        self.srv = srv
        self.user = user

    def __getattr__(self, name: str) -> Any:
        return getattr(self.srv, name)


@pytest.fixture
def plain(fresh: tuple[Any, str]) -> AccountView:
    """The shared plaintext-allowed server and a new account with three messages."""
    return AccountView(*fresh)


@pytest.fixture
def tls_only(shared_default: RunningServer) -> AccountView:
    """The shared default server and a new account with one message."""
    address = f"user{next(_accounts)}@example.test"
    acct = add_user(shared_default, address)
    deliver_all(shared_default, acct, [message("tls")])
    return AccountView(shared_default, address)


@pytest.fixture
def fresh(shared_plain: RunningServer) -> tuple[Any, str]:
    """(server, address) of a new account holding messages m0, m1 and m2."""
    address = f"user{next(_accounts)}@example.test"
    acct = add_user(shared_plain, address)
    deliver_all(shared_plain, acct, [message(f"m{i}") for i in range(3)])
    return shared_plain, address
