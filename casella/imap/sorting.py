"""SORT and THREAD algorithms (RFC 5256, DISPLAYFROM / DISPLAYTO of RFC 5957), pure.

Lives here: base-subject extraction (RFC 5256 §2.1), the comparison form of SORT strings
(`casemap`), the sort keys of one message (`SortInfo`, built from its stored header and
metadata), `sort_messages`, and the ORDEREDSUBJECT and REFERENCES threading algorithms
(RFC 5256 §3) with the THREAD response rendering. Where the RFC leaves room, the choices are
Dovecot's (imaptest's sort-* and thread* groups encode them). Must never: import asyncio,
config or the store, or raise on any header.
"""

from __future__ import annotations

import calendar
import email.utils
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from casella.imap import commands as c
from casella.mail.address import parse_addresses
from casella.mail.headers import field_value, split_fields
from casella.mail.text import decode_words

_WS = re.compile(r"\s+")
_TRAILER = re.compile(r"(\s|\(fwd\))+$", re.IGNORECASE)
_BLOB = r"\[[^\[\]]*\]\s*"
_LEADER = re.compile(rf"^(\s*({_BLOB})*(re|fwd?)\s*({_BLOB})?:)", re.IGNORECASE)
_LEADING_BLOB = re.compile(rf"^{_BLOB}")
MAX_REFERENCES = 100
MAX_MSGID = 250


def base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 §2.1: (base subject, casefolded; whether it was a reply or forward).

    The steps run in the RFC's order: (1) decode and collapse white space; (2) drop trailing
    "(fwd)" and white space; (3) drop a leader "re:" / "fw:" / "fwd:" (with blobs before it
    and one inside it: "[list] Re[2]:"); (4) drop a leading "[blob]" when text remains after
    it; (5) repeat (3)-(4); (6) unwrap "[fwd: ...]" and start again at (2)."""
    s = _WS.sub(" ", decode_words(subject)).strip()
    reply = False
    while True:
        # (2) trailers "(fwd)" and white space
        trimmed = _TRAILER.sub("", s)
        if trimmed != s and "(fwd)" in s[len(trimmed):].lower():
            reply = True
        s = trimmed
        while True:
            before = s
            # (3) leaders "re:", "fw:", "fwd:" with optional blobs
            m = _LEADER.match(s)
            if m:
                s = s[m.end():]
                reply = True
            # (4) a leading [blob] when something remains after it
            m = _LEADING_BLOB.match(s)
            if m and s[m.end():].strip():
                s = s[m.end():]
            s = s.lstrip()
            if s == before:
                break
        # (6) [fwd: ...]
        if s[:5].lower() == "[fwd:" and s.endswith("]"):
            s = s[5:-1]
            reply = True
            continue
        break
    return s.strip().casefold(), reply


def casemap(text: str) -> str:
    """The form SORT compares strings in (RFC 5256 §3: i;ascii-casemap; RFC 5957 §3:
    i;unicode-casemap, RFC 5051 §2): letters mapped to upper case, then compatibility
    decomposed. Upper, not lower, case matters for ASCII: "[" and "_" sort after "C"."""
    if text.isascii():
        return text.upper()
    return unicodedata.normalize("NFKD", text.upper())


@dataclass(slots=True)
class SortInfo:
    """What SORT and THREAD need about one message; the string keys are in `casemap` form."""
    seq: int
    uid: int
    arrival: int
    size: int
    date: float                     # sent date (UTC epoch), else the internal date
    subject: str                    # base subject
    reply: bool                     # the subject said Re: / Fwd:
    from_: str = ""
    to: str = ""
    cc: str = ""
    display_from: str = ""
    display_to: str = ""
    msgid: str | None = None
    refs: list[str] = field(default_factory=list)


_WANTED = (b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"references",
           b"in-reply-to")


def _fields(header: bytes) -> dict[bytes, bytes]:
    """The first occurrence of each field we sort on, unfolded raw value."""
    out: dict[bytes, bytes] = {}
    for name, raw in split_fields(header):
        key = name.lower()
        if key in _WANTED and key not in out:
            out[key] = field_value(raw)
    return out


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", "replace")


def _first_address(value: bytes | None) -> tuple[str, str]:
    """(addr-mailbox, display) of the first address, in `casemap` form; ("", "") when
    there is none.

    RFC 5256 §3 CC / FROM / TO: the addr-mailbox of the first address. A group comes first
    as its ENVELOPE start (RFC 3501 §7.4.2), whose addr-mailbox is the group's name, so a
    group sorts by its name. RFC 5957 §3 DISPLAYFROM / DISPLAYTO: the decoded display name,
    else the addr-spec (a group: its name)."""
    if not value:
        return "", ""
    addresses = parse_addresses(value)
    if not addresses:
        return "", ""
    name, _adl, mailbox, host = addresses[0]
    box = _text(mailbox)
    display = decode_words(name).strip() if name else ""
    if not display:
        display = f"{box}@{_text(host)}" if host is not None else decode_words(box).strip()
    return casemap(box), casemap(display)


def message_ids(value: bytes | None) -> list[str]:
    """The msg-ids of a Message-ID / References / In-Reply-To value (RFC 5322 §3.6.4), in
    order, without their angle brackets and white space. Text between "<" and ">" without an
    "@" is not a msg-id and is skipped, as Dovecot does; ids are compared case-sensitively."""
    text = _text(value)
    out: list[str] = []
    pos = 0
    while True:
        start = text.find("<", pos)
        if start < 0:
            return out
        end = text.find(">", start + 1)
        if end < 0:
            return out
        pos = end + 1
        ident = "".join(text[start + 1:end].split())
        if "@" in ident and len(ident) <= MAX_MSGID:
            out.append(ident)


def _sent_date(value: bytes | None) -> float | None:
    """The Date: field as UTC epoch seconds; None when missing, unparsable or 0 (RFC 5256
    §2.2: the internal date stands in). A date without a zone is read as UTC."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_tz(value.decode("latin-1"))
        if parsed is None:
            return None
        stamp = float(calendar.timegm(parsed[:6] + (0, 1, -1)) - (parsed[9] or 0))
    except (ValueError, OverflowError, TypeError, IndexError):
        return None
    return stamp or None


def sort_info(seq: int, uid: int, arrival: int, size: int, header: bytes) -> SortInfo:
    f = _fields(header)
    date = _sent_date(f.get(b"date"))
    subject, reply = base_subject(_text(f.get(b"subject")))
    from_box, from_display = _first_address(f.get(b"from"))
    to_box, to_display = _first_address(f.get(b"to"))
    cc_box, _ = _first_address(f.get(b"cc"))
    ids = message_ids(f.get(b"message-id"))
    refs = message_ids(f.get(b"references"))
    if not refs:
        # RFC 5256 §3 REFERENCES (1)(A): without References, the first In-Reply-To id.
        refs = message_ids(f.get(b"in-reply-to"))[:1]
    return SortInfo(seq, uid, arrival, size, float(arrival) if date is None else date,
                    casemap(subject), reply, from_box, to_box, cc_box, from_display,
                    to_display, ids[0] if ids else None, refs[-MAX_REFERENCES:])


#: The value each RFC 5256 / RFC 5957 sort key compares.
_KEYS: dict[str, Callable[[SortInfo], Any]] = {
    "ARRIVAL": lambda i: i.arrival,
    "DATE": lambda i: i.date,
    "SIZE": lambda i: i.size,
    "SUBJECT": lambda i: i.subject,
    "FROM": lambda i: i.from_,
    "TO": lambda i: i.to,
    "CC": lambda i: i.cc,
    "DISPLAYFROM": lambda i: i.display_from,
    "DISPLAYTO": lambda i: i.display_to,
}


def sort_messages(infos: Sequence[SortInfo], criteria: Sequence[c.SortKey]) -> list[SortInfo]:
    """RFC 5256 §3 SORT: by each key in turn, REVERSE turning only its own key around; full
    ties by ascending sequence number (also under REVERSE, as Dovecot does). Python's sort
    is stable, also with reverse=True, so sorting by the last key first gives that."""
    out = sorted(infos, key=lambda i: i.seq)
    for crit in reversed(criteria):
        out.sort(key=_KEYS[crit.key], reverse=crit.reverse)
    return out


# --- THREAD -------------------------------------------------------------------------------

@dataclass(eq=False)
class Node:
    """A node of a thread tree as THREAD renders it; `info` None is a dummy (RFC 5256 §3
    REFERENCES: a message referenced but not in the set, standing in as a parent)."""
    info: SortInfo | None
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None

    def first_date(self) -> tuple[float, int]:
        """The sort key of RFC 5256 REFERENCES (4)/(6): sent date, then the order of arrival
        (sequence number); a dummy takes that of its earliest child."""
        if self.info is not None:
            return (self.info.date, self.info.seq)
        return min((c.first_date() for c in self.children), default=(0.0, 0))


def ordered_subject(infos: Sequence[SortInfo]) -> list[Node]:
    """RFC 5256 §3 ORDEREDSUBJECT: threads of equal base subject; the first message is the
    root, the others its children, in sent-date order; threads by their first date."""
    by_subject: dict[str, list[SortInfo]] = {}
    for info in sorted(infos, key=lambda i: (i.subject, i.date, i.seq)):
        by_subject.setdefault(info.subject, []).append(info)
    threads = []
    for group in by_subject.values():
        root = Node(group[0])
        root.children = [Node(i, parent=root) for i in group[1:]]
        threads.append(root)
    threads.sort(key=lambda n: n.first_date())
    return threads


@dataclass(eq=False, slots=True)
class _Container:
    """RFC 5256 REFERENCES step (1): one per Message-ID seen, a message or a dummy."""
    info: SortInfo | None = None
    parent: _Container | None = None
    kids: int = 0                   # how many containers name this one as parent


def _is_ancestor(ancestor: _Container, node: _Container) -> bool:
    p: _Container | None = node
    while p is not None:
        if p is ancestor:
            return True
        p = p.parent
    return False


def _link(parent: _Container, child: _Container) -> None:
    """RFC 5256 REFERENCES (1)(B): make `parent` the parent of `child`, unless the child
    already has one ("if they are already linked, don't change the existing links") or the
    link would make a loop (a childless container is nobody's ancestor: no walk needed)."""
    if child.parent is not None or child is parent:
        return
    if child.kids and _is_ancestor(child, parent):
        return
    child.parent = parent
    parent.kids += 1


def _link_messages(infos: Sequence[SortInfo]) -> list[_Container]:
    """RFC 5256 REFERENCES step (1), message by message in arrival order; returns every
    container. A message without a Message-ID, or whose id an earlier message already
    holds, gets a container of its own that no reference reaches (1)(A). The message's own
    parent is its last reference (1)(C): a different parent that another message's
    References gave it is dropped first, also when it has no reference at all; when the link
    to its last reference would make a loop, it stays a root."""
    table: dict[str, _Container] = {}
    every: list[_Container] = []

    def container(msgid: str) -> _Container:
        node = table.get(msgid)
        if node is None:
            node = table[msgid] = _Container()
            every.append(node)
        return node

    for info in sorted(infos, key=lambda i: i.seq):
        node = container(info.msgid) if info.msgid else None
        if node is None or node.info is not None:
            node = _Container()
            every.append(node)
        node.info = info
        refs = [container(r) for r in info.refs]
        for parent, child in pairwise(refs):
            _link(parent, child)
        last = refs[-1] if refs else None
        if node.parent is not None and node.parent is not last:
            node.parent.kids -= 1
            node.parent = None
        if last is not None:
            _link(last, node)
    return every


def _trees(every: list[_Container]) -> list[Node]:
    """RFC 5256 REFERENCES steps (2)-(3): the root set, and dummies pruned: a message's
    parent is its nearest ancestor that is a message, else the top dummy; a top dummy with
    no child goes, with one child it is replaced by that child."""
    nodes = {id(c): Node(c.info) for c in every}
    roots: list[Node] = []
    for cont in every:
        node = nodes[id(cont)]
        if cont.parent is None:
            roots.append(node)
            continue
        if cont.info is None:
            continue
        up = cont.parent
        while up.info is None and up.parent is not None:
            up = up.parent
        parent = nodes[id(up)]
        node.parent = parent
        parent.children.append(node)
    out: list[Node] = []
    for root in roots:
        if root.info is None:
            if not root.children:
                continue
            if len(root.children) == 1:
                root = root.children[0]
                root.parent = None
        out.append(root)
    return out


def _merge_subjects(roots: list[Node]) -> list[Node]:
    """RFC 5256 REFERENCES step (5), roots taken in sent-date order (step (4)): threads
    whose roots (a dummy: its earliest child) have the same non-empty base subject are
    joined. The subject table keeps a dummy over a message, and a message that is not a reply
    over one that is; then each other root joins the thread its subject leads to: a dummy's
    children move under the table's dummy; a message goes under the table's entry if that is
    a dummy, or if it is a reply and the entry is not; otherwise both go under a new dummy,
    which takes the entry's place."""
    table: dict[str, Node] = {}
    into: dict[int, Node] = {}      # id(root) -> the root it is to join
    reply: dict[int, bool] = {}
    for root in roots:
        src = root.info if root.info is not None else min(
            root.children, key=Node.first_date).info
        assert src is not None
        if not src.subject:
            continue
        old = table.get(src.subject)
        if old is None:
            table[src.subject] = root
        elif old.info is not None and (root.info is None or (reply[id(old)] and not src.reply)):
            into[id(old)] = root
            table[src.subject] = root
        else:
            into[id(root)] = old
        reply[id(root)] = src.reply
    if not into:
        return roots
    gone: set[int] = set()
    out = list(roots)
    for cur in roots:
        if id(cur) not in into or id(cur) in gone:
            continue
        top = into[id(cur)]
        while id(top) in into:
            top = into[id(top)]
        if cur.info is None:
            for child in cur.children:
                child.parent = top
            top.children.extend(cur.children)
            cur.children = []
        elif top.info is None or (reply[id(cur)] and not reply[id(top)]):
            cur.parent = top
            top.children.append(cur)
        else:
            dummy = Node(None, [top, cur])
            top.parent = cur.parent = dummy
            into[id(top)] = dummy
            gone.add(id(top))
            out.append(dummy)
        gone.add(id(cur))
    return [r for r in out if id(r) not in gone]


def _sort_siblings(nodes: list[Node]) -> None:
    """RFC 5256 REFERENCES (4)/(6): every set of siblings by sent date, then arrival."""
    stack = [nodes]
    while stack:
        level = stack.pop()
        level.sort(key=Node.first_date)
        stack.extend(n.children for n in level if n.children)


def references(infos: Sequence[SortInfo]) -> list[Node]:
    """RFC 5256 §3 REFERENCES (the JWZ algorithm, steps 1-6), read as Dovecot does."""
    roots = _trees(_link_messages(infos))
    roots.sort(key=Node.first_date)
    roots = _merge_subjects(roots)
    _sort_siblings(roots)
    return roots


def render_threads(threads: Sequence[Node], uid: bool) -> bytes:
    """RFC 5256 §4 thread-list: `(1 2 (3)(4))`, dummies rendered as bare parentheses."""
    def number(n: Node) -> bytes:
        assert n.info is not None
        return b"%d" % (n.info.uid if uid else n.info.seq)

    def render(n: Node) -> bytes:
        parts: list[bytes] = []
        node: Node | None = n
        while node is not None:
            if node.info is not None:
                parts.append(number(node))
            if len(node.children) == 1 and node.info is not None:
                node = node.children[0]
                continue
            if node.children:
                sub = b"".join(b"(" + render(ch) + b")" for ch in node.children)
                parts.append(sub)
            node = None
        return b" ".join(parts)

    return b"".join(b"(" + render(t) + b")" for t in threads)
