"""SQLite backend: mailboxes, messages and the POP3 bookkeeping.

Lives here: the mailbox and message operations of the store contract: UIDs, MODSEQs, counters
and quota decided inside each write job (one transaction). Must never: report a change before
COMMIT (the base publishes events after it).
"""

from __future__ import annotations

import sqlite3
from typing import Sequence

from casella.errors import (
    InvalidName,
    MailboxExists,
    MailboxNotAllowed,
    MailboxNotFound,
    NotFound,
    UserError,
)
from casella.store.base import UidRanges
from casella.store.blobs import StagedBlob
from casella.store.model import (
    AppendItem,
    AppendResult,
    Changes,
    CopyResult,
    DeliveryOutcome,
    DeliveryTarget,
    ExpungeResult,
    FlagsResult,
    Mailbox,
    MessageMeta,
    MessageStatic,
    SelectSnapshot,
    split_flags,
)
from casella.store.names import (
    normalize_mailbox_name,
    parent_names,
)
from casella.store.sqlite_base import (
    _ACCOUNT_COLS,
    _DELETED_BIT,
    _LIGHT_APPENDS,
    _LIGHT_DELIVERY_RECIPIENTS,
    _LIGHT_UIDS,
    _MAILBOX_COLS,
    _META_COLS,
    _SEEN_BIT,
    SQLiteBase,
    _account,
    _few_uids,
    _flags,
    _mailbox,
    _meta,
    _now,
    _Txn,
    _warning_waits_sql,
)

# The columns of an account joined with one of its mailboxes, for a delivery's one lookup.
_ACCOUNT_COLS_A = ", ".join("a." + c.strip() for c in _ACCOUNT_COLS.split(","))
_MAILBOX_COLS_M = ", ".join("m." + c.strip() for c in _MAILBOX_COLS.split(","))
_N_ACCOUNT_COLS = _ACCOUNT_COLS.count(",") + 1


def _all_uids(conn: sqlite3.Connection, mailbox_id: int) -> list[int]:
    """Every UID of a mailbox, ascending. SQLite joins them into one string, which Python
    splits: for 100k messages about half the time of one row tuple per UID. (The order inside
    group_concat is SQLite's own, so the list is sorted again: on sorted input that is one
    linear pass.)"""
    joined = conn.execute("SELECT group_concat(uid) FROM messages WHERE mailbox_id = ?",
                          (mailbox_id,)).fetchone()[0]
    if not joined:
        return []
    uids = list(map(int, joined.split(",")))
    uids.sort()
    return uids


class MailOps(SQLiteBase):
    # --- mailboxes -------------------------------------------------------------------------

    def _create_missing_parents(self, cur: sqlite3.Connection, account_id: int,
                                canon: str) -> None:
        """RFC 3501 CREATE: "a/b/c" brings "a" and "a/b" into being when they are not there."""
        for parent in parent_names(canon):
            if self._find_mailbox(cur, account_id, parent) is None:
                self._create_mailbox_row(cur, account_id, parent, None)

    def _create_mailbox_row(self, cur: sqlite3.Connection, account_id: int, name: str,
                            special_use: str | None, selectable: bool = True) -> int:
        c = cur.execute(
            "INSERT INTO mailboxes (account_id, name, uidvalidity, special_use, selectable, "
            "created) VALUES (?, ?, ?, ?, ?, ?)",
            (account_id, name, self._next_uidvalidity(cur), special_use, int(selectable),
             _now()))
        return int(c.lastrowid or 0)

    @staticmethod
    def _find_mailbox(cur: sqlite3.Connection, account_id: int, name: str) -> Mailbox | None:
        row = cur.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE account_id = ? "
                          "AND name = ?", (account_id, name)).fetchone()
        return _mailbox(row) if row else None

    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        return await self._read(lambda c: [_mailbox(r) for r in c.execute(
            f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE account_id = ? "
            "ORDER BY name != 'INBOX', name",
            (account_id,))])

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        try:
            canon = normalize_mailbox_name(name)
        except InvalidName:
            return None
        return await self._read(lambda c: self._find_mailbox(c, account_id, canon))

    async def get_mailbox_by_id(self, mailbox_id: int) -> Mailbox | None:
        return await self._read(lambda c: (lambda r: _mailbox(r) if r else None)(c.execute(
            f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id = ?", (mailbox_id,)).fetchone()))

    async def create_mailbox(self, account_id: int, name: str,
                             special_use: str | None = None) -> Mailbox:
        canon = normalize_mailbox_name(name)

        def op(txn: _Txn) -> Mailbox:
            cur = txn.cur
            self._account_row(cur, account_id)
            self._create_missing_parents(cur, account_id, canon)
            existing = self._find_mailbox(cur, account_id, canon)
            if existing is not None:
                if existing.selectable:
                    raise MailboxExists(f"mailbox {canon} already exists")
                cur.execute("UPDATE mailboxes SET selectable = 1, uidvalidity = ?, uidnext = 1, "
                            "first_recent_uid = 1, special_use = ? WHERE id = ?",
                            (self._next_uidvalidity(cur), special_use, existing.id))
                return self._mailbox_row(cur, existing.id)
            return self._mailbox_row(cur, self._create_mailbox_row(cur, account_id, canon,
                                                                   special_use))
        return await self._write(op)

    def _drop_mailbox_contents(self, txn: _Txn, mailbox_id: int) -> None:
        cur = txn.cur
        mb = self._mailbox_row(cur, mailbox_id)
        blob_counts: dict[int, int] = {}
        for blob_id, n in cur.execute("SELECT blob_id, count(*) FROM messages "
                                      "WHERE mailbox_id = ? GROUP BY blob_id", (mailbox_id,)):
            blob_counts[blob_id] = n
        self._release_blobs(txn, blob_counts)
        cur.execute("DELETE FROM messages WHERE mailbox_id = ?", (mailbox_id,))
        cur.execute("DELETE FROM expunged WHERE mailbox_id = ?", (mailbox_id,))
        cur.execute("DELETE FROM mailbox_keywords WHERE mailbox_id = ?", (mailbox_id,))
        cur.execute("UPDATE accounts SET used_messages = used_messages - ?, "
                    "used_bytes = used_bytes - ? WHERE id = ?",
                    (mb.messages, mb.size, mb.account_id))
        cur.execute("UPDATE mailboxes SET messages = 0, unseen = 0, deleted = 0, size = 0 "
                    "WHERE id = ?", (mailbox_id,))
        txn.events.append((mb.account_id, mb.id, mb.highestmodseq + 1))

    async def delete_mailbox(self, account_id: int, name: str) -> None:
        canon = normalize_mailbox_name(name)
        if canon == "INBOX":
            raise MailboxNotAllowed("INBOX cannot be deleted")

        def op(txn: _Txn) -> None:
            cur = txn.cur
            mb = self._find_mailbox(cur, account_id, canon)
            if mb is None:
                raise MailboxNotFound(f"mailbox {canon} does not exist")
            has_children = cur.execute(
                "SELECT 1 FROM mailboxes WHERE account_id = ? AND substr(name, 1, ?) = ? "
                "LIMIT 1", (account_id, len(canon) + 1, canon + "/")).fetchone() is not None
            if has_children and not mb.selectable:
                raise MailboxNotAllowed(f"{canon} has child mailboxes; delete them first")
            self._drop_mailbox_contents(txn, mb.id)
            if has_children:
                # RFC 3501 §6.3.4: the name stays, \Noselect, for its children.
                cur.execute("UPDATE mailboxes SET selectable = 0, special_use = NULL "
                            "WHERE id = ?", (mb.id,))
            else:
                cur.execute("DELETE FROM mailboxes WHERE id = ?", (mb.id,))
        await self._write(op)

    async def rename_mailbox(self, account_id: int, old: str, new: str) -> None:
        src = normalize_mailbox_name(old)
        dst = normalize_mailbox_name(new)

        def op(txn: _Txn) -> None:
            cur = txn.cur
            mb = self._find_mailbox(cur, account_id, src)
            if mb is None:
                raise MailboxNotFound(f"mailbox {src} does not exist")
            if self._find_mailbox(cur, account_id, dst) is not None:
                raise MailboxExists(f"mailbox {dst} already exists")
            if dst.startswith(src + "/") and src != "INBOX":
                raise MailboxNotAllowed("a mailbox cannot be moved inside itself")
            for parent in parent_names(dst):
                if self._find_mailbox(cur, account_id, parent) is None:
                    self._create_mailbox_row(cur, account_id, parent, None)
            if src == "INBOX":
                self._rename_inbox(txn, mb, dst)
                return
            children = cur.execute(
                "SELECT id, name FROM mailboxes WHERE account_id = ? AND substr(name, 1, ?) = ?",
                (account_id, len(src) + 1, src + "/")).fetchall()
            for mailbox_id, name in [(mb.id, src)] + children:
                new_name = dst + name[len(src):]
                cur.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new_name, mailbox_id))
                if cur.execute("DELETE FROM subscriptions WHERE account_id = ? AND name = ?",
                               (account_id, name)).rowcount:
                    cur.execute("INSERT OR IGNORE INTO subscriptions (account_id, name) "
                                "VALUES (?, ?)", (account_id, new_name))
                txn.events.append((account_id, mailbox_id, 0))
        await self._write(op)

    def _rename_inbox(self, txn: _Txn, inbox: Mailbox, dst: str) -> None:
        """RFC 3501 §6.3.5: move every message of INBOX into a new mailbox; INBOX stays,
        empty, keeping its UIDVALIDITY and UIDNEXT (its UIDs are never reused)."""
        cur = txn.cur
        new_id = self._create_mailbox_row(cur, inbox.account_id, dst, None)
        rows = cur.execute("SELECT uid, flags, size, blob_id FROM messages WHERE mailbox_id = ?",
                           (inbox.id,)).fetchall()
        cur.execute("UPDATE messages SET mailbox_id = ?, modseq = 1 WHERE mailbox_id = ?",
                    (new_id, inbox.id))
        cur.execute("UPDATE mailboxes SET uidnext = ?, highestmodseq = 1, messages = ?, "
                    "unseen = ?, deleted = ?, size = ? WHERE id = ?",
                    (inbox.uidnext, inbox.messages, inbox.unseen, inbox.deleted, inbox.size,
                     new_id))
        cur.execute("INSERT OR IGNORE INTO mailbox_keywords (mailbox_id, keyword) "
                    "SELECT ?, keyword FROM mailbox_keywords WHERE mailbox_id = ?",
                    (new_id, inbox.id))
        modseq = inbox.highestmodseq + 1
        cur.executemany("INSERT OR REPLACE INTO expunged (mailbox_id, uid, modseq) "
                        "VALUES (?, ?, ?)", [(inbox.id, r[0], modseq) for r in rows])
        cur.execute("UPDATE mailboxes SET messages = 0, unseen = 0, deleted = 0, size = 0, "
                    "highestmodseq = ? WHERE id = ?", (modseq, inbox.id))
        txn.events.append((inbox.account_id, inbox.id, modseq))

    async def set_special_use(self, mailbox_id: int, special_use: str | None) -> None:
        def op(txn: _Txn) -> None:
            if txn.cur.execute("UPDATE mailboxes SET special_use = ? WHERE id = ?",
                               (special_use, mailbox_id)).rowcount == 0:
                raise MailboxNotFound("the mailbox does not exist")
        await self._write(op)

    async def subscribe(self, account_id: int, name: str) -> None:
        canon = normalize_mailbox_name(name)
        await self._write(lambda t: t.cur.execute(
            "INSERT OR IGNORE INTO subscriptions (account_id, name) VALUES (?, ?)",
            (account_id, canon)) and None)

    async def unsubscribe(self, account_id: int, name: str) -> None:
        canon = normalize_mailbox_name(name)

        def op(txn: _Txn) -> None:
            if txn.cur.execute("DELETE FROM subscriptions WHERE account_id = ? AND name = ?",
                               (account_id, canon)).rowcount == 0:
                raise NotFound(f"not subscribed to {canon}")
        await self._write(op)

    async def list_subscriptions(self, account_id: int) -> list[str]:
        return await self._read(lambda c: [r[0] for r in c.execute(
            "SELECT name FROM subscriptions WHERE account_id = ? ORDER BY name", (account_id,))])

    # --- messages: reads -------------------------------------------------------------------

    async def select(self, mailbox_id: int) -> SelectSnapshot:
        def q(conn: sqlite3.Connection) -> SelectSnapshot:
            row = conn.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id = ?",
                               (mailbox_id,)).fetchone()
            if row is None:
                raise MailboxNotFound("the mailbox does not exist")
            mb = _mailbox(row)
            uids = _all_uids(conn, mailbox_id)
            unseen = conn.execute("SELECT min(uid) FROM messages WHERE mailbox_id = ? "
                                  "AND (flags & 1) = 0", (mailbox_id,)).fetchone()[0]
            keywords = tuple(r[0] for r in conn.execute(
                "SELECT keyword FROM mailbox_keywords WHERE mailbox_id = ? ORDER BY keyword",
                (mailbox_id,)))
            return SelectSnapshot(mb, uids, unseen, keywords)
        return await self._read_snapshot(q)

    async def fetch_meta(self, mailbox_id: int, uids: UidRanges) -> list[MessageMeta]:
        return await self._read_snapshot(lambda c: [_meta(r) for r in self._select_ranges(
            c, _META_COLS, mailbox_id, uids)])

    async def fetch_static(self, blob_ids: Sequence[int]) -> dict[int, MessageStatic]:
        ids = list(dict.fromkeys(blob_ids))

        def q(conn: sqlite3.Connection) -> dict[int, MessageStatic]:
            out: dict[int, MessageStatic] = {}
            for i in range(0, len(ids), 500):
                chunk = ids[i:i + 500]
                marks = ",".join("?" * len(chunk))
                for r in conn.execute(
                        "SELECT id, digest, size, header, envelope, bodystructure, body, parts, "
                        f"preview FROM blobs WHERE id IN ({marks})", chunk):
                    out[r[0]] = MessageStatic(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
                                              r[8])
            return out
        return await self._read(q)

    async def changes_since(self, mailbox_id: int, modseq: int) -> Changes:
        def q(conn: sqlite3.Connection) -> Changes:
            row = conn.execute(f"SELECT {_MAILBOX_COLS} FROM mailboxes WHERE id = ?",
                               (mailbox_id,)).fetchone()
            if row is None:
                raise MailboxNotFound("the mailbox does not exist")
            mb = _mailbox(row)
            if mb.highestmodseq <= modseq:
                return Changes(mb, (), ())
            msgs = tuple(_meta(r) for r in conn.execute(
                f"SELECT {_META_COLS} FROM messages WHERE mailbox_id = ? AND modseq > ? "
                "ORDER BY uid", (mailbox_id, modseq)))
            gone = tuple(r[0] for r in conn.execute(
                "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
                (mailbox_id, modseq)))
            return Changes(mb, msgs, gone)
        return await self._read_snapshot(q)

    async def claim_recent(self, mailbox_id: int) -> tuple[int, int]:
        def op(txn: _Txn) -> tuple[int, int]:
            mb = self._mailbox_row(txn.cur, mailbox_id)
            if mb.first_recent_uid < mb.uidnext:
                txn.cur.execute("UPDATE mailboxes SET first_recent_uid = ? WHERE id = ?",
                                (mb.uidnext, mailbox_id))
            return mb.first_recent_uid, max(mb.first_recent_uid, mb.uidnext)
        return await self._write(op, light=True)

    # --- messages: writes ------------------------------------------------------------------

    async def append(self, mailbox_id: int, items: Sequence[AppendItem],
                     claim_recent: bool = False) -> AppendResult:
        if not items:
            raise UserError("nothing to append")

        def op(txn: _Txn) -> AppendResult:
            cur = txn.cur
            mb = self._selectable(cur, mailbox_id)
            acct = self._account_row(cur, mb.account_id)
            self._check_quota(acct, sum(i.blob.size for i in items), len(items))
            now = _now()
            rows = []
            all_keywords: set[str] = set()
            for item in items:
                bits, keywords = split_flags(item.flags)
                all_keywords.update(keywords)
                blob_id = self._blob_ref(txn, item.blob)
                rows.append((bits, " ".join(keywords), item.internaldate or now, now,
                             item.blob.size, blob_id))
            self._register_keywords(cur, mb.id, sorted(all_keywords))
            uids = self._insert_messages(txn, mb, rows, acct)
            recent = None
            if claim_recent:
                # As claim_recent does, with the new messages' UIDs already given out.
                recent = (mb.first_recent_uid, uids[-1] + 1)
                cur.execute("UPDATE mailboxes SET first_recent_uid = ? WHERE id = ?",
                            (uids[-1] + 1, mb.id))
            return AppendResult(mb.uidvalidity, uids, mb.highestmodseq + 1, recent,
                                self._quota_warning_waits(cur, acct))
        return await self._write(op, light=len(items) <= _LIGHT_APPENDS)

    async def deliver(self, blob: StagedBlob,
                      targets: Sequence[DeliveryTarget]) -> list[DeliveryOutcome]:
        return await self._write(lambda txn: self._deliver_txn(txn, blob, targets),
                                 light=len(targets) <= _LIGHT_DELIVERY_RECIPIENTS)

    def _deliver_txn(self, txn: _Txn, blob: StagedBlob,
                     targets: Sequence[DeliveryTarget]) -> list[DeliveryOutcome]:
        """The body of `deliver` inside a write job. A target that fails (no account, no
        mailbox, over quota) fails before anything is written for it, so it needs no
        savepoint of its own: the statements are few because each one hands the GIL to the
        event loop and back while every worker waits for this write lock."""
        cur = txn.cur
        outcomes: list[DeliveryOutcome] = []
        now = _now()
        for target in targets:
            try:
                try:
                    name = normalize_mailbox_name(target.mailbox)
                except InvalidName:
                    name = "INBOX"
                # The last column: whether a quota warning already waits to be taken.
                row = cur.execute(
                    f"SELECT {_ACCOUNT_COLS_A}, {_MAILBOX_COLS_M}, {_warning_waits_sql('a.id')} "
                    "FROM accounts a LEFT JOIN mailboxes m ON m.account_id = a.id AND m.name = ? "
                    "WHERE a.id = ?", (name, target.account_id)).fetchone()
                if row is None:
                    raise NotFound("the account does not exist")
                acct = _account(row[:_N_ACCOUNT_COLS])
                mb = _mailbox(row[_N_ACCOUNT_COLS:-1]) \
                    if row[_N_ACCOUNT_COLS] is not None else None
                warning_waited = bool(row[-1])
                if (mb is None or not mb.selectable) and name != "INBOX":
                    mb = self._find_mailbox(cur, acct.id, "INBOX")
                if mb is None:
                    raise MailboxNotFound(f"{acct.address} has no INBOX")
                self._check_quota(acct, blob.size, 1)
            except (UserError, NotFound) as exc:
                outcomes.append(DeliveryOutcome(target, error=exc))
                continue
            bits, keywords = split_flags(target.flags)
            self._register_keywords(cur, mb.id, keywords)
            blob_id = self._blob_ref(txn, blob)
            (uid,) = self._insert_messages(
                txn, mb, [(bits, " ".join(keywords), now, now, blob.size, blob_id)], acct)
            outcomes.append(DeliveryOutcome(
                target, mb.id, uid,
                quota_warning=acct.has_quota and (
                    warning_waited or acct.id in txn.quota_crossed)))
        return outcomes

    async def copy(self, src_mailbox_id: int, uids: UidRanges,
                   dst_mailbox_id: int) -> CopyResult:
        return await self._write(lambda t: self._copy(t, src_mailbox_id, uids, dst_mailbox_id,
                                                      move=False))

    async def move(self, src_mailbox_id: int, uids: UidRanges,
                   dst_mailbox_id: int) -> CopyResult:
        return await self._write(lambda t: self._copy(t, src_mailbox_id, uids, dst_mailbox_id,
                                                      move=True))

    def _copy(self, txn: _Txn, src_id: int, uids: UidRanges, dst_id: int,
              move: bool) -> CopyResult:
        cur = txn.cur
        src = self._selectable(cur, src_id)
        dst = self._selectable(cur, dst_id)
        rows = self._select_ranges(cur, "uid, flags, keywords, internaldate, size, blob_id",
                                   src_id, uids)
        if not rows:
            return CopyResult(dst.uidvalidity, ())
        total = sum(r[4] for r in rows)
        same_account = src.account_id == dst.account_id
        if not (move and same_account):
            self._check_quota(self._account_row(cur, dst.account_id), total, len(rows))
        now = _now()
        new_rows = [(r[1], r[2], r[3], now, r[4], r[5]) for r in rows]
        blob_counts: dict[int, int] = {}
        for r in rows:
            blob_counts[r[5]] = blob_counts.get(r[5], 0) + 1
        cur.executemany("UPDATE blobs SET refcount = refcount + ? WHERE id = ?",
                        [(n, b) for b, n in blob_counts.items()])
        keywords = sorted({k for r in rows if r[2] for k in r[2].split(" ")})
        self._register_keywords(cur, dst.id, keywords)
        dst_uids = self._insert_messages(txn, dst, new_rows)
        pairs = tuple(zip((r[0] for r in rows), dst_uids))
        expunged: tuple[int, ...] = ()
        if move:
            # Read again: when source and target are one mailbox (RFC 6851 §3.3 allows it),
            # the insert above moved its UIDNEXT and MODSEQ on, and the expunge comes after.
            src = self._mailbox_row(cur, src_id)
            self._remove_rows(txn, src, [(r[0], r[1], r[4], r[5]) for r in rows])
            expunged = tuple(r[0] for r in rows)
        return CopyResult(dst.uidvalidity, pairs, expunged)

    async def store_flags(self, mailbox_id: int, uids: UidRanges, mode: str,
                          flags: Sequence[str], unchangedsince: int | None = None) -> FlagsResult:
        if mode not in ("add", "remove", "replace"):
            raise ValueError(f"bad flag mode {mode!r}")
        bits, keywords = split_flags(flags)
        kw_lower = {k.lower() for k in keywords}

        def op(txn: _Txn) -> FlagsResult:
            cur = txn.cur
            mb = self._selectable(cur, mailbox_id)
            rows = self._select_ranges(cur, _META_COLS, mailbox_id, uids)
            modseq = mb.highestmodseq + 1
            changed: list[MessageMeta] = []
            unchanged: list[MessageMeta] = []
            modified: list[int] = []
            updates: list[tuple[int, str, int, int, int]] = []
            d_unseen = d_deleted = 0
            for r in rows:
                uid, old_mod, old_bits, old_kw_s = r[0], r[1], r[2], r[3]
                if unchangedsince is not None and old_mod > unchangedsince:
                    modified.append(uid)
                    continue
                old_kw = old_kw_s.split(" ") if old_kw_s else []
                if mode == "add":
                    new_bits = old_bits | bits
                    have = {k.lower() for k in old_kw}
                    new_kw = old_kw + [k for k in keywords if k.lower() not in have]
                elif mode == "remove":
                    new_bits = old_bits & ~bits
                    new_kw = [k for k in old_kw if k.lower() not in kw_lower]
                else:
                    new_bits = bits
                    new_kw = list(keywords)
                new_kw_s = " ".join(sorted(new_kw, key=str.lower))
                if new_bits == old_bits and new_kw_s == old_kw_s:
                    unchanged.append(_meta(r))
                    continue
                updates.append((new_bits, new_kw_s, modseq, mailbox_id, uid))
                d_unseen += (not new_bits & _SEEN_BIT) - (not old_bits & _SEEN_BIT)
                d_deleted += bool(new_bits & _DELETED_BIT) - bool(old_bits & _DELETED_BIT)
                changed.append(MessageMeta(uid, modseq, _flags(new_bits, new_kw_s), r[4], r[5],
                                           r[6], r[7]))
            if updates:
                cur.executemany("UPDATE messages SET flags = ?, keywords = ?, modseq = ? "
                                "WHERE mailbox_id = ? AND uid = ?", updates)
                if mode != "remove":
                    self._register_keywords(cur, mailbox_id, keywords)
                self._adjust(cur, mailbox_id, mb.account_id, unseen=d_unseen, deleted=d_deleted,
                             modseq=modseq)
                txn.events.append((mb.account_id, mailbox_id, modseq))
            return FlagsResult(tuple(changed), tuple(unchanged), tuple(modified),
                               modseq if updates else mb.highestmodseq)
        return await self._write(op, light=_few_uids(uids))

    async def expunge(self, mailbox_id: int, uids: UidRanges | None = None) -> ExpungeResult:
        def op(txn: _Txn) -> ExpungeResult:
            cur = txn.cur
            mb = self._selectable(cur, mailbox_id)
            if uids is None:
                rows = cur.execute("SELECT uid, flags, size, blob_id FROM messages "
                                   "WHERE mailbox_id = ? AND (flags & 8) != 0 ORDER BY uid",
                                   (mailbox_id,)).fetchall()
            else:
                rows = self._select_ranges(cur, "uid, flags, size, blob_id", mailbox_id, uids,
                                           " AND (flags & 8) != 0")
            if not rows:
                return ExpungeResult((), mb.highestmodseq)
            modseq = self._remove_rows(txn, mb, rows)
            return ExpungeResult(tuple(r[0] for r in rows), modseq)
        # Without UIDs every \Deleted message of the mailbox is looked for: not light.
        return await self._write(op, light=uids is not None and _few_uids(uids))

    async def remove_messages(self, mailbox_id: int, uids: UidRanges) -> ExpungeResult:
        def op(txn: _Txn) -> ExpungeResult:
            mb = self._selectable(txn.cur, mailbox_id)
            rows = self._select_ranges(txn.cur, "uid, flags, size, blob_id", mailbox_id, uids)
            if not rows:
                return ExpungeResult((), mb.highestmodseq)
            modseq = self._remove_rows(txn, mb, rows)
            return ExpungeResult(tuple(r[0] for r in rows), modseq)
        return await self._write(op, light=_few_uids(uids))

    # --- POP3 bookkeeping ------------------------------------------------------------------

    async def pop3_list(self, mailbox_id: int) -> list[tuple[MessageMeta, int | None]]:
        def q(conn: sqlite3.Connection) -> list[tuple[MessageMeta, int | None]]:
            self._mailbox_row(conn, mailbox_id)
            return [(_meta(r), r[8]) for r in conn.execute(
                f"SELECT {_META_COLS}, pop3_retrieved FROM messages WHERE mailbox_id = ? "
                "AND pop3_hidden = 0 ORDER BY uid", (mailbox_id,))]
        return await self._read_snapshot(q)

    async def pop3_mark_retrieved(self, mailbox_id: int, uids: Sequence[int], when: int) -> None:
        if not uids:
            return
        await self._write(lambda t: t.cur.executemany(
            "UPDATE messages SET pop3_retrieved = ? WHERE mailbox_id = ? AND uid = ? "
            "AND pop3_retrieved IS NULL", [(when, mailbox_id, u) for u in uids]) and None,
            light=len(uids) <= _LIGHT_UIDS)

    async def pop3_hide(self, mailbox_id: int, uids: Sequence[int]) -> None:
        if not uids:
            return
        await self._write(lambda t: t.cur.executemany(
            "UPDATE messages SET pop3_hidden = 1 WHERE mailbox_id = ? AND uid = ?",
            [(mailbox_id, u) for u in uids]) and None, light=len(uids) <= _LIGHT_UIDS)
