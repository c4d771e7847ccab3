"""Evaluating SEARCH keys (RFC 3501 §6.4.4, RFC 9051 §6.4.4, and MODSEQ RFC 7162 §3.1.5, OLDER /
YOUNGER RFC 5032, SAVED* RFC 8514 §4.2, EMAILID / THREADID RFC 8474 §6) against the selected
mailbox.

Lives here: `Criteria`, built from a parsed key tree and the CHARSET (US-ASCII and UTF-8, else
NO [BADCHARSET]); `run_search`, which answers a program made only of system flags, keywords,
internal dates, sizes and non-empty FROM/TO/CC/BCC/SUBJECT strings with one store query
(`Store.search_uids`: SQLite answers UNSEEN from an index, and the header keys from the values
worked out at delivery, the search index narrowing them) and otherwise walks the mailbox in
batches, cheapest keys first: flags,
dates, sizes, UIDs and sequence numbers from message metadata; header keys from the stored
header block (read only for the messages that passed the metadata keys; the decoded values of a
header block are kept in a bounded per-process cache, so repeated searches do not parse it
again); BODY and TEXT from the decoded text parts (`casella.mail.text`), read only for messages
that pass every cheaper key. Matching is case-insensitive substring on decoded text.

The search index (issue 21, `Store.search_index`) answers TEXT and BODY exactly for the
messages it holds, and narrows the header keys: before the walk the store says, for each such
key whose needle it can look up, which messages hold the needle (TEXT, BODY: exactly the
messages the check below would keep; header keys: a superset), and which messages it does not
hold (stored before the index, or too big). The walk then visits only the candidates, those
plus the messages it does not hold, wherever the keys leave no other way to match (an AND of
such a key and anything, an OR of two); a message the index holds has its TEXT and BODY keys
decided by the index (its body is not read), and one it does not hold is checked as before.
Must never: touch SQL or files directly, or answer with EXPUNGE (X1).
"""

from __future__ import annotations

import bisect
import calendar
import datetime
import email.utils
import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from casella import errors as ce
from casella.imap import commands as c
from casella.imap import seqset
from casella.imap.errors import No
from casella.mail.sections import load_parts
from casella.mail.text import SEARCH_FIELDS, body_text, decoded_headers, header_values, search_texts
from casella.store.model import (
    SYSTEM_FLAGS,
    IndexAnswer,
    MessageIds,
    MessageMeta,
    MessageStatic,
)

if TYPE_CHECKING:
    from casella.imap.selected import SelectedView
    from casella.store.base import Store

CHARSETS = ("US-ASCII", "UTF-8")
BATCH = 2000


@dataclass
class _Msg:
    seq: int
    meta: MessageMeta
    header: bytes | None = None      # the stored top-level header block
    static: MessageStatic | None = None   # only when the body is searched
    ids: MessageIds | None = None
    text: str | None = None          # decoded body text, casefolded
    headers: str | None = None       # all decoded headers, casefolded


# Decoded header values by header block: hash of the block -> (its length, {field name: the
# values casefolded, or for ":date" the sent date}). A message's header never changes (U4),
# so an entry never goes stale; the cache is bounded and forgets its oldest half when full.
_HEADER_CACHE: dict[int, tuple[int, dict[str, Any]]] = {}
HEADER_CACHE_MAX = 20_000
_SENT_DATE = ":date"           # no field name holds a colon


def _header_fields(header: bytes) -> dict[str, Any]:
    key = hash(header)
    entry = _HEADER_CACHE.get(key)
    if entry is not None and entry[0] == len(header):
        return entry[1]
    if len(_HEADER_CACHE) >= HEADER_CACHE_MAX:
        for old in list(itertools.islice(_HEADER_CACHE, HEADER_CACHE_MAX // 2)):
            del _HEADER_CACHE[old]
    fields: dict[str, Any] = {}
    _HEADER_CACHE[key] = (len(header), fields)
    return fields


def cached_header_values(header: bytes, name: str) -> tuple[str, ...]:
    """`search_texts(header, name)` (casefolded; addresses in normal form), from the cache
    when this block was seen."""
    fields = _header_fields(header)
    lname = name.lower()
    values = fields.get(lname)
    if values is None:
        values = fields[lname] = tuple(search_texts(header, name))
    return values  # type: ignore[no-any-return]


def _sent_date(header: bytes) -> datetime.date | None:
    """The date of the Date: field (RFC 9051 §6.4.4 SENT*), cached like the values."""
    fields = _header_fields(header)
    if _SENT_DATE in fields:
        return fields[_SENT_DATE]  # type: ignore[no-any-return]
    found: datetime.date | None = None
    for value in header_values(header, "Date"):
        parsed = email.utils.parsedate_tz(value)
        if parsed is not None:
            try:
                found = datetime.date(parsed[0], parsed[1], parsed[2])
            except ValueError:
                pass
        break
    fields[_SENT_DATE] = found
    return found


def _decode(value: bytes, charset: str | None) -> str:
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        if charset in (None, "US-ASCII"):
            # RFC 9051 §6.4.4: US-ASCII was promised; read 8-bit bytes as UTF-8 anyway.
            text = value.decode("utf-8", "replace")
        else:
            raise No("The search string is not valid UTF-8", "BADCHARSET (US-ASCII UTF-8)")
    return text.casefold()


class Criteria:
    """A compiled search: `cheap(msg)` needs metadata and the header; `full(msg)` may need the
    body text too."""

    def __init__(self, key: c.SearchKey, charset: str | None, view: SelectedView,
                 saved: Sequence[int]) -> None:
        if charset is not None and charset not in CHARSETS and charset != "UTF8":
            raise No(f"Charset {charset[:30]} is not supported", "BADCHARSET (US-ASCII UTF-8)")
        self.charset = charset
        self.view = view
        self.saved = saved
        self.needs_static = False
        self.needs_body = False
        self.needs_ids = False
        self.has_modseq = False         # a MODSEQ key: the answer names the highest MODSEQ
        self.max_modseq = 0             # ... of the messages found
        self.modseqs: dict[int, int] = {}   # UID -> MODSEQ of each found (with a MODSEQ key)
        self.has_within = False         # OLDER / YOUNGER: the answer changes with the clock
        self.now = time.time()
        self.largest_uid = view.uids[-1] if view.uids else 0
        self._seq_sets: dict[int, set[int]] = {}
        self._needles: dict[bytes, str] = {}
        self._uid_ranges: dict[int, list[tuple[int, int]]] = {}
        self.key = key
        self._scan(key)
        parts = _conjuncts(key)
        self.body_keys = tuple(k for k in parts if self._body_key(k))
        cheap = [k for k in parts if not self._body_key(k)]
        # Keys answered from the metadata first; those needing the header or the object ids
        # only for the messages that passed them.
        self.meta_keys = tuple(k for k in cheap if _meta_only(k))
        self.static_keys = tuple(k for k in cheap if not _meta_only(k))
        self.cheap_keys = self.meta_keys + self.static_keys
        self.needs_header = any(_needs_header(k) for k in self.static_keys)
        # The keys beside TEXT/BODY in the body keys' trees that read the header (an OR of
        # SUBJECT and BODY): their header is read even when the index decides TEXT and BODY.
        self.body_needs_header = any(_any_leaf(k, _reads_header_only) for k in self.body_keys)
        self.pushdown = _pushdown(parts, self._needle)
        # The search index's queries: TEXT and BODY exactly, the header keys as a narrowing.
        self._index_keys: list[c.SearchKey] = []
        self.index_queries: list[tuple[str, str]] = []
        self._collect_index_keys(key)
        self._text_leaves = sum(1 for k in self._index_keys if isinstance(k, c.SText))
        self.use_index(None)

    def _collect_index_keys(self, key: c.SearchKey) -> None:
        if isinstance(key, c.SText):
            self._index_keys.append(key)
            self.index_queries.append(("text" if key.header_too else "body",
                                       self._needle(key.value)))
        elif isinstance(key, c.SHeader):
            needle = self._needle(key.value)
            if needle:
                self._index_keys.append(key)
                self.index_queries.append(("any", needle))
        elif isinstance(key, c.SNot):
            self._collect_index_keys(key.key)
        elif isinstance(key, c.SOr):
            self._collect_index_keys(key.a)
            self._collect_index_keys(key.b)
        elif isinstance(key, c.SAnd):
            for k in key.keys:
                self._collect_index_keys(k)

    def use_index(self, answer: IndexAnswer | None) -> None:
        """Take the store's index answer for `index_queries` (None: no index this time)."""
        self._index_found: dict[int, frozenset[int]] = {}
        self._unindexed: frozenset[int] = frozenset()
        if answer is not None:
            self._unindexed = answer.unindexed
            for key, found in zip(self._index_keys, answer.found):
                if found is not None:
                    self._index_found[id(key)] = found
        answered = sum(1 for k in self._index_keys
                       if isinstance(k, c.SText) and id(k) in self._index_found)
        self._texts_answered = answered == self._text_leaves

    def needs_text(self, uid: int) -> bool:
        """Whether the body text must be read to decide this message's TEXT/BODY keys."""
        return self.needs_body and (not self._texts_answered or uid in self._unindexed)

    def candidates(self) -> frozenset[int] | None:
        """The UIDs the walk must visit (the index's candidates, and the messages it does not
        hold), or None: every message."""
        return self._allowed(self.key)

    def _allowed(self, key: c.SearchKey) -> frozenset[int] | None:
        if isinstance(key, c.SAnd):
            found: frozenset[int] | None = None
            for k in key.keys:
                sub = self._allowed(k)
                if sub is not None:
                    found = sub if found is None else found & sub
            return found
        if isinstance(key, c.SOr):
            a = self._allowed(key.a)
            b = self._allowed(key.b) if a is not None else None
            return a | b if a is not None and b is not None else None
        if isinstance(key, (c.SText, c.SHeader)):
            hits = self._index_found.get(id(key))
            return hits | self._unindexed if hits is not None else None
        return None

    def _body_key(self, key: c.SearchKey) -> bool:
        if isinstance(key, c.SText):
            return True
        if isinstance(key, c.SNot):
            return self._body_key(key.key)
        if isinstance(key, c.SOr):
            return self._body_key(key.a) or self._body_key(key.b)
        if isinstance(key, c.SAnd):
            return any(self._body_key(k) for k in key.keys)
        return False

    def _scan(self, key: c.SearchKey) -> None:
        if isinstance(key, c.SText):
            self.needs_body = self.needs_static = True
            _decode(key.value, self.charset)
        elif isinstance(key, c.SHeader):
            self.needs_static = True
            _decode(key.value, self.charset)
        elif isinstance(key, c.SDate) and key.sent:
            self.needs_static = True
        elif isinstance(key, c.SModseq):
            self.has_modseq = True
        elif isinstance(key, c.SObjectId):
            self.needs_ids = True
        elif isinstance(key, c.SWithin):
            self.has_within = True
        elif isinstance(key, c.SNot):
            self._scan(key.key)
        elif isinstance(key, c.SOr):
            self._scan(key.a)
            self._scan(key.b)
        elif isinstance(key, c.SAnd):
            for k in key.keys:
                self._scan(k)

    # --- evaluation ----------------------------------------------------------------------

    def matches(self, key: c.SearchKey, m: _Msg) -> bool:
        if isinstance(key, c.SAll):
            return True
        if isinstance(key, c.SFlag):
            return m.meta.has(key.flag) == key.present
        if isinstance(key, c.SRecent):
            return self.view.is_recent(m.meta.uid) == key.present
        if isinstance(key, c.SAnd):
            return all(self.matches(k, m) for k in key.keys)
        if isinstance(key, c.SOr):
            return self.matches(key.a, m) or self.matches(key.b, m)
        if isinstance(key, c.SNot):
            return not self.matches(key.key, m)
        if isinstance(key, c.SSize):
            return m.meta.size > key.size if key.larger else m.meta.size < key.size
        if isinstance(key, c.SSeq):
            return m.meta.uid in self._seq_set(key)
        if isinstance(key, c.SUid):
            return self._in_uid_set(key, m.meta.uid)
        if isinstance(key, c.SDate):
            return _date_op(key.op, self._date_of(m, key.sent), key.date)
        if isinstance(key, c.SHeader):
            hits = self._index_found.get(id(key))
            if hits is not None and m.meta.uid not in hits and m.meta.uid not in self._unindexed:
                return False
            return self._header_match(key, m)
        if isinstance(key, c.SModseq):
            return m.meta.modseq >= key.modseq
        if isinstance(key, c.SWithin):
            age = self.now - m.meta.internaldate
            return age > key.seconds if key.older else age <= key.seconds
        if isinstance(key, c.SSaveDate):
            if key.op is None:
                return True       # SAVEDATESUPPORTED: every mailbox keeps a save date
            assert key.date is not None
            saved = datetime.datetime.fromtimestamp(m.meta.savedate, datetime.UTC).date()
            return _date_op(key.op, saved, key.date)
        if isinstance(key, c.SObjectId):
            if m.ids is None:
                return False
            if key.kind == "EMAILID":
                return "M" + m.ids.digest[:24] == key.value
            return bool(m.ids.thread_id) and f"T{m.ids.thread_id:x}" == key.value
        if isinstance(key, c.SText):
            hits = self._index_found.get(id(key))
            if hits is not None and m.meta.uid not in self._unindexed:
                return m.meta.uid in hits
            needle = self._needle(key.value)
            if key.header_too and needle in self._headers(m):
                return True
            return needle in (m.text or "")
        raise TypeError(f"unknown search key {key!r}")

    def freeze(self) -> None:
        """For an update context (RFC 5267 §4.3), which evaluates the program again whenever
        messages change: its sequence numbers, UID ranges and `$` keep naming the messages
        they named when the command ran (as Dovecot turns them into UIDs), whatever is
        expunged, added or saved later."""
        self.saved = tuple(self.saved)
        self._freeze(self.key)

    def _freeze(self, key: c.SearchKey) -> None:
        if isinstance(key, c.SSeq):
            self._seq_set(key)
        elif isinstance(key, c.SUid):
            self._in_uid_set(key, 0)
        elif isinstance(key, c.SNot):
            self._freeze(key.key)
        elif isinstance(key, c.SOr):
            self._freeze(key.a)
            self._freeze(key.b)
        elif isinstance(key, c.SAnd):
            for k in key.keys:
                self._freeze(k)

    def _seq_set(self, key: c.SSeq) -> set[int]:
        found = self._seq_sets.get(id(key))
        if found is None:
            found = self.view.seqs_for_search(key.messages, self.saved)
            self._seq_sets[id(key)] = found
        return found

    def _in_uid_set(self, key: c.SUid, uid: int) -> bool:
        ranges = self._uid_ranges.get(id(key))
        if ranges is None:
            if key.uids.saved:
                ranges = seqset.ranges_of(sorted(self.saved))
            else:
                ranges = key.uids.resolve(self.largest_uid)
            self._uid_ranges[id(key)] = ranges
        i = bisect.bisect_right(ranges, (uid, 1 << 64)) - 1
        return i >= 0 and ranges[i][0] <= uid <= ranges[i][1]

    def _date_of(self, m: _Msg, sent: bool) -> datetime.date:
        if sent and m.header is not None:
            found = _sent_date(m.header)
            if found is not None:
                return found
        # No usable Date: header: the internal date stands in (as Dovecot does).
        return datetime.datetime.fromtimestamp(m.meta.internaldate, datetime.UTC).date()

    def _header_match(self, key: c.SHeader, m: _Msg) -> bool:
        if m.header is None:
            return False
        needle = self._needle(key.value)
        values = cached_header_values(m.header, key.name)
        if not needle:
            return bool(values) or _has_field(m.header, key.name)
        return any(needle in v for v in values)

    def _needle(self, value: bytes) -> str:
        needle = self._needles.get(value)
        if needle is None:
            needle = self._needles[value] = _decode(value, self.charset)
        return needle

    def _headers(self, m: _Msg) -> str:
        if m.headers is None:
            m.headers = decoded_headers(m.header).casefold() if m.header is not None else ""
        return m.headers


def _has_field(header: bytes, name: str) -> bool:
    lower = header.lower()
    field = name.lower().encode("latin-1", "replace") + b":"
    return lower.startswith(field) or b"\n" + field in lower


def _date_op(op: str, have: datetime.date, want: datetime.date) -> bool:
    if op == "before":
        return have < want
    if op == "on":
        return have == want
    return have >= want


async def run_search(store: Store, view: SelectedView, criteria: Criteria,
                     on_batch: Callable[[], object] | None = None,
                     matched: list[MessageMeta] | None = None,
                     only: Sequence[int] | None = None) -> list[int]:
    """The UIDs (ascending) of the messages in the view that match; their metadata is added
    to `matched` when given (SORT, THREAD). `only`: look at these UIDs of the view (ascending)
    and no others (an update context re-evaluating the messages that changed)."""
    if not view.uids:
        return []
    if criteria.pushdown is not None and matched is None and only is None:
        # Flags, internal dates and sizes only: the store answers (UIDs above the view's last
        # one are messages this session has not been told about yet).
        found = await store.search_uids(view.mailbox_id, view.uids[-1], **criteria.pushdown)
        if view.pending_expunge:
            found = [u for u in found if u not in view.pending_expunge]
        return found
    uids = view.uids if only is None else only
    criteria.use_index(None)
    if criteria.index_queries and only is None:
        # An update context's few changed messages are checked without it.
        criteria.use_index(await store.search_index(view.mailbox_id, view.uids[-1],
                                                    criteria.index_queries))
        allowed = criteria.candidates()
        if allowed is not None:
            uids = [u for u in uids if u in allowed]
    if view.pending_expunge:
        uids = [u for u in uids if u not in view.pending_expunge]
    found = []
    for start in range(0, len(uids), BATCH):
        chunk = uids[start:start + BATCH]
        metas = await store.fetch_meta(view.mailbox_id, seqset.ranges_of(chunk))
        candidates: list[_Msg] = []
        meta_keys = criteria.meta_keys
        for meta in metas:
            seq = view.seq_of(meta.uid)
            if seq is None:
                continue
            msg = _Msg(seq, meta)
            if all(criteria.matches(k, msg) for k in meta_keys):
                candidates.append(msg)
        if candidates and (criteria.static_keys or criteria.body_keys):
            await _load_static(store, view, criteria, candidates)
            static_keys = criteria.static_keys
            candidates = [m for m in candidates
                          if all(criteria.matches(k, m) for k in static_keys)]
        if criteria.body_keys:
            kept = []
            for msg in candidates:
                if criteria.needs_text(msg.meta.uid):
                    try:
                        await _load_text(store, msg)
                    except ce.BodyGone:
                        continue    # expunged by another session meanwhile: it matches nothing
                if all(criteria.matches(k, msg) for k in criteria.body_keys):
                    kept.append(msg)
            candidates = kept
        found.extend(m.meta.uid for m in candidates)
        if criteria.has_modseq:
            for m in candidates:
                criteria.max_modseq = max(criteria.max_modseq, m.meta.modseq)
                criteria.modseqs[m.meta.uid] = m.meta.modseq
        if matched is not None:
            matched.extend(m.meta for m in candidates)
    return found


async def _load_static(store: Store, view: SelectedView, criteria: Criteria,
                       msgs: list[_Msg]) -> None:
    """What the keys beyond the metadata need, for these messages only: the header block
    (the whole static data when the body is searched too) and the object ids."""
    reading = [m for m in msgs if criteria.needs_text(m.meta.uid)]
    if reading:
        statics = await store.fetch_static([m.meta.blob_id for m in reading])
        for m in reading:
            m.static = statics.get(m.meta.blob_id)
            m.header = m.static.header if m.static is not None else None
    rest = [m for m in msgs if m.static is None] if reading else msgs
    if (criteria.needs_header or criteria.body_needs_header) and rest:
        headers = await store.fetch_headers([m.meta.blob_id for m in rest])
        for m in rest:
            m.header = headers.get(m.meta.blob_id)
    if criteria.needs_ids:
        ids = {i.uid: i for i in await store.fetch_ids(
            view.mailbox_id, seqset.ranges_of([m.meta.uid for m in msgs]))}
        for m in msgs:
            m.ids = ids.get(m.meta.uid)


def _conjuncts(key: c.SearchKey) -> list[c.SearchKey]:
    """The keys that must all match (nested ANDs flattened)."""
    if isinstance(key, c.SAnd):
        return [k for sub in key.keys for k in _conjuncts(sub)]
    return [key]


def _any_leaf(key: c.SearchKey, test: Callable[[c.SearchKey], bool]) -> bool:
    """Whether `test` holds for any key of the tree below NOT, OR and AND."""
    if isinstance(key, c.SNot):
        return _any_leaf(key.key, test)
    if isinstance(key, c.SOr):
        return _any_leaf(key.a, test) or _any_leaf(key.b, test)
    if isinstance(key, c.SAnd):
        return any(_any_leaf(k, test) for k in key.keys)
    return test(key)


def _reads_header(key: c.SearchKey) -> bool:
    return isinstance(key, (c.SHeader, c.SText)) or (isinstance(key, c.SDate) and key.sent)


def _reads_header_only(key: c.SearchKey) -> bool:
    return isinstance(key, c.SHeader) or (isinstance(key, c.SDate) and key.sent)


def _meta_only(key: c.SearchKey) -> bool:
    """Whether the key is answered from the message metadata (and the view) alone."""
    return not _any_leaf(key, lambda k: _reads_header(k) or isinstance(k, c.SObjectId))


def _needs_header(key: c.SearchKey) -> bool:
    return _any_leaf(key, _reads_header)


_SYSTEM = {f.lower(): f for f in SYSTEM_FLAGS}


def _day(d: datetime.date) -> int:
    return calendar.timegm(d.timetuple())


def _pushdown(parts: list[c.SearchKey], needle_of: Callable[[bytes], str]
              ) -> dict[str, Any] | None:
    """The arguments of `Store.search_uids` equal to this conjunction, or None when a key
    needs more than flags (system flags and ASCII keywords), internal dates, sizes and a
    non-empty string in FROM, TO, CC, BCC or SUBJECT (`needle_of` decodes it as the search's
    charset says)."""
    header_contains: list[tuple[str, str]] = []
    with_flags: list[str] = []
    without_flags: list[str] = []
    since: int | None = None
    before: int | None = None
    larger: int | None = None
    smaller: int | None = None
    for key in parts:
        if isinstance(key, c.SNot) and isinstance(key.key, c.SFlag):
            key = c.SFlag(key.key.flag, not key.key.present)
        if isinstance(key, c.SAll):
            continue
        if isinstance(key, c.SFlag):
            flag = _SYSTEM.get(key.flag.lower())
            if flag is None:
                if key.flag.startswith("\\") or not key.flag.isascii() or " " in key.flag:
                    return None
                flag = key.flag
            (with_flags if key.present else without_flags).append(flag)
        elif isinstance(key, c.SDate) and not key.sent:
            # The internal date's UTC day against the key's day (as Criteria.matches does).
            start = _day(key.date)
            end = start + 86400
            if key.op in ("since", "on"):
                since = start if since is None else max(since, start)
            if key.op in ("before", "on"):
                stop = start if key.op == "before" else end
                before = stop if before is None else min(before, stop)
        elif isinstance(key, c.SSize):
            if key.larger:
                larger = key.size if larger is None else max(larger, key.size)
            else:
                smaller = key.size if smaller is None else min(smaller, key.size)
        elif isinstance(key, c.SHeader) and key.name.lower() in SEARCH_FIELDS:
            try:
                needle = needle_of(key.value)
            except No:
                return None       # the answer is the error, which matching raises
            if not needle or "\n" in needle:
                return None       # "" asks whether the field exists at all
            header_contains.append((key.name.lower(), needle))
        else:
            return None
    return {"with_flags": tuple(with_flags), "without_flags": tuple(without_flags),
            "since": since, "before": before, "larger": larger, "smaller": smaller,
            "header_contains": tuple(header_contains)}


async def _load_text(store: Store, msg: _Msg) -> None:
    if msg.static is None:
        msg.text = ""
        return
    try:
        root = load_parts(msg.static.parts)
    except ValueError:
        msg.text = ""
        return
    data = await store.read_blob(msg.static.digest)
    msg.text = body_text(data, root).casefold()
