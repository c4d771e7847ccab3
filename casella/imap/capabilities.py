"""What the IMAP server announces, depending on the session's state.

Lives here: `capabilities()`, the one list behind the greeting, CAPABILITY, and the
`[CAPABILITY ...]` codes after STARTTLS and login. Every name here is implemented and tested.
Must never: import asyncio, config or the store.
"""

from __future__ import annotations

# Implemented in every state after login (RFC 9051 §7.2.2 and the extensions' RFCs).
_COMMON = ("IMAP4rev1", "IMAP4rev2", "LITERAL+", "ID", "ENABLE", "IDLE", "NAMESPACE",
           "UIDPLUS", "MOVE", "UNSELECT", "CHILDREN", "SPECIAL-USE", "LIST-EXTENDED",
           "LIST-STATUS", "STATUS=SIZE")


def capabilities(*, tls_active: bool, authenticated: bool, plaintext_allowed: bool,
                 max_message_size: int) -> list[str]:
    """The capability list for a session in this situation."""
    caps = list(_COMMON)
    # RFC 7889: the largest APPEND the server accepts.
    caps.append(f"APPENDLIMIT={max_message_size}")
    if authenticated:
        return caps
    if not tls_active:
        caps.append("STARTTLS")
    if tls_active or plaintext_allowed:
        # RFC 9051 §6.2.3 / PROMISES A1: password mechanisms only over TLS (unless allowed).
        caps += ["SASL-IR", "AUTH=PLAIN", "AUTH=LOGIN"]
    else:
        caps.append("LOGINDISABLED")
    return caps
