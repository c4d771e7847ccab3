"""SEARCH and UID SEARCH (RFC 9051 §6.4.4): the classic `* SEARCH` answer for IMAP4rev1, the
ESEARCH form (RFC 4731 / RFC 9051 §7.3.4) for IMAP4rev2 sessions or when RETURN is given, and
the saved result `$` (RFC 5182, part of IMAP4rev2).

Must never: send EXPUNGE while answering a non-UID SEARCH (X1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from casella.imap import commands as c
from casella.imap import seqset
from casella.imap.search import Criteria, run_search
from casella.imap.session import Done

if TYPE_CHECKING:
    from casella.imap.session import Session


async def search(s: Session, tag: str, cmd: c.Search) -> Done:
    view = s.selected
    assert view is not None
    returns = cmd.returns
    if returns is not None and not returns:
        returns = ("ALL",)           # RFC 4731 §3.1: RETURN () means ALL
    save = returns is not None and "SAVE" in returns
    try:
        criteria = Criteria(cmd.key, cmd.charset, view, s.saved_search)
        uids = await run_search(s.store, view, criteria)
    except BaseException:
        if save:
            s.saved_search = []      # RFC 5182 §2.1: a failed SEARCH ... SAVE empties $
        raise
    if cmd.uid:
        numbers = uids
    else:
        numbers = [n for n in (view.seq_of(u) for u in uids) if n is not None]
    if returns is None and not s.rev2:
        s.write(b"* SEARCH" + b"".join(b" %d" % n for n in numbers) + b"\r\n")
        return Done("SEARCH completed")
    if returns is None:
        returns = ("ALL",)
    if save:
        wanted = set(returns) - {"SAVE"}
        if wanted and wanted <= {"MIN", "MAX"} and uids:
            # RFC 5182 §2.4: with only MIN/MAX the saved result is those messages.
            keep = set()
            if "MIN" in wanted:
                keep.add(uids[0])
            if "MAX" in wanted:
                keep.add(uids[-1])
            s.saved_search = sorted(keep)
        else:
            s.saved_search = list(uids)
        if set(returns) == {"SAVE"}:
            return Done("SEARCH completed, result saved")
    parts = [b"* ESEARCH (TAG " + _quoted(tag) + b")"]
    if cmd.uid:
        parts.append(b"UID")
    if numbers:
        if "MIN" in returns:
            parts.append(b"MIN %d" % numbers[0])
        if "MAX" in returns:
            parts.append(b"MAX %d" % numbers[-1])
        if "ALL" in returns:
            parts.append(b"ALL " + seqset.compress(sorted(numbers)))
    if "COUNT" in returns:
        parts.append(b"COUNT %d" % len(numbers))
    s.write(b" ".join(parts) + b"\r\n")
    return Done("SEARCH completed")


def _quoted(tag: str) -> bytes:
    return b'"' + tag.encode("ascii").replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
