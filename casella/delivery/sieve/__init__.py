"""Sieve (RFC 5228 and the extensions in casella.delivery.sieve.validate.EXTENSIONS), written
by hand and pure: grammar (the parser), validate (the checks made before a script is stored),
message (what a script sees of a message) and interp (a run: script + message + envelope ->
the actions to take). Nothing here does I/O; casella.delivery.filtering carries the actions
out. Scripts are customer input: every dimension is bounded.
"""

from casella.delivery.sieve.grammar import SieveError
from casella.delivery.sieve.interp import (
    Discard,
    FileInto,
    Limits,
    Outcome,
    Redirect,
    Reject,
    Vacation,
    run,
)
from casella.delivery.sieve.message import Envelope, MessageView
from casella.delivery.sieve.validate import EXTENSIONS, Script, compile_script

__all__ = ["EXTENSIONS", "Discard", "Envelope", "FileInto", "Limits", "MessageView", "Outcome",
           "Redirect", "Reject", "Script", "SieveError", "Vacation", "compile_script", "run"]
