"""What the IMAP server announces, depending on the session's state.

Lives here: `capabilities()`, the one list behind the greeting, CAPABILITY, and the
`[CAPABILITY ...]` codes after STARTTLS and login, and `ENABLEABLE`, what ENABLE can turn on.
Every name here is implemented and tested (tests/imap/test_ext_*.py, one file per extension
family). Must never: import asyncio, config or the store.
"""

from __future__ import annotations

# Implemented in every state (RFC 9051 §7.2.2 and the extensions' RFCs).
_COMMON = ("ID", "ENABLE", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE",
           "UNSELECT", "CHILDREN", "SPECIAL-USE", "CREATE-SPECIAL-USE", "LIST-EXTENDED",
           "LIST-STATUS", "STATUS=SIZE", "CONDSTORE", "QRESYNC", "QUOTA", "QUOTA=RES-STORAGE",
           "QUOTA=RES-MESSAGE", "ESEARCH", "SEARCHRES", "WITHIN", "SORT", "SORT=DISPLAY", "ESORT",
           "CONTEXT=SEARCH", "CONTEXT=SORT", "THREAD=ORDEREDSUBJECT", "THREAD=REFERENCES",
           "BINARY", "MULTIAPPEND", "CATENATE", "OBJECTID", "SAVEDATE", "PREVIEW", "UTF8=ACCEPT",
           "NOTIFY")

# ENABLE (RFC 5161) accepts these; anything else is ignored.
ENABLEABLE = ("CONDSTORE", "QRESYNC", "IMAP4REV2", "UTF8=ACCEPT")


def capabilities(*, tls_active: bool, authenticated: bool, plaintext_allowed: bool,
                 max_message_size: int, compressed: bool = False,
                 literal_minus: bool = False) -> list[str]:
    """The capability list for a session in this situation."""
    # RFC 7888 §5: LITERAL+ or LITERAL-, never both.
    caps = ["IMAP4rev1", "IMAP4rev2", "LITERAL-" if literal_minus else "LITERAL+", *_COMMON]
    # RFC 7889: the largest APPEND the server accepts.
    caps.append(f"APPENDLIMIT={max_message_size}")
    if authenticated:
        if not compressed:
            caps.append("COMPRESS=DEFLATE")     # RFC 4978 §3: not once it is active
        return caps
    if not tls_active:
        caps.append("STARTTLS")
    if tls_active or plaintext_allowed:
        # RFC 9051 §6.2.3 / PROMISES A1: password mechanisms only over TLS (unless allowed).
        caps += ["SASL-IR", "AUTH=PLAIN", "AUTH=LOGIN"]
    else:
        caps.append("LOGINDISABLED")
    return caps
