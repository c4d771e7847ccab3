"""The IMAP command table: which handler runs each command, in which states, and which untagged
updates may follow it (RFC 9051 §3 state diagram, §7.5.1 EXPUNGE rule).

Must never: contain command logic itself.
"""

from __future__ import annotations

from casella.imap import commands as c
from casella.imap.fetch import fetch
from casella.imap.handlers import auth, idle, mailbox, message, search
from casella.imap.session import ANY, AUTH, LOGGED_IN, NOT_AUTH, SELECTED, Handler

# command type -> (handler, allowed states, update mode: "normal" | "noexp" | "force")
TABLE: dict[type, tuple[Handler, int, str]] = {
    c.Capability: (auth.capability, ANY, "normal"),
    c.Noop: (auth.noop, ANY, "force"),
    c.Logout: (auth.logout, ANY, "normal"),
    c.Id: (auth.id_, ANY, "normal"),
    c.StartTLS: (auth.starttls, NOT_AUTH, "normal"),
    c.Authenticate: (auth.authenticate, NOT_AUTH, "normal"),
    c.Login: (auth.login, NOT_AUTH, "normal"),
    c.Enable: (auth.enable, AUTH, "normal"),
    c.Namespace: (mailbox.namespace, LOGGED_IN, "normal"),
    c.Select: (mailbox.select, LOGGED_IN, "normal"),
    c.Create: (mailbox.create, LOGGED_IN, "normal"),
    c.Delete: (mailbox.delete, LOGGED_IN, "normal"),
    c.Rename: (mailbox.rename, LOGGED_IN, "normal"),
    c.Subscribe: (mailbox.subscribe, LOGGED_IN, "normal"),
    c.Unsubscribe: (mailbox.unsubscribe, LOGGED_IN, "normal"),
    c.List: (mailbox.list_, LOGGED_IN, "normal"),
    c.Lsub: (mailbox.lsub, LOGGED_IN, "normal"),
    c.Status: (mailbox.status, LOGGED_IN, "normal"),
    c.Append: (mailbox.append, LOGGED_IN, "normal"),
    c.Idle: (idle.idle, LOGGED_IN, "force"),
    c.Check: (message.check, SELECTED, "force"),
    c.Close: (message.close, SELECTED, "normal"),
    c.Unselect: (message.unselect, SELECTED, "normal"),
    c.Expunge: (message.expunge, SELECTED, "normal"),
    c.Copy: (message.copy, SELECTED, "normal"),
    c.Move: (message.move, SELECTED, "normal"),
    c.Store: (message.store, SELECTED, "noexp"),
    c.Fetch: (fetch, SELECTED, "noexp"),
    c.Search: (search.search, SELECTED, "noexp"),
}
