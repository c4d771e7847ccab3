"""SORT, UID SORT, THREAD and UID THREAD (RFC 5256; DISPLAYFROM / DISPLAYTO of RFC 5957): the
search program is evaluated like SEARCH's, then the matching messages' stored headers (never
their bodies) give the keys; the algorithms are in casella/imap/sorting.py. SORT ... RETURN
answers in ESEARCH (ESORT, RFC 5267 §3) with PARTIAL and UPDATE contexts (CONTEXT=SORT, §4).

Must never: send EXPUNGE while answering (X1), or read a message body.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from casella.imap import commands as c
from casella.imap.contexts import sort_infos
from casella.imap.errors import Bad, No
from casella.imap.handlers.search import (
    check_charset,
    check_update_tag,
    data_items,
    esearch_line,
    result_modseq,
    saved_result,
)
from casella.imap.search import CHARSETS, Criteria, run_search
from casella.imap.session import Done
from casella.imap.sorting import (
    SortInfo,
    ordered_subject,
    references,
    render_threads,
    sort_messages,
)
from casella.store.model import MessageMeta

if TYPE_CHECKING:
    from casella.imap.session import Session


async def _matching(s: Session, key: c.SearchKey, charset: str) -> tuple[list[SortInfo],
                                                                            Criteria]:
    view = s.selected
    assert view is not None
    check_charset(s, charset, mandatory=True)
    if charset not in CHARSETS and charset != "UTF8":
        # RFC 5256 §3: US-ASCII and UTF-8 at least; others are NO [BADCHARSET].
        raise No(f"Charset {charset[:30]} is not supported", "BADCHARSET (US-ASCII UTF-8)")
    criteria = Criteria(key, charset, view, s.saved_search)
    if criteria.has_modseq:
        s.enable_condstore()
    matched: list[MessageMeta] = []
    await run_search(s.store, view, criteria, matched=matched)
    return await sort_infos(s.store, view, matched), criteria


async def sort(s: Session, tag: str, cmd: c.Sort) -> Done:
    view = s.selected
    assert view is not None
    returns = cmd.returns
    update = check_update_tag(view, tag, returns)
    save = returns is not None and "SAVE" in returns
    try:
        infos, criteria = await _matching(s, cmd.key, cmd.charset)
    except BaseException:
        if save:
            s.saved_search = []      # RFC 5182 §2.1: a failed ... SAVE empties $
        raise
    ordered = sort_messages(infos, cmd.criteria)
    numbers = [i.uid if cmd.uid else i.seq for i in ordered]
    uids = [i.uid for i in ordered]
    if returns is None:
        line = b"* SORT" + b"".join(b" %d" % n for n in numbers)
        if criteria.has_modseq and numbers:
            line += b" (MODSEQ %d)" % criteria.max_modseq
        s.write(line + b"\r\n")
        return Done("SORT completed")
    # RFC 5267 §3.1: the ESEARCH return options, MIN and MAX being the first and last sorted.
    data = data_items(returns)
    if save:
        s.saved_search = saved_result(data, uids, cmd.partial)
    if update:
        s.write(view.contexts.start(view, tag, cmd.uid, criteria, sorted(uids), cmd.criteria,
                                    ordered))
    if data or update:
        s.write(esearch_line(tag, cmd.uid, data, numbers, result_modseq(criteria, data, uids),
                             cmd.partial, ordered=True))
    return Done("SORT completed")


async def thread(s: Session, tag: str, cmd: c.Thread) -> Done:
    infos, _ = await _matching(s, cmd.key, cmd.charset)
    if cmd.algorithm == "ORDEREDSUBJECT":
        threads = ordered_subject(infos)
    elif cmd.algorithm == "REFERENCES":
        threads = references(infos)
    else:
        raise Bad(f"Unknown threading algorithm {cmd.algorithm[:30]}")
    body = render_threads(threads, cmd.uid)
    s.write(b"* THREAD" + (b" " + body if body else b"") + b"\r\n")
    return Done("THREAD completed")
