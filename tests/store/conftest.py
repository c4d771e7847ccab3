"""Store fixtures: the one contract suite runs against every backend named in
CASELLA_TEST_BACKENDS (default: sqlite and sqlite-files, the same backend with every message
body in a file of its own, as bodies bigger than blobs.INLINE_MAX are kept)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import AsyncIterator

import pytest

from casella.store.base import Store


def _backends() -> list[str]:
    names = os.environ.get("CASELLA_TEST_BACKENDS", "sqlite,sqlite-files")
    return [b.strip() for b in names.split(",") if b.strip()]


async def open_store(backend: str, data_dir: Path, repair: bool = True) -> Store:
    from casella.store.blobs import BlobStore
    from casella.store.sqlite import SQLiteStore

    if backend == "sqlite":
        store: Store = SQLiteStore(data_dir)
    elif backend == "sqlite-files":
        store = SQLiteStore(data_dir, blobs=BlobStore(data_dir / "blobs", inline_max=-1))
    else:
        raise ValueError(f"unknown backend {backend}")
    await store.open(repair=repair)
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
