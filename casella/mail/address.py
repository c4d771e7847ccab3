"""RFC 5322 address-list parsing for the IMAP ENVELOPE.

What lives here: a lexer for structured header fields (RFC 5322 §3.2) and a lenient parser
that turns an address-list header value into ENVELOPE address tuples
``(name, adl, mailbox, host)`` (RFC 3501 §7.4.2 / RFC 9051 §7.5.2), including group syntax,
route-addrs, quoted strings and comments. Values stay as raw header bytes: IMAP sends
display names still RFC 2047-encoded. Also the inverse, ``format_addresses``: parsed tuples
written back in one normal form (what SEARCH FROM/TO/CC/BCC compare with).

This is not the SMTP/account address validator (that is ``casella/mail/addresses.py``). It
must never import asyncio, sockets, config or the store, and never raise on any input.
"""

from __future__ import annotations

import re

from casella.mail.headers import skip_comment, unquote

__all__ = ["GROUP_END", "Address", "format_addresses", "parse_addresses"]

# (name, adl, mailbox, host); None is rendered as NIL.
Address = tuple[bytes | None, bytes | None, bytes | None, bytes | None]

# RFC 3501 §7.4.2: the end of a group is (NIL NIL NIL NIL)
GROUP_END: Address = (None, None, None, None)
# Dovecot's placeholders when a mailbox or domain is missing. A NIL host would be read by
# clients as a group start (RFC 3501 §7.4.2), so a domain-less address must not use NIL.
MISSING_MAILBOX = b"MISSING_MAILBOX"
MISSING_DOMAIN = b"MISSING_DOMAIN"

_ATOM, _QUOTED, _DLIT, _COMMENT, _SPECIAL = range(5)
Token = tuple[int, bytes]

# RFC 5322 §3.2.3 atoms; "." is kept inside atoms so dot-atoms and obs-phrase words
# ("Joe Q. Public") stay whole.
_LEX = re.compile(
    rb"(?P<ws>[ \t\r\n]+)"
    rb'|(?P<q>"(?:[^"\\]|\\.)*(?:"|\Z))'
    rb"|(?P<d>\[(?:[^\]\\]|\\.)*(?:\]|\Z))"
    rb"|(?P<c>\()"
    rb"|(?P<s>[<>@,;:\\\])])"
    rb'|(?P<a>[^ \t\r\n"\[()<>@,;:\\\]]+)',
    re.DOTALL,
)


def tokenize(value: bytes) -> list[Token]:
    """Split a structured field value into atoms, quoted strings (unquoted), domain
    literals, comments (their content) and specials. Whitespace is dropped."""
    out: list[Token] = []
    pos = 0
    n = len(value)
    while pos < n:
        m = _LEX.match(value, pos)
        if m is None:  # pragma: no cover - the alternatives cover every byte
            pos += 1
            continue
        kind = m.lastgroup
        if kind == "ws":
            pos = m.end()
        elif kind == "c":
            end = skip_comment(value, m.end())
            inner = value[m.end() : end]
            if inner.endswith(b")"):
                inner = inner[:-1]
            out.append((_COMMENT, re.sub(rb"\\(.)", rb"\1", inner, flags=re.DOTALL)))
            pos = end
        elif kind == "q":
            out.append((_QUOTED, unquote(m.group())))
            pos = m.end()
        elif kind == "d":
            out.append((_DLIT, m.group()))
            pos = m.end()
        elif kind == "s":
            out.append((_SPECIAL, m.group()))
            pos = m.end()
        else:
            out.append((_ATOM, m.group()))
            pos = m.end()
    return out


def _is(tok: Token, chars: bytes) -> bool:
    return tok[0] == _SPECIAL and tok[1] in chars


def _phrase(seg: list[Token]) -> bytes | None:
    """RFC 5322 §3.2.5 phrase: words joined by one space, comments dropped."""
    words = [v for k, v in seg if k in (_ATOM, _QUOTED, _DLIT)]
    if not words:
        return None
    joined = b" ".join(words)
    return joined or None


def _addr_spec(seg: list[Token]) -> tuple[bytes | None, bytes | None]:
    """local-part "@" domain (RFC 5322 §3.4.1), leniently: the local part is the words
    before the first "@", the domain the first word after it."""
    at = next((i for i, t in enumerate(seg) if _is(t, b"@")), -1)
    words_before = [v for k, v in (seg if at < 0 else seg[:at]) if k in (_ATOM, _QUOTED)]
    local = b"".join(words_before) or None
    if at < 0:
        return local, None
    domain = next((v for k, v in seg[at + 1 :] if k in (_ATOM, _DLIT)), None)
    return local, domain


def _angle(inner: list[Token]) -> tuple[bytes | None, bytes | None, bytes | None]:
    """The inside of ``<...>``: an optional obsolete route (RFC 5322 §4.4 obs-route, sent as
    the ENVELOPE adl) followed by an addr-spec."""
    toks = [t for t in inner if t[0] != _COMMENT]
    adl = None
    if toks and _is(toks[0], b"@"):
        colon = next((i for i, t in enumerate(toks) if _is(t, b":")), -1)
        if colon >= 0:
            adl = b"".join(v for _, v in toks[:colon]) or None
            toks = toks[colon + 1 :]
    local, domain = _addr_spec(toks)
    return adl, local, domain


def parse_addresses(value: bytes) -> list[Address]:
    """Parse an address-list (RFC 5322 §3.4) into ENVELOPE address tuples.

    Group syntax ``name: a@b, c@d;`` becomes a group-start ``(NIL NIL name NIL)``, the
    members, and a group-end ``(NIL NIL NIL NIL)``; an unterminated group is closed at the
    end. Without a display name, the last comment is used as the name (``a@b (Fred)``), as
    Dovecot does. Missing local part or domain become ``MISSING_MAILBOX``/``MISSING_DOMAIN``
    (Dovecot's placeholders): a NIL host would mean "group start" to the client. Elements
    that hold nothing (empty, comments only) are skipped.
    """
    toks = tokenize(value)
    out: list[Address] = []
    in_group = False
    i = 0
    n = len(toks)
    while i < n:
        start = i
        while i < n and not _is(toks[i], b"<:,;"):
            i += 1
        seg = toks[start:i]
        sep = toks[i][1] if i < n else b""
        if sep == b":":
            i += 1
            if not in_group:
                out.append((None, None, _phrase(seg) or b"", None))
                in_group = True
            continue
        if sep == b"<":
            j = i + 1
            while j < n and not _is(toks[j], b">"):
                j += 1
            adl, local, domain = _angle(toks[i + 1 : j])
            out.append((_phrase(seg), adl, local or MISSING_MAILBOX, domain or MISSING_DOMAIN))
            i = j + 1
            while i < n and not _is(toks[i], b",;"):
                i += 1
            sep = toks[i][1] if i < n else b""
        elif seg:
            addr = _bare(seg)
            if addr is not None:
                out.append(addr)
        if sep == b";" and in_group:
            out.append(GROUP_END)
            in_group = False
        i += 1
    if in_group:
        out.append(GROUP_END)
    return out


def _bare(seg: list[Token]) -> Address | None:
    """An addr-spec without angle brackets, possibly with comments around it."""
    comments = [v for k, v in seg if k == _COMMENT]
    name = comments[-1].strip(b" \t\r\n") if comments else None
    words = [t for t in seg if t[0] != _COMMENT]
    if not words:
        return None
    if not any(_is(t, b"@") for t in words):
        if all(k == _QUOTED for k, _ in words):
            # a lone quoted string is a display name without an address (Dovecot agrees)
            return (_phrase(words), None, MISSING_MAILBOX, MISSING_DOMAIN)
        joined = b"".join(v for k, v in words if k in (_ATOM, _QUOTED))
        return (name, None, joined or MISSING_MAILBOX, MISSING_DOMAIN)
    local, domain = _addr_spec(words)
    return (name, None, local or MISSING_MAILBOX, domain or MISSING_DOMAIN)


def _one(name: bytes | None, adl: bytes | None, mailbox: bytes | None, host: bytes) -> bytes:
    spec = (adl + b":" if adl else b"") + (mailbox or b"") + (b"@" + host if host else b"")
    return (name + b" <" if name else b"<") + spec + b">"


def format_addresses(addresses: list[Address]) -> bytes:
    """ENVELOPE address tuples written back as one address-list in a normal form:
    ``Name <mailbox@host>``, ``<mailbox@host>`` when there is no name, ``group: a, b;`` and
    ``group:;``, joined by ``", "``. Comments, quoting and folding are gone, a name taken from
    a comment stands in front, and names keep their RFC 2047 encoded words (the caller
    decodes). This is the text Dovecot matches SEARCH FROM/TO/CC/BCC against, so
    ``<user (comment)@ domain.org>`` is found by ``user@domain.org``."""
    out: list[bytes] = []
    group: list[bytes] | None = None
    group_name = b""
    for name, adl, mailbox, host in addresses:
        if host is None:
            # RFC 3501 §7.4.2: (NIL NIL name NIL) starts a group, (NIL NIL NIL NIL) ends it
            if group is None and mailbox is not None:
                group_name, group = mailbox, []
            elif group is not None and mailbox is None:
                out.append(group_name + (b": " + b", ".join(group) if group else b":") + b";")
                group = None
            continue
        (out if group is None else group).append(_one(name, adl, mailbox, host))
    if group is not None:
        out.append(group_name + (b": " + b", ".join(group) if group else b":") + b";")
    return b", ".join(out)
