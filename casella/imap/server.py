"""asyncio glue: the `imap` (STARTTLS, RFC 9051 §6.2.1) and `imaps` (implicit TLS, RFC 8314)
listeners' Service objects. Logged-in sessions per (user, client address) are counted with the
App's connection counter, across every worker and node (issue 7:
`imap.max_connections_per_user_ip`, like Dovecot's mail_max_userip_connections;
casella.limits.connections).

Must never: contain protocol logic (session.py has it).
"""

from __future__ import annotations

from casella.app import App
from casella.imap import quotawarn
from casella.imap import responses as r
from casella.imap.session import Session
from casella.net.listener import Service
from casella.net.streams import Connection


class ImapService:
    def __init__(self, app: App, name: str, implicit_tls: bool) -> None:
        self.app = app
        self.name = name
        self.implicit_tls = implicit_tls

    async def handle(self, conn: Connection) -> None:
        await Session(self.app, conn).run()

    def refuse(self, conn: Connection, reason: str) -> bytes:
        return r.status("*", "BYE", reason, "UNAVAILABLE")


def services(app: App) -> dict[str, Service]:
    # Quota warnings sent after IMAP APPEND/COPY/MOVE and SMTP delivery use [quota]'s texts.
    quotawarn.configure(app.store, app.config.quota)
    return {"imap": ImapService(app, "imap", False),
            "imaps": ImapService(app, "imaps", True)}
