"""casella: a mail server for mail hosting (SMTP, IMAP, POP3, quotas, sending limits).

Lives here: the version only. Must never import submodules (the CLI must start fast).
"""

__version__ = "0.1.0"
