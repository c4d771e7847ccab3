"""Checking a login for any protocol: one place, same answer and timing for every failure.

Lives here: `Authenticator.login`, which looks the account up, verifies the password with argon2
in a worker thread (so a flood of attempts never stalls the event loop), enforces the SASL
authorization-identity rule (PROMISES A4), and delays failures. Must never: log a password, say
whether the user exists, or slow down a successful login.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from concurrent.futures import ThreadPoolExecutor

from casella.auth.passwords import verify_password
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

    async def login(self, username: str, password: str, *, remote_ip: str = "",
                    protocol: str = "", authzid: str = "") -> Account | None:
        """The account when the credentials are right, else None after the failure delay."""
        address = normalize_login(username)
        account = await self.store.get_account(address) if "@" in address else None
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(
            _executor, verify_password, account.password_hash if account else None, password)
        if ok and authzid and normalize_login(authzid) != address:
            ok = False  # PROMISES A4: no acting as somebody else
        if ok and account is not None:
            log.info("login ok", extra={"proto": protocol, "remote": remote_ip, "user": address})
            return account
        log.info("login failed", extra={"proto": protocol, "remote": remote_ip,
                                        "user": address[:64]})
        if self.config.auth.failure_delay > 0:
            await asyncio.sleep(self.config.auth.failure_delay)
        return None
