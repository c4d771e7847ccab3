"""Search and sort contexts (RFC 5267 §4, CONTEXT=SEARCH and CONTEXT=SORT): the result of a
SEARCH or SORT ... RETURN (UPDATE ...) kept true while its mailbox stays selected, and the
`* ESEARCH (TAG "t") ADDTO / REMOVEFROM` responses that tell the client how it changed.

Lives here: `UpdateContext` (one searching command: its program, frozen as it was when the
command ran, and its result as UIDs, in sort order for SORT) and `Contexts` (those of one
selected view, which owns them, so they end when the mailbox is no longer selected, §4.3; at
most MAX_UPDATE_CONTEXTS, then `* NO [NOUPDATE "tag"]`, §4.3.1). `Contexts.expunged` answers
REMOVEFROM for messages about to be announced as expunged (§4.3.4: before the EXPUNGE, while
their numbers still hold); `Contexts.refresh` asks the store what changed since the MODSEQ each
context has seen and evaluates the program again for those messages only (so ADDTO for new
messages comes after their EXISTS, §4.3.3). A SEARCH context reports position 0 and sets in
mailbox order (§4.3.3, §4.3.4); a SORT context reports positions in its sorted result and sets
in sort order (§4.3.2, §3.2).

Must never: send EXPUNGE (X1), touch SQL or files (it calls the store contract), or sort by
itself (casella.imap.sorting is used as it is).
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from casella.imap import commands as c
from casella.imap import responses as r
from casella.imap import seqset
from casella.imap.search import Criteria, run_search
from casella.imap.sorting import SortInfo, sort_info, sort_messages
from casella.store.model import MessageMeta

if TYPE_CHECKING:
    from casella.imap.selected import SelectedView
    from casella.store.base import Store

MAX_UPDATE_CONTEXTS = 10    # per session and selected mailbox (Dovecot keeps as many)
HEADER_BATCH = 2000
KEY_CACHE = 4096            # sort keys a SORT context keeps, for placing new results
INSERT_MOST = 256           # more new results than this at once: sort the whole result again


class _Gone(Exception):
    """A result's message left the store before the view announced its expunge: its sort
    keys cannot be read, so the context looks again once the expunge is known."""


def quoted_tag(tag: str) -> bytes:
    """A command tag as the quoted string of a search correlator (RFC 4466 §2.6.2)."""
    return b'"' + tag.encode("ascii").replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


async def sort_infos(store: Store, view: SelectedView,
                     metas: Sequence[MessageMeta]) -> list[SortInfo]:
    """The sort keys of these messages of the view, from their stored headers."""
    out: list[SortInfo] = []
    for start in range(0, len(metas), HEADER_BATCH):
        chunk = metas[start:start + HEADER_BATCH]
        headers = await store.fetch_headers([m.blob_id for m in chunk])
        for m in chunk:
            seq = view.seq_of(m.uid)
            if seq is not None:
                out.append(sort_info(seq, m.uid, m.internaldate, m.size,
                                     headers.get(m.blob_id, b"")))
    return out


@dataclass(eq=False)
class UpdateContext:
    """One searching command's result. UIDs are kept in arrays (8 octets each), so ten
    contexts on a 100,000-message mailbox stay small; a SORT context keeps the sort keys of
    only some of its messages (KEY_CACHE) and reads the others' stored headers when a new
    result has to be placed among them."""
    tag: str
    uid: bool                       # UID SEARCH / UID SORT: UIDs on the wire, else numbers
    criteria: Criteria
    modseq: int                     # every change up to this MODSEQ is in the result
    members: array[int]             # the result, as ascending UIDs
    sort: tuple[c.SortKey, ...] | None = None                  # SORT: its criteria
    order: array[int] = field(default_factory=lambda: array("Q"))   # SORT: result, sorted
    keys: dict[int, SortInfo] = field(default_factory=dict)    # SORT: some members' keys

    def has(self, uid: int) -> bool:
        i = bisect.bisect_left(self.members, uid)
        return i < len(self.members) and self.members[i] == uid

    def _number(self, view: SelectedView, uid: int) -> int:
        if self.uid:
            return uid
        seq = view.seq_of(uid)
        assert seq is not None, uid       # members are messages of the view
        return seq

    def _line(self, item: bytes, pairs: list[tuple[int, bytes]]) -> bytes:
        """RFC 5267 §5: ret-data-addto / ret-data-removefrom, "(" position SP set ... ")"."""
        head = b"* ESEARCH (TAG " + quoted_tag(self.tag) + b")" + (b" UID" if self.uid else b"")
        body = b" ".join(b"%d %s" % (pos, numbers) for pos, numbers in pairs)
        return head + b" " + item + b" (" + body + b")\r\n"

    def _runs(self, order: Sequence[int], chosen: set[int], view: SelectedView,
              shift: bool) -> list[tuple[int, bytes]]:
        """(context position, set in sort order) for each run of `chosen` in `order`. Removed
        runs are applied one after the other (§4.3.2), so each position counts only what the
        runs before it left (`shift`); added runs are placed at their final positions."""
        pairs: list[tuple[int, bytes]] = []
        run: list[int] = []
        start = 0
        passed = 0
        for i, uid in enumerate(order):
            if uid in chosen:
                if not run:
                    start = i + 1 - (passed if shift else 0)
                run.append(self._number(view, uid))
                passed += 1
            elif run:
                pairs.append((start, seqset.compress_ordered(run)))
                run = []
        if run:
            pairs.append((start, seqset.compress_ordered(run)))
        return pairs

    def remove(self, view: SelectedView, uids: set[int]) -> bytes:
        """Take these UIDs out of the result: REMOVEFROM with the numbers they have now."""
        gone = {u for u in uids if self.has(u)}
        if not gone:
            return b""
        if self.sort is None:
            numbers = sorted(self._number(view, u) for u in gone)
            line = self._line(b"REMOVEFROM", [(0, seqset.compress(numbers))])
        else:
            line = self._line(b"REMOVEFROM", self._runs(self.order, gone, view, shift=True))
            self.order = array("Q", (u for u in self.order if u not in gone))
            for u in gone:
                self.keys.pop(u, None)
        self.members = array("Q", (u for u in self.members if u not in gone))
        return line

    async def reevaluate(self, store: Store, view: SelectedView, uids: list[int]) -> bytes:
        """These messages of the view (ascending UIDs) are new or changed: REMOVEFROM for those
        that no longer match, ADDTO for those that match now."""
        metas: list[MessageMeta] = []
        found = set(await run_search(store, view, self.criteria, matched=metas, only=uids))
        out = self.remove(view, {u for u in uids if u not in found})
        added = [u for u in uids if u in found and not self.has(u)]
        if not added:
            return out
        members = array("Q", sorted((*self.members, *added)))
        if self.sort is None:
            self.members = members
            numbers = sorted(self._number(view, u) for u in added)
            return out + self._line(b"ADDTO", [(0, seqset.compress(numbers))])
        wanted = set(added)
        kept = self.order
        new = sort_messages(await sort_infos(store, view, [m for m in metas if m.uid in wanted]),
                            self.sort)
        if len(new) > INSERT_MOST:
            order = await self._sorted_again(store, view, members)
            if [u for u in order if u not in wanted] != list(kept):
                # Sort keys never change, so results already there keep their order; if
                # they ever did not, the client is told the whole result again, not a lie.
                out += self._line(b"REMOVEFROM", self._runs(kept, set(kept), view, shift=True))
                wanted = set(order)
        else:
            order = await self._inserted(store, view, new)
        self.members, self.order = members, order
        return out + self._line(b"ADDTO", self._runs(order, wanted, view, shift=False))

    async def _key(self, store: Store, view: SelectedView, uid: int) -> SortInfo:
        info = self.keys.get(uid)
        if info is None:
            found = await sort_infos(store, view,
                                     await store.fetch_meta(view.mailbox_id, [(uid, uid)]))
            if not found:
                raise _Gone(uid)
            info = found[0]
            if len(self.keys) >= KEY_CACHE:
                self.keys.clear()
            self.keys[uid] = info
        # Ties are broken by sequence number (RFC 5256 §3): the one the message has now.
        info.seq = view.seq_of(uid) or info.seq
        return info

    async def _inserted(self, store: Store, view: SelectedView,
                        new: list[SortInfo]) -> array[int]:
        """The sorted result with `new` (in sort order among themselves) put in place: a binary
        search per message, comparing with casella.imap.sorting's own order."""
        order = list(self.order)
        low = 0
        for info in new:
            high = len(order)
            while low < high:
                mid = (low + high) // 2
                pivot = await self._key(store, view, order[mid])
                if sort_messages([pivot, info], self.sort or ())[0] is info:
                    high = mid
                else:
                    low = mid + 1
            order.insert(low, info.uid)
            low += 1
        return array("Q", order)

    async def _sorted_again(self, store: Store, view: SelectedView,
                            members: array[int]) -> array[int]:
        """These messages sorted from their stored headers, as a SORT command would."""
        infos: list[SortInfo] = []
        for start in range(0, len(members), HEADER_BATCH):
            chunk = members[start:start + HEADER_BATCH]
            metas = await store.fetch_meta(view.mailbox_id, seqset.ranges_of(chunk))
            infos.extend(await sort_infos(store, view, metas))
        if len(infos) != len(members):
            raise _Gone()
        self.keys.clear()
        return array("Q", (i.uid for i in sort_messages(infos, self.sort or ())))


class Contexts:
    """The update contexts of one selected view, by the tag of their searching command."""

    def __init__(self) -> None:
        self._by_tag: dict[str, UpdateContext] = {}

    def __bool__(self) -> bool:
        return bool(self._by_tag)

    def __len__(self) -> int:
        return len(self._by_tag)

    def __contains__(self, tag: object) -> bool:
        return tag in self._by_tag

    def start(self, view: SelectedView, tag: str, uid: bool, criteria: Criteria,
              uids: Sequence[int], sort: tuple[c.SortKey, ...] | None = None,
              ordered: Sequence[SortInfo] = ()) -> bytes:
        """Keep the result of the searching command `tag` (UIDs ascending; for SORT the
        SortInfo of each, sorted) up to date. When it cannot be, the untagged NO [NOUPDATE]
        of RFC 5267 §4.3.1 (the command still answers its other return options)."""
        if criteria.has_within:
            refusal = "OLDER / YOUNGER change with time alone; this result is not updated"
        elif len(self._by_tag) >= MAX_UPDATE_CONTEXTS:
            refusal = (f"Too many update contexts (at most {MAX_UPDATE_CONTEXTS}); "
                       "CANCELUPDATE one first")
        else:
            criteria.freeze()
            ctx = UpdateContext(tag, uid, criteria, view.modseq, array("Q", uids), sort)
            if sort is not None:
                ctx.order = array("Q", (i.uid for i in ordered))
            self._by_tag[tag] = ctx
            return b""
        return r.status("*", "NO", refusal, "NOUPDATE " + quoted_tag(tag).decode("ascii"))

    def cancel(self, tag: str) -> None:
        del self._by_tag[tag]

    def expunged(self, view: SelectedView, uids: set[int]) -> bytes:
        """REMOVEFROM for the members among `uids`, which the view is about to announce as
        expunged (their numbers are still the ones the client knows)."""
        return b"".join(ctx.remove(view, uids) for ctx in self._by_tag.values())

    async def refresh(self, store: Store, view: SelectedView) -> bytes:
        """Evaluate again the messages of the view changed (flags, new) since each context
        last looked; nothing when the view knows of no newer change."""
        if not self._by_tag:
            return b""
        since = min(ctx.modseq for ctx in self._by_tag.values())
        if since >= view.known_modseq:
            return b""
        changes = await store.changes_since(view.mailbox_id, since)
        last = view.uids[-1] if view.uids else 0
        top = changes.mailbox.highestmodseq
        here: list[MessageMeta] = []
        for m in changes.messages:
            if m.uid > last:
                # Not announced to the client yet: looked at once its EXISTS has been sent.
                top = min(top, m.modseq - 1)
            elif m.uid not in view.pending_expunge and view.seq_of(m.uid) is not None:
                here.append(m)
        out = []
        for ctx in list(self._by_tag.values()):
            uids = sorted(m.uid for m in here if m.modseq > ctx.modseq)
            if uids:
                try:
                    out.append(await ctx.reevaluate(store, view, uids))
                except _Gone:
                    continue        # its MODSEQ stays: these messages are looked at again
            ctx.modseq = max(ctx.modseq, top)
        return b"".join(out)
