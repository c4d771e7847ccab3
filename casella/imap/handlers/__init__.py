"""The IMAP command table: which handler runs each command, in which states, and which untagged
updates may follow it (RFC 9051 §3 state diagram, §7.5.1 EXPUNGE rule), and which commands only
poll (issue 7: a session that only polls while nothing changes is ended after
`imap.max_commands_without_progress`).

Must never: contain command logic itself.
"""

from __future__ import annotations

from casella.imap import commands as c
from casella.imap.fetch import fetch
from casella.imap.handlers import (
    append,
    auth,
    idle,
    mailbox,
    message,
    notify,
    quota,
    search,
    sort,
)
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
    c.Compress: (auth.compress, LOGGED_IN, "normal"),
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
    c.Append: (append.append, LOGGED_IN, "normal"),
    c.GetQuota: (quota.getquota, LOGGED_IN, "normal"),
    c.GetQuotaRoot: (quota.getquotaroot, LOGGED_IN, "normal"),
    c.SetQuota: (quota.setquota, LOGGED_IN, "normal"),
    c.Notify: (notify.notify, LOGGED_IN, "force"),
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
    c.Sort: (sort.sort, SELECTED, "noexp"),
    c.Thread: (sort.thread, SELECTED, "noexp"),
    c.CancelUpdate: (search.cancelupdate, SELECTED, "normal"),
}

# Commands that change nothing and read no message: repeated while nothing changes, they count
# towards imap.max_commands_without_progress.
POLLING: frozenset[type] = frozenset({
    c.Capability, c.Noop, c.Id, c.Idle, c.Check, c.Status, c.Namespace, c.List, c.Lsub,
    c.GetQuota, c.GetQuotaRoot, c.Enable, c.Notify,
})
