"""The few error classes IMAP handlers raise; session.py turns them (and casella.errors) into
tagged BAD / NO or an untagged BYE in one place.

Must never: import asyncio, config or the store.
"""

from __future__ import annotations


class ImapError(Exception):
    def __init__(self, sentence: str, code: str | None = None) -> None:
        super().__init__(sentence)
        self.sentence = sentence
        self.code = code


class Bad(ImapError):
    """The command is malformed or not valid now: `tag BAD`."""


class No(ImapError):
    """The command is valid but failed: `tag NO [code]`."""


class Bye(ImapError):
    """The session must end: `* BYE [code]` and close."""
