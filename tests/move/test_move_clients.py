"""Moving mailboxes without re-downloads (issue 19), checked with the clients people use:
mbsync (Debian's isync) and fetchmail with `keep` and UIDL sync against the old server, the
mail moves (`casella export` + `casella import`, or `casella import --from-dovecot` from a
private Dovecot's Maildirs), and the same clients, pointed at casella, find nothing to
download: every folder's UIDVALIDITY, UIDs and flags are the old server's, and so are the
POP3 UIDLs.

Must never: need a binary that is not installed (each test skips, naming the Debian package),
touch the system's Dovecot, or read or write outside tmp_path.
"""

from __future__ import annotations

import asyncio
import imaplib
import io
import poplib
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from casella.move.common import Selection
from casella.move.dovecot_import import import_dovecot
from casella.move.exporter import export_store
from casella.move.importer import import_export
from casella.move.progress import Progress
from casella.server import open_store
from tests.clients.test_imap_clients import client_env, maildir_listing, run_client
from tests.clients.test_pop_smtp_clients import Fetchmail, check_body
from tests.conftest import RunningServer
from tests.move import dovecot_peer

USER = "user@example.test"       # what tests.clients' Fetchmail logs in as
PASSWORD = "secret"
PLAIN = {"allow_plaintext_without_tls": True, "failure_delay": 0.01, "max_failure_delay": 0.05}
# Where the mail is, as the IMAP server names it with its own separator.
FOLDERS = {"INBOX": "INBOX", "Sent": "Sent", "Lists/dev": "Lists{sep}dev",
           "Grüße": "Gr&APwA3w-e"}
_STATUS = re.compile(rb"UIDNEXT (\d+) UIDVALIDITY (\d+)|UIDVALIDITY (\d+) UIDNEXT (\d+)")


def need(binary: str, package: str) -> None:
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (Debian package {package}; .ci/run "
                    "installs it)")


def letter(n: int, folder: str = "INBOX") -> bytes:
    """A message as tests.clients' check_body expects it (its body needs dot-stuffing)."""
    return (f"From: Sender <sender@example.org>\r\nTo: <{USER}>\r\n"
            f"Subject: {folder} {n}\r\nMessage-ID: <{folder.replace('/', '.')}-{n}@example.org>"
            f"\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n"
            f"Body of {folder} {n}.\r\n.\r\n..two dots\r\n.leading dot\r\nEnd {n}.\r\n"
            ).encode()


def seed(port: int, sep: str) -> None:
    """Mail in four folders (one nested under a parent that holds nothing, one with a
    non-ASCII name), with flags and keywords, and gaps in the UIDs from expunges."""
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login(USER, PASSWORD)
    for name in ("Sent", FOLDERS["Lists/dev"].format(sep=sep), FOLDERS["Grüße"]):
        typ, data = c.create(name)
        assert typ == "OK", (name, data)
    for n in range(14):
        flags = ["\\Seen"] if n % 3 == 0 else []
        flags += ["\\Flagged"] if n % 5 == 0 else []
        flags += ["$Label1"] if n % 4 == 1 else []
        assert c.append("INBOX", f"({' '.join(flags)})", '"01-Jan-2024 10:00:00 +0000"',
                        letter(n))[0] == "OK"
    for folder, count in (("Sent", 3), ("Lists/dev", 4), ("Grüße", 2)):
        for n in range(count):
            assert c.append(FOLDERS[folder].format(sep=sep), "(\\Seen \\Answered)", None,
                            letter(n, folder))[0] == "OK"
    c.select("INBOX")
    c.uid("STORE", "3,7", "+FLAGS.SILENT", "(\\Deleted)")
    c.expunge()
    c.uid("STORE", "9", "+FLAGS.SILENT", "(\\Deleted)")       # stays, flagged \Deleted
    for name in ("Sent", FOLDERS["Lists/dev"].format(sep=sep)):
        c.subscribe(name)
    c.logout()


def imap_state(port: int, sep: str) -> dict[str, object]:
    """Per folder: UIDVALIDITY, UIDNEXT, and each UID's flags (\\Recent left out)."""
    c = imaplib.IMAP4("127.0.0.1", port)
    c.login(USER, PASSWORD)
    out: dict[str, object] = {}
    for folder, raw in FOLDERS.items():
        name = raw.format(sep=sep)
        typ, data = c.status(name, "(UIDVALIDITY UIDNEXT)")
        assert typ == "OK", (name, data)
        m = _STATUS.search(data[0])
        assert m, data
        uidnext, uidvalidity = (m.group(1), m.group(2)) if m.group(1) else (m.group(4),
                                                                             m.group(3))
        c.select(name, readonly=True)
        typ, data = c.uid("FETCH", "1:*", "(FLAGS)")
        flags = {}
        for item in data:
            if item is None:
                continue
            uid = int(re.search(rb"UID (\d+)", item).group(1))  # type: ignore[union-attr]
            got = re.search(rb"FLAGS \(([^)]*)\)", item).group(1)  # type: ignore[union-attr]
            flags[uid] = frozenset(got.decode().split()) - {"\\Recent"}
        out[folder] = (int(uidvalidity), int(uidnext), flags)
    c.logout()
    return out


def pop3_uidls(port: int) -> list[bytes]:
    p = poplib.POP3("127.0.0.1", port, timeout=30)
    p.user(USER)
    p.pass_(PASSWORD)
    listing = p.uidl()[1]
    p.quit()
    return [line.split()[1] for line in listing]


class Mbsync:
    """mbsync with its Maildir and state in tmp_path; `port` is whichever server it syncs
    with now (the state files remember UIDVALIDITY and UIDs, as on a user's PC)."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path / "Mail"
        self.root.mkdir()
        self.config = tmp_path / "mbsyncrc"
        self.env = client_env(tmp_path)

    def sync(self, port: int) -> str:
        self.config.write_text(f"""\
IMAPAccount server
Host 127.0.0.1
Port {port}
User {USER}
Pass {PASSWORD}
SSLType None
AuthMechs LOGIN

IMAPStore remote
Account server

MaildirStore local
Path {self.root}/
Inbox {self.root}/INBOX
SubFolders Verbatim

Channel everything
Far :remote:
Near :local:
Patterns *
Create Near
Expunge None
SyncState *
""")
        return run_client(["mbsync", "-c", str(self.config), "-a"], self.env)


def clients_before(tmp_path: Path, imap_port: int, pop3_port: int
                   ) -> tuple[Mbsync, Fetchmail, list[str]]:
    """Both clients sync with the old server: mbsync pulls every folder, fetchmail (keep,
    UIDL) downloads INBOX."""
    mbsync = Mbsync(tmp_path)
    mbsync.sync(imap_port)
    listing = maildir_listing(mbsync.root)
    assert len(listing) == 12 + 3 + 4 + 2, listing
    fm = Fetchmail(tmp_path, f"poll 127.0.0.1 port {pop3_port} protocol pop3 uidl",
                   "sslproto '' keep")
    got = fm.run(expect=0)
    assert len({check_body(p.read_bytes()) for p in got}) == 12
    return mbsync, fm, listing


def clients_after(mbsync: Mbsync, fm: Fetchmail, listing: list[str], imap_port: int,
                  pop3_port: int, old_pop3_port: int) -> None:
    """Pointed at casella, neither client downloads anything, and mbsync changes no flag."""
    mbsync.sync(imap_port)
    assert maildir_listing(mbsync.root) == listing
    fm.rcfile.write_text(fm.rcfile.read_text().replace(f"port {old_pop3_port} ",
                                                       f"port {pop3_port} "))
    assert fm.run(expect=1) == []


def quiet(verb: str = "imported") -> Progress:
    return Progress(verb, 0, io.StringIO(), tty=False)


def hasher() -> PasswordHasher:
    # Cheap parameters: the password is checked on every client run, by both servers.
    return PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.mark.timeout(600)
def test_from_dovecot_nothing_new(make_server: Callable[..., RunningServer],
                                  tmp_path: Path) -> None:
    """`casella import --from-dovecot`: after mbsync and fetchmail synced with Debian's
    Dovecot, the Maildirs move into casella (passwords from Dovecot's passwd-file) and the
    same clients find nothing to download. POP3 UIDLs are Dovecot's own (its %08Xu%08Xv
    writes lower-case hex, casella's upper-case: every one is kept with its message)."""
    reason = dovecot_peer.unavailable()
    if reason:
        pytest.skip(reason)
    need("mbsync", "isync")
    need("fetchmail", "fetchmail")
    dovecot = dovecot_peer.PrivateDovecot(tmp_path / "dovecot",
                                          {USER: hasher().hash(PASSWORD)})
    dovecot.start()
    try:
        seed(dovecot.imap_port, ".")
        mbsync, fm, listing = clients_before(tmp_path, dovecot.imap_port, dovecot.pop3_port)
        before = imap_state(dovecot.imap_port, ".")
        uidls = pop3_uidls(dovecot.pop3_port)
    finally:
        dovecot.stop()
    assert all(u == u.lower() for u in uidls)

    server = make_server(auth=PLAIN)
    progress = quiet()
    accounts, messages, locked = server.run(import_dovecot(
        server.store, dovecot.mail, Selection(), default_quota=2**30,
        passwd_file=dovecot.users_file, progress=progress), timeout=300)
    assert (accounts, messages, locked) == (1, 21, [])
    assert imap_state(server.port("imap"), "/") == before
    assert pop3_uidls(server.port("pop3")) == uidls
    acct = server.run(server.store.get_account(USER))
    names = {mb.name: mb.selectable for mb in server.run(server.store.list_mailboxes(acct.id))}
    assert names == {"INBOX": True, "Sent": True, "Lists": False, "Lists/dev": True,
                     "Grüße": True}
    assert server.run(server.store.list_subscriptions(acct.id)) == ["Lists/dev", "Sent"]
    clients_after(mbsync, fm, listing, server.port("imap"), server.port("pop3"),
                  dovecot.pop3_port)
    # A re-run finds everything in place and changes nothing.
    again = quiet()
    assert server.run(import_dovecot(server.store, dovecot.mail, Selection(),
                                     default_quota=2**30, progress=again))[1] == 0
    assert again.skipped == 21
    assert imap_state(server.port("imap"), "/") == before


@pytest.mark.timeout(600)
def test_casella_to_casella_nothing_new(make_server: Callable[..., RunningServer],
                                        tmp_path: Path) -> None:
    """`casella export` then `casella import` into a new data directory: mbsync and
    fetchmail that synced with the old server find nothing new on the new one."""
    need("mbsync", "isync")
    need("fetchmail", "fetchmail")
    old = make_server(auth=PLAIN)
    acct = old.run(old.store.add_domain("example.test")) and old.run(
        old.store.add_account(USER, hasher().hash(PASSWORD), 2**30))
    for name in ("Sent", "Junk", "Archive", "Drafts", "Trash"):  # as the Dovecot user has it
        old.run(old.store.delete_mailbox(acct.id, name))
    seed(old.port("imap"), "/")
    mbsync, fm, listing = clients_before(tmp_path, old.port("imap"), old.port("pop3"))
    before = imap_state(old.port("imap"), "/")
    uidls = pop3_uidls(old.port("pop3"))
    old_pop3 = old.port("pop3")
    old.stop()

    export = tmp_path / "export"

    async def export_it() -> None:
        store = open_store(old.config)
        await store.open(repair=False)
        try:
            await export_store(store, export, Selection(), quiet("exported"))
        finally:
            await store.close()
    asyncio.run(export_it())

    new = make_server(auth=PLAIN)
    assert new.run(import_export(new.store, export, Selection(), quiet()),
                   timeout=300) == (1, 21)
    assert imap_state(new.port("imap"), "/") == before
    assert pop3_uidls(new.port("pop3")) == uidls
    clients_after(mbsync, fm, listing, new.port("imap"), new.port("pop3"), old_pop3)
