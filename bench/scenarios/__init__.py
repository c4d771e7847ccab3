"""The benchmark scenarios. Each module defines:

    NAME, TITLE            how --only selects it and how the table heads it
    ROLES                  which server processes its peak RSS is read from ("smtp", "imap", "pop3")
    needs(plan, ctx)       the users and seeded mailboxes it relies on
    cases(ctx)             the cases it runs (sizes, client counts), fewer with --quick
    rows(case, ctx)        the table rows one case yields: (label, unit, higher is better)
    async run(ep, case, ctx) -> list[Result]   one case against one Endpoint

Every scenario talks only through its protocol clients to `ep.host` and `ep.*_port` with
`ep.user(...)` and `ep.password`, so the same code runs against casella, Dovecot/Postfix or
any server given on the command line. Must never: import casella.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import ModuleType
from typing import Any


@dataclass(frozen=True)
class Case:
    label: str
    params: dict[str, Any] = field(default_factory=dict)


def registry() -> list[ModuleType]:
    """All scenarios, in the order a full run executes them (memory-hungry IDLE last, so its
    thousands of connections do not inflate the peak RSS of the others)."""
    from bench.scenarios import (
        idle,
        imap_body_download,
        imap_header_sync,
        imap_login,
        imap_mixed,
        pop3_download,
        scaling,
        smtp_ingest,
    )
    return [smtp_ingest, imap_login, imap_mixed, imap_header_sync, imap_body_download,
            pop3_download, scaling, idle]
