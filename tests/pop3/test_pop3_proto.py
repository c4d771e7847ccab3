"""The pure POP3 core: command parsing, replies, byte-stuffing and the TOP cut (no sockets)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casella.pop3 import proto
from casella.pop3.proto import (
    Apop,
    Auth,
    Capa,
    CapaOptions,
    CommandTooLong,
    Dele,
    DotStuffer,
    List,
    Noop,
    Pass,
    Pop3SyntaxError,
    Quit,
    Retr,
    Rset,
    Stat,
    State,
    Stls,
    Top,
    TopCutter,
    Uidl,
    UnknownCommand,
    User,
    capabilities,
    err,
    ok,
    parse_command,
    uidl_string,
)

GOOD = [
    (b"USER alice@example.test", User("alice@example.test")),
    (b"user alice", User("alice")),
    (b"USER  alice ", User("alice")),
    (b"PASS secret", Pass("secret")),
    (b"PASS with spaces inside ", Pass("with spaces inside ")),  # RFC 1939 §7 PASS
    (b"PASS  lead", Pass(" lead")),
    (b"APOP mrose c4c9334bac560ecc979e58001b3e22fb", Apop()),
    (b"AUTH", Auth(None, None)),
    (b"AUTH PLAIN", Auth("PLAIN", None)),
    (b"auth plain AGFsaWNlAHNlY3JldA==", Auth("PLAIN", b"AGFsaWNlAHNlY3JldA==")),
    (b"AUTH LOGIN =", Auth("LOGIN", b"=")),
    (b"AUTH X-SOMETHING_1", Auth("X-SOMETHING_1", None)),
    (b"CAPA", Capa()),
    (b"STLS", Stls()),
    (b"QUIT", Quit()),
    (b"quit", Quit()),
    (b"STAT", Stat()),
    (b"STAT ", Stat()),
    (b"LIST", List(None)),
    (b"LIST 1", List(1)),
    (b"list 0", List(0)),
    (b"LIST 0000000042", List(42)),
    (b"UIDL", Uidl(None)),
    (b"UIDL 7", Uidl(7)),
    (b"RETR 1", Retr(1)),
    (b"RETR  2", Retr(2)),
    (b"TOP 1 0", Top(1, 0)),
    (b"TOP 3 10", Top(3, 10)),
    (b"DELE 9999999999", Dele(9999999999)),
    (b"NOOP", Noop()),
    (b"RSET", Rset()),
]


@pytest.mark.parametrize("line,expected", GOOD, ids=[g[0].decode() for g in GOOD])
def test_good_commands(line: bytes, expected: proto.Command) -> None:
    """RFC 1939 §3: keywords are case-insensitive, arguments follow after a space."""
    assert parse_command(line) == expected


BAD = [
    (b"", UnknownCommand, "Empty command line"),
    (b"XYZZY", UnknownCommand, "Unknown command: XYZZY"),
    (b"LAST", UnknownCommand, "Unknown command: LAST"),
    (b"STAT\t", UnknownCommand, "Unknown command"),
    (b"\x00\x01", UnknownCommand, "Unknown command: ??"),
    (b"USER", Pop3SyntaxError, "USER needs an argument"),
    (b"USER   ", Pop3SyntaxError, "USER needs an argument"),
    (b"PASS", Pop3SyntaxError, "PASS needs an argument"),
    (b"STAT 1", Pop3SyntaxError, "Too many arguments for STAT"),
    (b"NOOP x", Pop3SyntaxError, "Too many arguments for NOOP"),
    (b"QUIT now", Pop3SyntaxError, "Too many arguments for QUIT"),
    (b"CAPA x", Pop3SyntaxError, "Too many arguments"),
    (b"RETR", Pop3SyntaxError, "RETR needs an argument"),
    (b"RETR x", Pop3SyntaxError, "RETR needs a message number as a number"),
    (b"RETR -1", Pop3SyntaxError, "as a number"),
    (b"RETR +1", Pop3SyntaxError, "as a number"),
    (b"RETR 1.0", Pop3SyntaxError, "as a number"),
    (b"RETR 1 2", Pop3SyntaxError, "Too many arguments for RETR"),
    (b"RETR 12345678901", Pop3SyntaxError, "as a number"),
    (b"RETR \xd9\xa1", Pop3SyntaxError, "as a number"),   # Arabic-Indic digit one
    (b"DELE", Pop3SyntaxError, "DELE needs an argument"),
    (b"DELE one", Pop3SyntaxError, "as a number"),
    (b"LIST a", Pop3SyntaxError, "as a number"),
    (b"LIST 1 2", Pop3SyntaxError, "Too many arguments for LIST"),
    (b"UIDL 1 2", Pop3SyntaxError, "Too many arguments for UIDL"),
    (b"TOP 1", Pop3SyntaxError, "TOP needs an argument"),
    (b"TOP", Pop3SyntaxError, "TOP needs an argument"),
    (b"TOP 1 -1", Pop3SyntaxError, "non-negative line count"),
    (b"TOP 1 2 3", Pop3SyntaxError, "Too many arguments for TOP"),
    (b"LIST " + b"1" * 41, Pop3SyntaxError, "longer than 40"),
    (b"AUTH PLAIN x y", Pop3SyntaxError, "Too many arguments for AUTH"),
    (b"AUTH PL@IN", Pop3SyntaxError, "SASL mechanism name"),
    (b"NOOP " + b"x" * 260, CommandTooLong, "Command line too long"),
    (b"USER " + b"a" * 249, CommandTooLong, "256 octets"),
    (b"AUTH PLAIN " + b"A" * 8200, CommandTooLong, "Command line too long"),
]


@pytest.mark.parametrize("line,error,text", BAD, ids=[repr(b[0][:30]) for b in BAD])
def test_bad_commands(line: bytes, error: type[Exception], text: str) -> None:
    """Bad input gives the parser's own error with a sentence for the -ERR reply."""
    with pytest.raises(error) as info:
        parse_command(line)
    assert text in str(info.value)


def test_line_limit_is_255_with_crlf() -> None:
    """RFC 2449 §4: 255 octets including CRLF is accepted, 256 is not."""
    assert parse_command(b"USER " + b"a" * 248) == User("a" * 248)
    with pytest.raises(CommandTooLong):
        parse_command(b"USER " + b"a" * 249)


def test_auth_initial_response_may_exceed_255() -> None:
    """RFC 5034 §4: SASL responses may be longer than a command line."""
    cmd = parse_command(b"AUTH PLAIN " + b"A" * 1000)
    assert isinstance(cmd, Auth) and cmd.initial == b"A" * 1000


def test_states() -> None:
    """RFC 1939 §3–§7: which commands each state allows (STLS only before login, T3)."""
    auth_only = {"USER", "PASS", "APOP", "AUTH", "STLS"}
    trans_only = {"STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "NOOP", "RSET"}
    both = {"CAPA", "QUIT"}
    for line, cmd in GOOD:
        kw = type(cmd).keyword
        if kw in auth_only:
            assert type(cmd).states == {State.AUTHORIZATION}
        elif kw in trans_only:
            assert type(cmd).states == {State.TRANSACTION}
        else:
            assert kw in both and type(cmd).states == {State.AUTHORIZATION, State.TRANSACTION}


def test_secrets_not_in_repr() -> None:
    assert "hunter2" not in repr(parse_command(b"PASS hunter2"))
    assert "AGFsaWNl" not in repr(parse_command(b"AUTH PLAIN AGFsaWNlAHNlY3JldA=="))


def test_invalid_utf8_user_and_password_are_replaced() -> None:
    assert parse_command(b"USER \xff@x") == User("\ufffd@x")
    assert parse_command(b"PASS \xfe") == Pass("\ufffd")


@settings(max_examples=400)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_parser_errors(line: bytes) -> None:
    """Any bytes give a command or a Pop3SyntaxError, never another exception."""
    try:
        cmd = parse_command(line)
    except Pop3SyntaxError as exc:
        assert str(exc)
    else:
        assert isinstance(cmd, proto.Command)


@given(st.sampled_from([g[0] for g in GOOD]), st.data())
def test_keyword_case_never_matters(line: bytes, data: st.DataObject) -> None:
    kw, sep, rest = line.partition(b" ")
    flips = data.draw(st.lists(st.booleans(), min_size=len(kw), max_size=len(kw)))
    mixed = bytes(c ^ 0x20 if f and chr(c).isalpha() else c for c, f in zip(kw, flips))
    assert parse_command(mixed + sep + rest) == parse_command(line)


# --- replies -------------------------------------------------------------------------------


def test_reply_lines() -> None:
    assert ok() == b"+OK\r\n"
    assert ok("2 320") == b"+OK 2 320\r\n"
    assert err("No such message.") == b"-ERR No such message.\r\n"
    assert err("Locked.", "IN-USE") == b"-ERR [IN-USE] Locked.\r\n"


def test_reply_text_cannot_inject_lines() -> None:
    assert err("a\r\n+OK b") == b"-ERR a  +OK b\r\n"
    assert len(ok("x" * 2000)) <= proto.MAX_RESPONSE_LINE


def test_uidl_format() -> None:
    """Dovecot %08Xu%08Xv: UID then UIDVALIDITY, 16 upper-case hex digits (PROMISES U5)."""
    assert uidl_string(1, 1700000000) == b"000000016553F100"
    assert uidl_string(0xABCDEF, 7) == b"00ABCDEF00000007"
    assert proto.uidl_line(3, 10, 1) == b"3 0000000A00000001\r\n"


def test_scan_listing_and_multiline() -> None:
    assert proto.multiline(b"+OK 2 messages\r\n", [proto.scan_line(1, 120),
                                                    proto.scan_line(2, 200)]) == \
        b"+OK 2 messages\r\n1 120\r\n2 200\r\n.\r\n"


def _capa(**kw: object) -> list[bytes]:
    opts: dict[str, object] = {"transaction": False, "stls": True, "plaintext_auth": True,
                                   "mechanisms": ("PLAIN", "LOGIN"), "expire_days": 0,
                                   "implementation": "casella"}
    opts.update(kw)
    return [c.rstrip(b"\r\n") for c in capabilities(CapaOptions(**opts))]  # type: ignore[arg-type]


def test_capabilities() -> None:
    """RFC 2449 §6 with RFC 3206 AUTH-RESP-CODE, RFC 5034 SASL and RFC 2595 STLS."""
    caps = _capa()
    for c in (b"TOP", b"UIDL", b"USER", b"SASL PLAIN LOGIN", b"RESP-CODES", b"AUTH-RESP-CODE",
              b"PIPELINING", b"STLS", b"EXPIRE NEVER", b"IMPLEMENTATION casella"):
        assert c in caps
    assert b"EXPIRE 30" in _capa(expire_days=30)
    no_plain = _capa(plaintext_auth=False)
    assert b"STLS" in no_plain and b"USER" not in no_plain
    assert not any(c.startswith(b"SASL") for c in no_plain)
    after_login = _capa(transaction=True)
    assert b"STLS" not in after_login and b"USER" not in after_login
    assert b"TOP" in after_login and b"UIDL" in after_login


# --- byte-stuffing -------------------------------------------------------------------------


def unstuff(wire: bytes) -> bytes:
    """What a client does (RFC 1939 §3): read lines up to ".", remove one leading dot each."""
    assert wire.endswith(b".\r\n")
    body = wire[:-3]
    assert body == b"" or body.endswith(b"\r\n")
    lines = body.split(b"\r\n")[:-1]
    return b"".join((line[1:] if line.startswith(b".") else line) + b"\r\n" for line in lines)


def stuff_all(data: bytes, cuts: list[int]) -> bytes:
    d = DotStuffer()
    out = []
    prev = 0
    for cut in sorted({c for c in cuts if 0 < c < len(data)}) + [len(data)]:
        out.append(d.feed(data[prev:cut]))
        prev = cut
    out.append(d.finish())
    return b"".join(out)


def test_dot_stuffing_examples() -> None:
    """RFC 1939 §3: lines starting with "." get another; CRLF.CRLF ends the response."""
    msg = b"Subject: x\r\n\r\n.\r\n..two\r\nnot.first\r\n.last"
    assert stuff_all(msg, []) == \
        b"Subject: x\r\n\r\n..\r\n...two\r\nnot.first\r\n..last\r\n.\r\n"
    assert stuff_all(b".", []) == b"..\r\n.\r\n"
    assert stuff_all(b"", []) == b".\r\n"
    assert stuff_all(b"a\r\n", []) == b"a\r\n.\r\n"
    assert stuff_all(b"no final line end", []) == b"no final line end\r\n.\r\n"


lines_strategy = st.lists(st.sampled_from([b"", b".", b"..", b".x", b"x.", b"abc", b". .",
                                           b"From x", b"\xff."]), max_size=30)


@given(lines_strategy, st.booleans(), st.lists(st.integers(0, 200), max_size=8))
def test_dot_stuffing_roundtrip_any_split(lines: list[bytes], final_crlf: bool,
                                          cuts: list[int]) -> None:
    """Stuffing fed in any chunk split equals stuffing in one piece, and unstuffing gives the
    message back (plus a final CRLF when it had none)."""
    msg = b"\r\n".join(lines) + (b"\r\n" if final_crlf and lines else b"")
    whole = stuff_all(msg, [])
    assert stuff_all(msg, cuts) == whole
    expected = msg if msg.endswith(b"\r\n") or not msg else msg + b"\r\n"
    assert unstuff(whole) == expected
    # Nothing inside can look like the terminator.
    assert b"\r\n.\r\n" not in whole[:-5]


# --- TOP -----------------------------------------------------------------------------------


def top_reference(msg: bytes, n: int) -> bytes:
    """TOP by the book, line by line (a line ends with LF): header, blank line, n body lines."""
    lines = [part + b"\n" for part in msg.split(b"\n")]
    lines[-1] = lines[-1][:-1]
    if not lines[-1]:
        lines.pop()
    out: list[bytes] = []
    i = 0
    while i < len(lines):
        out.append(lines[i])
        i += 1
        if lines[i - 1] in (b"\r\n", b"\n"):
            break
    out.extend(lines[i:i + n])
    return b"".join(out)


def top_all(msg: bytes, n: int, cuts: list[int]) -> bytes:
    t = TopCutter(n)
    out = []
    prev = 0
    for cut in sorted({c for c in cuts if 0 < c < len(msg)}) + [len(msg)]:
        out.append(t.feed(msg[prev:cut]))
        prev = cut
    return b"".join(out)


def test_top_examples() -> None:
    msg = b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\nl3\r\n"
    assert top_all(msg, 0, []) == b"A: 1\r\nB: 2\r\n\r\n"
    assert top_all(msg, 2, []) == b"A: 1\r\nB: 2\r\n\r\nl1\r\nl2\r\n"
    assert top_all(msg, 99, []) == msg
    assert top_all(b"A: 1\r\nno blank line", 3, []) == b"A: 1\r\nno blank line"
    assert top_all(b"\r\nbody\r\n", 0, []) == b"\r\n"
    assert top_all(b"A: 1\r\n\r\nlast without crlf", 5, []) == b"A: 1\r\n\r\nlast without crlf"


@settings(max_examples=300)
@given(st.lists(st.sampled_from([b"H: v", b"", b"body", b".", b"x\r", b"lf\n", b"\n"]),
                max_size=20),
       st.integers(0, 6), st.lists(st.integers(0, 120), max_size=8), st.booleans())
def test_top_matches_reference_in_any_split(lines: list[bytes], n: int, cuts: list[int],
                                           final: bool) -> None:
    msg = b"\r\n".join(lines) + (b"\r\n" if final else b"")
    assert top_all(msg, n, cuts) == top_reference(msg, n)
