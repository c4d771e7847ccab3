"""The store contract for Sieve scripts, forwards and vacation replies (issue 20), run on every
backend: several named scripts, at most one active (RFC 5804), the script-name rule, the count
quota, delivery_rules in one read, and a vacation reply recorded once per period."""

from __future__ import annotations

import asyncio

import pytest

from casella.errors import AlreadyExists, InvalidName, NotFound, QuotaExceeded, UserError
from casella.store.base import Store
from tests.store.test_contract import account


async def test_scripts_put_get_list_activate(store: Store) -> None:
    alice = await account(store)
    assert await store.sieve_list(alice.id) == []
    await store.sieve_put(alice.id, "main", "keep;")
    await store.sieve_put(alice.id, "vacances d'été", 'require "vacation"; vacation "x";')
    got = await store.sieve_get(alice.id, "main")
    assert got is not None and got.content == "keep;" and not got.active and got.size == 5
    assert [s.name for s in await store.sieve_list(alice.id)] == ["main", "vacances d'été"]
    assert all(s.content == "" for s in await store.sieve_list(alice.id))
    await store.sieve_set_active(alice.id, "main")
    await store.sieve_set_active(alice.id, "vacances d'été")
    assert [(s.name, s.active) for s in await store.sieve_list(alice.id)] == [
        ("main", False), ("vacances d'été", True)]
    # Replacing the active script keeps it active.
    await store.sieve_put(alice.id, "vacances d'été", "discard;")
    rules = await store.delivery_rules([alice.id])
    assert rules[alice.id].script == "discard;" and rules[alice.id].script_name == "vacances d'été"
    await store.sieve_set_active(alice.id, None)
    assert await store.delivery_rules([alice.id]) == {}
    with pytest.raises(NotFound):
        await store.sieve_set_active(alice.id, "nope")
    assert await store.sieve_get(alice.id, "nope") is None


async def test_delete_rename_and_the_active_script(store: Store) -> None:
    """RFC 5804 §2.10: the active script cannot be deleted; rename keeps the mark."""
    alice = await account(store)
    await store.sieve_put(alice.id, "a", "keep;")
    await store.sieve_put(alice.id, "b", "keep;")
    await store.sieve_set_active(alice.id, "a")
    with pytest.raises(UserError, match="active"):
        await store.sieve_delete(alice.id, "a")
    with pytest.raises(AlreadyExists):
        await store.sieve_rename(alice.id, "a", "b")
    await store.sieve_rename(alice.id, "a", "c")
    assert [(s.name, s.active) for s in await store.sieve_list(alice.id)] == [
        ("b", False), ("c", True)]
    await store.sieve_delete(alice.id, "b")
    with pytest.raises(NotFound):
        await store.sieve_delete(alice.id, "b")
    with pytest.raises(NotFound):
        await store.sieve_rename(alice.id, "b", "d")


@pytest.mark.parametrize("name", ["", "a\x00b", "line\nbreak", "x\u2028y", "n" * 129])
async def test_bad_script_names(store: Store, name: str) -> None:
    """RFC 5804 §1.6: no empty names, no control characters; at most 128 characters."""
    alice = await account(store)
    with pytest.raises(InvalidName):
        await store.sieve_put(alice.id, name, "keep;")
    assert await store.sieve_list(alice.id) == []


async def test_script_count_quota(store: Store) -> None:
    alice = await account(store)
    await store.sieve_put(alice.id, "one", "keep;", max_scripts=2)
    await store.sieve_put(alice.id, "two", "keep;", max_scripts=2)
    with pytest.raises(QuotaExceeded):
        await store.sieve_put(alice.id, "three", "keep;", max_scripts=2)
    await store.sieve_put(alice.id, "two", "discard;", max_scripts=2)   # a replacement is fine
    assert len(await store.sieve_list(alice.id)) == 2
    with pytest.raises(NotFound):
        await store.sieve_put(9999, "x", "keep;")


async def test_forward_and_delivery_rules(store: Store) -> None:
    alice = await account(store)
    bob = await account(store, "bob@example.test")
    await store.set_forward("Alice@Example.test", ["Friend@Example.org", "friend@example.org",
                                                   "other@example.net"], keep=False)
    rules = await store.delivery_rules([alice.id, bob.id])
    assert set(rules) == {alice.id}
    assert rules[alice.id].forward_to == ("friend@example.org", "other@example.net")
    assert rules[alice.id].forward_keep is False and rules[alice.id].script is None
    await store.sieve_put(alice.id, "s", "keep;")
    await store.sieve_set_active(alice.id, "s")
    assert (await store.delivery_rules([alice.id]))[alice.id].script == "keep;"
    await store.set_forward(alice.address, [], keep=True)
    assert (await store.delivery_rules([alice.id]))[alice.id].forward_to == ()
    with pytest.raises(InvalidName):
        await store.set_forward(alice.address, ["not an address"], keep=True)
    with pytest.raises(NotFound):
        await store.set_forward("nobody@example.test", ["x@example.org"], keep=True)


async def test_removing_an_account_forgets_its_rules(store: Store) -> None:
    alice = await account(store)
    await store.sieve_put(alice.id, "s", "keep;")
    await store.sieve_set_active(alice.id, "s")
    await store.set_forward(alice.address, ["x@example.org"], keep=True)
    await store.vacation_note(alice.id, "k", 1000, 86400)
    await store.remove_account(alice.address)
    again = await account(store)
    assert await store.sieve_list(again.id) == []
    assert await store.delivery_rules([again.id]) == {}
    assert await store.vacation_note(again.id, "k", 1001, 86400) is True


async def test_vacation_reply_once_per_period(store: Store) -> None:
    """RFC 5230 §4.2: one reply per sender and handle per :days period, even when deliveries
    race."""
    alice = await account(store)
    results = await asyncio.gather(*[store.vacation_note(alice.id, "h|bob@x", 1000, 86400)
                                     for _ in range(5)])
    assert sorted(results) == [False] * 4 + [True]
    assert await store.vacation_note(alice.id, "h|bob@x", 1000 + 86399, 86400) is False
    assert await store.vacation_note(alice.id, "h|carol@x", 1000, 86400) is True
    assert await store.vacation_note(alice.id, "h|bob@x", 1000 + 86400, 86400) is True
