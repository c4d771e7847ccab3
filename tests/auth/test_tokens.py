"""casella.auth.tokens: the token format, and `verify` accepting exactly the live tokens."""

from __future__ import annotations

from pathlib import Path

import pytest

from casella.auth import tokens
from casella.errors import UserError
from casella.store.sqlite import SQLiteStore

GOOD = "casella_0123456789ab_" + "A" * 43


@pytest.mark.parametrize("text", [
    "", "casella", "casella__", GOOD[:-1], GOOD + "A", GOOD.replace("casella", "Casella"),
    GOOD.replace("0123456789ab", "0123456789AB"), GOOD[:-1] + "=", " " + GOOD,
    GOOD.replace("_", "-", 1),
])
def test_malformed_tokens_do_not_parse(text: str) -> None:
    assert tokens.parse(text) is None


def test_a_well_formed_token_parses() -> None:
    assert tokens.parse(GOOD) == ("0123456789ab", "A" * 43)


@pytest.mark.parametrize("name", ["", " x", "-x", "a" * 65, "x/y", "naïve"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(UserError):
        tokens.check_name(name)


async def test_verify_accepts_live_tokens_only(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path)
    await store.open()
    try:
        token, record = await tokens.create(store, "panel", None)
        assert tokens.parse(token) is not None
        assert record.secret_hash == tokens.hash_secret(token.split("_", 2)[2])
        assert await tokens.verify(store, token) == record
        token_id = token.split("_")[1]
        assert await tokens.verify(store, f"casella_{token_id}_{'B' * 43}") is None
        assert await tokens.verify(store, f"casella_{'f' * 12}_{token.split('_', 2)[2]}") \
            is None
        await store.remove_api_token("panel")
        assert await tokens.verify(store, token) is None
    finally:
        await store.close()
