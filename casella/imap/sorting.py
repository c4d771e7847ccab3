"""SORT and THREAD algorithms (RFC 5256, DISPLAYFROM / DISPLAYTO of RFC 5957), pure.

Lives here: base-subject extraction (RFC 5256 §2.1), the sort keys of one message (`SortInfo`,
built from its stored header and metadata), `sort_messages`, and the ORDEREDSUBJECT and
REFERENCES threading algorithms (RFC 5256 §3) with the THREAD response rendering. Strings are
compared with the i;unicode-casemap idea (Unicode case folding). Must never: import asyncio,
config or the store, or raise on any header.
"""

from __future__ import annotations

import email.utils
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from casella.imap import commands as c
from casella.mail.address import GROUP_END, parse_addresses
from casella.mail.headers import field_value, split_fields
from casella.mail.text import decode_words

_WS = re.compile(r"\s+")
_TRAILER = re.compile(r"(\s|\(fwd\))+$", re.IGNORECASE)
_BLOB = r"\[[^\[\]]*\]\s*"
_LEADER = re.compile(rf"^(\s*({_BLOB})*(re|fwd?)\s*({_BLOB})?:)", re.IGNORECASE)
_LEADING_BLOB = re.compile(rf"^{_BLOB}")
_MSGID = re.compile(r"<([^<>\s]{1,250})>")
MAX_REFERENCES = 100


def base_subject(subject: str) -> tuple[str, bool]:
    """RFC 5256 §2.1: (base subject, casefolded; whether it was a reply or forward)."""
    s = _WS.sub(" ", decode_words(subject)).strip()
    reply = False
    while True:
        # (2) trailers "(fwd)" and white space
        s = _TRAILER.sub("", s)
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
        # (5) [fwd: ...]
        if s[:5].lower() == "[fwd:" and s.endswith("]"):
            s = s[5:-1]
            reply = True
            continue
        break
    return s.strip().casefold(), reply


@dataclass(slots=True)
class SortInfo:
    """What SORT and THREAD need about one message."""
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


def _fields(header: bytes) -> dict[bytes, bytes]:
    """The first occurrence of each field we sort on, unfolded raw value."""
    out: dict[bytes, bytes] = {}
    for name, raw in split_fields(header):
        key = name.lower()
        if key in (b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"references",
                   b"in-reply-to") and key not in out:
            out[key] = field_value(raw)
    return out


def _first_address(value: bytes | None) -> tuple[str, str]:
    """(addr-mailbox, display name or else addr-spec) of the first address (RFC 5256 §3,
    RFC 5957 §3), casefolded; "" when there is none."""
    if not value:
        return "", ""
    for name, _adl, mailbox, host in parse_addresses(value):
        if (name, _adl, mailbox, host) == GROUP_END or host is None:
            continue
        box = (mailbox or b"").decode("utf-8", "replace")
        spec = f"{box}@{host.decode('utf-8', 'replace')}" if host else box
        display = decode_words(name).strip() if name else ""
        return box.casefold(), (display or spec).casefold()
    return "", ""


def sort_info(seq: int, uid: int, arrival: int, size: int, header: bytes) -> SortInfo:
    f = _fields(header)
    date = float(arrival)
    raw_date = f.get(b"date")
    if raw_date:
        try:
            parsed = email.utils.parsedate_tz(raw_date.decode("latin-1"))
            if parsed is not None:
                date = float(email.utils.mktime_tz(parsed))
        except (ValueError, OverflowError, TypeError):
            pass
    subject, reply = base_subject((f.get(b"subject") or b"").decode("utf-8", "surrogateescape"))
    from_box, from_display = _first_address(f.get(b"from"))
    to_box, to_display = _first_address(f.get(b"to"))
    cc_box, _ = _first_address(f.get(b"cc"))
    ids = _MSGID.findall((f.get(b"message-id") or b"").decode("latin-1"))
    refs = _MSGID.findall((f.get(b"references") or b"").decode("latin-1"))
    if not refs:
        # RFC 5256 §3 (REFERENCES 1A): without References, the first In-Reply-To id.
        refs = _MSGID.findall((f.get(b"in-reply-to") or b"").decode("latin-1"))[:1]
    return SortInfo(seq, uid, arrival, size, date, subject, reply, from_box, to_box, cc_box,
                    from_display, to_display, ids[0] if ids else None,
                    refs[-MAX_REFERENCES:])


def _key(info: SortInfo, key: str) -> object:
    if key == "ARRIVAL":
        return info.arrival
    if key == "DATE":
        return info.date
    if key == "SIZE":
        return info.size
    if key == "SUBJECT":
        return info.subject
    if key == "FROM":
        return info.from_
    if key == "TO":
        return info.to
    if key == "CC":
        return info.cc
    if key == "DISPLAYFROM":
        return info.display_from
    return info.display_to


def sort_messages(infos: Sequence[SortInfo], criteria: Sequence[c.SortKey]) -> list[SortInfo]:
    """RFC 5256 §3 SORT: by each key in turn (REVERSE per key), ties by sequence number."""
    out = sorted(infos, key=lambda i: i.seq)
    for crit in reversed(criteria):
        out.sort(key=lambda i: _key(i, crit.key), reverse=crit.reverse)   # type: ignore[arg-type, return-value]
    return out


# --- THREAD -------------------------------------------------------------------------------

@dataclass(eq=False)
class Node:
    info: SortInfo | None           # None: a dummy (a referenced message not in the set)
    children: list[Node] = field(default_factory=list)
    parent: Node | None = None

    def first_date(self) -> tuple[float, int]:
        if self.info is not None:
            return (self.info.date, self.info.seq)
        return min((c.first_date() for c in self.children), default=(0.0, 0))


def _sort_siblings(nodes: list[Node]) -> None:
    """RFC 5256 REFERENCES (6): every set of siblings by sent date (then sequence number), a
    dummy by its first child."""
    for n in nodes:
        _sort_siblings(n.children)
    nodes.sort(key=lambda n: n.first_date())


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


def _is_ancestor(candidate: Node, node: Node) -> bool:
    p: Node | None = node
    while p is not None:
        if p is candidate:
            return True
        p = p.parent
    return False


def _link(parent: Node, child: Node) -> None:
    if child.parent is not None or child is parent or _is_ancestor(child, parent):
        return
    child.parent = parent
    parent.children.append(child)


def references(infos: Sequence[SortInfo]) -> list[Node]:
    """RFC 5256 §3 REFERENCES (the JWZ algorithm, steps 1-6)."""
    table: dict[str, Node] = {}
    unique = 0

    def container(msgid: str) -> Node:
        node = table.get(msgid)
        if node is None:
            node = table[msgid] = Node(None)
        return node

    for info in sorted(infos, key=lambda i: i.seq):
        key = (info.msgid or "").lower()
        if not key or (key in table and table[key].info is not None):
            # No id, or a duplicate: a unique one of its own (step 1A).
            unique += 1
            key = f"\0{unique}"
        node = container(key)
        node.info = info
        # (1B) link the References chain, parents before children, never into a loop.
        prev: Node | None = None
        for ref in info.refs:
            cur = container(ref.lower())
            if prev is not None and cur.parent is None:
                _link(prev, cur)
            prev = cur
        # (1C) the message's parent is the last reference (or none): a link another
        # message's References made is broken first.
        if prev is node or (prev is not None and _is_ancestor(node, prev)):
            continue
        if node.parent is not None:
            node.parent.children.remove(node)
            node.parent = None
        if prev is not None:
            _link(prev, node)
    roots = [n for n in table.values() if n.parent is None]
    roots = _prune(roots, top=True)
    roots = _gather_subjects(roots)
    _sort_siblings(roots)
    return roots


def _prune(nodes: list[Node], top: bool) -> list[Node]:
    """(4) Dummies without children go; a dummy's children take its place, except that a
    dummy at the top with several children stays (it joins them into one thread)."""
    out: list[Node] = []
    for n in nodes:
        n.children = _prune(n.children, top=False)
        for child in n.children:
            child.parent = n
        if n.info is None:
            if not n.children:
                continue
            if not top or len(n.children) == 1:
                for child in n.children:
                    child.parent = None if top else n.parent
                out.extend(n.children)
                continue
        out.append(n)
    return out


def _subject_of(n: Node) -> tuple[str, bool]:
    info = n.info if n.info is not None else (n.children[0].info if n.children else None)
    if info is None:
        return "", False
    return info.subject, info.reply and n.info is not None


def _gather_subjects(roots: list[Node]) -> list[Node]:
    """(5) Threads whose roots have the same base subject are joined."""
    for n in roots:
        n.children.sort(key=lambda x: x.first_date())
    table: dict[str, Node] = {}
    for n in roots:
        subject, reply = _subject_of(n)
        if not subject:
            continue
        old = table.get(subject)
        if old is None or (n.info is None and old.info is not None) or \
                (_subject_of(old)[1] and not reply):
            table[subject] = n
    out: list[Node] = []
    for n in roots:
        if n.parent is not None:
            continue            # already joined to an earlier thread
        subject, reply = _subject_of(n)
        target = table.get(subject) if subject else None
        if target is None or target is n:
            out.append(n)
            continue
        if target.info is None and n.info is None:
            for child in n.children:
                child.parent = target
            target.children.extend(n.children)
        elif target.info is None or n.info is not None and reply and not _subject_of(target)[1]:
            n.parent = target
            target.children.append(n)
        else:
            dummy = Node(None)
            for x in (target, n):
                x.parent = dummy
                dummy.children.append(x)
            if target in out:
                out[out.index(target)] = dummy
            else:
                out.append(dummy)
            table[subject] = dummy
            continue
    return out


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
