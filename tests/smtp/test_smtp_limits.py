"""The `[smtp]` limits (issue 7 §2-§3, §6): each config key crossed over a real socket — idle
time per command, the per-line deadline against slow-drip clients, the total bound on one
message's data, recipients, authentication failures, protocol errors, commands without
progress — and a store failure in the middle of DATA/BDAT answered after the real end of the
data, so no line of the message is ever taken for a command (PROMISES D2, M2)."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest

from casella.errors import DiskFull, StorageError
from tests.smtp.helpers import MESSAGE, Raw, add_users, messages, queue, tmp_files


def test_line_timeout_cuts_off_a_slow_drip_client(make_server: Any) -> None:
    """`[smtp] line_timeout`: a command line started and dripped a byte at a time is cut off
    with 421 4.4.2 although bytes keep coming; the idle timeout (5 min) never comes into it."""
    server = make_server(smtp={"line_timeout": 1})
    with Raw(server.port("smtp")) as c:
        started = time.monotonic()
        c.sock.settimeout(0.2)
        for byte in b"EHLO slow.example":
            try:
                c.send(bytes([byte]))
            except OSError:
                break
            if c.buf or c.closed():
                break
        c.sock.settimeout(10)
        code, text = c.reply()
        assert (code, text[:5]) == (421, "4.4.2") and "not completed in time" in text
        assert c.closed()
        assert time.monotonic() - started < 6


def test_line_timeout_spares_a_quick_client(make_server: Any) -> None:
    """Whole lines in time never trip the line deadline, however many."""
    server = make_server(smtp={"line_timeout": 1})
    with Raw(server.port("smtp")) as c:
        for _ in range(3):
            c.send(b"NO")
            time.sleep(0.3)
            c.send(b"OP\r\n")
            assert c.reply()[0] == 250
            time.sleep(0.5)


def test_data_timeout_bounds_the_whole_transfer(make_server: Any) -> None:
    """`[smtp] data_timeout`: a message trickling in under the idle time still has to be
    complete within the total bound; nothing is stored."""
    server = make_server(smtp={"data_timeout": 2})
    add_users(server, "alice@example.test")
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        started = time.monotonic()
        c.sock.settimeout(0.3)
        while time.monotonic() - started < 8:
            try:
                c.send(b"Subject: slow\r\n")
            except OSError:
                break
            if c.buf or c.closed():
                break
        c.sock.settimeout(10)
        code, text = c.reply()
        assert (code, text[:5]) == (421, "4.4.2") and "nothing was delivered" in text
        assert 1.5 < time.monotonic() - started < 6
    assert messages(server, "alice@example.test") == []
    assert tmp_files(server) == []


def test_max_recipients_is_a_config_key(make_server: Any) -> None:
    """`[smtp] max_recipients`: one more is 452 4.5.3 (RFC 5321 §4.5.3.1.10), the rest go on."""
    server = make_server(smtp={"max_recipients": 3})
    add_users(server, "alice@example.test")
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"MAIL FROM:<x@remote.example>\r\n" + b"RCPT TO:<alice@example.test>\r\n" * 4)
        replies = [c.reply() for _ in range(5)]
        assert [r[0] for r in replies] == [250, 250, 250, 250, 452]
        assert replies[4][1].startswith("4.5.3")
        assert c.code("DATA") == 354
        assert c.code(MESSAGE + b".") == 250
    assert len(messages(server, "alice@example.test")) == 1


def test_max_auth_failures_closes_the_connection(make_server: Any) -> None:
    """`[smtp] max_auth_failures`: the second failure (limit 2) is 421 4.7.0 and the end."""
    server = make_server(smtp={"max_auth_failures": 2},
                         auth={"allow_plaintext_without_tls": True})
    add_users(server, "alice@example.test")
    bad = base64.b64encode(b"\0alice@example.test\0wrong").decode()
    with Raw(server.port("submission")) as c:
        c.ehlo()
        assert c.cmd(f"AUTH PLAIN {bad}")[0] == 535
        code, text = c.cmd(f"AUTH PLAIN {bad}")
        assert (code, text[:5]) == (421, "4.7.0")
        assert c.closed()


def test_max_bad_commands_is_a_config_key(make_server: Any) -> None:
    """`[smtp] max_bad_commands`: the fifth protocol error (limit 5) ends the session."""
    server = make_server(smtp={"max_bad_commands": 5})
    with Raw(server.port("smtp")) as c:
        c.send(b"BOGUS\r\n" * 8)
        codes = [c.reply()[0] for _ in range(6)]
        assert codes == [500] * 5 + [421]
        assert c.closed()


def test_commands_without_progress_end_the_session(make_server: Any) -> None:
    """`[smtp] max_commands_without_progress`: NOOP, RSET, VRFY, HELP, EHLO loops that never
    send a message are cut off (421 4.7.0); an accepted message starts the count again."""
    server = make_server(smtp={"max_commands_without_progress": 6})
    add_users(server, "alice@example.test")
    with Raw(server.port("smtp")) as c:
        assert [c.code(cmd) for cmd in ("EHLO c", "NOOP", "RSET", "HELP", "VRFY x")] == \
            [250, 250, 250, 214, 252]
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        assert c.code(MESSAGE + b".") == 250
        c.send(b"NOOP\r\n" * 10)
        codes = [c.reply() for _ in range(7)]
        assert [r[0] for r in codes] == [250] * 6 + [421]
        assert codes[6][1].startswith("4.7.0")
        assert c.closed()


class FailingWriter:
    """A blob writer whose disk fills up after `room` bytes."""

    def __init__(self, inner: Any, room: int, error: type[StorageError]) -> None:
        self.inner = inner
        self.room = room
        self.error = error

    async def write(self, data: bytes) -> None:
        self.room -= len(data)
        if self.room < 0:
            raise self.error("no space left to write the message")
        await self.inner.write(data)

    async def finish(self) -> Any:
        return await self.inner.finish()

    def abort(self) -> None:
        self.inner.abort()

    @property
    def size(self) -> int:
        return int(self.inner.size)


@pytest.fixture
def full_disk(server: Any, monkeypatch: Any) -> Any:
    """Every new blob writer fails with DiskFull after 2,000 bytes."""
    blobs = server.store.blobs
    real = blobs.writer
    monkeypatch.setattr(blobs, "writer", lambda: FailingWriter(real(), 2000, DiskFull))
    return server


SMUGGLED = (b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
            b"Subject: smuggled\r\n\r\nevil\r\n.\r\n")


def test_disk_full_mid_data_is_452_after_the_terminator(full_disk: Any) -> None:
    """Issue 7 §6: DiskFull in the middle of DATA is answered 452 4.3.1 after the client's
    end of data, never before: the rest of the message (here lines that look like commands)
    is read and dropped, never executed, and the session goes on in step."""
    server = full_disk
    add_users(server, "alice@example.test", "victim@example.test")
    body = b"x" * 70 + b"\r\n"
    # Large enough to arrive in several reads, so the failure comes with data still to read.
    message = MESSAGE + body * 1500 + SMUGGLED.replace(b".\r\n", b"") + body * 1500
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        c.send(message + b".\r\n")
        code, text = c.reply()
        assert (code, text[:5]) == (452, "4.3.1"), text
        assert c.code("NOOP") == 250            # in step: nothing else was answered
        assert c.buf == b""
    assert messages(server, "alice@example.test") == []
    assert messages(server, "victim@example.test") == []
    assert queue(server) == []
    assert tmp_files(server) == []


def test_storage_error_mid_bdat_discards_the_chunk(server: Any, monkeypatch: Any) -> None:
    """A StorageError during a BDAT chunk: the chunk is still read through its size, the
    answer is 451 4.3.0, later chunks of the transaction get 503 and are dropped."""
    blobs = server.store.blobs
    real = blobs.writer
    monkeypatch.setattr(blobs, "writer", lambda: FailingWriter(real(), 2000, StorageError))
    add_users(server, "alice@example.test")
    chunk = b"y" * 70 + b"\r\n"
    data = MESSAGE + chunk * 1500      # several reads: the failure comes mid-chunk
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\n"
               + f"BDAT {len(data)}\r\n".encode() + data)
        replies = [c.reply() for _ in range(3)]
        assert [r[0] for r in replies] == [250, 250, 451]
        assert replies[2][1].startswith("4.3.0")
        c.send(b"BDAT 12 LAST\r\nNOOP\r\nNOQUIT")  # the data looks like commands
        code, _ = c.reply()
        assert code == 503
        assert c.code("NOOP") == 250
    assert messages(server, "alice@example.test") == []
    assert tmp_files(server) == []


def test_disk_full_at_end_of_data_is_452(server: Any, monkeypatch: Any) -> None:
    """DiskFull when the message is made durable (fsync, publication) is 452 4.3.1 too."""
    add_users(server, "alice@example.test")
    store = server.store

    async def full(*args: Any, **kwargs: Any) -> Any:
        raise DiskFull("no space left to store the message")
    monkeypatch.setattr(store, "deliver_and_enqueue", full)
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        code, text = c.cmd(MESSAGE + b".")
        assert (code, text[:5]) == (452, "4.3.1")
        assert c.code("NOOP") == 250
    monkeypatch.undo()
    assert messages(server, "alice@example.test") == []
