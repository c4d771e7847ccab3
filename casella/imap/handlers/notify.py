"""NOTIFY SET / NOTIFY NONE (RFC 5465 §3.1): replaces what the session listens for. Unsupported
events are NO [BADEVENT (the supported ones)]; a successful NOTIFY SET implies a NOOP (the
command table asks for the selected mailbox's updates) and, with STATUS, a STATUS response for
every watched mailbox. The work happens in casella/imap/notify.py.

Must never: keep the previous subscription alive after it was replaced.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from casella.imap import commands as c
from casella.imap.errors import No
from casella.imap.notify import EVENT_NAMES, SUPPORTED_EVENTS, Notifier, unsupported_events
from casella.imap.session import Done

if TYPE_CHECKING:
    from casella.imap.session import Session


async def notify(s: Session, tag: str, cmd: c.Notify) -> Done:
    if cmd.groups is not None and unsupported_events(cmd):
        names = " ".join(EVENT_NAMES[e] for e in SUPPORTED_EVENTS)
        raise No("casella does not send those events", f"BADEVENT ({names})")
    if s.notifier is not None:
        s.notifier.close()
        s.notifier = None
    if cmd.groups is None:
        return Done("NOTIFY NONE completed")
    notifier = Notifier(s, cmd)
    try:
        s.write(await notifier.start(cmd.status))
    except BaseException:
        notifier.close()
        raise
    s.notifier = notifier
    return Done("NOTIFY completed")
