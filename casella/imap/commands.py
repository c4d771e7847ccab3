"""Typed IMAP commands: what the parser produces and the handlers consume.

Lives here: one frozen dataclass per command (RFC 3501 §6, RFC 9051 §6 and the extensions
casella offers: CONDSTORE/QRESYNC, QUOTA, SORT/THREAD, MULTIAPPEND, BINARY, CATENATE,
COMPRESS, NOTIFY, OBJECTID, SAVEDATE, PREVIEW, WITHIN), the FETCH attribute and SEARCH key types, and
`ExternalLiteral`, the stand-in for a literal the session streamed somewhere else (a large
APPEND body). Mailbox names stay raw
bytes here: decoding modified UTF-7 is the session's job because a bad name is `NO`, not `BAD`.
Must never: import asyncio, config, the store or any I/O.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field

from casella.imap.seqset import SeqSet


@dataclass(frozen=True, slots=True)
class ExternalLiteral:
    """A literal the session did not keep in memory: `handle` is whatever it streamed into
    (for APPEND, a staged blob). The parser only accepts it where a message body goes."""
    size: int
    handle: object


# --- any state ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Capability:
    pass


@dataclass(frozen=True, slots=True)
class Noop:
    pass


@dataclass(frozen=True, slots=True)
class Logout:
    pass


@dataclass(frozen=True, slots=True)
class Id:
    """RFC 2971: NIL or field/value pairs."""
    params: tuple[tuple[str, str | None], ...] | None


# --- not authenticated --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class StartTLS:
    pass


@dataclass(frozen=True, slots=True)
class Authenticate:
    mechanism: str
    initial: bytes | None = None    # SASL-IR (RFC 4959): the base64 text as sent, "=" = empty


@dataclass(frozen=True, slots=True)
class Login:
    username: str
    password: str = field(repr=False)


# --- authenticated ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Enable:
    capabilities: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Namespace:
    pass


@dataclass(frozen=True, slots=True)
class QresyncParams:
    """SELECT ... (QRESYNC (uidvalidity modseq [known-uids [(seqs uids)]])) (RFC 7162 §3.2.5)."""
    uidvalidity: int
    modseq: int
    known_uids: SeqSet | None = None
    seq_match: tuple[SeqSet, SeqSet] | None = None


@dataclass(frozen=True, slots=True)
class Select:
    mailbox: bytes
    readonly: bool = False          # EXAMINE
    condstore: bool = False         # (CONDSTORE), RFC 7162 §3.1.8
    qresync: QresyncParams | None = None


@dataclass(frozen=True, slots=True)
class Create:
    mailbox: bytes
    special_use: tuple[str, ...] = ()   # CREATE ... (USE (\Drafts)), RFC 6154 §3


@dataclass(frozen=True, slots=True)
class Delete:
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class Rename:
    old: bytes
    new: bytes


@dataclass(frozen=True, slots=True)
class Subscribe:
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class List:
    """LIST, with the RFC 5258 extended syntax (selection and return options) that RFC 9051
    made part of the base protocol."""
    reference: bytes
    patterns: tuple[bytes, ...]
    selection: frozenset[str] = frozenset()          # SUBSCRIBED REMOTE RECURSIVEMATCH SPECIAL-USE
    returns: frozenset[str] = frozenset()            # SUBSCRIBED CHILDREN SPECIAL-USE STATUS
    status_items: tuple[str, ...] = ()               # RETURN (STATUS (...)), RFC 5819
    extended: bool = False                           # any extended syntax was used


@dataclass(frozen=True, slots=True)
class Lsub:
    reference: bytes
    pattern: bytes


STATUS_ITEMS = ("MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE", "DELETED",
                "HIGHESTMODSEQ", "DELETED-STORAGE", "MAILBOXID", "APPENDLIMIT")


@dataclass(frozen=True, slots=True)
class Status:
    mailbox: bytes
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CatenateUrl:
    """A URL part of CATENATE (RFC 4469 §5 `"URL" SP astring`): an IMAP URL (RFC 5092), as
    sent; the handler resolves it."""
    url: bytes


# One part of CATENATE: a TEXT literal (RFC 4469 §5 `"TEXT" SP literal`) or a URL.
CatenatePart = bytes | ExternalLiteral | CatenateUrl


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One message of an APPEND (several with MULTIAPPEND, RFC 3502). `binary`: sent as a
    literal8 `~{n}` (RFC 3516 §4.4); `utf8`: in the UTF8 (...) data extension (RFC 6855 §4);
    `catenate`: built from these parts (RFC 4469 §3), `message` then empty."""
    flags: tuple[str, ...]
    date: datetime.datetime | None
    message: bytes | ExternalLiteral = field(repr=False)
    binary: bool = False
    utf8: bool = False
    catenate: tuple[CatenatePart, ...] = field(default=(), repr=False)


@dataclass(frozen=True, slots=True)
class Append:
    mailbox: bytes
    messages: tuple[AppendMessage, ...]


# --- selected -----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Check:
    pass


@dataclass(frozen=True, slots=True)
class Close:
    pass


@dataclass(frozen=True, slots=True)
class Unselect:
    pass


@dataclass(frozen=True, slots=True)
class Expunge:
    uids: SeqSet | None = None      # UID EXPUNGE (RFC 4315 §2.1)


@dataclass(frozen=True, slots=True)
class Copy:
    uid: bool
    messages: SeqSet
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class Move:
    uid: bool
    messages: SeqSet
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class Store:
    uid: bool
    messages: SeqSet
    mode: str                       # "add" | "remove" | "replace"
    silent: bool
    flags: tuple[str, ...]
    unchangedsince: int | None = None   # RFC 7162 §3.1.3


# FETCH -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Section:
    """BODY[...] / BODY.PEEK[...] (RFC 9051 §6.4.5). `text` is None for the whole part, or
    HEADER, HEADER.FIELDS, HEADER.FIELDS.NOT, TEXT, MIME."""
    part: tuple[int, ...] = ()
    text: str | None = None
    fields: tuple[str, ...] = ()

    def spec(self) -> bytes:
        """The section as the response names it, e.g. `1.2.HEADER.FIELDS (From To)`."""
        out = ".".join(str(p) for p in self.part)
        if self.text:
            out = f"{out}.{self.text}" if out else self.text
            if self.text.startswith("HEADER.FIELDS"):
                out += " (" + " ".join(_quote_field(f) for f in self.fields) + ")"
        return out.encode("ascii", "replace")


def _quote_field(name: str) -> str:
    if name and all(0x21 <= ord(c) < 0x7F and c not in '(){%*"\\]' for c in name):
        return name
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """One FETCH data item. `name` is ENVELOPE, FLAGS, INTERNALDATE, RFC822.SIZE, BODY,
    BODYSTRUCTURE, UID, RFC822, RFC822.HEADER, RFC822.TEXT, MODSEQ (RFC 7162), EMAILID,
    THREADID (RFC 8474), SAVEDATE (RFC 8514), PREVIEW (RFC 8970), BODY[] (with `section`),
    BINARY[] or BINARY.SIZE[] (RFC 3516, `section.part` only)."""
    name: str
    section: Section | None = None
    peek: bool = False
    partial: tuple[int, int] | None = None    # <origin.octets>
    lazy: bool = False                        # PREVIEW (LAZY), RFC 8970 §3.1

    @property
    def sets_seen(self) -> bool:
        """Fetching this marks the message \\Seen (RFC 9051 §6.4.5, RFC 3516 §4.2)."""
        if self.name in ("BODY[]", "BINARY[]"):
            return not self.peek
        return self.name in ("RFC822", "RFC822.TEXT")

    @property
    def needs_static(self) -> bool:
        return self.name not in ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "UID", "MODSEQ",
                                 "EMAILID", "THREADID", "SAVEDATE")


@dataclass(frozen=True, slots=True)
class Fetch:
    uid: bool
    messages: SeqSet
    items: tuple[FetchAtt, ...]
    changedsince: int | None = None   # RFC 7162 §3.1.4
    vanished: bool = False            # RFC 7162 §3.2.6 (UID FETCH only)


# SEARCH ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SAll:
    pass


@dataclass(frozen=True, slots=True)
class SFlag:
    """ANSWERED DELETED DRAFT FLAGGED SEEN (present) and their UN- forms; KEYWORD/UNKEYWORD."""
    flag: str
    present: bool = True


@dataclass(frozen=True, slots=True)
class SRecent:
    present: bool = True


@dataclass(frozen=True, slots=True)
class SDate:
    """BEFORE ON SINCE (internal date) and SENTBEFORE SENTON SENTSINCE (Date: header)."""
    op: str                         # "before" | "on" | "since"
    date: datetime.date
    sent: bool = False


@dataclass(frozen=True, slots=True)
class SSize:
    larger: bool
    size: int


@dataclass(frozen=True, slots=True)
class SHeader:
    """FROM TO CC BCC SUBJECT and HEADER name value; the value is raw bytes in the command's
    CHARSET until the search is compiled."""
    name: str
    value: bytes


@dataclass(frozen=True, slots=True)
class SText:
    """BODY (body only) or TEXT (header and body)."""
    value: bytes
    header_too: bool


@dataclass(frozen=True, slots=True)
class SSeq:
    messages: SeqSet


@dataclass(frozen=True, slots=True)
class SUid:
    uids: SeqSet


@dataclass(frozen=True, slots=True)
class SModseq:
    """MODSEQ [entry-name entry-type] n (RFC 7162 §3.1.5): messages with a MODSEQ >= n."""
    modseq: int


@dataclass(frozen=True, slots=True)
class SWithin:
    """OLDER / YOUNGER n (RFC 5032): internal date more / less than n seconds ago."""
    older: bool
    seconds: int


@dataclass(frozen=True, slots=True)
class SSaveDate:
    """SAVEDBEFORE SAVEDON SAVEDSINCE (RFC 8514 §4.2); `op` None is SAVEDATESUPPORTED."""
    op: str | None
    date: datetime.date | None = None


@dataclass(frozen=True, slots=True)
class SObjectId:
    """EMAILID / THREADID objectid (RFC 8474 §6)."""
    kind: str                       # "EMAILID" | "THREADID"
    value: str


@dataclass(frozen=True, slots=True)
class SNot:
    key: SearchKey


@dataclass(frozen=True, slots=True)
class SOr:
    a: SearchKey
    b: SearchKey


@dataclass(frozen=True, slots=True)
class SAnd:
    keys: tuple[SearchKey, ...]


SearchKey = (SAll | SFlag | SRecent | SDate | SSize | SHeader | SText | SSeq | SUid | SNot | SOr
             | SAnd | SModseq | SWithin | SSaveDate | SObjectId)

# RFC 4731 / RFC 9051 §6.4.4, SAVE (RFC 5182), CONTEXT UPDATE PARTIAL (RFC 5267 §4, RFC 9394).
SEARCH_RETURN_OPTIONS = ("MIN", "MAX", "ALL", "COUNT", "SAVE", "CONTEXT", "UPDATE", "PARTIAL")


@dataclass(frozen=True, slots=True)
class Search:
    uid: bool
    key: SearchKey
    charset: str | None = None
    returns: tuple[str, ...] | None = None    # RETURN (...) given (RFC 4731 / RFC 9051 §6.4.4)
    # PARTIAL's range (first, last), 1-based and first <= last; both negative count from the
    # end of the result (RFC 9394 §3.1: -1 is the last result), e.g. (-1, -100).
    partial: tuple[int, int] | None = None


@dataclass(frozen=True, slots=True)
class CancelUpdate:
    """CANCELUPDATE "tag"... (RFC 5267 §4.3.5)."""
    tags: tuple[str, ...]


# SORT / THREAD (RFC 5256, RFC 5957) ---------------------------------------------------------

SORT_KEYS = ("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO", "DISPLAYFROM",
             "DISPLAYTO")
THREAD_ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")


@dataclass(frozen=True, slots=True)
class SortKey:
    key: str                        # one of SORT_KEYS
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class Sort:
    uid: bool
    criteria: tuple[SortKey, ...]
    charset: str
    key: SearchKey
    returns: tuple[str, ...] | None = None    # ESORT / CONTEXT=SORT (RFC 5267 §3, §4)
    partial: tuple[int, int] | None = None    # as Search.partial


@dataclass(frozen=True, slots=True)
class Thread:
    uid: bool
    algorithm: str                  # one of THREAD_ALGORITHMS
    charset: str
    key: SearchKey


# QUOTA (RFC 9208) ----------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class GetQuota:
    root: bytes


@dataclass(frozen=True, slots=True)
class GetQuotaRoot:
    mailbox: bytes


@dataclass(frozen=True, slots=True)
class SetQuota:
    root: bytes
    limits: tuple[tuple[str, int], ...]


# COMPRESS (RFC 4978) and NOTIFY (RFC 5465) ---------------------------------------------------

@dataclass(frozen=True, slots=True)
class Compress:
    mechanism: str


NOTIFY_MESSAGE_EVENTS = ("MESSAGENEW", "MESSAGEEXPUNGE", "FLAGCHANGE", "ANNOTATIONCHANGE")
NOTIFY_MAILBOX_EVENTS = ("MAILBOXNAME", "SUBSCRIPTIONCHANGE", "MAILBOXMETADATACHANGE",
                         "SERVERMETADATACHANGE")


@dataclass(frozen=True, slots=True)
class NotifyEvent:
    name: str                       # upper case, e.g. MESSAGENEW
    fetch: tuple[FetchAtt, ...] = ()


@dataclass(frozen=True, slots=True)
class NotifyGroup:
    """`(filter events)`: filter is SELECTED, SELECTED-DELAYED, INBOXES, PERSONAL, SUBSCRIBED,
    SUBTREE or MAILBOXES (the last two with `mailboxes`); `events` None means NONE."""
    filter: str
    mailboxes: tuple[bytes, ...]
    events: tuple[NotifyEvent, ...] | None


@dataclass(frozen=True, slots=True)
class Notify:
    groups: tuple[NotifyGroup, ...] | None     # None: NOTIFY NONE
    status: bool = False


@dataclass(frozen=True, slots=True)
class Idle:
    pass


Command = (Capability | Noop | Logout | Id | StartTLS | Authenticate | Login | Enable | Namespace
           | Select | Create | Delete | Rename | Subscribe | Unsubscribe | List | Lsub | Status
           | Append | Check | Close | Unselect | Expunge | Copy | Move | Store | Fetch | Search
           | Idle | Sort | Thread | GetQuota | GetQuotaRoot | SetQuota | Compress | Notify
           | CancelUpdate)


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed command line: the client's tag and the command."""
    tag: str
    command: Command
