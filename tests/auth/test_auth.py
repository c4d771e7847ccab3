"""Passwords, SASL mechanisms and the authenticator's brute-force defence (PROMISES A2-A6)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from casella.auth import sasl
from casella.auth.authenticator import Authenticator
from casella.auth.passwords import hash_password, verify_password
from casella.config import config_from_mapping
from casella.store.sqlite import SQLiteStore


def test_password_hashing() -> None:
    h = hash_password("correct horse")
    assert h.startswith("$argon2id$")
    assert verify_password(h, "correct horse")
    assert not verify_password(h, "wrong")
    assert not verify_password(None, "anything")  # unknown user: dummy hash, always False
    assert not verify_password("garbage", "x")
    with pytest.raises(ValueError):
        hash_password("")


@pytest.mark.parametrize("line, expected", [
    (b"AGFsaWNlAHNlY3JldA==", b"\x00alice\x00secret"),
    (b"=", b""),
    (b"", b""),
])
def test_decode_response(line: bytes, expected: bytes) -> None:
    assert sasl.decode_response(line) == expected


def test_decode_response_errors() -> None:
    with pytest.raises(sasl.SaslCancelled):
        sasl.decode_response(b"*")
    with pytest.raises(sasl.SaslError):
        sasl.decode_response(b"not base64!")


def test_plain() -> None:
    m = sasl.mechanism("plain")
    assert m.start(None) == sasl.Challenge(b"")
    assert m.step(b"\x00alice\x00pw") == sasl.Credentials("alice", "pw", "")
    assert sasl.Plain().start(b"admin\x00alice\x00pw") == sasl.Credentials("alice", "pw", "admin")
    for bad in (b"alice\x00pw", b"\x00\x00pw", b"\x00alice\x00", b"\x00\xff\x00pw"):
        with pytest.raises(sasl.SaslError):
            sasl.Plain().step(bad)


def test_login() -> None:
    m = sasl.mechanism("LOGIN")
    assert m.start(None) == sasl.Challenge(b"Username:")
    assert m.step(b"alice") == sasl.Challenge(b"Password:")
    assert m.step(b"pw") == sasl.Credentials("alice", "pw")
    m2 = sasl.Login()
    assert m2.start(b"alice") == sasl.Challenge(b"Password:")
    with pytest.raises(sasl.SaslError):
        sasl.mechanism("CRAM-MD5")


@pytest.fixture
async def auth(tmp_path: Path):
    config = config_from_mapping({"data_dir": str(tmp_path), "auth": {
        "failure_delay": 0.01, "max_failure_delay": 0.04, "block_after": 4,
        "block_window": 600, "block_duration": 600}})
    store = SQLiteStore(tmp_path)
    await store.open()
    await store.add_domain("example.test")
    await store.add_account("alice@example.test", hash_password("pw"), 0)
    try:
        yield Authenticator(store, config)
    finally:
        await store.close()


async def test_login_ok_and_failures(auth: Authenticator) -> None:
    assert (await auth.login("Alice@Example.test", "pw", remote_ip="192.0.2.1")).address == \
        "alice@example.test"
    assert await auth.login("alice@example.test", "bad", remote_ip="192.0.2.1") is None
    assert await auth.login("nobody@example.test", "pw", remote_ip="192.0.2.1") is None
    assert await auth.login("no-at-sign", "pw", remote_ip="192.0.2.1") is None
    # PROMISES A4: an authorization identity other than oneself fails.
    assert await auth.login("alice@example.test", "pw", remote_ip="192.0.2.2",
                            authzid="bob@example.test") is None
    assert await auth.login("alice@example.test", "pw", remote_ip="192.0.2.2",
                            authzid="ALICE@example.test") is not None


def test_delay_doubles_to_the_maximum(tmp_path: Path) -> None:
    config = config_from_mapping({"data_dir": str(tmp_path)})
    a = Authenticator(None, config)  # type: ignore[arg-type]
    assert [a.failure_delay(n) for n in range(1, 6)] == [2.0, 4.0, 8.0, 15.0, 15.0]


async def test_ip_is_blocked_after_repeated_failures(auth: Authenticator) -> None:
    for _ in range(4):
        assert await auth.login("alice@example.test", "bad", remote_ip="192.0.2.9") is None
    assert await auth.blocked_until("192.0.2.9") > time.time()
    # Even the right password is refused from the blocked address …
    assert await auth.login("alice@example.test", "pw", remote_ip="192.0.2.9") is None
    # … but the account itself is not locked: another address gets in.
    assert await auth.login("alice@example.test", "pw", remote_ip="192.0.2.10") is not None
    await auth.store.auth_clear(["ip:192.0.2.9"])
    assert await auth.login("alice@example.test", "pw", remote_ip="192.0.2.9") is not None


async def test_a_right_password_is_verified_once_then_remembered(
        auth: Authenticator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 8: repeated logins do not re-run argon2 (as Dovecot's auth_cache); failures always
    do, a new password hash forgets the old password, and ttl 0 turns it off."""
    from casella.auth import authenticator as mod

    calls: list[str] = []

    def counting(stored: str | None, password: str) -> bool:
        calls.append(password)
        return verify_password(stored, password)

    monkeypatch.setattr(mod, "verify_password", counting)
    for _ in range(3):
        assert await auth.login("alice@example.test", "pw", remote_ip="192.0.2.20") is not None
    assert calls == ["pw"]
    assert await auth.login("alice@example.test", "bad", remote_ip="192.0.2.20") is None
    assert await auth.login("alice@example.test", "bad", remote_ip="192.0.2.20") is None
    assert calls == ["pw", "bad", "bad"]
    # The password changes: the remembered one no longer opens the account.
    await auth.store.set_password("alice@example.test", hash_password("new"))
    assert await auth.login("alice@example.test", "pw", remote_ip="192.0.2.21") is None
    assert await auth.login("alice@example.test", "new", remote_ip="192.0.2.21") is not None
    assert calls[-2:] == ["pw", "new"]
    auth.verified.ttl = 0
    assert await auth.login("alice@example.test", "new", remote_ip="192.0.2.21") is not None
    assert calls[-1] == "new" and len(calls) == 6


def test_verified_cache_expires_and_is_bounded() -> None:
    from casella.auth.verified import VerifiedCache

    now = [100.0]
    cache = VerifiedCache(60, max_entries=2, clock=lambda: now[0])
    a, b, c = (cache.token("$argon2id$h", p) for p in ("a", "b", "c"))
    # A keyed digest (HMAC-SHA256), not the password: 32 bytes whatever the password.
    assert len({a, b, c}) == 3 and {len(a), len(b), len(c)} == {32}
    secret = "correct horse battery staple"
    assert secret.encode() not in cache.token("$argon2id$h", secret)
    assert cache.token("$argon2id$other", "a") != a
    assert not cache.verified(a)
    cache.remember(a)
    now[0] += 59
    assert cache.verified(a)
    now[0] += 1
    assert not cache.verified(a) and len(cache) == 0
    for t in (a, b, c):
        cache.remember(t)
    assert len(cache) == 2 and not cache.verified(a) and cache.verified(c)
    # Another process (another key) never recognises these tokens.
    assert VerifiedCache(60).token("$argon2id$h", "a") != a
