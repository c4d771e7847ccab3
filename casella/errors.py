"""The error classes that cross layer boundaries.

Lives here: errors raised by config, store and services, each carrying a plain sentence that a
protocol session may show a user. Each protocol maps them to its own replies in one place
(IMAP NO [CODE], SMTP 4xx/5xx, POP3 -ERR [CODE]). Must never: import a protocol, the store or
anything doing I/O.
"""

from __future__ import annotations


class CasellaError(Exception):
    """Base of every error casella raises on purpose. `str(err)` is a sentence for humans."""


class ConfigError(CasellaError):
    """The config file is wrong; start-up stops with this one line."""


class UserError(CasellaError):
    """An admin or client asked for something invalid (CLI exit 1, protocol NO/5xx)."""


class NotFound(UserError):
    """The named domain, account, alias, mailbox or message does not exist."""


class AlreadyExists(UserError):
    """The thing to create is already there."""


class InvalidName(UserError):
    """A domain, address or mailbox name breaks the naming rules."""


class MailboxNotFound(NotFound):
    pass


class MailboxExists(AlreadyExists):
    pass


class MailboxNotAllowed(UserError):
    """The operation is not allowed on this mailbox (deleting INBOX, renaming onto a child)."""


class QuotaExceeded(UserError):
    """The change would take the account over its storage or message quota."""


class MessageTooBig(UserError):
    """A message exceeds the configured maximum message size."""


class StorageError(CasellaError):
    """Persistence failed (disk full, I/O error, database unavailable). Temporary: the client
    should retry; nothing was written."""


class DiskFull(StorageError):
    pass


class BodyGone(StorageError):
    """The body asked for is no longer stored: every message that held it was removed (another
    session expunged it) after the caller read the message's metadata, and the body was
    collected. Not a failure: a protocol answers as it does for a message expunged meanwhile
    (IMAP: RFC 2180 §4.1). It is a StorageError so that code which only retries or skips on
    StorageError stays right."""


class SchemaMismatch(CasellaError):
    """The database's schema is older or newer than this casella's; the sentence says what to
    run (`casella migrate`, or an upgrade of casella). Start-up stops with it."""
