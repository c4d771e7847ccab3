"""The asyncio glue of ManageSieve: the `managesieve` listener (port 4190, STARTTLS) as a
`Service` for the runner.

Lives here: `ManageSieveService` and `services(app)`. Must never: parse commands or hold
session state.
"""

from __future__ import annotations

from casella.app import App
from casella.managesieve import proto
from casella.managesieve.session import Session
from casella.net.listener import Service
from casella.net.streams import Connection


class ManageSieveService:
    def __init__(self, app: App, name: str) -> None:
        self.app = app
        self.name = name
        self.implicit_tls = False

    async def handle(self, conn: Connection) -> None:
        await Session(self, conn).run()

    def refuse(self, conn: Connection, reason: str) -> bytes:
        return proto.bye(f"{reason[:1].upper()}{reason[1:]}; try again later", "TRYLATER")


def services(app: App) -> dict[str, Service]:
    return {"managesieve": ManageSieveService(app, "managesieve")}
