"""Sieve as table tests: the grammar (good scripts, bad ones with the line the error names),
the checks of `require` and arguments, and runs of script + message -> actions (RFC 5228 and
the extensions casella announces)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from casella.delivery.sieve import (
    Envelope,
    Limits,
    MessageView,
    SieveError,
    compile_script,
    run,
)
from casella.delivery.sieve.grammar import parse
from casella.delivery.sieve.interp import glob

MSG = (b"Return-Path: <alice@example.org>\r\n"
       b"From: Alice Example <alice@example.org>\r\n"
       b"To: bob@example.test, \"Carol\" <carol+lists@example.test>\r\n"
       b"Cc: dave@elsewhere.test\r\n"
       b"Subject: =?utf-8?q?R=C3=A9union?= about the [budget]\r\n"
       b"Date: Tue, 14 Apr 2026 09:30:00 +0200\r\n"
       b"X-Spam-Score: 7\r\n"
       b"Received: from a\r\n"
       b"Received: from b\r\n"
       b"List-Id: <budget.example.org>\r\n"
       b"Message-ID: <m1@example.org>\r\n"
       b"MIME-Version: 1.0\r\n"
       b"Content-Type: multipart/alternative; boundary=XX\r\n"
       b"\r\n"
       b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n"
       b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
       b"The meeting is on Fr=C3=BChling day. Secret word: pineapple.\r\n"
       b"--XX\r\nContent-Type: text/html\r\n\r\n<p>HTML only: mango</p>\r\n--XX--\r\n")

NOW = datetime(2026, 4, 15, 12, 0, 0, tzinfo=UTC)


def actions(script: str, message: bytes = MSG, sender: str = "alice@example.org",
            recipient: str = "bob+work@example.test", limits: Limits | None = None,
            mailboxes: frozenset[str] = frozenset({"Work", "Lists"})) -> list[str]:
    compiled = compile_script(script)
    out = run(compiled, MessageView(message), Envelope(sender, recipient),
              limits=limits or Limits(),
              now=NOW, mailboxes=mailboxes)
    result = []
    for d in out.deliveries:
        what = f"fileinto:{d.mailbox}" if d.mailbox else "keep"
        if d.flags:
            what += "[" + " ".join(d.flags) + "]"
        if d.create:
            what += "+create"
        result.append(what)
    result += [f"redirect:{r.address}{'+copy' if r.copy else ''}" for r in out.redirects]
    if out.reject:
        result.append(f"{'ereject' if out.reject.extended else 'reject'}:{out.reject.reason}")
    if out.vacation:
        v = out.vacation
        result.append(f"vacation:{v.days}:{v.subject}:{v.reason}")
    if out.discarded:
        result.append("discard")
    return result


RUNS = [
    # RFC 5228 basics: implicit keep, keep, discard, stop, if/elsif/else
    ("", ["keep"]),
    ("keep;", ["keep"]),
    ("discard;", ["discard"]),
    ('require "fileinto"; fileinto "Work";', ["fileinto:Work"]),
    ('require "fileinto"; fileinto "Work"; fileinto "Work"; keep; keep;',
     ["fileinto:Work", "keep"]),
    ('require "fileinto"; fileinto "INBOX"; keep;', ["fileinto:INBOX", "keep"]),
    ('stop; discard;', ["keep"]),
    ('if false { discard; } elsif true { stop; } else { discard; }', ["keep"]),
    ('if header :contains "subject" "réunion" { discard; }', ["discard"]),
    ('if header :is "subject" "Réunion about the [budget]" { discard; }', ["discard"]),
    ('if header :matches "subject" "*[budget]" { discard; }', ["discard"]),
    ('if header :matches "subject" "Réunion ?bout*" { discard; }', ["discard"]),
    ('if header :contains :comparator "i;octet" "subject" "RÉUNION" { discard; }', ["keep"]),
    ('if exists ["list-id", "x-spam-score"] { discard; }', ["discard"]),
    ('if exists ["list-id", "x-nothing"] { discard; }', ["keep"]),
    ('if not exists "x-nothing" { discard; }', ["discard"]),
    ('if allof (true, header :contains "from" "alice") { discard; }', ["discard"]),
    ('if anyof (false, header :contains "from" "zed") { discard; }', ["keep"]),
    ('if size :over 100 { discard; }', ["discard"]),
    ('if size :under 1K { discard; }', ["discard"]),
    ('if size :over 1M { discard; }', ["keep"]),
    ('if address :domain "to" "example.test" { discard; }', ["discard"]),
    ('if address :localpart :is "from" "alice" { discard; }', ["discard"]),
    ('if address :all :is "cc" "DAVE@elsewhere.test" { discard; }', ["discard"]),
    ('if address :is "from" "Alice Example" { discard; }', ["keep"]),
    ('redirect "other@example.net";', ["redirect:other@example.net"]),
    ('redirect "a@example.net"; redirect "A@example.net";', ["redirect:a@example.net"]),
    # reject / ereject (RFC 5429)
    ('require "reject"; reject "go away";', ["reject:go away"]),
    ('require "ereject"; ereject "no thanks";', ["ereject:no thanks"]),
    # envelope (RFC 5228 §5.4) and subaddress (RFC 5233)
    ('require "envelope"; if envelope :is "from" "alice@example.org" { discard; }',
     ["discard"]),
    (('require ["envelope", "subaddress", "fileinto"]; '
     'if envelope :detail "to" "work" { fileinto "Work"; }'), ["fileinto:Work"]),
    ('require ["envelope", "subaddress"]; if envelope :user "to" "bob" { discard; }',
     ["discard"]),
    ('require ["subaddress"]; if address :detail "to" "lists" { discard; }', ["discard"]),
    ('require ["subaddress"]; if address :detail "from" "" { discard; }', ["keep"]),
    # body (RFC 5173)
    ('require "body"; if body :contains "pineapple" { discard; }', ["discard"]),
    ('require "body"; if body :contains "frühling" { discard; }', ["discard"]),
    ('require "body"; if body :content "text/html" :contains "pineapple" { discard; }',
     ["keep"]),
    ('require "body"; if body :content "text/html" :contains "mango" { discard; }',
     ["discard"]),
    ('require "body"; if body :raw :contains "Fr=C3=BChling" { discard; }', ["discard"]),
    # relational (RFC 5231) and the numeric comparator
    (('require ["relational", "comparator-i;ascii-numeric"]; '
     'if header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "5" { discard; }'),
     ["discard"]),
    (('require ["relational", "comparator-i;ascii-numeric"]; '
     'if header :value "ge" :comparator "i;ascii-numeric" "x-spam-score" "10" { discard; }'),
     ["keep"]),
    (('require ["relational", "comparator-i;ascii-numeric"]; '
     'if header :count "eq" :comparator "i;ascii-numeric" "received" "2" { discard; }'),
     ["discard"]),
    (('require ["relational", "comparator-i;ascii-numeric"]; '
     'if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "3" { discard; }'),
     ["discard"]),
    # copy (RFC 3894) and mailbox :create (RFC 5490)
    ('require ["fileinto", "copy"]; fileinto :copy "Work";', ["fileinto:Work", "keep"]),
    ('require ["copy"]; redirect :copy "x@example.net";', ["keep", "redirect:x@example.net+copy"]),
    ('require ["fileinto", "mailbox"]; fileinto :create "Projects/Ünïcode";',
     ["fileinto:Projects/Ünïcode+create"]),
    ('require ["mailbox"]; if mailboxexists "Work" { discard; }', ["discard"]),
    ('require ["mailbox"]; if mailboxexists ["Work", "Nope"] { discard; }', ["keep"]),
    # imap4flags (RFC 5232)
    ('require "imap4flags"; setflag "\\\\Seen"; addflag ["$Work", "\\\\Flagged"];',
     ["keep[\\Seen $Work \\Flagged]"]),
    ('require ["imap4flags", "fileinto"]; addflag "A B"; removeflag "a"; fileinto "Work";',
     ["fileinto:Work[B]"]),
    ('require ["imap4flags", "fileinto"]; fileinto :flags "\\\\Seen" "Work"; keep;',
     ["fileinto:Work[\\Seen]", "keep"]),
    ('require "imap4flags"; addflag "$X"; if hasflag :is "$x" { discard; }', ["discard"]),
    (('require ["imap4flags", "variables"]; addflag "f" ["one", "two"]; '
     'if hasflag :is "f" "two" { discard; }'), ["discard"]),
    # variables (RFC 5229)
    (('require ["variables", "fileinto"]; '
     'if header :matches "list-id" "<*.example.org>" { fileinto "Lists/${1}"; }'),
     ["fileinto:Lists/budget"]),
    ('require ["variables", "fileinto"]; set "box" "Work"; fileinto "${box}";',
     ["fileinto:Work"]),
    ('require ["variables", "fileinto"]; set :upperfirst "b" "work"; fileinto "${b}";',
     ["fileinto:Work"]),
    ('require ["variables", "fileinto"]; set :length "n" "abcd"; fileinto "${n}";',
     ["fileinto:4"]),
    ('require ["variables", "fileinto"]; set :quotewildcard "q" "a*b"; fileinto "${q}";',
     ["fileinto:a\\*b"]),
    ('require ["variables", "fileinto"]; set :lower :upperfirst "u" "HELLO"; fileinto "${u}";',
     ["fileinto:Hello"]),
    ('require ["variables"]; set "a" "x"; if string :is "${a}" "x" { discard; }', ["discard"]),
    ('require ["variables", "fileinto"]; fileinto "${nothing}box";', ["fileinto:box"]),
    ('require "fileinto"; fileinto "${1}";', ["fileinto:${1}"]),   # no "variables": literal
    (('require ["variables", "fileinto"]; if header :matches "from" "* <*@*>" '
     '{ fileinto "${1}-${3}-${0}"; }'),
     ["fileinto:Alice Example-example.org-Alice Example <alice@example.org>"]),
    # date / index (RFC 5260)
    ('require "date"; if date :is "date" "year" "2026" { discard; }', ["discard"]),
    ('require "date"; if date :originalzone :is "date" "hour" "09" { discard; }', ["discard"]),
    ('require "date"; if date :zone "+0000" :is "date" "time" "07:30:00" { discard; }',
     ["discard"]),
    ('require "date"; if date :zone "+0000" :is "date" "weekday" "2" { discard; }',
     ["discard"]),
    (('require "date"; if date :originalzone :is "date" "iso8601" "2026-04-14T09:30:00+02:00" '
     '{ discard; }'), ["discard"]),
    ('require "date"; if date :zone "+0000" :is "date" "julian" "61144" { discard; }',
     ["discard"]),
    ('require "date"; if currentdate :zone "+0000" :is "date" "2026-04-15" { discard; }',
     ["discard"]),
    (('require ["date", "relational"]; if currentdate :zone "+0000" :value "lt" "date" '
     '"2026-01-01" { discard; }'), ["keep"]),
    ('require ["index"]; if header :index 2 :is "received" "from b" { discard; }', ["discard"]),
    ('require ["index"]; if header :index 1 :last :is "received" "from b" { discard; }',
     ["discard"]),
    ('require ["index"]; if header :index 3 :is "received" "from b" { discard; }', ["keep"]),
    # vacation (RFC 5230)
    ('require "vacation"; vacation :days 3 :subject "Away" "I am away";',
     ["keep", "vacation:3:Away:I am away"]),
    ('require "vacation"; vacation text:\r\nAway\r\n..dots\r\n.\r\n;',
     ["keep", "vacation:None:None:Away\r\n.dots\r\n"]),
    # comments and multi-line
    ('# a comment\r\n/* block\r\n comment */ discard; # end', ["discard"]),
]


@pytest.mark.parametrize("script,expected", RUNS)
def test_run(script: str, expected: list[str]) -> None:
    """Script + message -> actions (the RFC each row cites)."""
    assert actions(script) == expected


BAD = [
    # (script, line, words in the message)
    ('fileinto "x";', 1, 'require "fileinto"'),
    ('require "fileinto";\r\n\r\nfileinto;', 3, "takes 1 argument"),
    ('require "nonsense";', 1, "unsupported extension"),
    ('keep;\r\nrequire "fileinto";', 2, "require must come before"),
    ('if true { discard; }\r\nelse discard;', 2, "else takes no test"),
    ('else { discard; }', 1, "without an if"),
    ('discard', 1, "expected ';'"),
    ('discard;\r\n}', 2, "without a matching"),
    ('if true {\r\n discard;\r\n', 3, "expected '}'"),
    ('frobnicate;', 1, "unknown command"),
    ('if frob { }', 1, "unknown test"),
    ('if header :is "subject" { }', 1, "takes 2 arguments"),
    ('if header :over "subject" "x" { }', 1, "no tag :over"),
    ('if size 10 { }', 1, "exactly one of :over and :under"),
    ('if header :count "gt" "a" "1" { }', 1, 'require "relational"'),
    ('require "relational"; if header :value "xx" "a" "1" { }', 1, "expected one of"),
    ('if header :comparator "i;frob" "a" "b" { }', 1, "unknown comparator"),
    ('if header :is :contains "a" "b" { }', 1, "twice"),
    ('"unterminated', 1, "never closed"),
    ('discard;\r\n/* never closed', 2, "never closed"),
    ('require "vacation"; vacation text:\r\nno end\r\n', 1, "never ended"),
    ('require "vacation";\r\nvacation :days 0 "x";', 2, ":days must be 1 or more"),
    ('require "date"; if date "date" "fortnight" "1" { }', 1, "unknown date part"),
    ('require "variables"; set "1bad" "x";', 1, "not a variable name"),
    ('require "index"; if header :last :is "a" "b" { }', 1, ":last needs :index"),
    ('require "fileinto"; fileinto "a" stop;', 1, "expected ';'"),
    ('keep :flags "x";', 1, 'require "imap4flags"'),
    ('if true { discard; } @', 1, "unexpected character"),
    ('if 99999999999999999999999 { }', 1, "too large"),
]


@pytest.mark.parametrize("script,line,words", BAD)
def test_bad_script_names_the_line(script: str, line: int, words: str) -> None:
    """A script that does not parse or check is refused with the line of the error."""
    with pytest.raises(SieveError) as info:
        compile_script(script)
    assert info.value.line == line, str(info.value)
    assert words in str(info.value)
    assert str(info.value).startswith(f"line {line}:")


def test_script_size_limit() -> None:
    """[sieve] max_script_size: a bigger script is refused before it is parsed."""
    with pytest.raises(SieveError, match="more than the 100 allowed"):
        compile_script("keep;" * 30, max_size=100)


def test_nesting_limit() -> None:
    """[sieve] max_nesting: blocks and tests nested deeper are refused, never a
    RecursionError."""
    deep = "if true { " * 20 + "discard;" + " }" * 20
    with pytest.raises(SieveError, match="nested more than 15"):
        compile_script(deep, max_nesting=15)
    compile_script(deep, max_nesting=25)
    very = "if " + "not " * 100_000 + "true { discard; }"
    with pytest.raises(SieveError, match="nested"):
        compile_script(very, max_size=10**7)
    tests = "if " + "allof(" * 5000 + "true" + ")" * 5000 + " { }"
    with pytest.raises(SieveError, match="nested"):
        compile_script(tests, max_size=10**7)


def test_command_count_limit() -> None:
    with pytest.raises(SieveError, match="more than 50 commands"):
        compile_script("keep;" * 51, max_commands=50)


def test_non_utf8_script_names_the_line() -> None:
    with pytest.raises(SieveError, match="line 2: the script is not valid UTF-8"):
        compile_script(b"keep;\r\n\xff;")


RUNTIME_ERRORS = [
    ('require "reject"; reject "no"; keep;', "reject cannot be combined"),
    ('require ["reject", "vacation"]; reject "no"; vacation "x";', "reject cannot be"),
    ('require "vacation"; vacation "a"; vacation "b";', "vacation used twice"),
    ('redirect "a@x.test"; redirect "b@x.test"; redirect "c@x.test";', "more than 2 redirects"),
    ('redirect "not an address";', "not an address"),
]


@pytest.mark.parametrize("script,words", RUNTIME_ERRORS)
def test_runtime_errors(script: str, words: str) -> None:
    """RFC 5228 §2.10.6: a run that fails is an error (the caller keeps the message)."""
    with pytest.raises(SieveError, match=words):
        actions(script, limits=Limits(max_redirects=2))


def test_step_limit_stops_a_heavy_script() -> None:
    """[sieve] max_steps: a run is bounded whatever the script does."""
    body = " ".join('if header :matches "subject" "*a*b*c*d*e*f*" { }' for _ in range(500))
    with pytest.raises(SieveError, match="more than 300 steps"):
        actions(body, limits=Limits(max_steps=300))


def test_action_limit() -> None:
    script = 'require ["fileinto", "copy"]; ' + " ".join(
        f'fileinto :copy "box{i}";' for i in range(10))
    with pytest.raises(SieveError, match="more than 5 actions"):
        actions(script, limits=Limits(max_actions=5))


def test_variable_size_is_cut() -> None:
    """RFC 5229 §5: a value longer than the limit is truncated, not an error."""
    script = ('require ["variables", "fileinto"]; set "v" "' + "x" * 100 + '"; '
              'fileinto "${v}";')
    assert actions(script, limits=Limits(max_variable_size=10)) == ["fileinto:" + "x" * 10]


def test_variable_count_limit() -> None:
    script = 'require "variables"; ' + " ".join(f'set "v{i}" "x";' for i in range(10))
    with pytest.raises(SieveError, match="more than 5 variables"):
        actions(script, limits=Limits(max_variables=5))


GLOBS = [
    ("*", "", [""]),
    ("a*", "abc", ["bc"]),
    ("*@*", "a@b@c", ["a", "b@c"]),
    ("?*", "xyz", ["x", "yz"]),
    ("a\\*b", "a*b", []),
    ("a\\*b", "axb", None),
    ("*x", "abc", None),
    ("A*C", "abc", ["b"]),
]


@pytest.mark.parametrize("key,text,caps", GLOBS)
def test_glob(key: str, text: str, caps: list[str] | None) -> None:
    """RFC 5228 §2.7.1 wildcards; RFC 5229 §3.2: each * as short as possible."""
    assert glob(key, text, casemap=True) == caps


def test_glob_is_not_exponential() -> None:
    key = "*a" * 30 + "b"
    assert glob(key, "a" * 3000, casemap=False) is None


def test_parse_keeps_lines_through_multiline_strings() -> None:
    tree = parse('require "vacation";\r\nvacation text:\r\n1\r\n2\r\n.\r\n;\r\nkeep;\r\n')
    assert [c.line for c in tree] == [1, 2, 7]


def test_run_time_limit() -> None:
    """[sieve] max_run_time: a run is cut off by the clock too."""
    body = " ".join('if header :contains "subject" "x" { }' for _ in range(600))
    with pytest.raises(SieveError, match="ran longer than 0 s"):
        actions(body, limits=Limits(max_run_time=0.0))


def test_body_test_reads_at_most_max_body() -> None:
    """[sieve] max_body_size: the body test looks at the start of a big message only."""
    big = MSG.replace(b"Secret word: pineapple.", b"x" * 5000 + b" late-word")
    script = compile_script('require "body"; if body :raw :contains "late-word" { discard; }')
    env = Envelope("a@b.test", "bob@example.test")
    assert run(script, MessageView(big), env, now=NOW).discarded
    assert not run(script, MessageView(big, max_body=1000), env, now=NOW).discarded
