"""The part of an account's Sieve script that the customer page writes: a vacation reply
(RFC 5230, its dates as `currentdate` tests of RFC 5260) and a forward (`redirect`, with
`:copy` of RFC 3894 when a copy stays), between two comment lines, as Roundcube's managesieve
and vacation plugins keep theirs. Everything outside those lines belongs to the customer and
their mail programs and is never changed.

Lives here: `PageRules` (with `VacationRule` and `ForwardRule`), `render_section` (the settings
as the lines of the section), `read_script` (a script's text -> the settings in its section,
where the section is or where one would go, and what the rest of the script does that the
page must know about) and `merge` (a script with its section replaced, added or removed). A
section is read back only when it is exactly what the page would write for the settings found
in it (comments and layout aside); anything else is `Unreadable`, and the page then leaves the
script alone. Must never: do I/O, or change a byte of the script outside the section.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date

from casella.delivery.sieve.grammar import Command, Number, SieveError, StringList, Tag, Test, parse

BEGIN = "# casella page: begin"
END = "# casella page: end"
_BEGIN_LINE = (BEGIN + " (vacation reply and forwarding, written by the customer page; change "
               "them there)")
_HINT = ("# The page rewrites only the lines up to the end marker; the rest of the script is "
         "yours.")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# The script was compiled with the server's bounds before it gets here; these only keep the
# grammar's own recursion bounded.
_MAX_NESTING = 100
_MAX_COMMANDS = 1_000_000
# How far past the last `require` the end of that command is looked for.
_REQUIRE_SPAN = 200


class Unreadable(Exception):
    """The script cannot be edited by the page; `str()` is a sentence for the customer."""


@dataclass(frozen=True, slots=True)
class VacationRule:
    enabled: bool
    subject: str                  # "" : no :subject ("Auto: " and the original subject)
    message: str                  # lines joined with "\n", no trailing newline
    days: int
    first: date | None = None     # the first and last day it answers (server's time zone)
    last: date | None = None


@dataclass(frozen=True, slots=True)
class ForwardRule:
    addresses: tuple[str, ...]
    keep: bool                    # a copy stays in the mailbox (redirect :copy)


@dataclass(frozen=True, slots=True)
class PageRules:
    vacation: VacationRule | None = None
    forward: ForwardRule | None = None

    @property
    def empty(self) -> bool:
        return self.vacation is None and self.forward is None


@dataclass(frozen=True, slots=True)
class Found:
    """What `read_script` found."""

    rules: PageRules
    span: tuple[int, int] | None      # line indexes of the begin and end markers
    insert_at: int | None             # no section: the line a new one goes before (None:
                                      # no place for one)
    outside_vacation: bool            # the customer's own part has a vacation command
    outside_redirects: int            # and this many redirect commands


# --- writing ---------------------------------------------------------------------------------

def quote(value: str) -> str:
    """A Sieve quoted string (RFC 5228 §2.4.2: only backslash and quote are escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _text(value: str) -> list[str]:
    """The lines of a `text:` multi-line string after its first line: each dot-stuffed, then
    a line with a single '.' (RFC 5228 §2.4.2)."""
    return [("." + line if line.startswith(".") else line) for line in value.split("\n")] + ["."]


def _requires(rules: PageRules) -> list[str]:
    need = []
    v, f = rules.vacation, rules.forward
    if f is not None and f.keep:
        need.append("copy")
    if v is not None and (v.first is not None or v.last is not None):
        need += ["date", "relational"]
    if v is not None:
        need.append("vacation")
    return need


def _vacation_lines(v: VacationRule) -> list[str]:
    tests = []
    if v.first is not None:
        tests.append(f'currentdate :value "ge" "date" "{v.first.isoformat()}"')
    if v.last is not None:
        tests.append(f'currentdate :value "le" "date" "{v.last.isoformat()}"')
    outer = "" if v.enabled else "  "
    pad = outer + ("  " if tests else "")
    head = f"{pad}vacation :days {v.days}"
    if v.subject:
        head += f" :subject {quote(v.subject)}"
    # The text's own lines are never indented: they are the reply as written.
    command = [f"{head} text:", *_text(v.message), f"{pad};"]
    if len(tests) == 1:
        command = [f"{outer}if {tests[0]} {{", *command, f"{outer}}}"]
    elif tests:
        command = [f"{outer}if allof ({tests[0]},", f"{outer}          {tests[1]}) {{",
                   *command, f"{outer}}}"]
    if not v.enabled:
        # Off, but the text is kept for the next time (Roundcube keeps a disabled rule so too).
        command = ["if false {", *command, "}"]
    return command


def render_section(rules: PageRules, nl: str = "\r\n") -> str:
    """The section's lines, markers included, each ended by `nl`; "" when there is nothing
    to write."""
    if rules.empty:
        return ""
    out = [_BEGIN_LINE, _HINT]
    need = _requires(rules)
    if need:
        out.append(f"require [{', '.join(quote(n) for n in need)}];")
    if rules.vacation is not None:
        state = "on" if rules.vacation.enabled else "off (kept for the next time)"
        out.append(f"# Vacation reply: {state}.")
        out += _vacation_lines(rules.vacation)
    if rules.forward is not None:
        out.append("# Forward my mail" + (", keeping a copy here." if rules.forward.keep
                                          else ", without keeping a copy here."))
        copy = " :copy" if rules.forward.keep else ""
        out += [f"redirect{copy} {quote(a)};" for a in rules.forward.addresses]
    out.append(END)
    return nl.join(out) + nl


# --- reading ---------------------------------------------------------------------------------

def _lines(text: str) -> list[str]:
    """The lines of a script, each with its own line end (only LF ends a line in Sieve)."""
    return re.findall(r"[^\n]*\n|[^\n]+$", text)


def _shape(commands: list[Command]) -> tuple[object, ...]:
    """A command tree without line numbers and comments: what the script means."""
    def arg(a: Tag | Number | StringList) -> tuple[object, ...]:
        if isinstance(a, Tag):
            return ("tag", a.name)
        if isinstance(a, Number):
            return ("num", a.value)
        return ("str", a.values, a.single)

    def test(t: Test) -> tuple[object, ...]:
        return (t.name, tuple(arg(a) for a in t.args), tuple(test(x) for x in t.tests))

    return tuple((c.name, tuple(arg(a) for a in c.args), tuple(test(t) for t in c.test),
                  c.test_list, None if c.block is None else _shape(c.block))
                 for c in commands)


def _walk(commands: list[Command]) -> Iterator[Command]:
    for c in commands:
        yield c
        if c.block:
            yield from _walk(c.block)


def _strings(args: list[Tag | Number | StringList]) -> list[str]:
    return [v for a in args if isinstance(a, StringList) for v in a.values]


def _tag_value(args: list[Tag | Number | StringList], name: str) -> Tag | Number | StringList | None:
    for i, a in enumerate(args):
        if isinstance(a, Tag) and a.name == name:
            return args[i + 1] if i + 1 < len(args) else None
    return None


def _date(value: str) -> date:
    if not _DATE.fullmatch(value):
        raise ValueError(value)
    return date.fromisoformat(value)


def _vacation_of(cmd: Command, enabled: bool = True) -> VacationRule:
    """The vacation rule a command of the section holds (its shape is checked afterwards)."""
    if cmd.name == "vacation":
        days = _tag_value(cmd.args, "days")
        subject = _tag_value(cmd.args, "subject")
        reason = cmd.args[-1] if cmd.args else None
        if not isinstance(days, Number) or not isinstance(reason, StringList) or (
                subject is not None and not isinstance(subject, StringList)):
            raise ValueError("vacation")
        message = reason.values[0].replace("\r\n", "\n").removesuffix("\n")
        return VacationRule(enabled, subject.values[0] if subject else "", message, days.value)
    if cmd.name != "if" or len(cmd.test) != 1 or not cmd.block or len(cmd.block) != 1:
        raise ValueError(cmd.name)
    test = cmd.test[0]
    if test.name == "false" and enabled:
        return _vacation_of(cmd.block[0], enabled=False)
    tests = test.tests if test.name == "allof" else [test]
    inner = _vacation_of(cmd.block[0], enabled)
    if inner.first is not None or inner.last is not None:
        raise ValueError("dates twice")
    first = last = None
    for t in tests:
        values = _strings(t.args)
        if t.name != "currentdate" or len(values) != 3:
            raise ValueError(t.name)
        if values[0] == "ge":
            first = _date(values[2])
        elif values[0] == "le":
            last = _date(values[2])
        else:
            raise ValueError(values[0])
    return VacationRule(inner.enabled, inner.subject, inner.message, inner.days, first, last)


def _recognize(commands: list[Command]) -> PageRules:
    i = 1 if commands and commands[0].name == "require" else 0
    vacation = None
    if i < len(commands) and commands[i].name in ("vacation", "if"):
        vacation = _vacation_of(commands[i])
        i += 1
    addresses: list[str] = []
    copies = set()
    while i < len(commands) and commands[i].name == "redirect":
        cmd = commands[i]
        copies.add(any(isinstance(a, Tag) and a.name == "copy" for a in cmd.args))
        values = _strings(cmd.args)
        if len(values) != 1:
            raise ValueError("redirect")
        addresses.append(values[0])
        i += 1
    if i != len(commands):
        raise ValueError(commands[i].name)
    forward = ForwardRule(tuple(addresses), copies == {True}) if addresses else None
    return PageRules(vacation, forward)


def _insert_at(lines: list[str], commands: list[Command]) -> int | None:
    """The line a new section goes before: after the script's leading `require` commands
    (RFC 5228 §3.2: they come before every other command), or None when the last of them
    shares its last line with another command."""
    requires = 0
    while requires < len(commands) and commands[requires].name == "require":
        requires += 1
    if requires == 0:
        return 0
    if requires == len(commands):
        return len(lines)
    last = commands[requires - 1].line          # 1-based: the line the last require starts on
    for k in range(last, min(len(lines), last + _REQUIRE_SPAN) + 1):
        try:
            prefix = parse("".join(lines[:k]), max_nesting=_MAX_NESTING,
                           max_commands=_MAX_COMMANDS)
        except SieveError:
            continue                            # the require (or a comment) goes on
        return k if len(prefix) == requires else None
    return None


def read_script(text: str) -> Found:
    """The page's settings in a script and where its section is. Unreadable when the markers
    are broken or the section holds anything the page did not write. The script is expected
    to have compiled already (the caller checks it with the server's bounds)."""
    lines = _lines(text)
    begins = [i for i, line in enumerate(lines) if line.strip().startswith(BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.strip().startswith(END)]
    span: tuple[int, int] | None = None
    if begins or ends:
        if len(begins) != 1 or len(ends) != 1 or begins[0] > ends[0]:
            raise Unreadable("the lines that mark the page's part of your filter script are "
                             "missing, repeated or out of order")
        span = (begins[0], ends[0])
    try:
        outside = parse("".join(lines[:span[0]] + lines[span[1] + 1:]) if span else text,
                        max_nesting=_MAX_NESTING, max_commands=_MAX_COMMANDS)
    except SieveError as exc:
        raise Unreadable(f"your filter script does not parse without the page's part ({exc})"
                         ) from None
    own = list(_walk(outside))
    rules = PageRules()
    insert_at = None
    if span is None:
        insert_at = _insert_at(lines, outside)
    else:
        section = "".join(lines[span[0] + 1:span[1]])
        changed = Unreadable("the page's part of your filter script was changed by hand or by "
                             "a mail program, so the page cannot read it back")
        try:
            commands = parse(section, max_nesting=_MAX_NESTING, max_commands=_MAX_COMMANDS)
            rules = _recognize(commands)
            again = parse(render_section(rules, "\n"), max_nesting=_MAX_NESTING,
                          max_commands=_MAX_COMMANDS)
        except (SieveError, ValueError, IndexError):
            raise changed from None
        if _shape(again) != _shape(commands):
            raise changed
    return Found(rules, span, insert_at,
                 outside_vacation=any(c.name == "vacation" for c in own),
                 outside_redirects=sum(c.name == "redirect" for c in own))


def merge(text: str, found: Found, rules: PageRules) -> str:
    """The script with the page's section set to `rules` (removed when they are empty), in the
    script's own line ends; every other line exactly as it was."""
    nl = "\r\n" if "\r\n" in text or not text else "\n"
    section = render_section(rules, nl)
    lines = _lines(text)
    if found.span is not None:
        begin, end = found.span
        tail = lines[end + 1:]
        last = lines[end]
        if section and not last.endswith("\n"):
            section = section.removesuffix(nl)      # the script ended on the end marker
        return "".join(lines[:begin] + ([section] if section else []) + tail)
    if not section:
        return text
    if found.insert_at is None:
        raise Unreadable("your filter script has a rule on the same line as its last require "
                         "command, so the page has no place for its part; put that rule on a "
                         "line of its own")
    before = lines[:found.insert_at]
    if before and not before[-1].endswith("\n"):
        before[-1] += nl
    return "".join(before + [section] + lines[found.insert_at:])
