"""The IMAP command parser: command text and literals in, a typed `Request` or `ParseError` out.

Lives here: `parse_request` and the command tables, and the grammar of the base commands of
RFC 3501 §9 / RFC 9051 §9 (LOGIN, AUTHENTICATE, ENABLE, ID, mailbox commands, LIST with the
extended syntax, STATUS, EXPUNGE, COPY, MOVE). The tokenizer is lexer.py; FETCH and STORE are in
parse_fetch.py, SEARCH / SORT / THREAD in parse_search.py, the other extensions in parse_ext.py.

A command arrives as lines and literals: `lines[i]` (without CRLF) ends with the announcement of
`literals[i]`, and the last line ends the command. A literal may be an `ExternalLiteral` the
session streamed elsewhere; only an APPEND message accepts one. Must never: import asyncio,
socket, config or the store; raise anything but ParseError (arbitrary bytes included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from casella.imap import commands as c
from casella.imap import parse_ext, parse_fetch, parse_search
from casella.imap.lexer import (
    MAX_ID_PAIRS,
    SASL_IR,
    TAG,
    LiteralValue,
    ParseError,
    Reader,
    is_literal8,
    literal_spec,
    peek_command,
    split_literals,
)

__all__ = ["ParseError", "is_literal8", "literal_spec", "parse_bytes", "parse_request",
           "peek_command", "split_literals"]


def parse_bytes(data: bytes) -> c.Request:
    """Parse one whole command with embedded literals; see `split_literals`."""
    lines, literals = split_literals(data)
    return parse_request(lines, literals)


def parse_request(lines: Sequence[bytes], literals: Sequence[LiteralValue]) -> c.Request:
    """Parse a command read from the wire."""
    if len(lines) != len(literals) + 1:
        raise ParseError("literal count does not match the command")
    r = Reader(lines, literals)
    m = TAG.match(r.line, 0)
    if m is None:
        raise ParseError("missing or invalid tag")
    tag = m.group().decode("ascii")
    r.pos = m.end()
    try:
        r.sp()
        name = r.atom().upper()
        if name == b"UID":
            r.sp()
            sub = r.atom().upper()
            parser = _UID_COMMANDS.get(sub)
            if parser is None:
                raise ParseError(f"unknown UID command {sub.decode('ascii', 'replace')[:30]}")
        else:
            parser = _COMMANDS.get(name)
            if parser is None:
                raise ParseError(f"unknown command {name.decode('ascii', 'replace')[:30]}")
        cmd = parser(r)
        r.end()
    except ParseError as exc:
        exc.tag = tag
        raise
    except RecursionError:
        raise ParseError("command is nested too deeply", tag, "LIMIT") from None
    return c.Request(tag, cmd)


# --- commands ---------------------------------------------------------------------------------

def _no_args(cls: Callable[[], c.Command]) -> Callable[[Reader], c.Command]:
    def parse(r: Reader) -> c.Command:
        return cls()
    return parse


def _authenticate(r: Reader) -> c.Authenticate:
    r.sp()
    mech = r.atom().decode("ascii").upper()
    initial = None
    if r.maybe_sp():
        # SASL-IR (RFC 4959): base64 or "=" for an empty response.
        initial = r.match_re(SASL_IR, "an initial response")
    return c.Authenticate(mech, initial)


def _login(r: Reader) -> c.Login:
    r.sp()
    user = r.text_astring("user name")
    r.sp()
    password = r.text_astring("password")
    return c.Login(user, password)


def _enable(r: Reader) -> c.Enable:
    caps = []
    r.sp()
    caps.append(r.atom().decode("ascii"))
    while r.maybe_sp():
        caps.append(r.atom().decode("ascii"))
    return c.Enable(tuple(caps))


def _id(r: Reader) -> c.Id:
    r.sp()
    if r.peek() != 0x28:
        if r.nstring() is not None:
            raise ParseError("ID takes a parenthesised list or NIL")
        return c.Id(None)
    r.open_paren()
    pairs: list[tuple[str, str | None]] = []
    if not r.maybe(b")"):
        while True:
            key = r.string().decode("utf-8", "replace")
            r.sp()
            value = r.nstring()
            pairs.append((key, None if value is None else value.decode("utf-8", "replace")))
            if len(pairs) > MAX_ID_PAIRS:
                raise ParseError("too many ID fields")
            if r.maybe(b")"):
                break
            r.sp()
    r.depth -= 1
    return c.Id(tuple(pairs))


def _one_mailbox(cls: Callable[[bytes], c.Command]) -> Callable[[Reader], c.Command]:
    def parse(r: Reader) -> c.Command:
        r.sp()
        return cls(r.mailbox())
    return parse


def _rename(r: Reader) -> c.Rename:
    r.sp()
    old = r.mailbox()
    r.sp()
    return c.Rename(old, r.mailbox())


_LIST_SELECT = ("SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE")
_LIST_RETURN = ("SUBSCRIBED", "CHILDREN", "SPECIAL-USE", "STATUS")


def _status_items(r: Reader) -> tuple[str, ...]:
    items = r.paren_list(lambda: r.keyword(*c.STATUS_ITEMS))
    if not items:
        raise ParseError("STATUS needs at least one item")
    return tuple(dict.fromkeys(items))


def _list(r: Reader) -> c.List:
    """RFC 9051 §6.3.9 with RFC 5258 / RFC 5819 options."""
    r.sp()
    selection: list[str] = []
    extended = False
    if r.peek() == 0x28:
        extended = True
        selection = r.paren_list(lambda: r.keyword(*_LIST_SELECT))
        r.sp()
    reference = r.mailbox()
    r.sp()
    if r.peek() == 0x28:
        extended = True
        patterns = tuple(r.paren_list(r.list_mailbox))
        if not patterns:
            raise ParseError("LIST needs at least one pattern")
    else:
        patterns = (r.list_mailbox(),)
    returns: list[str] = []
    status_items: tuple[str, ...] = ()
    if r.maybe_sp():
        extended = True
        r.keyword("RETURN")
        r.sp()

        def option() -> str:
            nonlocal status_items
            word = r.keyword(*_LIST_RETURN)
            if word == "STATUS":
                r.sp()
                status_items = _status_items(r)
            return word

        returns = r.paren_list(option)
    sel = frozenset(selection)
    if "RECURSIVEMATCH" in sel and not sel - {"RECURSIVEMATCH", "REMOTE"}:
        # RFC 5258 §3: RECURSIVEMATCH "MUST NOT occur as the only selection option (or only
        # with REMOTE)".
        raise ParseError("RECURSIVEMATCH needs another selection option")
    return c.List(reference, patterns, sel, frozenset(returns), status_items, extended)


def _lsub(r: Reader) -> c.Lsub:
    r.sp()
    reference = r.mailbox()
    r.sp()
    return c.Lsub(reference, r.list_mailbox())


def _status(r: Reader) -> c.Status:
    r.sp()
    mailbox = r.mailbox()
    r.sp()
    return c.Status(mailbox, _status_items(r))


def _expunge(r: Reader) -> c.Expunge:
    return c.Expunge()


def _uid_expunge(r: Reader) -> c.Expunge:
    r.sp()
    return c.Expunge(r.seq_set())


def _copy_move(cls: type[c.Copy | c.Move], uid: bool) -> Callable[[Reader], c.Command]:
    def parse(r: Reader) -> c.Command:
        r.sp()
        messages = r.seq_set()
        r.sp()
        return cls(uid, messages, r.mailbox())
    return parse


_COMMANDS: dict[bytes, Callable[[Reader], c.Command]] = {
    b"CAPABILITY": _no_args(c.Capability),
    b"NOOP": _no_args(c.Noop),
    b"LOGOUT": _no_args(c.Logout),
    b"STARTTLS": _no_args(c.StartTLS),
    b"AUTHENTICATE": _authenticate,
    b"LOGIN": _login,
    b"ENABLE": _enable,
    b"ID": _id,
    b"NAMESPACE": _no_args(c.Namespace),
    b"SELECT": parse_ext.select(False),
    b"EXAMINE": parse_ext.select(True),
    b"CREATE": parse_ext.create,
    b"DELETE": _one_mailbox(c.Delete),
    b"RENAME": _rename,
    b"SUBSCRIBE": _one_mailbox(c.Subscribe),
    b"UNSUBSCRIBE": _one_mailbox(c.Unsubscribe),
    b"LIST": _list,
    b"LSUB": _lsub,
    b"STATUS": _status,
    b"APPEND": parse_ext.append,
    b"CHECK": _no_args(c.Check),
    b"CLOSE": _no_args(c.Close),
    b"UNSELECT": _no_args(c.Unselect),
    b"EXPUNGE": _expunge,
    b"COPY": _copy_move(c.Copy, False),
    b"MOVE": _copy_move(c.Move, False),
    b"STORE": parse_fetch.store(False),
    b"FETCH": parse_fetch.fetch(False),
    b"SEARCH": parse_search.search(False),
    b"SORT": parse_search.sort(False),
    b"THREAD": parse_search.thread(False),
    b"IDLE": _no_args(c.Idle),
    b"GETQUOTA": parse_ext.getquota,
    b"GETQUOTAROOT": parse_ext.getquotaroot,
    b"SETQUOTA": parse_ext.setquota,
    b"COMPRESS": parse_ext.compress,
    b"NOTIFY": parse_ext.notify,
    b"CANCELUPDATE": parse_search.cancelupdate,
}

_UID_COMMANDS: dict[bytes, Callable[[Reader], c.Command]] = {
    b"COPY": _copy_move(c.Copy, True),
    b"MOVE": _copy_move(c.Move, True),
    b"STORE": parse_fetch.store(True),
    b"FETCH": parse_fetch.fetch(True),
    b"SEARCH": parse_search.search(True),
    b"SORT": parse_search.sort(True),
    b"THREAD": parse_search.thread(True),
    b"EXPUNGE": _uid_expunge,
}
