"""Issue 20, the pure parts: Rspamd's answer parsed (good answers and garbage), the action
decided, the X-Spam headers and the marked message, the request headers, the `[spam]` keys."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casella.config import config_from_mapping
from casella.delivery.spam import (
    ACCEPT,
    REFUSE,
    TEMPFAIL,
    TO_JUNK,
    BadAnswer,
    RspamdAnswer,
    ScanEnvelope,
    SpamVerdict,
    Symbol,
    decide,
    failed,
    mark_message,
    parse_answer,
    spam_headers,
)
from casella.errors import ConfigError


def _answer(**fields: Any) -> bytes:
    obj: dict[str, Any] = {"score": 7.5, "required_score": 15.0, "action": "add header"}
    obj.update(fields)
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


GOOD = [
    (_answer(), RspamdAnswer("add header", 7.5, 15.0)),
    (_answer(action="no action", score=-1), RspamdAnswer("no action", -1.0, 15.0)),
    (_answer(required_score=...), RspamdAnswer("add header", 7.5, 0.0)),
    (_answer(action="rewrite subject", subject="*** SPAM *** hi"),
     RspamdAnswer("rewrite subject", 7.5, 15.0, subject="*** SPAM *** hi")),
    (_answer(action="reject", messages={"smtp_message": "Gtube pattern"}),
     RspamdAnswer("reject", 7.5, 15.0, message="Gtube pattern")),
    (_answer(symbols={"GTUBE": {"name": "GTUBE", "score": 0.0, "options": ["a", 3]},
                      "R_X": {"score": 2}, "BAD": "not an object", "NOSCORE": {}}),
     RspamdAnswer("add header", 7.5, 15.0, (Symbol("GTUBE", 0.0, ("a",)),
                                           Symbol("R_X", 2.0), Symbol("NOSCORE", 0.0)))),
    # Decorative fields of the wrong shape are ignored, not fatal.
    (_answer(symbols=[], subject=5, messages="x"), RspamdAnswer("add header", 7.5, 15.0)),
]


@pytest.mark.parametrize("body,expected", GOOD)
def test_parse_answer_good(body: bytes, expected: RspamdAnswer) -> None:
    assert parse_answer(body) == expected


BAD = [
    (b"", "not JSON"),
    (b"<html>502 Bad Gateway</html>", "not JSON"),
    (b"\xff\xfe{}", "not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    (b"[]", "not a JSON object"),
    (b'"reject"', "not a JSON object"),
    (_answer(action=...), "action is missing"),
    (_answer(action=5), "action is missing"),
    (_answer(action="explode"), "unknown action"),
    (_answer(score=...), "score is missing"),
    (_answer(score="7.5"), "score is not a number"),
    (_answer(score=True), "score is not a number"),
    (b'{"action": "reject", "score": NaN}', "score is not a number"),
    (b'{"action": "reject", "score": Infinity}', "score is not a number"),
    (_answer(required_score=None), "required_score is missing"),
]


@pytest.mark.parametrize("body,why", BAD)
def test_parse_answer_garbage(body: bytes, why: str) -> None:
    with pytest.raises(BadAnswer, match=why):
        parse_answer(body)


@given(st.binary(max_size=300))
def test_parse_answer_never_raises_anything_else(body: bytes) -> None:
    try:
        parse_answer(body)
    except BadAnswer:
        pass


DECISIONS = [
    ("no action", False, ACCEPT, None),
    ("add header", False, TO_JUNK, None),
    ("rewrite subject", False, TO_JUNK, None),
    ("quarantine", False, TO_JUNK, None),
    ("reject", False, REFUSE, (550, "5.7.1")),
    ("discard", False, REFUSE, (550, "5.7.1")),       # never dropped silently: refused
    ("greylist", False, TEMPFAIL, (451, "4.7.1")),
    ("soft reject", False, TEMPFAIL, (451, "4.7.1")),
    # Submission: only the refusals apply.
    ("add header", True, ACCEPT, None),
    ("rewrite subject", True, ACCEPT, None),
    ("reject", True, REFUSE, (550, "5.7.1")),
    ("soft reject", True, TEMPFAIL, (451, "4.7.1")),
]


@pytest.mark.parametrize("action,submission,outcome,reply", DECISIONS)
def test_decide(action: str, submission: bool, outcome: str,
                reply: tuple[int, str] | None) -> None:
    v = decide(RspamdAnswer(action, 20.0, 15.0), submission)
    assert v.outcome == outcome
    assert (v.reply[:2] if v.reply else None) == reply


def test_reply_text_is_clear_and_safe() -> None:
    v = decide(RspamdAnswer("reject", 20.0, 15.0, message="Gtube\r\n250 ok\x00 pattern"))
    assert v.reply is not None
    code, status, text = v.reply
    assert (code, status) == (550, "5.7.1")
    assert text.startswith("Message rejected as spam")
    assert all(0x20 <= ord(c) < 0x7f for c in text)
    assert "Gtube" in text
    v = decide(RspamdAnswer("reject", 20.0, 15.0), submission=True)
    assert v.reply == (550, "5.7.1", "Message rejected as spam; it was not sent")


def test_failed_follows_on_error() -> None:
    assert failed("timeout", "accept") == SpamVerdict(ACCEPT, None, None, "timeout")
    v = failed("timeout", "tempfail")
    assert v.outcome == TEMPFAIL and v.reply is not None and v.reply[:2] == (451, "4.3.0")


def test_spam_headers_are_safe_and_folded() -> None:
    answer = RspamdAnswer("add header", 7.5, 15.0, (
        Symbol("LOW", 0.5), Symbol("HIGH", 5.0, ("a;b", "c]\r\nX-Evil: 1", "ok")),
        Symbol("bad name\r\nX-Evil: 2", 9.0), Symbol("GTUBE", 0.0)))
    h = spam_headers(answer)
    lines = h.split(b"\r\n")
    assert lines[0] == b"X-Spam: Yes"
    assert lines[1] == b"X-Spam-Score: 7.50 / 15.00"
    assert lines[2] == b"X-Spam-Action: add header"
    assert lines[3] == b"X-Spamd-Result: default: True [7.50 / 15.00];"
    assert lines[4] == b"\tHIGH(5.00)[ab,cX-Evil:1,ok];"       # the highest score first
    assert lines[5] == b"\tLOW(0.50);"
    assert lines[6] == b"\tGTUBE(0.00)"
    assert h.endswith(b"\r\n") and b"\n" not in h.replace(b"\r\n", b"")
    # Every line but the first of a field is a continuation: no field can be injected.
    assert not any(line.startswith(b"X-Evil") for line in lines)


def test_spam_headers_bounded() -> None:
    answer = RspamdAnswer("add header", 7.5, 15.0,
                          tuple(Symbol(f"S{i}", float(i), tuple("o" * 100 for _ in range(20)))
                                for i in range(500)))
    h = spam_headers(answer)
    assert h.count(b"\r\n\t") == 50
    assert len(h) < 50 * (64 + 5 * 61 + 20) + 300


MSG = (b"Return-Path: <s@remote.example>\r\nReceived: from x by y; date\r\n"
       b"From: s@remote.example\r\nX-Spam: No\r\nx-spamd-result: forged\r\n"
       b" continued\r\nSubject: hello\r\nTo: a@example.test\r\n\r\nbody\r\nX-Spam: body\r\n")


def test_mark_message_junk() -> None:
    answer = RspamdAnswer("add header", 7.5, 15.0, (Symbol("GTUBE", 0.0),))
    out = mark_message(MSG, decide(answer))
    assert out.startswith(b"Return-Path: <s@remote.example>\r\nX-Spam: Yes\r\n"
                          b"X-Spam-Score: 7.50 / 15.00\r\n")
    head, _, body = out.partition(b"\r\n\r\n")
    assert b"X-Spam: No" not in head and b"forged" not in head and b"continued" not in head
    assert b"Subject: hello\r\n" in head
    assert body == b"body\r\nX-Spam: body\r\n"          # the body is never touched


def test_mark_message_rewrites_subject() -> None:
    answer = RspamdAnswer("rewrite subject", 9.0, 15.0, subject="*** SPAM *** hello")
    out = mark_message(MSG, decide(answer))
    head = out.partition(b"\r\n\r\n")[0]
    assert b"Subject: *** SPAM *** hello\r\n" in head and b"Subject: hello" not in head
    assert head.count(b"Subject:") == 1
    # Not ASCII: RFC 2047 encoded words, folded; CR/LF from Rspamd cannot break out.
    answer = RspamdAnswer("rewrite subject", 9.0, 15.0,
                          subject="*** SPAM *** Grüße\r\nBcc: x@y " + "é" * 80)
    head = mark_message(MSG, decide(answer)).partition(b"\r\n\r\n")[0]
    subject = next(f for f in head.split(b"\r\n") if f.startswith(b"Subject:"))
    assert b"=?utf-8?" in subject
    assert b"\r\nBcc" not in head
    # No Subject field at all: one is added.
    bare = b"From: s@remote.example\r\n\r\nbody\r\n"
    out = mark_message(bare, decide(RspamdAnswer("rewrite subject", 9.0, 15.0,
                                                  subject="*** SPAM *** ")))
    assert b"Subject: *** SPAM ***" in out.partition(b"\r\n\r\n")[0]


def test_mark_message_clean() -> None:
    clean = b"Return-Path: <a@b>\r\nFrom: a@b\r\nSubject: hi\r\n\r\nX-Spam: Yes\r\n"
    v = decide(RspamdAnswer("no action", 0.0, 15.0))
    assert mark_message(clean, v) is clean
    # A forged verdict in a clean message goes; nothing is added.
    out = mark_message(MSG, v)
    assert b"X-Spam: No" not in out and b"X-Spam: Yes" not in out
    assert out.startswith(b"Return-Path: <s@remote.example>\r\nReceived:")
    # Rewrite asked on the submission path (accept): the subject stays.
    sub = decide(RspamdAnswer("rewrite subject", 9.0, 15.0, subject="*** SPAM ***"), True)
    assert b"Subject: hello" in mark_message(MSG, sub)


def test_scan_envelope_headers() -> None:
    env = ScanEnvelope("", ["a@example.test", "b\r\nX: y@example.test"], "192.0.2.1",
                       "mx\x00.example", "ABC", "unknown", None)
    assert env.headers() == [("From", "<>"), ("IP", "192.0.2.1"), ("Helo", "mx.example"),
                             ("Queue-Id", "ABC"), ("Rcpt", "a@example.test"),
                             ("Rcpt", "bX: y@example.test"), ("Hostname", "unknown")]
    env = ScanEnvelope("ü@example.test", [], "::1", "", "Q", None, "u@example.test")
    assert env.headers() == [("From", "ü@example.test"), ("IP", "::1"), ("Helo", "unknown"),
                             ("Queue-Id", "Q"), ("User", "u@example.test")]


# --- the [spam] configuration -----------------------------------------------------------------

def test_spam_config_defaults() -> None:
    spam = config_from_mapping({}).spam
    assert spam.rspamd == "" and spam.controller == ""
    assert spam.on_error == "accept" and spam.check_submission is False
    assert spam.max_size == 50 * 1024**2 and spam.max_reply_size == 1024**2
    assert spam.timeout == 15.0 and spam.connect_timeout == 5.0
    assert spam.learn_concurrency == 2 and spam.learn_backlog == 1000


def test_spam_config_values() -> None:
    spam = config_from_mapping({"spam": {
        "rspamd": "http://127.0.0.1:11333/", "controller": "https://rspamd.internal:11334",
        "controller_password": "pw", "timeout": 2.5, "connect_timeout": 1,
        "on_error": "tempfail", "check_submission": True, "max_size": "512K",
        "max_reply_size": "64K", "learn_concurrency": 4, "learn_backlog": 0}}).spam
    assert spam.rspamd == "http://127.0.0.1:11333"
    assert spam.controller == "https://rspamd.internal:11334"
    assert (spam.timeout, spam.connect_timeout, spam.max_size, spam.max_reply_size) == (
        2.5, 1.0, 512 * 1024, 64 * 1024)
    assert spam.on_error == "tempfail" and spam.check_submission
    assert (spam.learn_concurrency, spam.learn_backlog) == (4, 0)


@pytest.mark.parametrize("table,message", [
    ({"rspamd": "127.0.0.1:11333"}, "spam.rspamd = '127.0.0.1:11333': expected an http:// URL"),
    ({"rspamd": "ftp://h"}, "spam.rspamd = 'ftp://h'"),
    ({"rspamd": "http://"}, "spam.rspamd = 'http://'"),
    ({"rspamd": "http://h:70000"}, "spam.rspamd = 'http://h:70000'"),
    ({"rspamd": "http://h/?x=1"}, "spam.rspamd"),
    ({"rspamd": "http://u:p@h"}, "spam.rspamd"),
    ({"controller": 5}, "spam.controller = 5"),
    ({"on_error": "drop"}, "spam.on_error = 'drop': expected accept or tempfail"),
    ({"timeout": 0}, "spam.timeout = 0: expected more than 0 seconds"),
    ({"connect_timeout": -1}, "spam.connect_timeout = -1"),
    ({"timeout": "10s"}, "spam.timeout = '10s'"),
    ({"check_submission": "yes"}, "spam.check_submission = 'yes': expected true or false"),
    ({"max_size": "big"}, "spam.max_size = 'big'"),
    ({"max_reply_size": 10}, "spam.max_reply_size = 10: expected at least 1K"),
    ({"learn_concurrency": 0}, "spam.learn_concurrency = 0"),
    ({"learn_backlog": -1}, "spam.learn_backlog = -1"),
    ({"controller_password": 1}, "spam.controller_password = 1"),
    ({"reject_score": 15}, "unknown key spam.reject_score"),
])
def test_spam_config_refused(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config_from_mapping({"spam": table})
    assert str(exc.value).startswith(message)
    assert "\n" not in str(exc.value)
