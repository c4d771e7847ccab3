"""GETQUOTA, GETQUOTAROOT and SETQUOTA (RFC 9208 §4.1): one quota root per account, named
"User quota", with the STORAGE (units of 1024 octets) and MESSAGE resources that have a limit.
Users cannot change quotas (admins do, with `casella user quota`), so SETQUOTA is NO [NOPERM]
and QUOTASET is not announced.

Must never: touch SQL or files.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from casella.imap import commands as c
from casella.imap import responses as r
from casella.imap.errors import Bye, No
from casella.imap.handlers.mailbox import find_mailbox
from casella.imap.session import Done
from casella.store.model import Account

if TYPE_CHECKING:
    from casella.imap.session import Session

ROOT = "User quota"


async def _account(s: Session) -> Account:
    assert s.account is not None
    acct = await s.store.get_account_by_id(s.account.id)
    if acct is None:
        raise Bye("The account no longer exists")
    return acct


def quota_line(acct: Account) -> bytes:
    """`* QUOTA "User quota" (STORAGE used limit MESSAGE used limit)` (RFC 9208 §5.1, §5.2)."""
    resources: list[bytes] = []
    if acct.quota_bytes:
        resources.append(b"STORAGE %d %d" % (acct.used_bytes // 1024, acct.quota_bytes // 1024))
    if acct.quota_messages:
        resources.append(b"MESSAGE %d %d" % (acct.used_messages, acct.quota_messages))
    return b"* QUOTA " + r.astring(ROOT.encode()) + b" (" + b" ".join(resources) + b")\r\n"


def _has_limit(acct: Account) -> bool:
    return bool(acct.quota_bytes or acct.quota_messages)


async def getquotaroot(s: Session, tag: str, cmd: c.GetQuotaRoot) -> Done:
    mb = await find_mailbox(s, cmd.mailbox)
    acct = await _account(s)
    if not _has_limit(acct):
        # RFC 9208 §4.1.2: no quota roots apply.
        s.write(b"* QUOTAROOT " + s.mbox(mb.name) + b"\r\n")
        return Done("GETQUOTAROOT completed")
    s.write(b"* QUOTAROOT " + s.mbox(mb.name) + b" " + r.astring(ROOT.encode()) + b"\r\n" +
            quota_line(acct))
    return Done("GETQUOTAROOT completed")


async def getquota(s: Session, tag: str, cmd: c.GetQuota) -> Done:
    acct = await _account(s)
    if cmd.root != ROOT.encode() or not _has_limit(acct):
        raise No("There is no such quota root", "NONEXISTENT")
    s.write(quota_line(acct))
    return Done("GETQUOTA completed")


async def setquota(s: Session, tag: str, cmd: c.SetQuota) -> Done:
    raise No("Quotas are set by the administrator of the mail service", "NOPERM")
