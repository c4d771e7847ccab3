"""Seeding: which users and mailboxes a run needs, and filling them identically for casella
(through the store API, in big batches) and for Dovecot (Maildir files written directly).

Lives here: `Plan` (the users, their seeded INBOX sizes and the shared password), `seed()` which
generates every message once in a pool of worker processes — each worker writes the Maildir
file for the peer and the staged blob file for casella and parses it with casella's parser —
and then appends the staged blobs to casella's store 2,000 per transaction (a body small enough
to be kept in the database is read back and handed over in memory, as a real APPEND stages it).

For casella this is the store contract's `append` (the same transaction IMAP APPEND uses):
UIDs, counters and quota are decided there, and ENVELOPE/BODYSTRUCTURE are precomputed, as
after a real delivery. For Dovecot the files go into `cur/` with S=/W= sizes in their names and
mtimes set to the internal date; Dovecot builds its index on first access, which the scenarios
do once, untimed, before measuring.

Must never: run while casella's server is writing to the same data_dir (it runs before start).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import corpus

DOMAIN = "bench.test"
PASSWORD = "bench-Password-4711"
MAIL_UID = 5000          # owner of the peers' Maildirs (no passwd entry needed)

_CHUNK = 500             # messages per worker task
_APPEND_BATCH = 2000     # messages per casella store transaction


def address(local: str) -> str:
    return f"{local}@{DOMAIN}"


@dataclass
class Plan:
    """Users and how many messages each INBOX starts with."""

    boxes: dict[str, int] = field(default_factory=dict)   # address -> seeded messages
    hashes: dict[str, str] = field(default_factory=dict)  # address -> kind, when not "load"

    def add(self, local: str, count: int, hash_kind: str = "load") -> str:
        addr = address(local)
        self.boxes[addr] = max(count, self.boxes.get(addr, 0))
        if hash_kind != "load":
            self.hashes[addr] = hash_kind
        return addr

    def hash_kind(self, addr: str) -> str:
        return self.hashes.get(addr, "load")

    @property
    def total(self) -> int:
        return sum(self.boxes.values())


def maildir_of(mail_root: Path, addr: str) -> Path:
    """The layout shared by Dovecot's mail_location and Postfix's virtual_mailbox_maps."""
    local, domain = addr.split("@", 1)
    return mail_root / domain / local / "Maildir"


def make_maildir(path: Path) -> None:
    for sub in ("cur", "new", "tmp"):
        (path / sub).mkdir(parents=True, exist_ok=True)


def maildir_count(path: Path) -> int:
    n = 0
    for sub in ("new", "cur"):
        try:
            with os.scandir(path / sub) as it:
                n += sum(1 for e in it if not e.name.startswith("."))
        except FileNotFoundError:
            pass
    return n


# --- the worker (runs in a child process) ----------------------------------------------------

def _work(addr: str, start: int, stop: int, blob_tmp: str | None,
          maildir: str | None) -> list[tuple[Any, ...]]:
    """Generate messages [start, stop) of `addr`; write them for the peer and/or casella."""
    parse = None
    if blob_tmp is not None:
        from casella.mail.parse import parse_message
        parse = parse_message
    out: list[tuple[Any, ...]] = []
    for i in range(start, stop):
        msg = corpus.message(addr, i)
        if maildir is not None:
            lf = corpus.to_lf(msg.data)
            name = corpus.maildir_name(msg, i, len(lf))
            path = os.path.join(maildir, "cur", name)
            with open(path, "wb") as f:
                f.write(lf)
            os.utime(path, (msg.internaldate, msg.internaldate))
            if os.geteuid() == 0:
                os.chown(path, MAIL_UID, MAIL_UID)
        if parse is not None and blob_tmp is not None:
            tmp = os.path.join(blob_tmp, f"seed.{os.getpid()}.{addr}.{i}")
            with open(tmp, "wb") as f:
                f.write(msg.data)
            p = parse(msg.data)
            out.append((tmp, hashlib.sha256(msg.data).hexdigest(), len(msg.data),
                        (p.header, p.envelope, p.bodystructure, p.body, p.parts, p.preview,
                         p.search, p.index),
                        msg.internaldate, msg.flags))
    return out


# --- casella ---------------------------------------------------------------------------------

# Password hashes. Every user has an argon2id hash, the same string in casella's store and in
# Dovecot's passwd-file (Dovecot verifies argon-cffi's strings as they are). A login costs one
# verification in both servers: Dovecot's auth cache keeps the passdb's hash, not a verified
# password, so it re-runs argon2 on each login as casella does. At casella's default cost (64 MiB,
# 3 passes, 4 lanes: ~0.2-0.3 s of CPU here) every workload with logins would measure argon2 and
# nothing else, so the load users get the scheme at its minimum cost (~1 ms), as imaptest-style
# runs use cheap passwords, and the imap-login scenario measures the real costs on their own.
HASH_PARAMS: dict[str, tuple[int, int, int]] = {   # (time_cost, memory_cost KiB, parallelism)
    "load": (1, 1024, 1),
    "owasp": (2, 19456, 1),   # OWASP's minimum recommendation
}
HASH_LABELS = {"load": "argon2id m=1M t=1 p=1 (load users)",
               "owasp": "argon2id m=19M t=2 p=1 (OWASP minimum)",
               "default": "argon2id m=64M t=3 p=4 (casella default)"}


def make_hashes() -> dict[str, str]:
    """One hash of the bench password per kind in HASH_LABELS."""
    from argon2 import PasswordHasher

    out = {kind: PasswordHasher(time_cost=t, memory_cost=m, parallelism=p).hash(PASSWORD)
           for kind, (t, m, p) in HASH_PARAMS.items()}
    try:
        from casella.auth.passwords import hash_password
        out["default"] = hash_password(PASSWORD)
    except ImportError:
        out["default"] = PasswordHasher().hash(PASSWORD)
    return out


async def _casella_accounts(store: Any, plan: Plan, hashes: dict[str, str]) -> dict[str, int]:
    """Create the domain and accounts. Returns INBOX mailbox ids."""
    if await store.get_domain(DOMAIN) is None:
        await store.add_domain(DOMAIN)
    inboxes: dict[str, int] = {}
    for addr in plan.boxes:
        acct = await store.get_account(addr)
        if acct is None:
            acct = await store.add_account(addr, hashes[plan.hash_kind(addr)], 0)
        mb = await store.get_mailbox(acct.id, "INBOX")
        inboxes[addr] = mb.id
    return inboxes


async def seed(plan: Plan, hashes: dict[str, str], *, casella_data: Path | None,
               mail_root: Path | None, log: Callable[[str], None]) -> dict[str, float]:
    """Fill every mailbox of the plan. Returns timings (seconds) for the report."""
    timings: dict[str, float] = {}
    t0 = time.monotonic()
    store = None
    inboxes: dict[str, int] = {}
    blob_tmp: Path | None = None
    if casella_data is not None:
        from casella.store.sqlite import SQLiteStore

        casella_data.mkdir(parents=True, exist_ok=True)
        store = SQLiteStore(casella_data)
        await store.open()
        inboxes = await _casella_accounts(store, plan, hashes)
        blob_tmp = store.blobs.tmp_dir
    if mail_root is not None:
        for addr in plan.boxes:
            make_maildir(maildir_of(mail_root, addr))
    tasks = []
    for addr, count in plan.boxes.items():
        for start in range(0, count, _CHUNK):
            tasks.append((addr, start, min(count, start + _CHUNK)))
    log(f"seeding {plan.total:,} messages into {len(plan.boxes)} mailboxes"
        f"{' for casella' if store else ''}{' and the peers' if mail_root else ''}")
    loop = asyncio.get_running_loop()
    pending: dict[str, list[tuple[Any, ...]]] = {a: [] for a in plan.boxes}
    append_time = 0.0
    done = 0
    next_log = 20000
    workers = max(1, min(os.cpu_count() or 1, 4))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [loop.run_in_executor(pool, _work, addr, a, b,
                                        str(blob_tmp) if blob_tmp else None,
                                        str(maildir_of(mail_root, addr)) if mail_root else None)
                   for addr, a, b in tasks]
        # Results are appended in task order so UIDs follow message numbers in each mailbox.
        for (addr, a, b), fut in zip(tasks, futures):
            items = await fut
            done += b - a
            if done >= next_log:
                log(f"  {done:,} of {plan.total:,} messages")
                next_log += 20000
            if store is None:
                continue
            pending[addr].extend(items)
            last = b == plan.boxes[addr]
            if len(pending[addr]) >= _APPEND_BATCH or (last and pending[addr]):
                t = time.monotonic()
                await _append(store, inboxes[addr], pending[addr])
                append_time += time.monotonic() - t
                pending[addr] = []
    if mail_root is not None and os.geteuid() == 0:
        for root, dirs, _files in os.walk(mail_root):
            for d in dirs:
                os.chown(os.path.join(root, d), MAIL_UID, MAIL_UID)
            os.chown(root, MAIL_UID, MAIL_UID)
    if store is not None:
        await store.close()
    timings["seed_total_s"] = time.monotonic() - t0
    timings["casella_append_s"] = append_time
    return timings


async def _append(store: Any, mailbox_id: int, items: list[tuple[Any, ...]]) -> None:
    from casella.store.blobs import ParsedData, StagedBlob
    from casella.store.model import AppendItem

    def staged_of(tmp: str, digest: str, size: int, parsed: tuple[Any, ...]) -> StagedBlob:
        # As BlobWriter stages what arrives: a body small enough to be kept in the database
        # is handed over in memory (its file was only the way out of the worker).
        if size <= store.blobs.inline_max:
            data = Path(tmp).read_bytes()
            os.unlink(tmp)
            return StagedBlob(store.blobs, None, digest, size, ParsedData(*parsed), data=data)
        return StagedBlob(store.blobs, Path(tmp), digest, size, ParsedData(*parsed))

    staged = [staged_of(tmp, digest, size, parsed)
              for tmp, digest, size, parsed, _date, _flags in items]
    try:
        await store.append(mailbox_id, [
            AppendItem(blob=s, flags=tuple(it[5]), internaldate=it[4])
            for s, it in zip(staged, items)])
    finally:
        for s in staged:
            s.discard()
