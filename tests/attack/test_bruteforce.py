"""Password guessing on each protocol (issue 7 §1, PROMISES A2/A3): every failed login is
delayed, the delay grows, the guessing IP is blocked for all protocols after `block_after`
failures, the right password is refused from there too, the account itself is never locked
(another IP gets in), an honest login before the block is not slowed, and `casella auth
unblock` lifts the block. All clients are on 127.0.0.1, so "another IP" is asked of the
authenticator directly. Timing bounds are generous: lower bounds on delays that are sleeps,
upper bounds only on what must be quick."""

from __future__ import annotations

import base64
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.attack.util import PASSWORD, Imap, Pop3, Smtp, add_user

CASELLA = str(Path(sys.executable).parent / "casella")
AUTH = {"failure_delay": 0.8, "max_failure_delay": 2.0, "block_after": 4,
        "block_window": 600, "block_duration": 600}
FAST = 0.7       # an honest login must answer faster than the first failure delay


def imap_login(server: Any, user: str, password: str) -> tuple[bool, float]:
    with Imap(server.port("imaps"), server.ssl_context()) as c:
        started = time.monotonic()
        status = c.login(user, password)
        elapsed = time.monotonic() - started
    assert status.startswith((b"OK", b"NO [AUTHENTICATIONFAILED]")), status
    return status.startswith(b"OK"), elapsed


def pop3_login(server: Any, user: str, password: str) -> tuple[bool, float]:
    with Pop3(server.port("pop3s"), server.ssl_context()) as c:
        assert c.cmd(f"USER {user}").startswith(b"+OK")     # A3: USER never says "no such user"
        started = time.monotonic()
        reply = c.cmd(f"PASS {password}")
        elapsed = time.monotonic() - started
    assert reply.startswith((b"+OK", b"-ERR [AUTH]")), reply
    return reply.startswith(b"+OK"), elapsed


def smtp_login(server: Any, user: str, password: str) -> tuple[bool, float]:
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    with Smtp(server.port("submissions"), server.ssl_context()) as c:
        assert c.code("EHLO attacker.example") == 250
        started = time.monotonic()
        code, text = c.cmd(f"AUTH PLAIN {token}")
        elapsed = time.monotonic() - started
    assert code in (235, 535), (code, text)
    return code == 235, elapsed


LOGINS: dict[str, Callable[[Any, str, str], tuple[bool, float]]] = {
    "imap": imap_login, "pop3": pop3_login, "smtp": smtp_login}


def blocked(server: Any, ip: str = "127.0.0.1") -> bool:
    return bool(server.run(server.app.auth.blocked_until(ip)) > time.time())


def unblock_with_cli(server: Any, tmp_path: Path, target: str) -> str:
    cfg = tmp_path / "admin.toml"
    cfg.write_text(f'data_dir = "{server.data_dir}"\n')
    done = subprocess.run([CASELLA, "--config", str(cfg), "auth", "unblock", target],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("proto", sorted(LOGINS))
def test_password_guessing(make_server: Any, tmp_path: Path, proto: str) -> None:
    server = make_server(auth=AUTH)
    victim = add_user(server).address
    honest = add_user(server).address
    login = LOGINS[proto]

    ok, elapsed = login(server, honest, PASSWORD)
    assert ok and elapsed < FAST, elapsed

    guesses = []
    for n, guess in enumerate(("123456", "password", "qwerty", "letmein")):
        ok, elapsed = login(server, victim, guess)
        assert not ok
        guesses.append(elapsed)
        if n == 1:
            # Before the block an honest user from the same address is not slowed.
            ok, elapsed = login(server, honest, PASSWORD)
            assert ok and elapsed < FAST, elapsed
            assert not blocked(server)
    # Each failure is delayed, and the delay grows (0.8 s, 1.6 s, 2 s cap with this config).
    assert guesses[0] >= 0.75 and guesses[1] >= 1.5 and guesses[2] >= 1.9, guesses

    # block_after = 4 failures from one IP: blocked, for the right password too and on
    # every protocol at once; an unknown user gets exactly the same answer.
    assert blocked(server)
    results: dict[str, bool] = {}

    def attempt(name: str, user: str) -> None:
        results[name] = LOGINS[name](server, user, PASSWORD)[0]
    threads = [threading.Thread(target=attempt, args=(name, honest)) for name in LOGINS]
    threads.append(threading.Thread(target=lambda: results.setdefault(
        "unknown", login(server, "nobody@example.test", PASSWORD)[0])))
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {"imap": False, "pop3": False, "smtp": False, "unknown": False}

    # The account is never locked: the victim, with the right password, from elsewhere.
    account = server.run(server.app.auth.login(victim, PASSWORD, remote_ip="192.0.2.77",
                                               protocol=proto))
    assert account is not None and account.address == victim

    out = unblock_with_cli(server, tmp_path, "127.0.0.1")
    assert "block lifted" in out
    assert not blocked(server)
    ok, elapsed = login(server, honest, PASSWORD)
    assert ok and elapsed < FAST, elapsed


def test_guessing_many_accounts_from_one_ip_is_blocked(make_server: Any) -> None:
    """Spraying one password over many accounts counts per IP: blocked all the same."""
    server = make_server(auth={**AUTH, "failure_delay": 0.05, "max_failure_delay": 0.1})
    users = [add_user(server).address for _ in range(5)]
    for user in users[:4]:
        assert not imap_login(server, user, "Summer2024!")[0]
    assert blocked(server)
    assert not imap_login(server, users[4], PASSWORD)[0]


def test_failures_on_one_connection_are_capped(make_server: Any) -> None:
    """Per connection, a guesser is cut off after a few failures (SMTP 421 4.7.0 after
    max_auth_failures, IMAP and POP3 close), so each connection costs it a new handshake."""
    server = make_server(auth={"failure_delay": 0.01, "max_failure_delay": 0.01,
                               "block_after": 1000})
    victim = add_user(server).address
    token = base64.b64encode(f"\0{victim}\0wrong".encode()).decode()
    with Smtp(server.port("submissions"), server.ssl_context()) as c:
        c.code("EHLO x")
        codes = [c.cmd(f"AUTH PLAIN {token}")[0] for _ in range(3)]
        assert codes == [535, 535, 421]
        assert c.closed()
    with Imap(server.port("imaps"), server.ssl_context()) as c:
        for _ in range(20):
            try:
                status = c.login(victim, "wrong")
            except (EOFError, OSError):
                break
            assert not status.startswith(b"OK")
        else:
            pytest.fail("IMAP allowed 20 failed logins on one connection")
    with Pop3(server.port("pop3s"), server.ssl_context()) as c:
        for _ in range(20):
            try:
                reply = c.login(victim, "wrong")
            except (EOFError, OSError):
                break
            assert not reply.startswith(b"+OK")
        else:
            pytest.fail("POP3 allowed 20 failed logins on one connection")
