"""Sieve semantics checked before a script is stored: which commands and tests exist, their
tagged and positional arguments, `require`, and the place of each command.

Lives here: `EXTENSIONS` (what casella announces in ManageSieve's SIEVE capability and accepts
in `require`), the table of commands and tests of RFC 5228 and the extensions casella
implements (fileinto, reject/ereject RFC 5429, envelope, body RFC 5173, relational RFC 5231,
subaddress RFC 5233, copy RFC 3894, imap4flags RFC 5232, variables RFC 5229, date and index
RFC 5260, vacation RFC 5230, mailbox RFC 5490), and `compile_script`, which turns the tree of
casella.delivery.sieve.grammar into `Node`s whose arguments are sorted out, so the interpreter
never meets a malformed command. Every error names the line. Must never: do I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from casella.delivery.sieve.grammar import (
    Argument,
    Command,
    Number,
    SieveError,
    StringList,
    Tag,
    Test,
    parse,
)

COMPARATORS = ("i;octet", "i;ascii-casemap", "i;ascii-numeric")
EXTENSIONS: tuple[str, ...] = (
    "fileinto", "reject", "ereject", "envelope", "body", "relational", "subaddress", "copy",
    "imap4flags", "variables", "date", "index", "vacation", "mailbox",
    "comparator-i;octet", "comparator-i;ascii-casemap", "comparator-i;ascii-numeric",
)
RELATIONAL_OPS = ("gt", "ge", "lt", "le", "eq", "ne")
DATE_PARTS = ("year", "month", "day", "date", "julian", "hour", "minute", "second", "time",
              "iso8601", "std11", "zone", "weekday")
# RFC 5229 §3: identifier of a variable set with "set"; ${0}..${9} are match variables.
VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SET_MODIFIERS = ("lower", "upper", "lowerfirst", "upperfirst", "quotewildcard", "length")

_MATCH_TAGS = {"is": None, "contains": None, "matches": None, "count": "relational",
               "value": "relational"}
_ADDRESS_PARTS = {"all": None, "localpart": None, "domain": None, "user": "subaddress",
                  "detail": "subaddress"}


@dataclass(slots=True)
class Node:
    """A checked command or test: tagged arguments by name, positional ones in order."""

    name: str
    line: int
    tags: dict[str, object] = field(default_factory=dict)
    args: list[object] = field(default_factory=list)
    tests: list[Node] = field(default_factory=list)
    block: list[Node] | None = None


@dataclass(slots=True)
class Script:
    commands: list[Node]
    require: frozenset[str]
    size: int = 0


# What each command or test takes: (extension needed, tagged arguments, positional kinds).
# A tagged argument maps to the kind of value after it (None: the tag alone) and the extension
# it needs; the groups match/comparator/address/index are spelled out in _GROUPS.
# Positional kinds: "s" one string, "l" a string list (one string allowed), "n" a number.
@dataclass(frozen=True)
class _Spec:
    extension: str | None
    tags: dict[str, tuple[str | None, str | None]]
    groups: tuple[str, ...]
    positional: tuple[str, ...]
    optional_first: bool = False     # imap4flags: the leading variable name may be left out
    test: bool = False

_FLAGS_TAG = {"flags": ("l", "imap4flags")}

COMMANDS: dict[str, _Spec] = {
    "require": _Spec(None, {}, (), ("l",)),
    "if": _Spec(None, {}, (), ()),
    "elsif": _Spec(None, {}, (), ()),
    "else": _Spec(None, {}, (), ()),
    "stop": _Spec(None, {}, (), ()),
    "keep": _Spec(None, dict(_FLAGS_TAG), (), ()),
    "discard": _Spec(None, {}, (), ()),
    "fileinto": _Spec("fileinto", {"copy": (None, "copy"), "create": (None, "mailbox"),
                                   **_FLAGS_TAG}, (), ("s",)),
    "redirect": _Spec(None, {"copy": (None, "copy")}, (), ("s",)),
    "reject": _Spec("reject", {}, (), ("s",)),
    "ereject": _Spec("ereject", {}, (), ("s",)),
    "vacation": _Spec("vacation", {"days": ("n", None), "subject": ("s", None),
                                   "from": ("s", None), "addresses": ("l", None),
                                   "mime": (None, None), "handle": ("s", None)}, (), ("s",)),
    "set": _Spec("variables", {m: (None, None) for m in _SET_MODIFIERS}, (), ("s", "s")),
    "setflag": _Spec("imap4flags", {}, (), ("s", "l"), optional_first=True),
    "addflag": _Spec("imap4flags", {}, (), ("s", "l"), optional_first=True),
    "removeflag": _Spec("imap4flags", {}, (), ("s", "l"), optional_first=True),
}

TESTS: dict[str, _Spec] = {
    "address": _Spec(None, {}, ("comparator", "match", "address", "index"), ("l", "l"),
                     test=True),
    "envelope": _Spec("envelope", {}, ("comparator", "match", "address"), ("l", "l"),
                      test=True),
    "header": _Spec(None, {}, ("comparator", "match", "index"), ("l", "l"), test=True),
    "exists": _Spec(None, {}, (), ("l",), test=True),
    "size": _Spec(None, {"over": (None, None), "under": (None, None)}, (), ("n",), test=True),
    "allof": _Spec(None, {}, (), (), test=True),
    "anyof": _Spec(None, {}, (), (), test=True),
    "not": _Spec(None, {}, (), (), test=True),
    "true": _Spec(None, {}, (), (), test=True),
    "false": _Spec(None, {}, (), (), test=True),
    "body": _Spec("body", {"raw": (None, None), "content": ("l", None), "text": (None, None)},
                  ("comparator", "match"), ("l",), test=True),
    "string": _Spec("variables", {}, ("comparator", "match"), ("l", "l"), test=True),
    "date": _Spec("date", {"zone": ("s", None), "originalzone": (None, None)},
                  ("comparator", "match", "index"), ("s", "s", "l"), test=True),
    "currentdate": _Spec("date", {"zone": ("s", None)}, ("comparator", "match"), ("s", "l"),
                         test=True),
    "hasflag": _Spec("imap4flags", {}, ("comparator", "match"), ("l", "l"),
                     optional_first=True, test=True),
    "mailboxexists": _Spec("mailbox", {}, (), ("l",), test=True),
}


def _strings(arg: Argument) -> tuple[str, ...]:
    assert isinstance(arg, StringList)
    return arg.values


class _Checker:
    def __init__(self, max_string: int) -> None:
        self.require: set[str] = set()
        self.max_string = max_string

    def need(self, ext: str | None, what: str, line: int) -> None:
        if ext is not None and ext not in self.require:
            raise SieveError(f'{what} needs require "{ext}"', line)

    def value(self, kind: str, arg: Argument | None, what: str, line: int) -> object:
        if kind == "n":
            if not isinstance(arg, Number):
                raise SieveError(f"{what} expects a number", line)
            return arg.value
        if not isinstance(arg, StringList):
            raise SieveError(f"{what} expects {'a string' if kind == 's' else 'a string list'}",
                             line)
        for s in arg.values:
            if len(s.encode("utf-8")) > self.max_string:
                raise SieveError(f"a string of {what} is longer than {self.max_string} bytes",
                                 arg.line)
        if kind == "s":
            if not arg.single and len(arg.values) != 1:
                raise SieveError(f"{what} expects a single string, not a list", arg.line)
            return arg.values[0]
        return arg.values

    def node(self, name: str, spec: _Spec, args: list[Argument], line: int) -> Node:
        self.need(spec.extension, f"{name!r}", line)
        node = Node(name, line)
        positional: list[Argument] = []
        i = 0
        while i < len(args):
            arg = args[i]
            i += 1
            if not isinstance(arg, Tag):
                positional.append(arg)
                continue
            if positional:
                raise SieveError(f"the tag :{arg.name} of {name} must come before its other "
                                 "arguments", arg.line)
            tag = arg.name
            if tag in node.tags or (tag in _MATCH_TAGS and "match" in node.tags) or (
                    tag in _ADDRESS_PARTS and "address" in node.tags):
                raise SieveError(f"{name} has the tag :{tag} (or one like it) twice", arg.line)
            if tag in _MATCH_TAGS and "match" in spec.groups:
                self.need(_MATCH_TAGS[tag], f":{tag}", arg.line)
                if tag in ("count", "value"):
                    op = self.value("s", args[i] if i < len(args) else None, f":{tag}",
                                    arg.line)
                    i += 1
                    if str(op).lower() not in RELATIONAL_OPS:
                        raise SieveError(f":{tag} {op!r}: expected one of "
                                         f"{', '.join(RELATIONAL_OPS)}", arg.line)
                    node.tags["match"] = (tag, str(op).lower())
                else:
                    node.tags["match"] = (tag, None)
            elif tag == "comparator" and "comparator" in spec.groups:
                comp = str(self.value("s", args[i] if i < len(args) else None, ":comparator",
                                      arg.line)).lower()
                i += 1
                if comp not in COMPARATORS:
                    raise SieveError(f"unknown comparator {comp!r}", arg.line)
                if comp == "i;ascii-numeric":
                    self.need("comparator-i;ascii-numeric", "the comparator i;ascii-numeric",
                              arg.line)
                node.tags["comparator"] = comp
            elif tag in _ADDRESS_PARTS and "address" in spec.groups:
                self.need(_ADDRESS_PARTS[tag], f":{tag}", arg.line)
                node.tags["address"] = tag
            elif tag in ("index", "last") and "index" in spec.groups:
                self.need("index", f":{tag}", arg.line)
                if tag == "index":
                    n = self.value("n", args[i] if i < len(args) else None, ":index", arg.line)
                    i += 1
                    if not isinstance(n, int) or n < 1:
                        raise SieveError(":index must be 1 or more", arg.line)
                    node.tags["index"] = n
                else:
                    node.tags["last"] = True
            elif tag in spec.tags:
                kind, ext = spec.tags[tag]
                self.need(ext, f":{tag}", arg.line)
                if kind is None:
                    node.tags[tag] = True
                else:
                    node.tags[tag] = self.value(kind, args[i] if i < len(args) else None,
                                                f":{tag}", arg.line)
                    i += 1
            else:
                raise SieveError(f"{name} has no tag :{tag}", arg.line)
        want = list(spec.positional)
        if spec.optional_first and len(positional) == len(want) - 1:
            want = want[1:]
            node.tags["variable"] = None
        if len(positional) != len(want):
            raise SieveError(f"{name} takes {len(want)} argument"
                             f"{'' if len(want) == 1 else 's'} after its tags, not "
                             f"{len(positional)}", line)
        values = [self.value(k, a, name, line) for k, a in zip(want, positional)]
        if spec.optional_first and "variable" not in node.tags:
            node.tags["variable"] = values.pop(0)
        node.args = values
        self.semantics(node)
        return node

    def semantics(self, node: Node) -> None:
        """Rules beyond the shape of the arguments."""
        name, line = node.name, node.line
        if "last" in node.tags and "index" not in node.tags:
            raise SieveError(":last needs :index", line)
        comparator = node.tags.get("comparator")
        match = node.tags.get("match", ("is", None))
        if comparator == "i;ascii-numeric" and match[0] in ("contains", "matches"):  # type: ignore[index]
            raise SieveError(f"the comparator i;ascii-numeric cannot do :{match[0]}",  # type: ignore[index]
                             line)
        if name == "size" and ("over" in node.tags) == ("under" in node.tags):
            raise SieveError("size needs exactly one of :over and :under", line)
        if name == "body" and sum(t in node.tags for t in ("raw", "content", "text")) > 1:
            raise SieveError("body takes only one of :raw, :content and :text", line)
        if name == "date" and "zone" in node.tags and "originalzone" in node.tags:
            raise SieveError("date takes :zone or :originalzone, not both", line)
        if name in ("date", "currentdate"):
            part = str(node.args[-2]).lower()
            if part not in DATE_PARTS:
                raise SieveError(f"unknown date part {part!r}", line)
            node.args[-2] = part
            zone = node.tags.get("zone")
            if zone is not None and not re.fullmatch(r"[+-]\d{4}", str(zone)):
                raise SieveError(f":zone {zone!r}: expected +hhmm or -hhmm", line)
        if name == "set":
            var = str(node.args[0])
            if "${" not in var and not VARIABLE_NAME.match(var):
                raise SieveError(f"{var!r} is not a variable name", line)
        if name == "vacation":
            days = node.tags.get("days")
            if days is not None and int(days) < 1:  # type: ignore[call-overload]
                raise SieveError(":days must be 1 or more", line)
        if name in ("fileinto", "redirect", "reject", "ereject") and not node.args[0] and \
                name != "reject":
            raise SieveError(f"{name} needs a non-empty argument", line)


def _check_block(checker: _Checker, commands: list[Command], top: bool) -> list[Node]:
    out: list[Node] = []
    previous: str | None = None
    seen_other = False
    for cmd in commands:
        spec = COMMANDS.get(cmd.name)
        if spec is None:
            if cmd.name in TESTS:
                raise SieveError(f"{cmd.name!r} is a test, not a command", cmd.line)
            raise SieveError(f"unknown command {cmd.name!r}", cmd.line)
        if cmd.name == "require":
            if not top or seen_other:
                raise SieveError("require must come before every other command", cmd.line)
            if cmd.test or cmd.block is not None or len(cmd.args) != 1:
                raise SieveError("require takes one string list and ends with ';'", cmd.line)
            for ext in checker.value("l", cmd.args[0], "require", cmd.line):  # type: ignore[union-attr]
                if ext not in EXTENSIONS:
                    raise SieveError(f"unsupported extension {ext!r}", cmd.line)
                checker.require.add(ext)
            previous = "require"
            continue
        seen_other = True
        if cmd.name in ("elsif", "else") and previous not in ("if", "elsif"):
            raise SieveError(f"{cmd.name} without an if before it", cmd.line)
        control = cmd.name in ("if", "elsif", "else")
        if control:
            if cmd.args:
                raise SieveError(f"{cmd.name} takes no arguments but a test", cmd.line)
            if cmd.name == "else" and cmd.test:
                raise SieveError("else takes no test", cmd.line)
            if cmd.name != "else" and (len(cmd.test) != 1 or cmd.test_list):
                raise SieveError(f"{cmd.name} needs exactly one test", cmd.line)
            if cmd.block is None:
                raise SieveError(f"{cmd.name} needs a block in braces", cmd.line)
        else:
            if cmd.test:
                raise SieveError(f"expected ';' after {cmd.name} (it takes no test)", cmd.line)
            if cmd.block is not None:
                raise SieveError(f"{cmd.name} takes no block; end it with ';'", cmd.line)
        node = checker.node(cmd.name, spec, cmd.args, cmd.line)
        if control:
            node.tests = [_check_test(checker, t) for t in cmd.test]
            node.block = _check_block(checker, cmd.block or [], False)
        out.append(node)
        previous = cmd.name
    return out


def _check_test(checker: _Checker, test: Test) -> Node:
    spec = TESTS.get(test.name)
    if spec is None:
        if test.name in COMMANDS:
            raise SieveError(f"{test.name!r} is a command, not a test", test.line)
        raise SieveError(f"unknown test {test.name!r}", test.line)
    node = checker.node(test.name, spec, test.args, test.line)
    if test.name in ("allof", "anyof"):
        if not test.tests:
            raise SieveError(f"{test.name} needs a list of tests in parentheses", test.line)
    elif test.name == "not":
        if len(test.tests) != 1:
            raise SieveError("not needs exactly one test", test.line)
    elif test.tests:
        raise SieveError(f"{test.name} takes no tests", test.line)
    node.tests = [_check_test(checker, t) for t in test.tests]
    return node


def compile_script(script: bytes | str, *, max_size: int = 65536, max_nesting: int = 15,
                   max_commands: int = 2000, max_string: int = 65536) -> Script:
    """Parse and check a script; SieveError (with the line) when it is not acceptable."""
    raw = script.encode("utf-8") if isinstance(script, str) else script
    if len(raw) > max_size:
        raise SieveError(f"the script is {len(raw)} bytes, more than the {max_size} allowed")
    tree = parse(raw, max_nesting=max_nesting, max_commands=max_commands)
    checker = _Checker(max_string)
    commands = _check_block(checker, tree, True)
    return Script(commands, frozenset(checker.require), len(raw))
