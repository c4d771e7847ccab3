"""Store fixtures: the one contract suite runs against every backend named in
CASELLA_TEST_BACKENDS (default: sqlite)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import AsyncIterator

import pytest

from casella.store.base import Store


def _backends() -> list[str]:
    return [b.strip() for b in os.environ.get("CASELLA_TEST_BACKENDS", "sqlite").split(",")
            if b.strip()]


async def open_store(backend: str, data_dir: Path) -> Store:
    if backend == "sqlite":
        from casella.store.sqlite import SQLiteStore
        store: Store = SQLiteStore(data_dir)
    else:
        raise ValueError(f"unknown backend {backend}")
    await store.open()
    return store


@pytest.fixture(params=_backends())
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s = await open_store(request.param, tmp_path / "data")
    s.test_backend = request.param  # type: ignore[attr-defined]
    s.test_data_dir = tmp_path / "data"  # type: ignore[attr-defined]
    try:
        yield s
    finally:
        await s.close()
