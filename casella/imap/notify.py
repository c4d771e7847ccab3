"""NOTIFY (RFC 5465): what a session asked to hear about, and pushing it between commands.

Lives here: `Notifier`, built from a NOTIFY SET command: an account-wide change-bus subscription,
a snapshot of the watched mailboxes (counters, UIDVALIDITY, HIGHESTMODSEQ), of the mailbox names
and of the subscriptions, and `pushes`, which turns bus events into the responses RFC 5465 §5
defines: for the selected mailbox the usual EXISTS / EXPUNGE (VANISHED) / FETCH, plus FETCH of
the items asked for with MessageNew; for other mailboxes STATUS (§5.1-5.3); LIST for
MailboxName (with OLDNAME, \\NonExistent) and SubscriptionChange (§5.4, §5.5).
`wait_between_commands` races the client's next byte against the bus. Changes this session made
itself are absorbed into the snapshot, not reported back (§5: "SHOULD omit"). Must never: poll
the store on a timer, write while a command's literal is being read, or send EXPUNGE for the
selected mailbox under SELECTED-DELAYED between commands (§6.1.2).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from casella.imap import commands as c
from casella.imap import responses as r
from casella.imap.errors import No
from casella.store.changes import ChangeEvent
from casella.store.model import HIERARCHY_DELIMITER, Mailbox

if TYPE_CHECKING:
    from casella.imap.selected import SelectedView
    from casella.imap.session import Session

SUPPORTED_EVENTS = ("MESSAGENEW", "MESSAGEEXPUNGE", "FLAGCHANGE", "MAILBOXNAME",
                    "SUBSCRIPTIONCHANGE")
EVENT_NAMES = {"MESSAGENEW": "MessageNew", "MESSAGEEXPUNGE": "MessageExpunge",
               "FLAGCHANGE": "FlagChange", "MAILBOXNAME": "MailboxName",
               "SUBSCRIPTIONCHANGE": "SubscriptionChange"}
MESSAGE_EVENTS = frozenset({"MESSAGENEW", "MESSAGEEXPUNGE", "FLAGCHANGE"})


@dataclass(frozen=True, slots=True)
class _Seen:
    """What the client was last told (or knew) about one mailbox."""
    name: str
    uidvalidity: int
    uidnext: int
    messages: int
    unseen: int
    highestmodseq: int

    @classmethod
    def of(cls, mb: Mailbox) -> _Seen:
        return cls(mb.name, mb.uidvalidity, mb.uidnext, mb.messages, mb.unseen,
                   mb.highestmodseq)


def unsupported_events(spec: c.Notify) -> list[str]:
    return [e.name for g in spec.groups or () for e in g.events or ()
            if e.name not in SUPPORTED_EVENTS]


class Notifier:
    def __init__(self, session: Session, spec: c.Notify) -> None:
        assert spec.groups is not None and session.account is not None
        self.s = session
        self.groups = spec.groups
        self.selected_group = next((g for g in self.groups if g.filter.startswith("SELECTED")),
                                   None)
        self.delayed = self.selected_group is not None and \
            self.selected_group.filter == "SELECTED-DELAYED"
        self.new_fetch: tuple[c.FetchAtt, ...] = ()
        self.selected_events: set[str] = set()
        if self.selected_group is not None:
            for e in self.selected_group.events or ():
                self.selected_events.add(e.name)
                if e.name == "MESSAGENEW":
                    self.new_fetch = e.fetch
        self.sub = session.store.bus.subscribe_account(session.account.id)
        self._held: list[ChangeEvent] = []      # events taken by a wait, not yet pushed
        self.boxes: dict[int, _Seen] = {}       # every selectable mailbox
        self.names: dict[int, str] = {}         # every mailbox, for MailboxName
        self.subscribed: set[str] = set()
        self.names_wanted = any("MAILBOXNAME" in _events(g) for g in self._others())
        self.subs_wanted = any("SUBSCRIPTIONCHANGE" in _events(g) for g in self._others())

    @property
    def active(self) -> bool:
        return bool(self.groups)

    def close(self) -> None:
        self.sub.close()

    def _others(self) -> list[c.NotifyGroup]:
        return [g for g in self.groups if not g.filter.startswith("SELECTED")]

    # --- which events apply to which mailbox ----------------------------------------------

    def _decoded(self, raw: bytes) -> str | None:
        try:
            name = self.s.decode_name(raw)
        except No:              # an undecodable name matches nothing (RFC 5465 §3.1)
            return None
        return "INBOX" + name[5:] if name[:5].upper() == "INBOX" and \
            (len(name) == 5 or name[5] == HIERARCHY_DELIMITER) else name

    def _matches(self, group: c.NotifyGroup, name: str) -> bool:
        kind = group.filter
        if kind in ("PERSONAL", "INBOXES"):
            # RFC 5465 §6.3: "inboxes" may be treated as "personal"; casella delivers into
            # any folder (plus addressing), so it is.
            return True
        if kind == "SUBSCRIBED":
            return name in self.subscribed
        wanted = [n for n in (self._decoded(b) for b in group.mailboxes) if n is not None]
        if kind == "MAILBOXES":
            return name in wanted
        return any(name == w or name.startswith(w + HIERARCHY_DELIMITER) for w in wanted)

    def events_for(self, name: str) -> set[str]:
        out: set[str] = set()
        for g in self._others():
            if self._matches(g, name):
                out |= _events(g)
        return out

    # --- snapshots --------------------------------------------------------------------------

    async def _refresh(self) -> list[Mailbox]:
        assert self.s.account is not None
        boxes = await self.s.store.list_mailboxes(self.s.account.id)
        self.names = {m.id: m.name for m in boxes}
        self.boxes = {m.id: _Seen.of(m) for m in boxes if m.selectable}
        if any(g.filter == "SUBSCRIBED" for g in self.groups) or self.subs_wanted:
            self.subscribed = set(await self.s.store.list_subscriptions(self.s.account.id))
        return boxes

    async def start(self, status: bool) -> bytes:
        """Take the first snapshot; with STATUS, tell the client where each watched mailbox
        stands (RFC 5465 §3.1)."""
        boxes = await self._refresh()
        if not status:
            return b""
        out = []
        selected = self.s.selected.mailbox_id if self.s.selected is not None else None
        for mb in boxes:
            if not mb.selectable or mb.id == selected:
                continue
            events = self.events_for(mb.name) & MESSAGE_EVENTS
            items: list[str] = []
            if "MESSAGENEW" in events:
                items += ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]
            if "MESSAGEEXPUNGE" in events:
                items.append("MESSAGES")
            if "FLAGCHANGE" in events:
                # The starting point that later flag changes are measured from; sent
                # whether or not the session enabled CONDSTORE, as Dovecot does (the server
                # has it, and FlagChange asks for it).
                items += ["UIDVALIDITY", "HIGHESTMODSEQ"]
            if items:
                out.append(_status(self.s, mb.name, mb, list(dict.fromkeys(items))))
        return b"".join(out)

    async def absorb(self, mailbox_id: int | None, names: bool) -> None:
        """This session's own change: update the snapshot without telling the client."""
        if names:
            await self._refresh()
            return
        if mailbox_id is not None:
            mb = await self.s.store.get_mailbox_by_id(mailbox_id)
            if mb is not None and mb.selectable:
                self.boxes[mb.id] = _Seen.of(mb)

    # --- turning events into responses -----------------------------------------------------

    async def pushes(self, allow_expunge: bool) -> bytes:
        """Responses for what happened since the last call (events drained here)."""
        events = self._held + self.sub.drain()
        self._held = []
        if not events:
            return b""
        view = self.s.selected
        out: list[bytes] = []
        touched = {e.mailbox_id for e in events}
        if view is not None and view.mailbox_id in touched and self.selected_events:
            if self.s.subscription is not None:
                self.s.subscription.drain()
            data = await view.sync(self.s.store, allow_expunge and not self.delayed)
            out.append(data)
            if data:
                self.s.write(b"".join(out))
                out = []
                await self.fetch_new(view)
        others = [m for m in touched if view is None or m != view.mailbox_id]
        if others:
            out.append(await self._other_mailboxes(others))
        return b"".join(out)

    async def _other_mailboxes(self, ids: list[int]) -> bytes:
        old_boxes, old_names, old_subs = dict(self.boxes), self.names, set(self.subscribed)
        if self.names_wanted or self.subs_wanted or any(i not in old_boxes for i in ids):
            boxes = {m.id: m for m in await self._refresh()}
        else:
            boxes = {}
            for i in ids:
                mb = await self.s.store.get_mailbox_by_id(i)
                if mb is not None:
                    boxes[i] = mb
                    if mb.selectable:
                        self.boxes[i] = _Seen.of(mb)
        out: list[bytes] = []
        for i in ids:
            mb = boxes.get(i)
            before = old_boxes.get(i)
            if mb is None or not mb.selectable or before is None:
                continue
            line = self._status_change(before, mb)
            if line:
                out.append(line)
        if self.names_wanted or self.subs_wanted:
            out.append(self._list_changes(old_names, old_subs))
        return b"".join(out)

    def _status_change(self, before: _Seen, mb: Mailbox) -> bytes:
        """RFC 5465 §5.1-5.3: STATUS with what the client asked to hear about."""
        events = self.events_for(mb.name) & MESSAGE_EVENTS
        items: list[str] = []
        if mb.uidvalidity != before.uidvalidity and events:
            items += ["UIDVALIDITY", "UIDNEXT", "MESSAGES"]
        if events & {"MESSAGENEW", "MESSAGEEXPUNGE"} and \
                (mb.uidnext != before.uidnext or mb.messages != before.messages):
            items += ["UIDNEXT", "MESSAGES"]
            if self.s.condstore:
                items.append("HIGHESTMODSEQ")
        elif "FLAGCHANGE" in events and mb.highestmodseq != before.highestmodseq:
            if self.s.condstore:
                items += ["HIGHESTMODSEQ", "UIDVALIDITY"]
            if mb.unseen != before.unseen:
                items.append("UNSEEN")
        if not items:
            return b""
        return _status(self.s, mb.name, mb, list(dict.fromkeys(items)))

    def _list_changes(self, old_names: dict[int, str], old_subs: set[str]) -> bytes:
        out: list[bytes] = []
        new_names = self.names
        subs = self.subscribed
        wanted = self.names_wanted
        renamed: set[str] = set()
        for mid, name in new_names.items():
            if mid in old_names and old_names[mid] != name:
                # The subscription moved with the name: part of the rename (§5.4).
                renamed |= {name, old_names[mid]}
            if not wanted or "MAILBOXNAME" not in self.events_for(name):
                continue
            if mid not in old_names:
                out.append(_list(self.s, name, subs))
            elif old_names[mid] != name:
                out.append(_list(self.s, name, subs, b' ("OLDNAME" (' +
                                 self.s.mbox(old_names[mid]) + b"))"))
        current = set(new_names.values())
        for mid, name in old_names.items():
            if mid not in new_names and name not in current and wanted and \
                    "MAILBOXNAME" in self.events_for(name):
                out.append(b"* LIST (\\NonExistent) \"/\" " + self.s.mbox(name) + b"\r\n")
        if self.subs_wanted:
            for name in sorted((subs ^ old_subs) - renamed):
                if "SUBSCRIPTIONCHANGE" in self.events_for(name) and name in current:
                    out.append(_list(self.s, name, subs))
        return b"".join(out)

    async def fetch_new(self, view: SelectedView) -> None:
        """MessageNew (fetch-att ...) for the selected mailbox: FETCH after EXISTS (§5.2),
        not for messages this session added itself."""
        if not self.new_fetch or not view.last_new:
            return
        uids = [u for u in view.last_new if u not in view.own_new]
        view.own_new.clear()
        if uids:
            from casella.imap.fetch import render

            await render(self.s, view, uids, self.new_fetch)

    async def wait_event(self) -> None:
        """Until something happens in the account (IDLE waits on this, RFC 5465 §4)."""
        self._held.extend(await self.sub.wait())

    async def wait_between_commands(self, timeout: float) -> None:
        """Until the client sends a byte: push what happens meanwhile (RFC 5465 §3.1)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.sub.pending or self._held:
                out = await self.pushes(allow_expunge=True)
                if out:
                    self.s.write(out)
                await self.s.flush()
            remaining = deadline - loop.time()
            reader = asyncio.ensure_future(self.s.conn.read_some(1, max(remaining, 0.001)))
            waiter: asyncio.Future[Any] = asyncio.ensure_future(self.sub.wait())
            try:
                done, _ = await asyncio.wait({reader, waiter},
                                             return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (reader, waiter):
                    if not task.done():
                        task.cancel()
                await asyncio.gather(reader, waiter, return_exceptions=True)
            if reader in done and not reader.cancelled():
                self.s.conn.unread(reader.result())   # re-raises ReadTimeout and friends
                return
            if waiter in done and not waiter.cancelled():
                self._held.extend(waiter.result())      # wait() took them: push them next


def _events(group: c.NotifyGroup) -> set[str]:
    return {e.name for e in group.events or ()}


def _status(s: Session, name: str, mb: Mailbox, items: list[str]) -> bytes:
    values = {"MESSAGES": mb.messages, "UIDNEXT": mb.uidnext, "UIDVALIDITY": mb.uidvalidity,
              "UNSEEN": mb.unseen, "HIGHESTMODSEQ": mb.highestmodseq}
    body = b" ".join(b"%s %d" % (i.encode("ascii"), values[i]) for i in items)
    return b"* STATUS " + s.mbox(name) + b" (" + body + b")\r\n"


def _list(s: Session, name: str, subscribed: set[str], extra: bytes = b"") -> bytes:
    attrs = ["\\Subscribed"] if name in subscribed else []
    return b"* LIST " + r.flag_list(attrs) + b' "/" ' + s.mbox(name) + extra + b"\r\n"
