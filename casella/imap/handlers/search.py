"""SEARCH and UID SEARCH (RFC 9051 §6.4.4): the classic `* SEARCH` answer for IMAP4rev1, the
ESEARCH form (RFC 4731 / RFC 9051 §7.3.4: MIN MAX ALL COUNT) for IMAP4rev2 sessions or when
RETURN is given, the saved result `$` (SEARCHRES, RFC 5182), and the MODSEQ of the messages found
when the program has a MODSEQ key (RFC 7162 §3.1.5).

Must never: send EXPUNGE while answering a non-UID SEARCH (X1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from casella.imap import commands as c
from casella.imap import seqset
from casella.imap.errors import Bad
from casella.imap.search import Criteria, run_search
from casella.imap.session import Done

if TYPE_CHECKING:
    from casella.imap.session import Session


def check_charset(s: Session, charset: str | None, mandatory: bool = False) -> None:
    """RFC 6855 §3 (erratum 4029): after ENABLE UTF8=ACCEPT a SEARCH names no CHARSET and
    SORT / THREAD name UTF-8."""
    if not s.utf8 or charset is None:
        return
    if not mandatory or charset not in ("UTF-8", "UTF8"):
        raise Bad("No CHARSET after ENABLE UTF8=ACCEPT (strings are UTF-8)")


async def search(s: Session, tag: str, cmd: c.Search) -> Done:
    view = s.selected
    assert view is not None
    check_charset(s, cmd.charset)
    returns = cmd.returns
    if returns is not None and not returns:
        returns = ("ALL",)           # RFC 4731 §3.1: RETURN () means ALL
    save = returns is not None and "SAVE" in returns
    try:
        criteria = Criteria(cmd.key, cmd.charset, view, s.saved_search)
        if criteria.has_modseq:
            s.enable_condstore()     # RFC 7162 §3.1: a CONDSTORE enabling command
        uids = await run_search(s.store, view, criteria)
    except BaseException:
        if save:
            s.saved_search = []      # RFC 5182 §2.1: a failed SEARCH ... SAVE empties $
        raise
    if cmd.uid:
        numbers = uids
    else:
        numbers = [n for n in (view.seq_of(u) for u in uids) if n is not None]
    modseq = criteria.max_modseq if criteria.has_modseq and numbers else None
    if returns is None and not s.rev2:
        line = b"* SEARCH" + b"".join(b" %d" % n for n in numbers)
        if modseq is not None:
            line += b" (MODSEQ %d)" % modseq
        s.write(line + b"\r\n")
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
    s.write(esearch_line(tag, cmd.uid, returns, numbers, modseq))
    return Done("SEARCH completed")


def esearch_line(tag: str, uid: bool, returns: tuple[str, ...], numbers: list[int],
                 modseq: int | None) -> bytes:
    parts = [b"* ESEARCH (TAG " + _quoted(tag) + b")"]
    if uid:
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
    if modseq is not None:
        parts.append(b"MODSEQ %d" % modseq)      # RFC 7162 §3.1.5 with RFC 4731
    return b" ".join(parts) + b"\r\n"


def _quoted(tag: str) -> bytes:
    return b'"' + tag.encode("ascii").replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
