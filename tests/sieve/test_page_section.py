"""The customer page's section of a Sieve script (casella.delivery.sieve.pagesection), pure:
settings -> section -> settings again; a section added to, replaced in and removed from the
scripts mail programs write, with every byte outside it untouched; sections the page did not
write (or whose markers are broken) are Unreadable; what the customer's own part does that
matters (a vacation of its own, redirects)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from casella.delivery.sieve import Envelope, MessageView, compile_script, run
from casella.delivery.sieve.pagesection import (
    END,
    ForwardRule,
    PageRules,
    Unreadable,
    VacationRule,
    merge,
    read_script,
    render_section,
)

AWAY = VacationRule(True, "Away", "I am away.\nBack on Monday.", 7)
RULES = [
    PageRules(AWAY),
    PageRules(VacationRule(True, "", "x", 1)),
    PageRules(VacationRule(False, 'Quote " and \\ back', ".starts with a dot\n.\n..", 30)),
    PageRules(VacationRule(True, "Été", "Je suis en vacances.", 3, date(2024, 7, 1),
                           date(2024, 7, 31))),
    PageRules(VacationRule(True, "s", "m", 3, first=date(2030, 1, 1))),
    PageRules(VacationRule(False, "s", "m", 3, last=date(2030, 1, 1))),
    PageRules(forward=ForwardRule(("a@remote.test",), True)),
    PageRules(forward=ForwardRule(("a@remote.test", "b@other.test"), False)),
    PageRules(AWAY, ForwardRule(("a@remote.test",), False)),
]

# Scripts a customer or a mail program may have written (Roundcube's "# rule:" comments,
# Thunderbird's CRLF, a multi-line require, no final line end, no require at all).
CUSTOMER_SCRIPTS = [
    "",
    "keep;\n",
    ('require ["fileinto"];\r\n# rule:[spam]\r\nif header :contains "x-spam" "yes" {\r\n'
    '  fileinto "Junk";\r\n}\r\n'),
    ('require "fileinto";\nrequire ["imap4flags",\n         "copy"];  # trailing\n'
    'if size :over 1M { fileinto :copy "Big"; }'),
    'require "fileinto"; /* a comment\nover lines */\n\nfileinto "X";\n',
    '# only a comment\n',
    'require ["fileinto"];\n',
]


@pytest.mark.parametrize("rules", RULES)
@pytest.mark.parametrize("nl", ["\r\n", "\n"])
def test_a_section_reads_back_as_the_settings_it_was_written_from(rules: PageRules,
                                                                  nl: str) -> None:
    text = render_section(rules, nl)
    compile_script(text)                    # never a script that does not compile
    found = read_script(text)
    assert found.rules == rules and found.span is not None
    assert not found.outside_vacation and found.outside_redirects == 0


@pytest.mark.parametrize("script", CUSTOMER_SCRIPTS)
@pytest.mark.parametrize("rules", RULES)
def test_merge_adds_replaces_and_removes_only_the_section(script: str,
                                                         rules: PageRules) -> None:
    compile_script(script)
    merged = merge(script, read_script(script), rules)
    compile_script(merged)
    found = read_script(merged)
    assert found.rules == rules
    # The customer's lines are all there, in order, after the requires as before.
    lines = merged.split("\n")
    begin = next(i for i, line in enumerate(lines) if line.startswith("# casella page: begin"))
    end = next(i for i, line in enumerate(lines) if line.startswith(END))
    assert "\n".join(lines[:begin] + lines[end + 1:]).rstrip("\r\n") == script.rstrip("\r\n")
    if "\r\n" in script:
        assert "\n" not in merged.replace("\r\n", "")     # the script's own line ends
    # Replaced by other settings, then removed: the customer's script exactly as it was.
    other = PageRules(forward=ForwardRule(("z@remote.test",), True))
    again = merge(merged, found, other)
    assert read_script(again).rules == other
    assert merge(again, read_script(again), PageRules()) == script


def test_the_section_comes_after_the_requires_and_before_the_rules() -> None:
    script = 'require ["fileinto"];\n# rule:[spam]\nif true { fileinto "Junk"; }\n'
    merged = merge(script, read_script(script), PageRules(AWAY))
    assert merged.startswith('require ["fileinto"];\n# casella page: begin')
    assert merged.endswith(f"{END}\n# rule:[spam]\nif true {{ fileinto \"Junk\"; }}\n")


def test_no_place_after_a_require_that_shares_its_line() -> None:
    script = 'require "fileinto"; fileinto "X";\n'
    found = read_script(script)
    assert found.insert_at is None
    with pytest.raises(Unreadable, match="same line"):
        merge(script, found, PageRules(AWAY))
    assert merge(script, found, PageRules()) == script       # nothing to add: untouched


SECTION = render_section(PageRules(AWAY, ForwardRule(("a@remote.test",), True)), "\n")
UNREADABLE = [
    ("begin only", SECTION.replace(END + "\n", "")),
    ("end only", SECTION.split("\n", 1)[1]),
    ("two sections", SECTION + SECTION),
    ("end before begin", f"{END}\nkeep;\n# casella page: begin\n"),
    ("a rule added inside", SECTION.replace(f"{END}", f'discard;\n{END}')),
    ("a tag added", SECTION.replace("vacation :days 7", "vacation :mime :days 7")),
    ("the :copy of one redirect gone", SECTION.replace(
        'redirect :copy "a@remote.test";',
        'redirect :copy "a@remote.test";\nredirect "b@remote.test";')),
    ("a date test changed", render_section(PageRules(VacationRule(
        True, "s", "m", 3, date(2024, 1, 1))), "\n").replace('"ge"', '"gt"')),
    ("a date that is no date", render_section(PageRules(VacationRule(
        True, "s", "m", 3, date(2024, 1, 1))), "\n").replace("2024-01-01", "2024-02-30")),
    ("the text turned into a quoted string", SECTION.replace(
        'text:\nI am away.\nBack on Monday.\n.\n', '"I am away."')),
    ("a section that does not parse", SECTION.replace("require", "require [")),
    ("requires in another order", SECTION.replace('["copy", "vacation"]',
                                                   '["vacation", "copy"]')),
]


@pytest.mark.parametrize("why,script", UNREADABLE, ids=[u[0] for u in UNREADABLE])
def test_what_the_page_did_not_write_is_unreadable(why: str, script: str) -> None:
    with pytest.raises(Unreadable):
        read_script(script)


def test_layout_and_comments_inside_the_section_do_not_matter() -> None:
    edited = SECTION.replace("redirect :copy", "# forwarded\n   redirect   :copy").replace(
        "\n", "\r\n")
    assert read_script(edited).rules == read_script(SECTION).rules


def test_what_the_customer_part_does() -> None:
    script = ('require ["vacation", "copy"];\nif header :is "x" "y" { vacation "own"; }\n'
              'redirect :copy "x@remote.test";\nif true { redirect "y@remote.test"; }\n')
    found = read_script(merge(script, read_script(script), PageRules(AWAY)))
    assert found.outside_vacation and found.outside_redirects == 2
    assert found.rules == PageRules(AWAY)


@pytest.mark.parametrize("now,replies", [
    (datetime(2024, 6, 30, 23, 59).astimezone(), False),
    (datetime(2024, 7, 1, 0, 0).astimezone(), True),
    (datetime(2024, 7, 31, 23, 59).astimezone(), True),
    (datetime(2024, 8, 1, 0, 0).astimezone(), False),
])
def test_the_dates_are_currentdate_tests_from_the_first_to_the_last_day(
        now: datetime, replies: bool) -> None:
    """RFC 5260 §5: currentdate :value "ge"/"le" "date" (RFC 5231 relational) on the server's
    local day: the first and the last day are both included."""
    rules = PageRules(VacationRule(True, "Away", "m", 7, date(2024, 7, 1), date(2024, 7, 31)),
                      ForwardRule(("a@remote.test",), True))
    script = compile_script(render_section(rules))
    view = MessageView(b"From: x@remote.test\r\nTo: bob@example.test\r\nSubject: s\r\n\r\nhi\r\n",
                       1 << 20)
    out = run(script, view, Envelope("x@remote.test", "bob@example.test"), now=now)
    assert (out.vacation is not None) is replies
    assert out.vacation is None or (out.vacation.days == 7 and out.vacation.subject == "Away")
    assert [(r.address, r.copy) for r in out.redirects] == [("a@remote.test", True)]
    assert len(out.deliveries) == 1                           # :copy: the implicit keep too


def test_off_keeps_the_text_but_never_replies() -> None:
    rules = PageRules(VacationRule(False, "Away", "m", 7))
    script = compile_script(render_section(rules))
    view = MessageView(b"To: bob@example.test\r\n\r\nhi\r\n", 1 << 20)
    out = run(script, view, Envelope("x@remote.test", "bob@example.test"))
    assert out.vacation is None and len(out.deliveries) == 1


def test_forward_without_a_copy_cancels_the_implicit_keep() -> None:
    script = compile_script(render_section(PageRules(forward=ForwardRule(
        ("a@remote.test", "b@remote.test"), False))))
    out = run(script, MessageView(b"\r\nhi\r\n", 1 << 20), Envelope("x@remote.test", "b@e.test"))
    assert [r.address for r in out.redirects] == ["a@remote.test", "b@remote.test"]
    assert out.deliveries == []


_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=60)
_LINES = st.lists(st.text(st.characters(blacklist_categories=("Cs", "Cc")) | st.just("."),
                          max_size=30), min_size=1, max_size=6)
_ADDRESS = st.from_regex(r"[a-z0-9._+-]{1,12}@[a-z]{1,8}\.test", fullmatch=True)


@given(subject=_TEXT, lines=_LINES, days=st.integers(1, 365), enabled=st.booleans(),
       first=st.none() | st.dates(), addresses=st.lists(_ADDRESS, max_size=4, unique=True),
       keep=st.booleans())
def test_any_settings_round_trip_and_compile(subject: str, lines: list[str], days: int,
                                             enabled: bool, first: date | None,
                                             addresses: list[str], keep: bool) -> None:
    message = "\n".join(lines).rstrip("\n")
    rules = PageRules(VacationRule(enabled, subject.strip(), message, days, first),
                      ForwardRule(tuple(addresses), keep) if addresses else None)
    text = render_section(rules)
    compile_script(text)
    assert read_script(text).rules == rules
