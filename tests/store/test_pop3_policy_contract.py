"""Store contract (issue 18): an account's own POP3 policy, chosen on the customer page, on
every backend."""

from __future__ import annotations

import pytest

from casella.errors import NotFound, UserError
from casella.store.base import Store
from casella.store.model import POP3_MAX_EXPIRE_DAYS
from tests.store.test_contract import account


async def test_new_account_follows_the_config(store: Store) -> None:
    acct = await account(store)
    assert (acct.pop3_delete, acct.pop3_expire_days) == (None, None)


async def test_set_read_and_clear_the_policy(store: Store) -> None:
    acct = await account(store)
    await store.set_pop3_policy("Alice@Example.TEST", "hide", 30)
    got = await store.get_account(acct.address)
    assert (got.pop3_delete, got.pop3_expire_days) == ("hide", 30)
    by_id = await store.get_account_by_id(acct.id)
    assert (by_id.pop3_delete, by_id.pop3_expire_days) == ("hide", 30)
    assert [(a.pop3_delete, a.pop3_expire_days) for a in await store.list_accounts()] == \
        [("hide", 30)]
    await store.set_pop3_policy(acct.address, "move-to-trash", 0)
    got = await store.get_account(acct.address)
    assert (got.pop3_delete, got.pop3_expire_days) == ("move-to-trash", 0)
    await store.set_pop3_policy(acct.address, None, None)
    got = await store.get_account(acct.address)
    assert (got.pop3_delete, got.pop3_expire_days) == (None, None)
    # Other settings are untouched.
    assert (got.password_hash, got.quota_bytes) == (acct.password_hash, acct.quota_bytes)


@pytest.mark.parametrize("delete,days", [
    ("delete", None), ("", None), ("EXPUNGE", None), (None, -1),
    (None, POP3_MAX_EXPIRE_DAYS + 1), (None, True), (None, "3"),
])
async def test_bad_values_change_nothing(store: Store, delete: object, days: object) -> None:
    acct = await account(store)
    await store.set_pop3_policy(acct.address, "hide", 7)
    with pytest.raises(UserError):
        await store.set_pop3_policy(acct.address, delete, days)  # type: ignore[arg-type]
    got = await store.get_account(acct.address)
    assert (got.pop3_delete, got.pop3_expire_days) == ("hide", 7)


async def test_unknown_account(store: Store) -> None:
    await account(store)
    with pytest.raises(NotFound):
        await store.set_pop3_policy("nobody@example.test", "hide", 1)


async def test_policy_survives_reopen(store: Store) -> None:
    from tests.store.conftest import open_store

    acct = await account(store)
    await store.set_pop3_policy(acct.address, "move-to-trash", 14)
    await store.close()
    reopened = await open_store(store.test_backend, store.test_data_dir)  # type: ignore[attr-defined]
    try:
        got = await reopened.get_account(acct.address)
        assert (got.pop3_delete, got.pop3_expire_days) == ("move-to-trash", 14)
    finally:
        await reopened.close()
    await store.open()
