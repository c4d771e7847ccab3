"""The attack suite's guard: no attack may crash a session or make the server log an internal
error with a traceback (PROMISES P3: hostile input gets the protocol's own error)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from tests.attack.util import ErrorLog


@pytest.fixture(autouse=True)
def no_tracebacks() -> Iterator[ErrorLog]:
    errors = ErrorLog()
    logger = logging.getLogger("casella")
    logger.addHandler(errors)
    try:
        yield errors
    finally:
        logger.removeHandler(errors)
    crashes = [r for r in errors.records if r.exc_info]
    assert not crashes, [f"{r.name}: {r.getMessage()}" for r in crashes]
