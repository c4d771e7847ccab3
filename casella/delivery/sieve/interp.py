"""Running a checked Sieve script against one message for one recipient: tests, variables,
flags, and the list of actions the script asks for.

Lives here: `Limits` (the bounds of one run: steps, time, actions, redirects, variables),
`run` (script + message + envelope -> `Outcome`), the action records the delivery layer carries
out (`FileInto`, `Redirect`, `Reject`, `Vacation`, `Discard`), the comparators of RFC 4790
(i;octet, i;ascii-casemap, i;ascii-numeric), the match types (:is, :contains, :matches with the
non-greedy wildcards of RFC 5229 §3.2 and their ${1}... captures, :count/:value of RFC 5231)
and the date parts of RFC 5260. A run never does anything: it only says what to do, so a run
that fails (a runtime error, a limit crossed) changes nothing and the caller keeps the message
(RFC 5228 §2.10.6). Must never: do I/O, recurse without a bound, or raise anything but
SieveError from `run`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime

from casella.delivery.sieve.grammar import SieveError
from casella.delivery.sieve.message import Envelope, MessageView
from casella.delivery.sieve.validate import VARIABLE_NAME, Node, Script


@dataclass(frozen=True, slots=True)
class Limits:
    max_steps: int = 100_000          # tests, commands and compared values, all together
    max_run_time: float = 2.0         # seconds of one run
    max_actions: int = 32             # fileinto, redirect, vacation... of one run
    max_redirects: int = 4            # redirect actions of one run (RFC 5228 §4.2)
    max_variables: int = 128
    max_variable_size: int = 4096     # RFC 5229 §5: at least 4000 octets; longer is cut


@dataclass(frozen=True, slots=True)
class FileInto:
    mailbox: str                      # "" = the recipient's own default (keep)
    flags: tuple[str, ...]
    create: bool = False


@dataclass(frozen=True, slots=True)
class Redirect:
    address: str
    copy: bool = False


@dataclass(frozen=True, slots=True)
class Reject:
    reason: str
    extended: bool                    # ereject (RFC 5429 §2.1)


@dataclass(frozen=True, slots=True)
class Vacation:
    reason: str
    days: int | None
    subject: str | None
    from_: str | None
    addresses: tuple[str, ...]
    mime: bool
    handle: str


@dataclass(frozen=True, slots=True)
class Discard:
    pass


Action = FileInto | Redirect | Reject | Vacation | Discard


@dataclass(slots=True)
class Outcome:
    """What the script asked for. `deliveries` include the implicit keep when it applies."""

    deliveries: list[FileInto] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)
    reject: Reject | None = None
    vacation: Vacation | None = None
    discarded: bool = False


class _Stop(Exception):
    pass


# --- comparators and match types ----------------------------------------------------------

def _casemap(s: str) -> str:
    return s.translate(_ASCII_LOWER)


_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}


def _numeric(s: str) -> int | None:
    """RFC 4790 §9.1: the leading digits; None (positive infinity) when there are none."""
    i = 0
    while i < len(s) and "0" <= s[i] <= "9":
        i += 1
    return int(s[:i]) if i else None


def _order(comparator: str, a: str, b: str) -> int:
    if comparator == "i;ascii-numeric":
        x, y = _numeric(a), _numeric(b)
        if x == y:
            return 0
        if x is None:
            return 1
        if y is None:
            return -1
        return -1 if x < y else 1
    if comparator == "i;ascii-casemap":
        a, b = _casemap(a), _casemap(b)
    return (a > b) - (a < b)


_OPS = {"gt": lambda c: c > 0, "ge": lambda c: c >= 0, "lt": lambda c: c < 0,
        "le": lambda c: c <= 0, "eq": lambda c: c == 0, "ne": lambda c: c != 0}


def _pattern(key: str) -> list[str]:
    """A :matches key as items: "*", "?" or one literal character (RFC 5228 §2.7.1)."""
    items: list[str] = []
    i = 0
    while i < len(key):
        c = key[i]
        if c == "\\" and i + 1 < len(key):
            items.append("\\" + key[i + 1])
            i += 2
            continue
        items.append(c if c in "*?" else "\\" + c)
        i += 1
    return items


def glob(key: str, text: str, casemap: bool) -> list[str] | None:
    """Match `text` against a :matches key; the wildcards' matches in order, or None.
    Each "*" matches as little as possible (RFC 5229 §3.2). The classic single-backtrack
    algorithm: no recursion, time bounded by len(key) * len(text)."""
    items = _pattern(key)
    cmp_text = _casemap(text) if casemap else text
    lits = [(_casemap(it[1]) if casemap else it[1]) if it.startswith("\\") else None
            for it in items]
    wild = {}
    for i, it in enumerate(items):
        if it in ("*", "?"):
            wild[i] = len(wild)
    caps: list[tuple[int, int]] = [(0, 0)] * len(wild)
    p = t = 0
    star_p, star_start, star_t = -1, 0, 0
    n = len(text)
    while t < n:
        if p < len(items) and items[p] == "*":
            star_p, star_start, star_t = p, t, t
            caps[wild[p]] = (t, t)
            p += 1
        elif p < len(items) and (items[p] == "?" or lits[p] == cmp_text[t]):
            if items[p] == "?":
                caps[wild[p]] = (t, t + 1)
            p += 1
            t += 1
        elif star_p >= 0:
            star_t += 1
            caps[wild[star_p]] = (star_start, star_t)
            p, t = star_p + 1, star_t
        else:
            return None
    while p < len(items) and items[p] == "*":
        caps[wild[p]] = (t, t)
        p += 1
    if p != len(items):
        return None
    return [text[a:b] for a, b in caps]


# --- the run ---------------------------------------------------------------------------------

_DEFAULT_MATCH = ("is", None)


class _Run:
    def __init__(self, script: Script, msg: MessageView, env: Envelope, limits: Limits,
                 now: datetime, mailboxes: frozenset[str]) -> None:
        self.script = script
        self.msg = msg
        self.env = env
        self.limits = limits
        self.now = now
        self.mailboxes = mailboxes
        self.variables = "variables" in script.require
        self.vars: dict[str, str] = {}
        self.matches: list[str] = []
        self.flags: list[str] = []
        self.steps = 0
        self.deadline = time.monotonic() + limits.max_run_time
        self.out = Outcome()
        self.implicit_keep = True
        self.actions = 0
        self.kept = False

    # bounds
    def step(self, n: int = 1) -> None:
        self.steps += n
        if self.steps > self.limits.max_steps:
            raise SieveError(f"the script ran more than {self.limits.max_steps} steps")
        if self.steps & 0xFF == 0 and time.monotonic() > self.deadline:
            raise SieveError(f"the script ran longer than {self.limits.max_run_time:g} s")

    def action(self, line: int) -> None:
        self.actions += 1
        if self.actions > self.limits.max_actions:
            raise SieveError(f"more than {self.limits.max_actions} actions", line)

    # variables (RFC 5229 §3)
    def expand(self, s: str) -> str:
        if not self.variables or "${" not in s:
            return s
        out: list[str] = []
        i = 0
        while True:
            j = s.find("${", i)
            if j < 0:
                out.append(s[i:])
                break
            k = s.find("}", j + 2)
            if k < 0:
                out.append(s[i:])
                break
            name = s[j + 2:k]
            out.append(s[i:j])
            if name.isdigit():
                idx = int(name)
                out.append(self.matches[idx] if idx < len(self.matches) else "")
            elif VARIABLE_NAME.match(name):
                out.append(self.vars.get(name.lower(), ""))
            else:
                out.append(s[j:k + 1])      # not a variable reference: left as written
            i = k + 1
        return "".join(out)

    def strings(self, values: object) -> list[str]:
        assert isinstance(values, (tuple, list))
        return [self.expand(v) for v in values]

    def set_var(self, name: str, value: str, line: int) -> None:
        key = name.lower()
        if key not in self.vars and len(self.vars) >= self.limits.max_variables:
            raise SieveError(f"more than {self.limits.max_variables} variables", line)
        self.vars[key] = _cut(value, self.limits.max_variable_size)

    # matching
    def match(self, node: Node, values: list[str], keys: list[str]) -> bool:
        comparator = str(node.tags.get("comparator", "i;ascii-casemap"))
        mtype, op = node.tags.get("match", _DEFAULT_MATCH)  # type: ignore[misc]
        if mtype == "count":
            count = str(len(values))
            return any(_OPS[op](_order(comparator, count, k)) for k in keys)
        for v in values:
            for k in keys:
                self.step(1 + (len(v) * max(len(k), 1)) // 4096)
                if mtype == "is":
                    if _order(comparator, v, k) == 0:
                        return True
                elif mtype == "contains":
                    if comparator == "i;ascii-casemap":
                        if _casemap(k) in _casemap(v):
                            return True
                    elif k in v:
                        return True
                elif mtype == "matches":
                    caps = glob(k, v, comparator == "i;ascii-casemap")
                    if caps is not None:
                        if self.variables:
                            self.matches = [_cut(x, self.limits.max_variable_size)
                                            for x in [v, *caps]]
                        return True
                elif mtype == "value" and _OPS[op](_order(comparator, v, k)):
                    return True
        return False

    # tests
    def test(self, node: Node) -> bool:
        self.step()
        name = node.name
        if name == "true":
            return True
        if name == "false":
            return False
        if name == "not":
            return not self.test(node.tests[0])
        if name == "allof":
            return all(self.test(t) for t in node.tests)
        if name == "anyof":
            return any(self.test(t) for t in node.tests)
        if name == "size":
            limit = int(node.args[0])  # type: ignore[call-overload]
            return self.msg.size > limit if "over" in node.tags else self.msg.size < limit
        if name == "exists":
            return all(self.msg.header(h) for h in self.strings(node.args[0]))
        if name == "header":
            values: list[str] = []
            for h in self.strings(node.args[0]):
                values += _pick(self.msg.header(h), node)
            return self.match(node, values, self.strings(node.args[1]))
        if name == "address":
            values = []
            for h in self.strings(node.args[0]):
                for addrs in _pick(self.msg.addresses(h), node):
                    values += [p for a in addrs if (p := _part(a, node)) is not None]
            return self.match(node, values, self.strings(node.args[1]))
        if name == "envelope":
            values = []
            for h in self.strings(node.args[0]):
                h = h.lower()
                addr = self.env.sender if h == "from" else self.env.recipient if h == "to" \
                    else None
                if addr is not None:
                    p = _part(addr, node)
                    if p is not None:
                        values.append(p)
            return self.match(node, values, self.strings(node.args[1]))
        if name == "string":
            values = [v for v in self.strings(node.args[0])]
            if node.tags.get("match", _DEFAULT_MATCH)[0] == "count":  # type: ignore[index]
                values = [v for v in values if v]
            return self.match(node, values, self.strings(node.args[1]))
        if name == "body":
            return self.match(node, self.body(node), self.strings(node.args[0]))
        if name == "date":
            header, part = self.expand(str(node.args[0])), str(node.args[1])
            dates = []
            for value in _pick(self.msg.header(header), node, first=True):
                when = _parse_date(value)
                if when is not None:
                    dates.append(_date_part(self.zoned(when, node), part))
            return self.match(node, dates, self.strings(node.args[2]))
        if name == "currentdate":
            value = _date_part(self.zoned(self.now, node), str(node.args[0]))
            return self.match(node, [value], self.strings(node.args[1]))
        if name == "hasflag":
            names = self.variable_flags(node)
            return self.match(node, names, self.strings(node.args[0]))
        if name == "mailboxexists":
            return all(_known_mailbox(m, self.mailboxes) for m in self.strings(node.args[0]))
        raise SieveError(f"unknown test {name!r}", node.line)

    def zoned(self, when: datetime, node: Node) -> datetime:
        zone = node.tags.get("zone")
        if zone is not None:
            z = str(zone)
            sign = -1 if z[0] == "-" else 1
            offset = timedelta(hours=int(z[1:3]), minutes=int(z[3:5])) * sign
            return when.astimezone(timezone(offset))
        if "originalzone" in node.tags:
            return when
        # RFC 5260 §4.2: without :zone or :originalzone, the local time zone of the server.
        return when.astimezone()

    def body(self, node: Node) -> list[str]:
        if "raw" in node.tags:
            return [self.msg.raw_body]
        types = self.strings(node.tags["content"]) if "content" in node.tags else ["text"]
        out = []
        for ctype, text in self.msg.parts():
            main = ctype.split("/", 1)[0]
            for t in types:
                t = t.lower()
                if t == "" or t == ctype or ("/" not in t and t == main):
                    out.append(text)
                    break
        return out

    def variable_flags(self, node: Node) -> list[str]:
        var = node.tags.get("variable")
        if var is None:
            return list(self.flags)
        out: list[str] = []
        for name in self.strings(var if isinstance(var, (tuple, list)) else (var,)):
            out += self.vars.get(name.lower(), "").split()
        return out

    # commands
    def block(self, nodes: list[Node]) -> None:
        taken = False
        for node in nodes:
            self.step()
            name = node.name
            if name == "if":
                taken = self.test(node.tests[0])
                if taken:
                    self.block(node.block or [])
                continue
            if name == "elsif":
                if not taken:
                    taken = self.test(node.tests[0])
                    if taken:
                        self.block(node.block or [])
                continue
            if name == "else":
                if not taken:
                    self.block(node.block or [])
                continue
            self.command(node)

    def command(self, node: Node) -> None:
        name, line = node.name, node.line
        out = self.out
        if name == "stop":
            raise _Stop()
        if name == "keep":
            self.deliver(FileInto("", self.flag_arg(node)), line)
            self.implicit_keep = False
        elif name == "discard":
            out.discarded = True
            self.implicit_keep = False
        elif name == "fileinto":
            mailbox = self.expand(str(node.args[0]))
            self.deliver(FileInto(mailbox, self.flag_arg(node), "create" in node.tags), line)
            if "copy" not in node.tags:
                self.implicit_keep = False
        elif name == "redirect":
            address = self.expand(str(node.args[0])).strip()
            if not address or "@" not in address:
                raise SieveError(f"redirect to {address!r}: not an address", line)
            if all(r.address.lower() != address.lower() for r in out.redirects):
                if len(out.redirects) >= self.limits.max_redirects:
                    raise SieveError(f"more than {self.limits.max_redirects} redirects", line)
                self.action(line)
                out.redirects.append(Redirect(address, "copy" in node.tags))
            if "copy" not in node.tags:
                self.implicit_keep = False
        elif name in ("reject", "ereject"):
            if out.reject is not None:
                raise SieveError("reject used twice", line)
            self.action(line)
            out.reject = Reject(self.expand(str(node.args[0])), name == "ereject")
            self.implicit_keep = False
        elif name == "vacation":
            if out.vacation is not None:
                raise SieveError("vacation used twice", line)
            self.action(line)
            reason = self.expand(str(node.args[0]))
            subject = node.tags.get("subject")
            from_ = node.tags.get("from")
            handle = node.tags.get("handle")
            out.vacation = Vacation(
                reason=reason, days=int(node.tags["days"]) if "days" in node.tags else None,  # type: ignore[call-overload]
                subject=self.expand(str(subject)) if subject is not None else None,
                from_=self.expand(str(from_)) if from_ is not None else None,
                addresses=tuple(self.strings(node.tags.get("addresses", ()))),
                mime="mime" in node.tags,
                # RFC 5230 §4.2: without :handle, the reason and the arguments identify it.
                handle=self.expand(str(handle)) if handle is not None else
                f"{reason}\x00{subject or ''}\x00{from_ or ''}")
        elif name == "set":
            value = self.expand(str(node.args[1]))
            for mod in ("lower", "upper", "lowerfirst", "upperfirst", "quotewildcard",
                        "length"):
                if mod in node.tags:
                    value = _modify(mod, value)
            self.set_var(self.expand(str(node.args[0])), value, line)
        elif name in ("setflag", "addflag", "removeflag"):
            flags = " ".join(self.strings(node.args[0])).split()
            var = node.tags.get("variable")
            current = self.flags if var is None else \
                self.vars.get(self.expand(str(var)).lower(), "").split()
            if name == "setflag":
                new = _unique(flags)
            elif name == "addflag":
                new = _unique(current + flags)
            else:
                drop = {f.lower() for f in flags}
                new = [f for f in current if f.lower() not in drop]
            if var is None:
                self.flags = new
            else:
                self.set_var(self.expand(str(var)), " ".join(new), line)
        else:
            raise SieveError(f"unknown command {name!r}", line)

    def flag_arg(self, node: Node) -> tuple[str, ...]:
        if "flags" in node.tags:
            return tuple(_unique(" ".join(self.strings(node.tags["flags"])).split()))
        return tuple(self.flags)

    def deliver(self, item: FileInto, line: int) -> None:
        # RFC 5228 §2.10.3: the same mailbox twice is one delivery.
        key = item.mailbox.lower() if item.mailbox.upper() != "INBOX" else "inbox"
        for i, d in enumerate(self.out.deliveries):
            dkey = d.mailbox.lower() if d.mailbox.upper() != "INBOX" else "inbox"
            if dkey == key:
                self.out.deliveries[i] = FileInto(d.mailbox, tuple(_unique(
                    list(d.flags) + list(item.flags))), d.create or item.create)
                return
        self.action(line)
        self.out.deliveries.append(item)

    def finish(self) -> Outcome:
        out = self.out
        if out.reject is not None and (out.deliveries or out.vacation is not None or
                                       any(not r.copy for r in out.redirects)):
            # RFC 5429 §2.1 / §2.2: reject goes with no delivery, redirect or vacation.
            raise SieveError("reject cannot be combined with keep, fileinto, redirect or "
                             "vacation")
        if self.implicit_keep:
            # RFC 5232 §3: the implicit keep takes the flags the script set.
            self.deliver(FileInto("", tuple(self.flags)), 0)
        return out


def _unique(flags: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for f in flags:
        seen.setdefault(f.lower(), f)
    return list(seen.values())


def _cut(value: str, limit: int) -> str:
    data = value.encode("utf-8")
    if len(data) <= limit:
        return value
    return data[:limit].decode("utf-8", "ignore")


def _modify(mod: str, value: str) -> str:
    if mod == "lower":
        return value.lower()
    if mod == "upper":
        return value.upper()
    if mod == "lowerfirst":
        return value[:1].lower() + value[1:]
    if mod == "upperfirst":
        return value[:1].upper() + value[1:]
    if mod == "quotewildcard":
        return value.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")
    return str(len(value))


def _pick(values: list, node: Node, first: bool = False) -> list:  # type: ignore[type-arg]
    """RFC 5260 §6: :index N (from the end with :last) picks one occurrence."""
    index = node.tags.get("index")
    if index is None:
        return values[:1] if first else values
    i = int(index) - 1  # type: ignore[call-overload]
    if i >= len(values):
        return []
    return [values[-1 - i]] if node.tags.get("last") else [values[i]]


def _part(address: str, node: Node) -> str | None:
    """RFC 5228 §2.7.4 and RFC 5233 §4: the part of an address a test compares."""
    part = node.tags.get("address", "all")
    if part == "all":
        return address
    local, at, domain = address.rpartition("@")
    if not at:
        local, domain = address, ""
    if part == "localpart":
        return local
    if part == "domain":
        return domain
    user, plus, detail = local.partition("+")
    if part == "user":
        return user
    return detail if plus else None          # :detail without a separator matches nothing


def _known_mailbox(name: str, mailboxes: frozenset[str]) -> bool:
    return name.upper() == "INBOX" or name in mailboxes


def _parse_date(value: str) -> datetime | None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MJD_EPOCH = datetime(1858, 11, 17).date()


def _zone(when: datetime) -> str:
    offset = when.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"


def _date_part(when: datetime, part: str) -> str:
    """RFC 5260 §4.2."""
    if part == "year":
        return f"{when.year:04d}"
    if part == "month":
        return f"{when.month:02d}"
    if part == "day":
        return f"{when.day:02d}"
    if part == "date":
        return f"{when.year:04d}-{when.month:02d}-{when.day:02d}"
    if part == "julian":
        return str((when.date() - _MJD_EPOCH).days)
    if part == "hour":
        return f"{when.hour:02d}"
    if part == "minute":
        return f"{when.minute:02d}"
    if part == "second":
        return f"{when.second:02d}"
    if part == "time":
        return f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    if part == "iso8601":
        z = _zone(when)
        return when.strftime("%Y-%m-%dT%H:%M:%S") + f"{z[:3]}:{z[3:]}"
    if part == "std11":
        return (f"{_WEEKDAYS[when.weekday()]}, {when.day:02d} {_MONTHS[when.month - 1]} "
                f"{when.year:04d} {when.hour:02d}:{when.minute:02d}:{when.second:02d} "
                f"{_zone(when)}")
    if part == "zone":
        return _zone(when)
    return str((when.weekday() + 1) % 7)       # weekday: 0 is Sunday


def run(script: Script, message: MessageView, envelope: Envelope, *,
        limits: Limits = Limits(), now: datetime | None = None,
        mailboxes: frozenset[str] = frozenset()) -> Outcome:
    """Evaluate the script; SieveError when it fails at run time (the caller keeps the message
    in INBOX and logs the error). `mailboxes` are the recipient's mailbox names (for
    mailboxexists)."""
    r = _Run(script, message, envelope, limits, now or datetime.now(UTC), mailboxes)
    try:
        r.block(script.commands)
    except _Stop:
        pass
    except RecursionError:
        raise SieveError("the script is nested too deeply") from None
    return r.finish()
