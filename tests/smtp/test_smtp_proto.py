"""The SMTP command parser and reply rendering (casella.smtp.proto): bytes in, typed command or
ParseError with the right reply out."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from casella.smtp import proto
from casella.smtp.proto import (
    Auth,
    Bdat,
    Data,
    Expn,
    Helo,
    Help,
    Mail,
    Noop,
    ParseError,
    Path,
    Quit,
    Rcpt,
    Reply,
    Rset,
    StartTls,
    Vrfy,
    parse_command,
)

GOOD = [
    (b"EHLO client.example", Helo("client.example", True)),
    (b"ehlo [127.0.0.1]", Helo("[127.0.0.1]", True)),
    (b"HELO x", Helo("x", False)),
    (b"EHLO   spaced.example  ", Helo("spaced.example", True)),
    (b"MAIL FROM:<a@b.example>", Mail(Path("a", "b.example"))),
    (b"mail from:<a@b.example>", Mail(Path("a", "b.example"))),
    (b"MAIL FROM: <a@b.example>", Mail(Path("a", "b.example"))),
    (b"MAIL FROM:<>", Mail(None)),
    (b"MAIL FROM:<> SIZE=100", Mail(None, size=100, has_params=True)),
    (b"MAIL FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=QQ+2Bx",
     Mail(Path("a", "b.example"), 1000, "8BITMIME", True, "HDRS", "QQ+x", None, True)),
    (b"MAIL FROM:<a@b.example> body=7bit", Mail(Path("a", "b.example"), body="7BIT",
                                               has_params=True)),
    (b"MAIL FROM:<a@b.example> AUTH=<>", Mail(Path("a", "b.example"), auth="<>",
                                             has_params=True)),
    (b'MAIL FROM:<"john doe"@b.example>', Mail(Path("john doe", "b.example", quoted=True))),
    (b'MAIL FROM:<"a\\"b"@b.example>', Mail(Path('a"b', "b.example", quoted=True))),
    (b"MAIL FROM:<@r1.example,@r2.example:a@b.example>",
     Mail(Path("a", "b.example", routed=True))),
    (b"MAIL FROM:<a@[192.0.2.1]>", Mail(Path("a", "[192.0.2.1]"))),
    (b"MAIL FROM:<a@[IPv6:2001:db8::1]>", Mail(Path("a", "[IPv6:2001:db8::1]"))),
    ("MAIL FROM:<j\u00f6rg@b\u00fccher.example> SMTPUTF8".encode(),
     Mail(Path("j\u00f6rg", "b\u00fccher.example"), smtputf8=True, has_params=True)),
    (b"RCPT TO:<u@h.example>", Rcpt(Path("u", "h.example"))),
    (b"RCPT TO:<Postmaster>", Rcpt(Path("postmaster", ""))),
    (b"RCPT TO:<u@h.example> NOTIFY=SUCCESS,failure ORCPT=rfc822;u+40h.example",
     Rcpt(Path("u", "h.example"), ("SUCCESS", "FAILURE"), "rfc822;u@h.example", True)),
    (b"RCPT TO:<u@h.example> NOTIFY=NEVER", Rcpt(Path("u", "h.example"), ("NEVER",), None,
                                                 True)),
    (b"RCPT TO:<user+tag@h.example>", Rcpt(Path("user+tag", "h.example"))),
    (b"DATA", Data()),
    (b"data", Data()),
    (b"BDAT 0 LAST", Bdat(0, True)),
    (b"BDAT 1000", Bdat(1000, False)),
    (b"bdat 12 last", Bdat(12, True)),
    (b"RSET", Rset()),
    (b"NOOP", Noop()),
    (b"NOOP anything at all", Noop()),
    (b"QUIT", Quit()),
    (b"VRFY someone", Vrfy("someone")),
    (b"EXPN list", Expn("list")),
    (b"HELP", Help("")),
    (b"HELP MAIL", Help("MAIL")),
    (b"AUTH PLAIN", Auth("PLAIN", None)),
    (b"AUTH plain AGFsaWNlAHNlY3JldA==", Auth("PLAIN", b"AGFsaWNlAHNlY3JldA==")),
    (b"AUTH LOGIN =", Auth("LOGIN", b"=")),
    (b"STARTTLS", StartTls()),
]


@pytest.mark.parametrize("line,expected", GOOD, ids=[g[0].decode(errors="replace")[:40]
                                                     for g in GOOD])
def test_good_commands(line: bytes, expected: object) -> None:
    """RFC 5321 §4.1 grammar (and SIZE, BODY, SMTPUTF8, DSN, AUTH=, BDAT parameters)."""
    assert parse_command(line) == expected


BAD = [
    (b"", 500, "5.5.2"),
    (b"FOO bar", 500, "5.5.2"),
    (b"\xff\xfe", 500, "5.5.2"),
    (b"EHLO", 501, "5.5.4"),
    (b"EHLO two words", 501, "5.5.4"),
    (b"MAIL", 501, "5.5.4"),
    (b"MAIL TO:<a@b.example>", 501, "5.5.4"),
    (b"MAIL FROM:a@b.example", 501, "5.1.3"),
    (b"MAIL FROM:<a@b.example", 501, "5.1.3"),
    (b"MAIL FROM:<a@@b.example>", 501, "5.1.3"),
    (b"MAIL FROM:<user@remote.example@h.example>", 501, "5.1.3"),
    (b"MAIL FROM:<a@b.example>SIZE=1", 501, "5.5.4"),
    (b"MAIL FROM:<a..b@b.example>", 501, "5.1.3"),
    (b"MAIL FROM:<a@-b.example>", 501, "5.1.3"),
    (b"MAIL FROM:<" + b"x" * 65 + b"@b.example>", 501, "5.1.3"),
    (b"MAIL FROM:<a@b.example> SIZE=abc", 501, "5.5.4"),
    (b"MAIL FROM:<a@b.example> SIZE", 501, "5.5.4"),
    (b"MAIL FROM:<a@b.example> SIZE=1 SIZE=2", 501, "5.5.4"),
    (b"MAIL FROM:<a@b.example> BODY=9BIT", 501, "5.5.4"),
    (b"MAIL FROM:<a@b.example> BODY=BINARYMIME", 555, "5.5.4"),
    (b"MAIL FROM:<a@b.example> SMTPUTF8=yes", 501, "5.5.4"),
    (b"MAIL FROM:<a@b.example> RET=ALL", 501, "5.5.4"),
    (b"MAIL FROM:<a@b.example> ENVID=a+0D+0Ab", 501, "5.5.4"),
    (b"MAIL FROM:<a@b.example> ENVID=" + b"x" * 101, 501, "5.5.4"),
    (b"MAIL FROM:<a@b.example> XFOO=1", 555, "5.5.4"),
    (b"MAIL FROM:<a@b.example> -bad", 501, "5.5.4"),
    (b"RCPT TO:<>", 501, "5.1.3"),
    (b"RCPT FROM:<a@b.example>", 501, "5.5.4"),
    (b"RCPT TO:<a@b.example> NOTIFY=NEVER,SUCCESS", 501, "5.5.4"),
    (b"RCPT TO:<a@b.example> NOTIFY=SOMETIMES", 501, "5.5.4"),
    (b"RCPT TO:<a@b.example> NOTIFY=", 501, "5.5.4"),
    (b"RCPT TO:<a@b.example> ORCPT=nosemicolon", 501, "5.5.4"),
    (b"RCPT TO:<a@b.example> ORCPT=rfc822;a+0Db", 501, "5.5.4"),
    (b"RCPT TO:<a@b.example> FOO", 555, "5.5.4"),
    (b"DATA now", 501, "5.5.4"),
    (b"BDAT", 501, "5.5.4"),
    (b"BDAT x", 501, "5.5.4"),
    (b"BDAT 10 FIRST", 501, "5.5.4"),
    (b"BDAT 10 LAST extra", 501, "5.5.4"),
    (b"RSET now", 501, "5.5.4"),
    (b"QUIT now", 501, "5.5.4"),
    (b"VRFY", 501, "5.5.4"),
    (b"AUTH", 501, "5.5.4"),
    (b"AUTH PLAIN not*base64", 501, "5.5.2"),
    (b"AUTH PLAIN a b", 501, "5.5.4"),
    (b"STARTTLS now", 501, "5.5.4"),
]


@pytest.mark.parametrize("line,code,status", BAD, ids=[b[0].decode(errors="replace")[:40]
                                                        for b in BAD])
def test_bad_commands(line: bytes, code: int, status: str) -> None:
    """Syntax errors answer 500/501 5.5.x, bad addresses 501 5.1.3, unknown parameters 555."""
    with pytest.raises(ParseError) as info:
        parse_command(line)
    assert (info.value.reply.code, info.value.reply.status) == (code, status)


def test_path_address_requotes() -> None:
    assert Path("john doe", "b.example", quoted=True).address == '"john doe"@b.example'
    assert Path("plain", "b.example", quoted=True).address == "plain@b.example"
    assert Path('a"b', "x.example", quoted=True).address == '"a\\"b"@x.example'
    assert Path("postmaster", "").is_postmaster
    assert str(Path("a", "b.example")) == "<a@b.example>"


def test_xtext_round_trip() -> None:
    """RFC 3461 §4: xtext encodes '+', '=' and anything outside ! to ~."""
    for text in ["plain", "a+b=c", "with space", "x@y.example"]:
        assert proto.decode_xtext(proto.encode_xtext(text), "X") == text


def test_reply_rendering() -> None:
    """RFC 5321 §4.2.1 multi-line replies; RFC 2034 status after the code."""
    assert proto.OK.render() == b"250 2.0.0 OK\r\n"
    multi = Reply(250, "", ("host greets you", "PIPELINING", "SIZE 10"))
    assert multi.render() == b"250-host greets you\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
    assert proto.START_DATA.render() == b"354 End data with <CR><LF>.<CR><LF>\r\n"


def test_every_catalogue_reply_has_an_enhanced_code() -> None:
    """RFC 2034 §3: every 2xx/4xx/5xx reply but the greeting and EHLO/HELO carries a status
    code whose class matches the reply's first digit."""
    for name in dir(proto):
        value = getattr(proto, name)
        if isinstance(value, Reply) and value.code // 100 in (2, 4, 5):
            assert value.status, name
            assert value.status[0] == str(value.code)[0], name


def test_safe_text_strips_controls() -> None:
    """Client data echoed in a reply can never split it (no CR/LF)."""
    assert "\r" not in proto.safe_text("a\r\nb") and "\n" not in proto.safe_text("a\r\nb")
    assert len(proto.safe_text("x" * 1000)) == 200


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_only_raise_parse_error(data: bytes) -> None:
    """Property: any bytes give a command or a ParseError, never another exception."""
    try:
        parse_command(data)
    except ParseError as exc:
        assert exc.reply.code >= 500
        assert b"\n" not in exc.reply.render()[:-2]


_VERBS = st.sampled_from([b"MAIL FROM:", b"RCPT TO:", b"EHLO ", b"BDAT ", b"AUTH ",
                          b"MAIL FROM:<a@b.example> ", b"RCPT TO:<a@b.example> "])


@settings(max_examples=400, deadline=None)
@given(_VERBS, st.binary(max_size=200))
def test_verb_with_garbage_only_raises_parse_error(verb: bytes, data: bytes) -> None:
    """Property: a known verb followed by arbitrary bytes never crashes the parser."""
    try:
        parse_command(verb + data)
    except ParseError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[a-z0-9]{1,15}(\.[a-z0-9]{1,15}){0,3}", fullmatch=True),
       st.from_regex(r"[a-z0-9]{1,20}(\.[a-z0-9]{1,10}){1,3}", fullmatch=True))
def test_generated_paths_parse(local: str, domain: str) -> None:
    """Property: every dot-string@domain path parses back to its parts."""
    cmd = parse_command(f"RCPT TO:<{local}@{domain}>".encode())
    assert isinstance(cmd, Rcpt)
    assert (cmd.recipient.local, cmd.recipient.domain) == (local, domain)


def test_c1_controls_and_line_separators_refused_in_paths() -> None:
    """PROMISES M7: nothing that some reader takes for a line break gets into a path."""
    for bad in ("\u0085", "\u2028", "\u2029", "\u009b"):
        with pytest.raises(ParseError):
            parse_command(f"RCPT TO:<a{bad}b@h.example>".encode())
        with pytest.raises(ParseError):
            parse_command(f'MAIL FROM:<"a{bad}b"@h.example> SMTPUTF8'.encode())
