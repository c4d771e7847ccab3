"""SEARCH and UID SEARCH (RFC 9051 §6.4.4): the classic `* SEARCH` answer for IMAP4rev1, the
ESEARCH form (RFC 4731 / RFC 9051 §7.3.4: MIN MAX ALL COUNT) for IMAP4rev2 sessions or when
RETURN is given, the saved result `$` (SEARCHRES, RFC 5182), the MODSEQ of the messages
returned when the program has a MODSEQ key (RFC 4731 §3.2, RFC 7162 §3.1.5), PARTIAL (RFC 5267
§4.4, RFC 9394), UPDATE contexts and CANCELUPDATE (RFC 5267 §4.3, casella.imap.contexts). The
ESEARCH rendering here serves SORT ... RETURN too (ESORT, handlers/sort.py).

Must never: send EXPUNGE while answering a non-UID SEARCH (X1).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from casella.imap import commands as c
from casella.imap import seqset
from casella.imap.contexts import quoted_tag
from casella.imap.errors import Bad, No
from casella.imap.search import Criteria, run_search
from casella.imap.session import Done

if TYPE_CHECKING:
    from casella.imap.selected import SelectedView
    from casella.imap.session import Session

_DATA = frozenset({"MIN", "MAX", "ALL", "COUNT", "PARTIAL"})


def check_charset(s: Session, charset: str | None, mandatory: bool = False) -> None:
    """RFC 6855 §3 (erratum 4029): after ENABLE UTF8=ACCEPT a SEARCH names no CHARSET and
    SORT / THREAD name UTF-8."""
    if not s.utf8 or charset is None:
        return
    if not mandatory or charset not in ("UTF-8", "UTF8"):
        raise Bad("No CHARSET after ENABLE UTF8=ACCEPT (strings are UTF-8)")


def check_update_tag(view: SelectedView, tag: str, returns: tuple[str, ...] | None) -> bool:
    """Whether RETURN asks for UPDATE; a tag whose UPDATE context is still alive cannot start
    another (RFC 5267 §4.3: BAD)."""
    if returns is None or "UPDATE" not in returns:
        return False
    if tag in view.contexts:
        raise Bad("This tag already names an update context; use a new tag")
    return True


def data_items(returns: tuple[str, ...]) -> frozenset[str]:
    """The return data asked for. RETURN () asks for ALL (RFC 4731 §3.1), and so does a list of
    hints only (CONTEXT, RFC 5267 §4.2); SAVE or UPDATE alone ask for none."""
    data = frozenset(returns) & _DATA
    if not data and not {"SAVE", "UPDATE"} & set(returns):
        return frozenset({"ALL"})
    return data


def partial_page(items: Sequence[int], partial: tuple[int, int]) -> Sequence[int]:
    """The results at PARTIAL's positions: 1-based, or counted from the end when negative
    (RFC 9394 §3.1: -1 is the last); positions beyond the results are simply absent."""
    first, last = partial
    if first > 0:
        return items[first - 1:last]
    end = len(items) + first + 1           # first is -1 for the last result
    return items[max(len(items) + last, 0):end] if end > 0 else items[:0]


def result_modseq(criteria: Criteria, data: frozenset[str], uids: Sequence[int]) -> int | None:
    """RFC 4731 §3.2 with RFC 7162 §3.1.5: with MIN and/or MAX as the only data, the highest
    MODSEQ of the message(s) returned; otherwise the highest of all found. None without a
    MODSEQ key or without results."""
    if not criteria.has_modseq or not uids:
        return None
    if data and data <= {"MIN", "MAX"}:
        returned = ([uids[0]] if "MIN" in data else []) + ([uids[-1]] if "MAX" in data else [])
        return max(criteria.modseqs.get(u, 0) for u in returned)
    return criteria.max_modseq


def saved_result(data: frozenset[str], uids: Sequence[int],
                 partial: tuple[int, int] | None) -> list[int]:
    """What `$` holds after RETURN (SAVE ...) (RFC 5182 §2.4, RFC 9394 §3.2): every message
    found, unless only MIN / MAX / PARTIAL data is asked for, then just the messages those
    return."""
    if not uids or "ALL" in data or "COUNT" in data or not data:
        return sorted(uids)
    keep: set[int] = set()
    if "MIN" in data:
        keep.add(uids[0])
    if "MAX" in data:
        keep.add(uids[-1])
    if partial is not None:
        keep.update(partial_page(uids, partial))
    return sorted(keep)


def esearch_line(tag: str, uid: bool, data: frozenset[str], numbers: Sequence[int],
                 modseq: int | None, partial: tuple[int, int] | None = None,
                 ordered: bool = False) -> bytes:
    """`* ESEARCH (TAG "t") [UID] ...` (RFC 4731 §3.1). `numbers` in result order: ascending
    for SEARCH; sort order for SORT (`ordered`: MIN / MAX are the first and last sorted, sets
    keep the order and use ranges only where it ascends, RFC 5267 §3.1, §3.2)."""
    parts = [b"* ESEARCH (TAG " + quoted_tag(tag) + b")"]
    if uid:
        parts.append(b"UID")
    compress = seqset.compress_ordered if ordered else seqset.compress
    if numbers:
        if "MIN" in data:
            parts.append(b"MIN %d" % numbers[0])
        if "MAX" in data:
            parts.append(b"MAX %d" % numbers[-1])
        if "ALL" in data:
            parts.append(b"ALL " + compress(numbers))
    if partial is not None:
        # RFC 5267 §4.4 / RFC 9394 §3.1: the range as asked (in order), then the results in
        # it, or NIL when there are none.
        page = partial_page(numbers, partial)
        parts.append(b"PARTIAL (%d:%d %s)" % (partial[0], partial[1],
                                              compress(page) if page else b"NIL"))
    if "COUNT" in data:
        parts.append(b"COUNT %d" % len(numbers))
    if modseq is not None:
        parts.append(b"MODSEQ %d" % modseq)      # RFC 7162 §3.1.5 with RFC 4731 §3.2
    return b" ".join(parts) + b"\r\n"


async def search(s: Session, tag: str, cmd: c.Search) -> Done:
    view = s.selected
    assert view is not None
    check_charset(s, cmd.charset)
    returns = cmd.returns
    update = check_update_tag(view, tag, returns)
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
    if returns is None and not s.rev2:
        line = b"* SEARCH" + b"".join(b" %d" % n for n in numbers)
        modseq = result_modseq(criteria, frozenset({"ALL"}), uids)
        if modseq is not None:
            line += b" (MODSEQ %d)" % modseq
        s.write(line + b"\r\n")
        return Done("SEARCH completed")
    data = data_items(returns if returns is not None else ())
    if save:
        s.saved_search = saved_result(data, uids, cmd.partial)
    if update:
        s.write(view.contexts.start(view, tag, cmd.uid, criteria, uids))
    if data or update:
        s.write(esearch_line(tag, cmd.uid, data, numbers, result_modseq(criteria, data, uids),
                             cmd.partial))
    elif save:
        return Done("SEARCH completed, result saved")
    return Done("SEARCH completed")


async def cancelupdate(s: Session, tag: str, cmd: c.CancelUpdate) -> Done:
    """RFC 5267 §4.3.5: no more updates for these searching commands. All named tags must have
    a context, or none is cancelled."""
    view = s.selected
    assert view is not None
    for name in cmd.tags:
        if name not in view.contexts:
            raise No(f"No update context has the tag {name[:40]}")
    for name in dict.fromkeys(cmd.tags):
        view.contexts.cancel(name)
    return Done("CANCELUPDATE completed, updates cancelled")
