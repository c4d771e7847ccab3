"""Spam filtering with Rspamd (issue 20): the check a message gets before the final 250 of
DATA/BDAT, and the training that follows a user's moves into and out of Junk.

Lives here: `parse_answer` (Rspamd's /checkv2 JSON to an `RspamdAnswer`, or `BadAnswer` for
garbage; pure, table-tested), `decide` (Rspamd's action to a `SpamVerdict`: reject is 550 5.7.1,
greylist and soft reject 451 4.7.1, add header and rewrite subject file the message into Junk
with X-Spam headers), `mark_message` (those headers added, X-Spam fields the sender wrote
removed, the subject rewritten), `junk_mailbox` (the account's \\Junk mailbox), `SpamFilter`
(one per process: aiohttp to the normal worker with a connect and a total timeout and a bounded
answer, the `[spam] on_error` policy, and learning over the controller worker in the background
with bounded concurrency and backlog) and `train_after_copy` (the IMAP COPY/MOVE hook).

The protocol: POST /checkv2 with the message as body and the envelope in request headers (From,
Rcpt once per recipient, IP, Helo, Hostname, Queue-Id, User); POST /learnspam or /learnham to
the controller with its Password header. See https://rspamd.com/doc/developers/protocol.html.

Must never: import a protocol package (smtp/, imap/), let Rspamd's words reach a header or an
SMTP reply before they are reduced to safe text, delay or fail an IMAP command for learning,
or log message content.
"""

from __future__ import annotations

import asyncio
import email.header
import json
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from casella.mail.headers import split_fields
from casella.store.model import Account, CopyResult, Mailbox

if TYPE_CHECKING:
    from casella.config import SpamConfig
    from casella.store.base import Store

log = logging.getLogger("casella.spam")

JUNK = "\\Junk"
TRASH = "\\Trash"

# Rspamd's actions (its "action" field); anything else is a garbage answer.
NO_ACTION = "no action"
GREYLIST = "greylist"
ADD_HEADER = "add header"
REWRITE_SUBJECT = "rewrite subject"
SOFT_REJECT = "soft reject"
REJECT = "reject"
DISCARD = "discard"
QUARANTINE = "quarantine"
ACTIONS = frozenset({NO_ACTION, GREYLIST, ADD_HEADER, REWRITE_SUBJECT, SOFT_REJECT, REJECT,
                     DISCARD, QUARANTINE})

# What casella does with a message.
ACCEPT = "accept"
TO_JUNK = "junk"
REFUSE = "reject"
TEMPFAIL = "tempfail"

MAX_SYMBOLS_SHOWN = 50          # symbols listed in X-Spamd-Result (the highest scores first)
MAX_OPTIONS_SHOWN = 5           # options shown per symbol
MAX_SUBJECT = 998               # RFC 5322 §2.1.1: a line is at most 998 characters
LEARN_CHUNK = 200               # messages read from the store per round trip while learning

# Header fields a sender could forge to pass for our verdict; removed from every scanned
# message (Rspamd's own milter reply asks the MTA to remove X-Spam for the same reason).
SPAM_FIELDS = frozenset({b"x-spam", b"x-spam-score", b"x-spam-action", b"x-spamd-result",
                         b"x-spam-flag", b"x-spam-status", b"x-spam-level", b"x-spamd-bar"})

_SYMBOL_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_UNSAFE_TEXT = re.compile(r"[^\x20-\x7e]+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE_OPTION = re.compile(r"[^\x21-\x7e]|[\[\];,]")


class BadAnswer(ValueError):
    """Rspamd's answer is not what its protocol promises (not JSON, fields missing or of the
    wrong type, an unknown action)."""


class SpamCheckError(Exception):
    """The check did not produce an answer: timeout, connection refused, HTTP error, garbage."""


@dataclass(frozen=True, slots=True)
class Symbol:
    name: str
    score: float
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RspamdAnswer:
    action: str
    score: float
    required_score: float
    symbols: tuple[Symbol, ...] = ()
    subject: str | None = None       # the rewritten subject ("rewrite subject")
    message: str = ""                # messages.smtp_message: why, for the SMTP reply


def _number(obj: dict[str, Any], key: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            not math.isfinite(value):
        raise BadAnswer(f"{key} is {'missing' if value is None else 'not a number'}")
    return float(value)


def parse_answer(body: bytes) -> RspamdAnswer:
    """Rspamd's /checkv2 answer. `action` and `score` must be there; `symbols`, `subject`
    and `messages` are read when they have the documented shape and ignored otherwise."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError) as exc:   # UnicodeDecodeError is a ValueError
        raise BadAnswer(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(obj, dict):
        raise BadAnswer("not a JSON object")
    action = obj.get("action")
    if not isinstance(action, str):
        raise BadAnswer("action is missing")
    if action not in ACTIONS:
        raise BadAnswer(f"unknown action {safe_text(action, 40)!r}")
    score = _number(obj, "score")
    required = _number(obj, "required_score") if "required_score" in obj else 0.0
    symbols: list[Symbol] = []
    raw_symbols = obj.get("symbols")
    if isinstance(raw_symbols, dict):
        for name, sym in raw_symbols.items():
            if not isinstance(sym, dict):
                continue
            s = sym.get("score", 0.0)
            sym_score = float(s) if isinstance(s, (int, float)) and not isinstance(s, bool) \
                and math.isfinite(s) else 0.0
            opts = sym.get("options")
            options = tuple(o for o in opts if isinstance(o, str)) if isinstance(opts, list) \
                else ()
            symbols.append(Symbol(str(name), sym_score, options))
    subject = obj.get("subject")
    messages = obj.get("messages")
    message = messages.get("smtp_message") if isinstance(messages, dict) else None
    return RspamdAnswer(action, score, required, tuple(symbols),
                        subject if isinstance(subject, str) else None,
                        message if isinstance(message, str) else "")


def safe_text(text: str, limit: int = 200) -> str:
    """Printable ASCII on one line, at most `limit` characters: what may go into an SMTP
    reply or a header from someone else's words."""
    return _UNSAFE_TEXT.sub(" ", text).strip()[:limit].strip()


# --- the verdict ------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SpamVerdict:
    """What to do with one message. `reply` is (code, status, text) for REFUSE and TEMPFAIL."""

    outcome: str                              # ACCEPT | TO_JUNK | REFUSE | TEMPFAIL
    answer: RspamdAnswer | None = None        # None: not scanned or the check failed
    reply: tuple[int, str, str] | None = None
    error: str = ""                           # why the check failed (on_error applied)

    @property
    def summary(self) -> str:
        """For the log line of the message."""
        if self.answer is None:
            return f"error({self.error})" if self.error else "skipped"
        return f"{self.answer.action.replace(' ', '_')}/{self.answer.score:.2f}"


NOT_SCANNED = SpamVerdict(ACCEPT)


def decide(answer: RspamdAnswer, submission: bool = False) -> SpamVerdict:
    """Rspamd's action, as casella carries it out. Mail from the internet: reject is refused
    (550 5.7.1), greylist and soft reject deferred (451 4.7.1), add header, rewrite subject and
    quarantine go to Junk marked, discard is refused too (casella never drops accepted mail
    silently). Mail our own users submit: only the refusals apply (there is no Junk to put
    outbound mail into); the rest is sent as it is."""
    why = safe_text(answer.message, 120)
    action = answer.action
    if action in (REJECT, DISCARD):
        text = "Message rejected as spam" if not submission else \
            "Message rejected as spam; it was not sent"
        return SpamVerdict(REFUSE, answer, (550, "5.7.1", f"{text}{f' ({why})' if why else ''}"))
    if action in (GREYLIST, SOFT_REJECT):
        text = "Message deferred by the spam filter; try again later"
        return SpamVerdict(TEMPFAIL, answer, (451, "4.7.1", f"{text}{f' ({why})' if why else ''}"))
    if action in (ADD_HEADER, REWRITE_SUBJECT, QUARANTINE) and not submission:
        return SpamVerdict(TO_JUNK, answer)
    return SpamVerdict(ACCEPT, answer)


def failed(reason: str, on_error: str) -> SpamVerdict:
    """The check produced no answer: accept (fail open) or 451 4.3.0, as configured."""
    if on_error == "tempfail":
        text = "The spam filter is unavailable; try again later"
        return SpamVerdict(TEMPFAIL, None, (451, "4.3.0", text), reason)
    return SpamVerdict(ACCEPT, None, None, reason)


def spam_headers(answer: RspamdAnswer) -> bytes:
    """X-Spam, X-Spam-Score, X-Spam-Action and X-Spamd-Result (the symbols with their scores
    and options, the way Rspamd's own milter headers show them), folded, CRLF ended."""
    score = f"{answer.score:.2f} / {answer.required_score:.2f}"
    lines = [b"X-Spam: Yes", f"X-Spam-Score: {score}".encode(),
             f"X-Spam-Action: {answer.action}".encode()]
    shown = sorted((s for s in answer.symbols if _SYMBOL_NAME.fullmatch(s.name)),
                   key=lambda s: (-s.score, s.name))[:MAX_SYMBOLS_SHOWN]
    result = [f"X-Spamd-Result: default: True [{score}]"]
    for sym in shown:
        options = [o for o in (_UNSAFE_OPTION.sub("", opt)[:60] for opt in sym.options) if o]
        item = f"{sym.name}({sym.score:.2f})"
        if options:
            item += "[" + ",".join(options[:MAX_OPTIONS_SHOWN]) + "]"
        result.append(item)
    lines.append(";\r\n\t".join(result).encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n"


def _subject_field(subject: str) -> bytes:
    """A Subject field for `subject` (RFC 2047 encoded words when it is not ASCII), folded."""
    text = subject.replace("\r", " ").replace("\n", " ")[:MAX_SUBJECT]
    charset = "us-ascii" if text.isascii() else "utf-8"
    value = email.header.Header(text, charset, header_name="Subject").encode(linesep="\r\n")
    return b"Subject: " + value.encode("ascii") + b"\r\n"


def mark_message(data: bytes, verdict: SpamVerdict) -> bytes:
    """The message as stored: X-Spam fields the sender wrote removed; for a message going to
    Junk our X-Spam headers added below a leading Return-Path (RFC 5321 §4.4 keeps it first)
    and, when Rspamd asked, the subject rewritten. `data` itself when nothing changes."""
    junk = verdict.outcome == TO_JUNK and verdict.answer is not None
    subject = verdict.answer.subject if junk and verdict.answer is not None and \
        verdict.answer.action == REWRITE_SUBJECT else None
    end = data.find(b"\r\n\r\n")
    head_end = end + 2 if end >= 0 else len(data)
    head = data[:head_end]
    fields = split_fields(head)
    forged = any(name.lower() in SPAM_FIELDS for name, _ in fields)
    if not (junk or forged):
        return data
    out: list[bytes] = []
    return_path = b""
    subject_done = False
    for i, (name, raw) in enumerate(fields):
        lname = name.lower()
        if i == 0 and lname == b"return-path":
            return_path = raw
            continue
        if lname in SPAM_FIELDS:
            continue
        if subject is not None and lname == b"subject":
            if not subject_done:
                out.append(_subject_field(subject))
                subject_done = True
            continue
        out.append(raw)
    added = b""
    if junk and verdict.answer is not None:
        added = spam_headers(verdict.answer)
        if subject is not None and not subject_done:
            added += _subject_field(subject)
    return b"".join([return_path, added, *out, data[head_end:]])


async def junk_mailbox(store: Store, account_id: int) -> str:
    """The name of the account's \\Junk mailbox (RFC 6154); "Junk" when none is marked (the
    store delivers to INBOX when that does not exist either)."""
    for mb in await store.list_mailboxes(account_id):
        if mb.special_use == JUNK and mb.selectable:
            return mb.name
    return "Junk"


# --- the client -------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class ScanEnvelope:
    """What Rspamd is told about a message besides its bytes."""

    sender: str                       # "" for the null reverse path
    recipients: Sequence[str]
    ip: str
    helo: str
    queue_id: str
    hostname: str | None = None       # the client's confirmed reverse name, "unknown", or None
    user: str | None = None           # the authenticated submitter

    def headers(self) -> list[tuple[str, str]]:
        """The request headers (no control character can reach them: PROMISES M7)."""
        def clean(value: str) -> str:
            return _CONTROL.sub("", value)[:320]
        out = [("From", clean(self.sender) or "<>"), ("IP", clean(self.ip)),
               ("Helo", clean(self.helo) or "unknown"), ("Queue-Id", clean(self.queue_id))]
        out.extend(("Rcpt", clean(r)) for r in self.recipients)
        if self.hostname is not None:
            out.append(("Hostname", clean(self.hostname)))
        if self.user is not None:
            out.append(("User", clean(self.user)))
        return out


@dataclass
class _Backlog:
    pending: int = 0                   # messages queued for learning, not yet sent
    tasks: set[asyncio.Task[None]] = field(default_factory=set)


class SpamFilter:
    """One per process, made from `[spam]` by the server and closed when it stops. The HTTP
    client session is made on first use, on the loop that serves."""

    def __init__(self, config: SpamConfig) -> None:
        self.config = config
        self._http: aiohttp.ClientSession | None = None
        self._learn_slots: asyncio.Semaphore | None = None
        self._backlog = _Backlog()

    @property
    def checking(self) -> bool:
        return bool(self.config.rspamd)

    @property
    def learning(self) -> bool:
        return bool(self.config.controller)

    def wants(self, size: int, submission: bool) -> bool:
        """Is a message of `size` bytes on this path scanned at all?"""
        if not self.checking or size > self.config.max_size:
            return False
        return self.config.check_submission or not submission

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.config.timeout,
                                              sock_connect=self.config.connect_timeout),
                # Rspamd's answers are ours to judge, and no cookie should ever travel back.
                cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True)
        return self._http

    async def _post(self, url: str, body: bytes, headers: list[tuple[str, str]]
                    ) -> tuple[int, bytes]:
        """POST and read the answer, at most `max_reply_size` bytes of it."""
        limit = self.config.max_reply_size
        try:
            async with self._session().post(url, data=body, headers=headers,
                                            allow_redirects=False) as resp:
                if resp.content_length is not None and resp.content_length > limit:
                    raise SpamCheckError(f"answer of {resp.content_length} bytes is too big")
                chunks: list[bytes] = []
                size = 0
                while True:
                    chunk = await resp.content.read(64 * 1024)
                    if not chunk:
                        break
                    size += len(chunk)
                    if size > limit:
                        raise SpamCheckError(f"answer of more than {limit} bytes")
                    chunks.append(chunk)
                return resp.status, b"".join(chunks)
        except aiohttp.ConnectionTimeoutError:
            raise SpamCheckError(f"could not connect within {self.config.connect_timeout:g}s"
                                 ) from None
        except TimeoutError:
            raise SpamCheckError(f"no answer within {self.config.timeout:g}s") from None
        except aiohttp.ClientError as exc:
            raise SpamCheckError(safe_text(f"{type(exc).__name__}: {exc}", 200)) from None

    async def check(self, message: bytes, envelope: ScanEnvelope) -> RspamdAnswer:
        """Ask the normal worker; SpamCheckError when no usable answer came."""
        status, body = await self._post(self.config.rspamd + "/checkv2", message,
                                        envelope.headers())
        if status != 200:
            raise SpamCheckError(f"HTTP {status}")
        try:
            return parse_answer(body)
        except BadAnswer as exc:
            raise SpamCheckError(f"bad answer: {exc}") from None

    async def scan(self, message: bytes, envelope: ScanEnvelope,
                   submission: bool = False) -> SpamVerdict:
        """The verdict for one message; `[spam] on_error` when Rspamd gave none."""
        try:
            answer = await self.check(message, envelope)
        except SpamCheckError as exc:
            verdict = failed(str(exc), self.config.on_error)
            log.warning("spam check of message %s failed: %s; %s", envelope.queue_id, exc,
                        "deferring it (on_error = tempfail)" if verdict.outcome == TEMPFAIL
                        else "accepting it unchecked (on_error = accept)")
            return verdict
        return decide(answer, submission)

    # --- learning -----------------------------------------------------------------------

    def train(self, store: Store, account: Account, src_mailbox_id: int, dst: Mailbox,
              uids: Sequence[int], moved: bool) -> None:
        """Schedule learning for messages that just arrived in `dst` (their new UIDs) from the
        mailbox `src_mailbox_id`: spam when `dst` is \\Junk and the source is not, ham when
        they were moved out of \\Junk into anything but \\Trash. Returns at once; the source
        mailbox is looked at in the background."""
        if not self.learning or not uids:
            return
        if dst.special_use == JUNK:
            kind = "spam"
        elif moved and dst.special_use != TRASH:
            kind = "ham"
        else:
            return
        task = asyncio.get_running_loop().create_task(
            self._train(store, account, src_mailbox_id, dst, list(uids), kind),
            name=f"spam-learn-{account.id}")
        self._backlog.tasks.add(task)
        task.add_done_callback(self._backlog.tasks.discard)

    def _reserve(self, uids: list[int], address: str, kind: str) -> list[int]:
        """Room in the backlog for these messages: those that fit (a warning for the rest)."""
        room = self.config.learn_backlog - self._backlog.pending
        if room < len(uids):
            log.warning("spam learning backlog full (%d messages waiting, learn_backlog = %d):"
                        " %d message(s) of %s not learnt as %s", self._backlog.pending,
                        self.config.learn_backlog, len(uids) - max(room, 0), address, kind)
            uids = uids[:max(room, 0)]
        self._backlog.pending += len(uids)
        return uids

    async def _train(self, store: Store, account: Account, src_mailbox_id: int, dst: Mailbox,
                     uids: list[int], kind: str) -> None:
        left = 0
        try:
            src = await store.get_mailbox_by_id(src_mailbox_id)
            from_junk = src is not None and src.special_use == JUNK
            if from_junk == (kind == "spam"):
                return               # Junk to Junk, or a move between ordinary mailboxes
            uids = self._reserve(uids, account.address, kind)
            left = len(uids)
            if self._learn_slots is None:
                self._learn_slots = asyncio.Semaphore(self.config.learn_concurrency)
            slots = self._learn_slots
            for start in range(0, len(uids), LEARN_CHUNK):
                chunk = uids[start:start + LEARN_CHUNK]
                found = await store.fetch_messages(dst.id, [(u, u) for u in chunk], ())
                running: list[asyncio.Task[None]] = []
                for meta, static in found:
                    if static is None or static.size > self.config.max_size:
                        continue
                    # A slot is taken before the message is read: at most learn_concurrency
                    # messages are in memory and on the wire at once, across all moves.
                    await slots.acquire()
                    one = asyncio.get_running_loop().create_task(self._learn_one(
                        store, static.digest, kind, account.address, meta.uid, dst.name))
                    self._backlog.tasks.add(one)
                    one.add_done_callback(self._backlog.tasks.discard)
                    running.append(one)
                await asyncio.gather(*running)
                left -= len(chunk)
                self._backlog.pending -= len(chunk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - learning must never hurt anything else
            log.warning("spam learning for %s failed: %s", account.address,
                        safe_text(f"{type(exc).__name__}: {exc}"))
        finally:
            self._backlog.pending -= left

    async def _learn_one(self, store: Store, digest: str, kind: str, address: str, uid: int,
                         mailbox: str) -> None:
        """Read one message and teach it; releases the learn slot taken for it."""
        assert self._learn_slots is not None
        try:
            await self._learn(kind, await store.read_blob(digest), address, uid, mailbox)
        finally:
            self._learn_slots.release()

    async def _learn(self, kind: str, data: bytes, address: str, uid: int,
                     mailbox: str) -> None:
        headers = [("Deliver-To", address)]
        if self.config.controller_password:
            headers.append(("Password", self.config.controller_password))
        try:
            status, body = await self._post(f"{self.config.controller}/learn{kind}", data,
                                            headers)
        except SpamCheckError as exc:
            log.warning("learn_%s of %s UID %d in %s failed: %s", kind, address, uid,
                        mailbox, exc)
            return
        if status == 200:
            log.info("learnt as %s: %s UID %d in %s", kind, address, uid, mailbox)
            return
        why = ""
        try:
            error = json.loads(body).get("error")
            why = safe_text(error, 200) if isinstance(error, str) else ""
        except (ValueError, AttributeError, RecursionError):
            pass
        if "already learn" in why:
            log.info("already learnt as %s: %s UID %d in %s", kind, address, uid, mailbox)
            return
        log.warning("learn_%s of %s UID %d in %s refused: HTTP %d %s", kind, address, uid,
                    mailbox, status, why)

    @property
    def learn_pending(self) -> int:
        """Messages waiting to be learnt (for tests and the log at shutdown)."""
        return self._backlog.pending

    async def drain(self) -> None:
        """Wait until every scheduled learning is done (tests)."""
        while self._backlog.tasks:
            await asyncio.gather(*list(self._backlog.tasks), return_exceptions=True)

    async def close(self) -> None:
        """Stop: learning not done yet is dropped (said in the log), the client closed."""
        tasks = list(self._backlog.tasks)
        if tasks:
            log.info("stopping: %d message(s) not learnt", self._backlog.pending)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
            self._http = None


def train_after_copy(spam: SpamFilter | None, store: Store, account: Account | None,
                     src_mailbox_id: int, dst: Mailbox, result: CopyResult,
                     moved: bool) -> None:
    """The IMAP hook after COPY or MOVE answered: nothing to wait for (see SpamFilter.train)."""
    if spam is not None and account is not None and result.pairs:
        spam.train(store, account, src_mailbox_id, dst, [p[1] for p in result.pairs], moved)
