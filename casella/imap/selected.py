"""The selected mailbox as one session sees it, and the untagged updates that keep it true.

Lives here: `SelectedView`: the sequence-number ↔ UID map (RFC 9051 §2.3.1.2), the MODSEQ last
seen, \\Recent claimed by this session (RFC 3501 §2.3.2, IMAP4rev1 only), the keywords announced
in FLAGS, messages expunged elsewhere but not yet announced, and `sync`, which asks the store
what changed since that MODSEQ and turns it into EXPUNGE (VANISHED once QRESYNC is enabled,
RFC 7162 §3.2.10) / FETCH (FLAGS, with UID and MODSEQ once CONDSTORE is enabled, RFC 7162
§3.1.4) / EXISTS / RECENT, followed by the ADDTO / REMOVEFROM of the view's search and sort
contexts (casella.imap.contexts, RFC 5267 §4.3).

The rule behind it (RFC 3501 §7.4.1, RFC 9051 §7.5.1, PROMISES X1): EXPUNGE is never sent
while answering FETCH, STORE or SEARCH, so an expunge seen then is kept "pending": the message
keeps its sequence number until a command that may announce it. Must never: write to the
connection (it returns bytes), or read message bodies.
"""

from __future__ import annotations

import bisect
from array import array
from collections.abc import Iterable, Sequence

from casella.errors import StorageError
from casella.imap import responses as r
from casella.imap import seqset
from casella.imap.contexts import Contexts
from casella.imap.errors import Bad, Bye
from casella.imap.shared import shared_state
from casella.store.base import Store
from casella.store.model import SYSTEM_FLAGS, Changes, MessageMeta, SelectSnapshot


class SelectedView:
    def __init__(self, snapshot: SelectSnapshot, *, readonly: bool, rev2: bool,
                 recent: tuple[int, int] | None) -> None:
        mb = snapshot.mailbox
        self.mailbox_id = mb.id
        self.name = mb.name
        self.uidvalidity = mb.uidvalidity
        self.uidnext = mb.uidnext
        self.readonly = readonly
        self.rev2 = rev2
        self.modseq = mb.highestmodseq
        # The newest MODSEQ this session knows was committed here (its own writes count, which
        # `modseq` may trail): the update contexts look again only when it moved past theirs.
        self.known_modseq = mb.highestmodseq
        self.contexts = Contexts()      # RETURN (UPDATE) searches and sorts (RFC 5267 §4)
        self.uids: array[int] = array("Q", snapshot.uids)
        self.pending_expunge: set[int] = set()
        # Our own flag changes already reported to the client: uid -> modseq.
        self.own: dict[int, int] = {}
        self.keywords: set[str] = set(snapshot.keywords)
        self._keyword_lower = {k.lower() for k in self.keywords}
        # \Recent: ranges [low, high) of UIDs this session claimed (read-write), or for a
        # read-only session every UID from the mailbox's first unclaimed one (RFC 3501 §6.3.2).
        self.recent_ranges: list[tuple[int, int]] = []
        self.recent_from: int | None = None
        if not rev2:
            if recent is not None:
                self.recent_ranges.append(recent)
            else:
                self.recent_from = mb.first_recent_uid
        self.first_unseen_uid = snapshot.first_unseen_uid
        self.condstore = False          # set by the session (RFC 7162 §3.1)
        self.qresync = False
        self.last_new: list[int] = []   # UIDs the last sync announced with EXISTS
        self.own_new: set[int] = set()  # UIDs this session appended here (NOTIFY skips them)

    # --- lookups -------------------------------------------------------------------------

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        return None

    def is_recent(self, uid: int) -> bool:
        if self.rev2:
            return False
        if self.recent_from is not None:
            return uid >= self.recent_from
        for lo, hi in self.recent_ranges:
            if lo <= uid < hi:
                return True
        return False

    def recent_count(self) -> int:
        if self.rev2:
            return 0
        if self.recent_from is not None:
            return len(self.uids) - bisect.bisect_left(self.uids, self.recent_from)
        n = 0
        for lo, hi in self.recent_ranges:
            n += bisect.bisect_left(self.uids, hi) - bisect.bisect_left(self.uids, lo)
        return n

    def flags_of(self, meta: MessageMeta) -> tuple[str, ...]:
        if not self.rev2 and (self.recent_ranges or self.recent_from is not None) and \
                self.is_recent(meta.uid):
            return meta.flags + ("\\Recent",)
        return meta.flags

    def resolve(self, messages: seqset.SeqSet, uid: bool,
                saved: Sequence[int] = ()) -> list[int]:
        """The UIDs (ascending) a command's message set names in this view. Sequence numbers
        beyond the mailbox are an error (RFC 9051 §9: "*" in an empty mailbox too); UIDs that
        do not exist are simply left out."""
        if messages.saved:
            present = [u for u in saved if self.seq_of(u) is not None]
            return sorted(present)
        if uid:
            largest = self.uids[-1] if self.uids else 0
            return seqset.select_sorted(self.uids, messages.resolve(largest))
        n = len(self.uids)
        if messages.max_number() > n or (n == 0 and messages.has_star()):
            raise Bad(f"invalid message sequence number (the mailbox has {n} messages)")
        out: list[int] = []
        for lo, hi in messages.resolve(n):
            out.extend(self.uids[lo - 1:hi])
        return out

    def seqs_for_search(self, messages: seqset.SeqSet, saved: Sequence[int]) -> set[int]:
        """UIDs a sequence-set search key matches (no range error: SEARCH just finds none)."""
        if messages.saved:
            return set(saved)
        n = len(self.uids)
        out: set[int] = set()
        for lo, hi in messages.resolve(n):
            out.update(self.uids[lo - 1:min(hi, n)])
        return out

    # --- flags ---------------------------------------------------------------------------

    def flags_responses(self) -> bytes:
        """FLAGS and PERMANENTFLAGS (RFC 9051 §7.3.5, §7.1)."""
        kws = sorted(self.keywords, key=str.lower)
        flags = r.untagged(b"FLAGS", r.flag_list(SYSTEM_FLAGS + tuple(kws)))
        if self.readonly:
            perm = r.status("*", "OK", "No permanent flags permitted", "PERMANENTFLAGS ()")
        else:
            # "\\*": clients may create new keywords (RFC 9051 §7.1).
            perm = r.status("*", "OK", "Flags permitted", "PERMANENTFLAGS (" +
                            " ".join(SYSTEM_FLAGS + tuple(kws) + ("\\*",)) + ")")
        return flags + perm

    def learn_keywords(self, flags: Iterable[str]) -> bytes:
        """Announce keywords not seen before with a new FLAGS response (RFC 9051 §7.3.5)."""
        new = [f for f in flags if not f.startswith("\\") and f.lower() not in
               self._keyword_lower]
        if not new:
            return b""
        for f in new:
            self.keywords.add(f)
            self._keyword_lower.add(f.lower())
        return self.flags_responses()

    def note_own(self, metas: Iterable[MessageMeta]) -> None:
        for m in metas:
            self.own[m.uid] = m.modseq

    def fetch_flags_line(self, seq: int, meta: MessageMeta, with_uid: bool,
                         with_flags: bool = True) -> bytes:
        """An untagged FETCH for a flag change. Once CONDSTORE is on it always carries UID and
        MODSEQ (RFC 7162 §3.1.4); without flags it is the .SILENT form of §3.1.3."""
        parts = []
        if with_uid or self.condstore:
            parts.append(b"UID %d" % meta.uid)
        if with_flags:
            parts.append(b"FLAGS " + r.flag_list(self.flags_of(meta)))
        if self.condstore:
            parts.append(b"MODSEQ (%d)" % meta.modseq)
        return b"* %d FETCH (%s)\r\n" % (seq, b" ".join(parts))

    # --- expunges ------------------------------------------------------------------------

    def expunge_uids(self, uids: Iterable[int]) -> bytes:
        """Remove these UIDs from the view now and return their EXPUNGE responses (ascending,
        each number as it is after the ones before were removed, RFC 9051 §7.5.1), or one
        VANISHED response once QRESYNC is enabled (RFC 7162 §3.2.10)."""
        seqs = sorted(s for s in (self.seq_of(u) for u in uids) if s is not None)
        if not seqs:
            return b""
        gone = {self.uids[s - 1] for s in seqs}
        # RFC 5267 §4.3.4: REMOVEFROM before the expunge, while the numbers still hold.
        removefrom = self.contexts.expunged(self, gone) if self.contexts else b""
        if self.qresync:
            out = b"* VANISHED " + seqset.compress(sorted(gone)) + b"\r\n"
        else:
            out = b"".join(b"* %d EXPUNGE\r\n" % (s - i) for i, s in enumerate(seqs))
        if len(seqs) == 1:
            del self.uids[seqs[0] - 1]
        else:
            self.uids = array("Q", (u for u in self.uids if u not in gone))
        self.pending_expunge -= gone
        for u in gone:
            self.own.pop(u, None)
        return removefrom + out

    # --- synchronising with the store ----------------------------------------------------

    @property
    def claims_recent(self) -> bool:
        """Whether new messages become \\Recent by this session's claim (IMAP4rev1,
        read-write)."""
        return not self.rev2 and not self.readonly and self.recent_from is None

    async def claim(self, store: Store, highest_new: int) -> tuple[int, int] | None:
        """Claim \\Recent for new messages up to `highest_new` (shared with the other
        sessions of this process, casella.imap.shared)."""
        try:
            return await shared_state(store).claim_recent(self.mailbox_id, self.uidvalidity,
                                                          highest_new)
        except StorageError:
            return None         # a full disk costs \Recent, never the update itself

    async def sync(self, store: Store, allow_expunge: bool,
                   changes: Changes | None = None) -> bytes:
        """Ask the store what changed since our MODSEQ and return the untagged updates. The
        question is shared with the other sessions of this process that ask it at the same
        time (IDLE fan-out). `changes`: the answer already in hand (SharedMailboxState.
        answered)."""
        if changes is None:
            changes = await shared_state(store).changes_since(self.mailbox_id, self.modseq)
        claim = None
        last = self.uids[-1] if self.uids else 0
        if self.claims_recent and changes.messages and changes.messages[-1].uid > last:
            claim = await self.claim(store, changes.messages[-1].uid)
        out = self.apply(changes, allow_expunge, claim)
        if self.contexts:
            # After the EXISTS: ADDTO may name the new messages (RFC 5267 §4.3.3).
            out += await self.contexts.refresh(store, self)
        return out

    def own_change(self, highestmodseq: int) -> None:
        """This session's own write (STORE, EXPUNGE, a FETCH that set \\Seen) committed as
        MODSEQ `highestmodseq` (call it only when the write changed something) and is already
        reflected in the view. When it is the very next
        change of the mailbox there is nothing to ask the store about it: the view moves on,
        and the bus event it caused needs no sync (Subscription.pending_after)."""
        self.known_modseq = max(self.known_modseq, highestmodseq)
        if highestmodseq == self.modseq + 1:
            self.modseq = highestmodseq

    def own_append(self, uids: Sequence[int], highestmodseq: int,
                   claim: tuple[int, int] | None) -> bytes:
        """This session appended `uids` here, committed as MODSEQ `highestmodseq`, the very
        next change (`appended_next`): announce them (EXISTS, RECENT) without a store query."""
        self.modseq = highestmodseq
        self.known_modseq = max(self.known_modseq, highestmodseq)
        self.uidnext = max(self.uidnext, uids[-1] + 1)
        new = [u for u in uids if not self.uids or u > self.uids[-1]]
        self.last_new = new
        self.own_new.intersection_update(new)
        return self._announce_new(new, claim)

    def appended_next(self, highestmodseq: int) -> bool:
        return highestmodseq == self.modseq + 1

    def add_claim(self, claim: tuple[int, int]) -> None:
        """UIDs low <= uid < high are \\Recent in this session (Store.claim_recent)."""
        if claim[0] < claim[1]:
            self.recent_ranges.append(claim)

    def _announce_new(self, new: list[int], claim: tuple[int, int] | None) -> bytes:
        if claim is not None:
            self.add_claim(claim)
        if not new:
            return b""
        self.uids.extend(new)
        out = b"* %d EXISTS\r\n" % len(self.uids)
        if not self.rev2:
            out += b"* %d RECENT\r\n" % self.recent_count()
        return out

    def apply(self, changes: Changes, allow_expunge: bool,
              claim: tuple[int, int] | None = None) -> bytes:
        out: list[bytes] = []
        mb = changes.mailbox
        if not mb.selectable or mb.uidvalidity != self.uidvalidity:
            # Deleted (kept as a \Noselect parent) or re-created: these UIDs mean nothing
            # any more, and a session cannot be told so without closing it (as Dovecot does).
            raise Bye("The selected mailbox was deleted")
        self.uidnext = max(self.uidnext, mb.uidnext)
        for uid in changes.expunged:
            if self.seq_of(uid) is not None:
                self.pending_expunge.add(uid)
        if allow_expunge and self.pending_expunge:
            out.append(self.expunge_uids(list(self.pending_expunge)))
        last = self.uids[-1] if self.uids else 0
        new: list[int] = []
        self.last_new = new
        flag_lines: list[bytes] = []
        for m in changes.messages:
            if m.uid > last:
                new.append(m.uid)
                continue
            if m.uid in self.pending_expunge or self.own.get(m.uid) == m.modseq:
                continue
            seq = self.seq_of(m.uid)
            if seq is None:
                continue
            out.append(self.learn_keywords(m.flags))
            flag_lines.append(self.fetch_flags_line(seq, m, with_uid=True))
        out.extend(flag_lines)
        if new:
            for m in changes.messages:
                if m.uid > last:
                    out.append(self.learn_keywords(m.flags))
            out.append(self._announce_new(new, claim))
        self.modseq = max(self.modseq, mb.highestmodseq)
        self.known_modseq = max(self.known_modseq, self.modseq)
        self.own.clear()
        # Only NOTIFY's FETCH for the messages just announced looks at this.
        self.own_new.intersection_update(new)
        return b"".join(out)
