"""What a scenario is pointed at: host, ports, credentials, and how to read the server's
memory and verify deliveries.

Lives here: `Endpoint` (one column of the table: casella, the peers, or any server given with
--host/--port) and `Context` (run-wide options every scenario reads). Must never: start or stop
servers (the runner does that).
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.clients.imap import ImapClient, quote
from bench.seed import maildir_count, maildir_of


@dataclass
class Endpoint:
    label: str                                   # the table column: "casella", "peers", ...
    host: str
    password: str
    imap_port: int | None = None
    pop3_port: int | None = None
    smtp_port: int | None = None
    tls: bool = False
    user_template: str | None = None             # --user: "name{n}@domain" or one address
    servers: dict[str, str] = field(default_factory=dict)   # role -> "dovecot", "postfix" …
    pid_sources: dict[str, Callable[[], list[int]]] = field(default_factory=dict)
    maildir_root: Path | None = None             # peers: deliveries are counted from Maildir
    synchronous_delivery: bool = False           # casella: a 250 means "in INBOX" already
    count_inbox: Callable[[str], Awaitable[int]] | None = None   # casella: via its store
    index_status: Callable[[], Awaitable[dict[str, int]]] | None = None  # casella's search index
    notes: list[str] = field(default_factory=list)

    def user(self, kind: str, n: int | None = None) -> str:
        """The address of bench user `kind` (number n for per-client users). A --user template
        may use {kind} (ingest, mixed, pop, idle, box1k, box10k, box100k, login-load …), {n}
        (the client number, empty for one-user scenarios) and {nn} (the same, two digits)."""
        if self.user_template:
            return self.user_template.format(kind=kind, n="" if n is None else n,
                                             nn="" if n is None else f"{n:02d}")
        local = kind if n is None else f"{kind}{n:02d}"
        return f"{local}@bench.test"

    def server(self, role: str) -> str:
        return self.servers.get(role, self.label)

    def pids(self, roles: tuple[str, ...]) -> list[int]:
        out: list[int] = []
        for role in roles:
            src = self.pid_sources.get(role)
            if src is not None:
                out.extend(p for p in src() if p not in out)
        return out

    async def inbox_count(self, address: str) -> int:
        """Messages in the INBOX of `address`: through casella's store for casella, from the
        Maildir for the peers (Postfix writes it), else over IMAP STATUS."""
        if self.count_inbox is not None:
            return await self.count_inbox(address)
        if self.maildir_root is not None:
            return maildir_count(maildir_of(self.maildir_root, address))
        if self.imap_port is None:
            return -1
        client = await ImapClient.connect(self.host, self.imap_port, tls=self.tls)
        try:
            await client.login(address, self.password)
            r = await client.command(b"STATUS INBOX (MESSAGES)", keep=True)
            for line in r.untagged:
                if b"MESSAGES" in line:
                    return int(line.rsplit(b"MESSAGES", 1)[1].strip(b" )\r\n").split()[0])
            return -1
        finally:
            await client.logout()


@dataclass
class Context:
    quick: bool = False
    duration: float = 8.0             # seconds per timed load case
    clients: list[int] | None = None  # --clients override for the selected scenarios
    sizes: list[int] | None = None    # --sizes override for smtp-ingest (bytes)
    log: Callable[[str], None] = print
    smtp_source: str | None = None    # path of Postfix's smtp-source, when installed

    def dur(self, full: float) -> float:
        return min(full, 1.0) if self.quick else full


def nan() -> float:
    return math.nan


__all__ = ["Context", "Endpoint", "quote"]
