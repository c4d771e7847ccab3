"""The SMTP listeners: `smtp` (MX), `submission` (STARTTLS) and `submissions` (implicit TLS).

Lives here: `SmtpService` (the net.listener Service for one listener and its role) and
`services(app)`, which the server runner calls. Must never: parse SMTP or touch the store; a
Session does that.
"""

from __future__ import annotations

from casella.app import App
from casella.net.listener import Service
from casella.net.streams import Connection
from casella.smtp import proto
from casella.smtp.policy import Role
from casella.smtp.session import Session


class SmtpService:
    def __init__(self, app: App, name: str, role: Role, implicit_tls: bool) -> None:
        self.app = app
        self.name = name
        self.role = role
        self.implicit_tls = implicit_tls

    async def handle(self, conn: Connection) -> None:
        await Session(self, conn).run()

    def refuse(self, conn: Connection, reason: str) -> bytes:
        return proto.reply(421, "4.7.0", f"{self.app.hostname} {proto.safe_text(reason)}; "
                                         "try again later").render()


def services(app: App) -> dict[str, Service]:
    return {
        # MX: STARTTLS offered, no AUTH (PROMISES A1), mail for hosted domains only.
        "smtp": SmtpService(app, "smtp", Role.MX, implicit_tls=False),
        # RFC 6409 submission: STARTTLS, then AUTH, then MAIL.
        "submission": SmtpService(app, "submission", Role.SUBMISSION, implicit_tls=False),
        # RFC 8314 §3.3 implicit TLS submission.
        "submissions": SmtpService(app, "submissions", Role.SUBMISSION, implicit_tls=True),
    }
