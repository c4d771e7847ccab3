"""The asyncio glue of POP3: the `pop3` (STLS, RFC 2595) and `pop3s` (implicit TLS, RFC 8314)
listeners as `Service` objects for the runner.

Lives here: `Pop3Service` and `services(app)`. Must never: parse commands or hold session
state; both listeners of one App share one maildrop lock registry.
"""

from __future__ import annotations

from casella.app import App
from casella.net.listener import Service
from casella.net.streams import Connection
from casella.pop3 import proto
from casella.pop3.maildrop import MaildropLocks, locks_for
from casella.pop3.session import Pop3Session


class Pop3Service:
    def __init__(self, app: App, name: str, implicit_tls: bool, locks: MaildropLocks) -> None:
        self.app = app
        self.name = name
        self.implicit_tls = implicit_tls
        self.locks = locks

    async def handle(self, conn: Connection) -> None:
        await Pop3Session(self.app, conn, self.locks, implicit_tls=self.implicit_tls).run()

    def refuse(self, conn: Connection, reason: str) -> bytes:
        # RFC 2449 §8.1.2 IN-USE, as issue 7 asks (and as the maildrop lock answers): the
        # client shows "try again later" instead of a password prompt.
        return proto.err(f"{reason[:1].upper()}{reason[1:]}; try again later.", "IN-USE")


def services(app: App) -> dict[str, Service]:
    locks = locks_for(app)
    return {
        "pop3": Pop3Service(app, "pop3", False, locks),
        "pop3s": Pop3Service(app, "pop3s", True, locks),
    }
