"""asyncio glue: the `imap` (STARTTLS, RFC 9051 §6.2.1) and `imaps` (implicit TLS, RFC 8314)
listeners' Service objects, and the per-process count of logged-in sessions per (user, client
address) that both listeners share (issue 7: `imap.max_connections_per_user_ip`, like Dovecot's
mail_max_userip_connections).

Must never: contain protocol logic (session.py has it).
"""

from __future__ import annotations

from casella.app import App
from casella.delivery import quotawarn
from casella.imap import responses as r
from casella.imap.session import Session
from casella.net.listener import Service
from casella.net.streams import Connection


class UserIpConnections:
    """Logged-in IMAP sessions per (user address, client IP) in this process."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    def acquire(self, key: tuple[str, str], limit: int) -> bool:
        n = self._counts.get(key, 0)
        if n >= limit:
            return False
        self._counts[key] = n + 1
        return True

    def release(self, key: tuple[str, str]) -> None:
        n = self._counts.get(key, 0) - 1
        if n > 0:
            self._counts[key] = n
        else:
            self._counts.pop(key, None)

    def count(self, key: tuple[str, str]) -> int:
        return self._counts.get(key, 0)


class ImapService:
    def __init__(self, app: App, name: str, implicit_tls: bool,
                 connections: UserIpConnections) -> None:
        self.app = app
        self.name = name
        self.implicit_tls = implicit_tls
        self.connections = connections

    async def handle(self, conn: Connection) -> None:
        await Session(self.app, conn, self.connections).run()

    def refuse(self, conn: Connection, reason: str) -> bytes:
        return r.status("*", "BYE", reason, "UNAVAILABLE")


def services(app: App) -> dict[str, Service]:
    connections = UserIpConnections()
    # Quota warnings sent after IMAP APPEND/COPY/MOVE and SMTP delivery use [quota]'s texts.
    quotawarn.configure(app.store, app.config.quota)
    return {"imap": ImapService(app, "imap", False, connections),
            "imaps": ImapService(app, "imaps", True, connections)}
