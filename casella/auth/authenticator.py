"""Checking a login for any protocol: one place, same answer and timing for every failure, and
the brute-force defence.

Lives here: `Authenticator.login`, which refuses a blocked IP before any password work, looks
the account up, verifies the password with argon2 in a worker thread (a flood of attempts never
stalls the event loop) unless it was verified right moments ago (casella.auth.verified), enforces the SASL authorization-identity rule (PROMISES A4), counts
failures per IP and per account in the store (shared by every protocol and process), delays
each failure by a growing amount and blocks an IP after too many. Must never: log a password,
say whether the user exists, or slow down a successful login.
"""

from __future__ import annotations

import asyncio
import logging
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor

from casella import metrics
from casella.auth.passwords import verify_password
from casella.auth.verified import VerifiedCache
from casella.config import Config
from casella.store.base import Store
from casella.store.model import Account

log = logging.getLogger("casella.auth")

# argon2 is CPU-bound; two threads keep other sessions responsive on a small machine.
_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")


def normalize_login(name: str) -> str:
    return unicodedata.normalize("NFC", name.strip()).lower()


class Authenticator:
    def __init__(self, store: Store, config: Config) -> None:
        self.store = store
        self.config = config
        self.verified = VerifiedCache(config.auth.verified_cache_ttl)

    def failure_delay(self, failures: int) -> float:
        """2 s, 4 s, 8 s … up to the maximum (with the default config)."""
        cfg = self.config.auth
        return min(cfg.max_failure_delay, cfg.failure_delay * 2 ** max(failures - 1, 0))

    async def blocked_until(self, remote_ip: str) -> int:
        """0, or the time until which this IP is refused."""
        if not remote_ip:
            return 0
        now = int(time.time())
        status = await self.store.auth_status([f"ip:{remote_ip}"], now)
        until = status.get(f"ip:{remote_ip}", (0, 0))[1]
        return until if until > now else 0

    async def _verify(self, account: Account | None, password: str) -> bool:
        """argon2 in a worker thread, unless this very password was verified right for this
        very hash a moment ago (casella.auth.verified)."""
        stored = account.password_hash if account is not None else None
        token = None
        if stored and self.verified.enabled:
            token = self.verified.token(stored, password)
            if self.verified.verified(token):
                return True
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(_executor, verify_password, stored, password)
        if ok and token is not None:
            self.verified.remember(token)
        return ok

    async def login(self, username: str, password: str, *, remote_ip: str = "",
                    protocol: str = "", authzid: str = "") -> Account | None:
        """The account when the credentials are right, else None after the failure delay."""
        address = normalize_login(username)
        extra = {"proto": protocol, "remote": remote_ip, "user": address[:64]}
        if await self.blocked_until(remote_ip):
            log.info("login refused: address blocked after repeated failures", extra=extra)
            metrics.login(protocol, "blocked")
            await asyncio.sleep(self.config.auth.max_failure_delay)
            return None
        account = await self.store.get_account(address) if "@" in address else None
        ok = await self._verify(account, password)
        if ok and authzid and normalize_login(authzid) != address:
            ok = False  # PROMISES A4: no acting as somebody else
        if ok and account is not None:
            log.info("login ok", extra=extra)
            metrics.login(protocol, "ok")
            return account
        cfg = self.config.auth
        keys = [f"user:{address[:254]}"] + ([f"ip:{remote_ip}"] if remote_ip else [])
        counts = await self.store.auth_record_failure(
            keys, int(time.time()), cfg.block_window, cfg.block_after, cfg.block_duration)
        failures = max(counts.values())
        log.info("login failed (%d recent failures)", failures, extra=extra)
        metrics.login(protocol, "failed")
        # Only the IP is blocked, never the account: that would let anyone lock a customer out.
        if cfg.block_after and counts.get(f"ip:{remote_ip}", 0) >= cfg.block_after:
            log.warning("blocking %s for %d s after %d failed logins", remote_ip,
                        cfg.block_duration, failures, extra=extra)
        delay = self.failure_delay(failures)
        if delay > 0:
            await asyncio.sleep(delay)
        return None
