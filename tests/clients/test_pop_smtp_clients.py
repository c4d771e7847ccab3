"""Real POP3 and SMTP clients from Debian against casella over loopback sockets (issue 4: "fetchmail
(with `keep` and UIDL) and getmail6 download a mailbox exactly once across repeated runs";
issue 5: "swaks … deliver on the MX and submission ports, and the queue holds remote mail
durably").

Lives here: fetchmail and getmail6 runs (keep + UIDL, delete, TLS) and swaks runs (MX, submission
with AUTH, STARTTLS, refusals). Every test asserts on the mail itself — files the client
delivered, the server's INBOX, queue rows and their files — never only on an exit code. Python's
smtplib is covered in tests/smtp and is not repeated here.

Must never: need a binary that is not installed (each test skips, naming the Debian package),
read or write outside tmp_path (configs, HOME, id files and delivered mail all live there), or
reach the internet (the autouse StaticResolver answers NXDOMAIN; the queue runner is stopped
before remote mail is submitted so that what the test inspects is what submission wrote).
"""

from __future__ import annotations

import asyncio
import email.parser
import email.policy
import os
import shlex
import shutil
import smtplib
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from casella.server import open_store
from casella.store.model import QueueEntry
from tests.conftest import RunningServer
from tests.pop3.util import add_user, deliver_all, inbox_uids
from tests.smtp.helpers import messages, queue

USER = "user@example.test"
PASSWORD = "secret"
CLIENT_TIMEOUT = 60          # seconds for one client run; a hang fails the test, not the suite
# The brute-force defence would slow the wrong-password test down; keep its delays tiny.
FAST_AUTH = {"failure_delay": 0.01, "max_failure_delay": 0.05}
PLAIN_AUTH = {"allow_plaintext_without_tls": True, **FAST_AUTH}


def needs(binary: str, package: str) -> pytest.MarkDecorator:
    return pytest.mark.skipif(
        shutil.which(binary) is None,
        reason=f"{binary} is not installed (Debian package {package}; .ci/run installs it)")


needs_fetchmail = needs("fetchmail", "fetchmail")
needs_getmail = needs("getmail", "getmail6")
needs_swaks = needs("swaks", "swaks")


# --- helpers -------------------------------------------------------------------------------


def mail(i: int, tag: str = "seed") -> bytes:
    """A message with its own Message-ID, and body lines that need POP3/SMTP dot-stuffing (a
    lone "." would end the transfer early if a side forgot to stuff or unstuff it)."""
    return (f"From: Sender <sender@example.org>\r\nTo: <{USER}>\r\n"
            f"Subject: {tag} {i}\r\nMessage-ID: <{tag}-{i}@example.org>\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\n"
            f"Body of {tag} {i}.\r\n.\r\n..two dots\r\n.leading dot\r\nEnd {i}.\r\n").encode()


def mid(tag: str, i: int) -> str:
    return f"<{tag}-{i}@example.org>"


def parse(data: bytes) -> Any:
    return email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data)


def check_body(data: bytes) -> str:
    """The Message-ID of a message a client wrote out, after checking its body came through
    byte-stuffing intact."""
    msg = parse(data)
    message_id = msg["Message-ID"]
    assert message_id, data[:300]
    n = message_id.split("-", 1)[1].split("@", 1)[0]
    body = msg.get_payload().replace("\r\n", "\n")
    assert body.endswith(f".\n..two dots\n.leading dot\nEnd {n}.\n"), body
    return str(message_id)


def ids_in(files: list[Path]) -> list[str]:
    return [check_body(p.read_bytes()) for p in files]


def server_ids(server: RunningServer, address: str = USER) -> list[str]:
    return [str(parse(m)["Message-ID"]) for m in messages(server, address)]


def run(cmd: list[str], home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a client with a HOME of its own and a C locale, output captured for the assertion
    messages."""
    home.mkdir(parents=True, exist_ok=True)
    environment = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
                   "LC_ALL": "C", **env}
    return subprocess.run(cmd, env=environment, capture_output=True, text=True,
                          timeout=CLIENT_TIMEOUT, check=False)


def transcript(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


def seed(server: RunningServer, n: int, tag: str = "seed") -> None:
    deliver_all(server, add_user(server, USER, PASSWORD), [mail(i, tag) for i in range(n)])


# --- fetchmail -----------------------------------------------------------------------------

# fetchmail hands each message to the MDA on stdin; this one writes it to the next numbered
# file, so the files show what was delivered and in which order.
MDA = """#!/bin/sh
set -e
n=$(ls "$1" | wc -l)
cat > "$1/$(printf '%04d' $((n + 1))).eml"
"""


class Fetchmail:
    """One fetchmail setup in tmp_path: rcfile, id file (the UIDs it has seen), MDA, output."""

    def __init__(self, tmp_path: Path, poll: str, options: str) -> None:
        """`poll`: the server options; `options`: the user options (TLS, keep), which
        fetchmail only accepts after `user`."""
        self.home = tmp_path / "fetchmail-home"
        self.home.mkdir()
        self.out = tmp_path / "fetchmail-out"
        self.out.mkdir()
        mda = tmp_path / "mda.sh"
        mda.write_text(MDA)
        self.rcfile = self.home / "fetchmailrc"
        mda_cmd = f"/bin/sh {shlex.quote(str(mda))} {shlex.quote(str(self.out))}"
        self.rcfile.write_text(
            f'set idfile "{self.home / "fetchids"}"\n'
            f"{poll}\n"
            f'    user "{USER}" password "{PASSWORD}"\n'
            f"    {options}\n"
            f'    mda "{mda_cmd}"\n')
        # fetchmail refuses an rcfile that others could read (it holds the password).
        self.rcfile.chmod(0o600)

    def run(self, expect: int) -> list[Path]:
        """One run; returns the files it delivered. fetchmail's exit status: 0 = mail was
        retrieved, 1 = there was no new mail."""
        before = set(self.out.iterdir())
        result = run(["fetchmail", "--nodetach", "--nosyslog", "-v", "-f", str(self.rcfile)],
                     self.home, FETCHMAILHOME=str(self.home))
        assert result.returncode == expect, transcript(result)
        return sorted(set(self.out.iterdir()) - before)


@needs_fetchmail
def test_fetchmail_keep_uidl_downloads_once(make_server: Callable[..., RunningServer],
                                            tmp_path: Path) -> None:
    """Issue 4, RFC 1939 §7 UIDL: with `keep`, fetchmail remembers UIDs and downloads each
    message exactly once across runs; new mail (arriving over SMTP) is fetched alone; the
    server still holds everything."""
    server = make_server(auth=PLAIN_AUTH)
    seed(server, 30)
    # sslproto '': no opportunistic STLS on this plaintext run (the TLS test covers it).
    fm = Fetchmail(tmp_path, f"poll 127.0.0.1 port {server.port('pop3')} protocol pop3 uidl",
                   "sslproto '' keep")
    first = fm.run(expect=0)
    assert sorted(ids_in(first)) == sorted(mid("seed", i) for i in range(30))
    assert fm.run(expect=1) == []                                   # nothing new: nothing
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        for i in range(5):
            assert s.sendmail("sender@example.org", [USER], mail(i, "new")) == {}
    third = fm.run(expect=0)
    assert sorted(ids_in(third)) == sorted(mid("new", i) for i in range(5))
    assert fm.run(expect=1) == []
    on_server = server_ids(server)                                  # keep: nothing deleted
    assert len(on_server) == 35
    assert set(on_server) == {mid("seed", i) for i in range(30)} | {mid("new", i)
                                                                     for i in range(5)}


@needs_fetchmail
@pytest.mark.parametrize("mode", ["pop3s", "stls"])
def test_fetchmail_tls_downloads_and_deletes(make_server: Callable[..., RunningServer],
                                             tmp_path: Path, mode: str) -> None:
    """RFC 8314 (implicit TLS, pop3s) and RFC 2595 (STLS): fetchmail verifies casella's
    certificate (the test trusts exactly that one) and logs in on a server that refuses
    plaintext logins; without `keep` it deletes what it fetched ("download to one PC"), so
    the INBOX ends empty and a second run finds nothing."""
    server = make_server(auth=FAST_AUTH)                    # plaintext login refused
    seed(server, 4)
    if mode == "pop3s":
        port, tls = server.port("pop3s"), "ssl"
    else:
        port, tls = server.port("pop3"), "sslproto 'tls1.2+'"
    # fetchmail matches the certificate's DNS names only (not its 127.0.0.1 IP entry) against
    # the host it connects to, so it is told the server's hostname, as the certificate names.
    fm = Fetchmail(tmp_path, f"poll 127.0.0.1 port {port} protocol pop3",
                   f'{tls} sslcertck sslcertfile "{server.cafile}" sslcommonname mail.example.test')
    got = fm.run(expect=0)
    assert sorted(ids_in(got)) == sorted(mid("seed", i) for i in range(4))
    assert inbox_uids(server, server.run(server.store.get_account(USER))) == []
    assert fm.run(expect=1) == []


# --- getmail6 ------------------------------------------------------------------------------


class Getmail:
    """One getmail6 setup in tmp_path: getmaildir (its `oldmail-*` file remembers the UIDLs it
    has seen), rcfile and the destination whose new files each run returns.

    The destination is a Maildir, as users set it up. getmail refuses Maildir delivery as
    root ("refuse to deliver mail as root"), and the unprivileged user it could switch to
    cannot enter a root-owned tmp_path, so as root (CI containers) the same numbered-file MDA
    as fetchmail's is used through MDA_external: the retriever under test is the same."""

    def __init__(self, tmp_path: Path, server: RunningServer, delete: bool) -> None:
        self.home = tmp_path / "getmail-home"
        self.getmaildir = self.home / ".getmail"
        self.getmaildir.mkdir(parents=True)
        if os.geteuid() != 0:
            maildir = tmp_path / "Maildir"
            for sub in ("cur", "new", "tmp"):              # getmail does not create a Maildir
                (maildir / sub).mkdir(parents=True)
            self.out = maildir / "new"
            destination = f"type = Maildir\npath = {maildir}/\n"
        else:
            self.out = tmp_path / "getmail-out"
            self.out.mkdir()
            mda = tmp_path / "mda.sh"
            mda.write_text(MDA)
            destination = ("type = MDA_external\npath = /bin/sh\n"
                           f"arguments = ({str(mda)!r}, {str(self.out)!r})\n"
                           "allow_root_commands = true\n")
        self.rcfile = self.getmaildir / "getmailrc"
        self.rcfile.write_text(
            "[retriever]\n"
            "type = SimplePOP3Retriever\n"
            "server = 127.0.0.1\n"
            f"port = {server.port('pop3')}\n"
            f"username = {USER}\n"
            f"password = {PASSWORD}\n"
            f"\n[destination]\n{destination}"
            "\n[options]\n"
            "verbose = 2\n"
            "read_all = false\n"
            f"delete = {'true' if delete else 'false'}\n")
        self.rcfile.chmod(0o600)

    def run(self) -> list[Path]:
        before = set(self.out.iterdir())
        result = run(["getmail", "--getmaildir", str(self.getmaildir),
                      "--rcfile", str(self.rcfile)], self.home)
        # A failed delivery is also logged on stderr: an empty run must mean "no new mail",
        # never "the destination refused everything".
        assert result.returncode == 0 and "error" not in result.stderr.lower(), \
            transcript(result)
        return sorted(set(self.out.iterdir()) - before)


@needs_getmail
def test_getmail_keep_downloads_once(make_server: Callable[..., RunningServer],
                                     tmp_path: Path) -> None:
    """Issue 4: getmail6 with read_all = false and delete = false keeps UIDLs in its oldmail
    file; each message lands in the Maildir exactly once across three runs."""
    server = make_server(auth=PLAIN_AUTH)
    seed(server, 30)
    gm = Getmail(tmp_path, server, delete=False)
    assert sorted(ids_in(gm.run())) == sorted(mid("seed", i) for i in range(30))
    assert gm.run() == []
    deliver_all(server, server.run(server.store.get_account(USER)),
                [mail(i, "new") for i in range(5)])
    assert sorted(ids_in(gm.run())) == sorted(mid("new", i) for i in range(5))
    assert gm.run() == []
    assert len(server_ids(server)) == 35
    assert list(gm.getmaildir.glob("oldmail-*")), "getmail kept no UIDL state"


@needs_getmail
def test_getmail_delete_empties_inbox(make_server: Callable[..., RunningServer],
                                      tmp_path: Path) -> None:
    """POP3 as "download to one PC" (RFC 1939 §6 DELE + QUIT): getmail6 with delete = true
    gets everything once and the server INBOX is empty afterwards."""
    server = make_server(auth=PLAIN_AUTH)
    seed(server, 10)
    gm = Getmail(tmp_path, server, delete=True)
    assert sorted(ids_in(gm.run())) == sorted(mid("seed", i) for i in range(10))
    assert server_ids(server) == []
    assert gm.run() == []


# --- swaks ---------------------------------------------------------------------------------


def swaks(server: RunningServer, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run(["swaks", "--server", "127.0.0.1", "--helo", "client.example",
                "--timeout", "20", *args], tmp_path / "swaks-home")


def hold_queue(server: RunningServer) -> None:
    """Stop the queue runner: with no DNS the runner would fail remote mail at once (NXDOMAIN)
    and bounce it, so the test would race it; stopped, the queue shows what submission wrote."""
    for service in server.server.background:
        server.run(service.stop())


def queued_data(server: RunningServer, entry: QueueEntry) -> tuple[str, bytes]:
    static = server.run(server.store.fetch_static([entry.blob_id]))[entry.blob_id]
    return static.digest, server.run(server.store.read_blob(static.digest))


BODY = "Line one.\n.\nLast line."


@needs_swaks
def test_swaks_mx_delivers_to_inbox(server: RunningServer, tmp_path: Path) -> None:
    """Issue 5, RFC 5321 §4.4: mail from the internet on the MX port reaches the INBOX with
    its header fields and body intact and one Received field added by casella on top."""
    add_user(server, USER, PASSWORD)
    result = swaks(server, tmp_path, "--port", str(server.port("smtp")),
                   "--to", USER, "--from", "someone@elsewhere.example",
                   "--header", "Subject: swaks over the MX",
                   "--header", "Message-Id: <swaks-mx@elsewhere.example>",
                   "--header", "X-Swaks-Test: kept as sent", "--body", BODY)
    assert result.returncode == 0, transcript(result)
    [stored] = messages(server, USER)
    msg = parse(stored)
    assert msg["Subject"] == "swaks over the MX"
    assert msg["Message-Id"] == "<swaks-mx@elsewhere.example>"
    assert msg["X-Swaks-Test"] == "kept as sent"
    assert msg["From"] == "someone@elsewhere.example"
    assert msg["Return-Path"] == "<someone@elsewhere.example>"
    [received] = msg.get_all("Received")
    assert received.startswith("from client.example") and "by mail.example.test" in received
    assert stored.index(b"Received:") < stored.index(b"Message-Id:")    # prepended
    assert msg.get_payload().replace("\r\n", "\n").rstrip("\n") == BODY


@needs_swaks
def test_swaks_submission_queues_remote_durably(make_server: Callable[..., RunningServer],
                                                tmp_path: Path) -> None:
    """Issue 5, RFC 6409 + RFC 4954: AUTH PLAIN on the submission port, a remote recipient
    goes to the outbound queue with its data on disk (fsynced before the 250), and the row
    and file are still there after the server stops (read back by a fresh store)."""
    server = make_server(auth=PLAIN_AUTH)
    add_user(server, USER, PASSWORD)
    hold_queue(server)
    result = swaks(server, tmp_path, "--port", str(server.port("submission")),
                   "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD,
                   "--from", USER, "--to", "remote@far.example",
                   "--header", "Subject: to the queue",
                   "--header", "Message-Id: <swaks-queue@example.test>", "--body", BODY)
    assert result.returncode == 0, transcript(result)
    assert "235 " in result.stdout
    [entry] = queue(server)
    assert entry.sender == USER
    assert [(r.address, r.state) for r in entry.recipients] == [("remote@far.example", "queued")]
    digest, data = queued_data(server, entry)
    assert server.run(server.store.stored_bodies()) == [digest]
    assert b"Message-Id: <swaks-queue@example.test>" in data
    assert b"Subject: to the queue" in data
    assert messages(server, USER) == []                   # nothing delivered locally

    server.stop()

    async def reopen() -> tuple[list[QueueEntry], bytes]:
        store = open_store(server.config)
        await store.open()
        try:
            entries = await store.list_queue()
            digest = (await store.fetch_static([entries[0].blob_id]))[entries[0].blob_id].digest
            return entries, await store.read_blob(digest)
        finally:
            await store.close()
    entries, again = asyncio.run(reopen())
    assert [e.id for e in entries] == [entry.id]
    assert [r.address for r in entries[0].recipients] == ["remote@far.example"]
    assert again == data


@needs_swaks
def test_swaks_submission_starttls_local_recipient(server: RunningServer,
                                                   tmp_path: Path) -> None:
    """RFC 3207 STARTTLS with casella's certificate verified by swaks, then AUTH (offered only
    after TLS on a default server) and delivery to a local user's INBOX; the Received field
    records the authenticated, encrypted submission."""
    add_user(server, USER, PASSWORD)
    add_user(server, "bob@example.test", PASSWORD)
    result = swaks(server, tmp_path, "--port", str(server.port("submission")), "--tls",
                   "--tls-verify", "--tls-ca-path", str(server.cafile),
                   "--auth", "PLAIN", "--auth-user", USER, "--auth-password", PASSWORD,
                   "--from", USER, "--to", "bob@example.test",
                   "--header", "Subject: local via submission",
                   "--header", "Message-Id: <swaks-local@example.test>", "--body", BODY)
    assert result.returncode == 0, transcript(result)
    [stored] = messages(server, "bob@example.test")
    msg = parse(stored)
    assert msg["Message-Id"] == "<swaks-local@example.test>"
    assert msg["Subject"] == "local via submission"
    [received] = msg.get_all("Received")
    assert "ESMTPSA" in received and "TLSv1." in received, received
    assert f"Authenticated sender: {USER}" in received
    assert queue(server) == []


@needs_swaks
def test_swaks_wrong_password_gets_535(make_server: Callable[..., RunningServer],
                                       tmp_path: Path) -> None:
    """RFC 4954 §6: a wrong password is 535 5.7.8; swaks stops with its AUTH exit code (28)
    and nothing is queued or delivered."""
    server = make_server(auth=PLAIN_AUTH)
    add_user(server, USER, PASSWORD)
    hold_queue(server)
    result = swaks(server, tmp_path, "--port", str(server.port("submission")),
                   "--auth", "PLAIN", "--auth-user", USER, "--auth-password", "wrong",
                   "--from", USER, "--to", "remote@far.example")
    assert result.returncode == 28, transcript(result)
    assert "<** 535 5.7.8" in result.stdout, transcript(result)
    assert queue(server) == []


@needs_swaks
def test_swaks_submission_without_auth_refused(make_server: Callable[..., RunningServer],
                                               tmp_path: Path) -> None:
    """RFC 6409 §4.3: submission without AUTH is refused at MAIL (530 5.7.0) even for a
    remote recipient (no open relay); swaks exits with its MAIL exit code (23)."""
    server = make_server(auth=PLAIN_AUTH)
    add_user(server, USER, PASSWORD)
    hold_queue(server)
    result = swaks(server, tmp_path, "--port", str(server.port("submission")),
                   "--from", USER, "--to", "remote@far.example")
    assert result.returncode == 23, transcript(result)
    assert "<** 530 5.7.0" in result.stdout, transcript(result)
    assert queue(server) == []
