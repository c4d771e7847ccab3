"""Evaluating SEARCH keys (RFC 3501 §6.4.4, RFC 9051 §6.4.4, and MODSEQ RFC 7162 §3.1.5, OLDER /
YOUNGER RFC 5032, SAVED* RFC 8514 §4.2, EMAILID / THREADID RFC 8474 §6) against the selected
mailbox.

Lives here: `Criteria`, built from a parsed key tree and the CHARSET (US-ASCII and UTF-8, else
NO [BADCHARSET]); `run_search`, which walks the mailbox in batches: flags, dates, sizes, UIDs and
sequence numbers from message metadata; header keys from the stored header block; BODY and TEXT
from the decoded text parts (`casella.mail.text`), read only for messages that pass every
cheaper key. Matching is case-insensitive substring on decoded text. Must never: touch SQL or
files directly, or answer with EXPUNGE (X1).
"""

from __future__ import annotations

import bisect
import datetime
import email.utils
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from casella.imap import commands as c
from casella.imap import seqset
from casella.imap.errors import No
from casella.mail.sections import load_parts
from casella.mail.text import body_text, decoded_headers, header_values
from casella.store.model import MessageIds, MessageMeta, MessageStatic

if TYPE_CHECKING:
    from casella.imap.selected import SelectedView
    from casella.store.base import Store

CHARSETS = ("US-ASCII", "UTF-8")
BATCH = 2000


@dataclass
class _Msg:
    seq: int
    meta: MessageMeta
    static: MessageStatic | None = None
    ids: MessageIds | None = None
    text: str | None = None          # decoded body text, casefolded
    headers: str | None = None       # all decoded headers, casefolded


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
        self.now = time.time()
        self.largest_uid = view.uids[-1] if view.uids else 0
        self._seq_sets: dict[int, set[int]] = {}
        self._uid_ranges: dict[int, list[tuple[int, int]]] = {}
        self.key = key
        self._scan(key)
        parts = key.keys if isinstance(key, c.SAnd) else (key,)
        self.cheap_keys = tuple(k for k in parts if not self._body_key(k))
        self.body_keys = tuple(k for k in parts if self._body_key(k))

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
            needle = _decode(key.value, self.charset)
            if key.header_too and needle in self._headers(m):
                return True
            return needle in (m.text or "")
        raise TypeError(f"unknown search key {key!r}")

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
        if sent and m.static is not None:
            for value in header_values(m.static.header, "Date"):
                parsed = email.utils.parsedate_tz(value)
                if parsed is not None:
                    try:
                        return datetime.date(parsed[0], parsed[1], parsed[2])
                    except ValueError:
                        break
                break
        # No usable Date: header: the internal date stands in (as Dovecot does).
        return datetime.datetime.fromtimestamp(m.meta.internaldate, datetime.UTC).date()

    def _header_match(self, key: c.SHeader, m: _Msg) -> bool:
        if m.static is None:
            return False
        needle = _decode(key.value, self.charset)
        values = header_values(m.static.header, key.name)
        if not needle:
            return bool(values) or _has_field(m.static.header, key.name)
        return any(needle in v.casefold() for v in values)

    def _headers(self, m: _Msg) -> str:
        if m.headers is None:
            m.headers = decoded_headers(m.static.header).casefold() if m.static else ""
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
                     matched: list[MessageMeta] | None = None) -> list[int]:
    """The UIDs (ascending) of the messages in the view that match; their metadata is added
    to `matched` when given (SORT, THREAD)."""
    uids = [u for u in view.uids if u not in view.pending_expunge]
    found: list[int] = []
    for start in range(0, len(uids), BATCH):
        chunk = uids[start:start + BATCH]
        metas = await store.fetch_meta(view.mailbox_id, seqset.ranges_of(chunk))
        statics: dict[int, MessageStatic] = {}
        if criteria.needs_static:
            statics = await store.fetch_static([m.blob_id for m in metas])
        ids: dict[int, MessageIds] = {}
        if criteria.needs_ids:
            ids = {i.uid: i for i in await store.fetch_ids(view.mailbox_id,
                                                           seqset.ranges_of(chunk))}
        candidates: list[_Msg] = []
        for meta in metas:
            seq = view.seq_of(meta.uid)
            if seq is None:
                continue
            msg = _Msg(seq, meta, statics.get(meta.blob_id), ids.get(meta.uid))
            if all(criteria.matches(k, msg) for k in criteria.cheap_keys):
                candidates.append(msg)
        if criteria.body_keys:
            kept = []
            for msg in candidates:
                await _load_text(store, msg)
                if all(criteria.matches(k, msg) for k in criteria.body_keys):
                    kept.append(msg)
            candidates = kept
        found.extend(m.meta.uid for m in candidates)
        for m in candidates:
            criteria.max_modseq = max(criteria.max_modseq, m.meta.modseq)
        if matched is not None:
            matched.extend(m.meta for m in candidates)
    return found


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
