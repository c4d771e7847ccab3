"""IMAP test fixtures: one real server per test module (starting one per test would cost most
of the time budget); each test makes its own users, so tests stay independent."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import RunningServer, build_test_config


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    server = RunningServer(build_test_config(tmp_path_factory.mktemp("imap") / "data"))
    yield server
    server.stop()
