"""SMTP over a raw socket, for what a polite client library never sends: pipelined packets,
BDAT bytes, the smuggling vectors, STARTTLS injection, bad sequences, long lines, a client that
vanishes mid-DATA, and the idle timeout. Also the state machine as a table of sequences."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from tests.smtp.helpers import MESSAGE, Raw, add_users, messages, queue, tmp_files


def test_pipelining_in_one_packet(server: Any) -> None:
    """RFC 2920: MAIL, several RCPT and DATA in one packet; the replies come in order and the
    message (sent after 354) is delivered to the accepted recipients only."""
    add_users(server, "alice@example.test")
    add_users(server, "bob@example.test")
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\n"
               b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(5)] == [250, 250, 550, 250, 354]
        c.send(MESSAGE + b".\r\nMAIL FROM:<y@remote.example>\r\nRCPT TO:<bob@example.test>\r\n"
               b"DATA\r\n")
        assert [c.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
        c.send(MESSAGE + b".\r\nQUIT\r\n")
        assert [c.reply()[0] for _ in range(2)] == [250, 221]
    assert len(messages(server, "alice@example.test")) == 1
    assert len(messages(server, "bob@example.test")) == 2


def test_pipelined_data_without_recipients(server: Any) -> None:
    """RFC 2920 §3.1: DATA after only refused RCPTs is refused (554 5.5.1), no 354."""
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<a@elsewhere.example>\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(3)] == [250, 550, 554]
        assert c.code("NOOP") == 250


def test_bdat_raw_bytes(server: Any) -> None:
    """RFC 3030: BDAT chunks of exact sizes, pipelined with the data, LAST ends the message;
    bytes are stored as sent (no dot-unstuffing)."""
    add_users(server, "alice@example.test")
    part1 = b"From: x@remote.example\r\nSubject: chunks\r\n\r\n.dot stays\r\n"
    part2 = b"second chunk\r\n.\r\nstill data\r\n"
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\n" +
               f"BDAT {len(part1)}\r\n".encode() + part1 +
               f"BDAT {len(part2)} LAST\r\n".encode() + part2 + b"NOOP\r\n")
        codes = [c.reply() for _ in range(5)]
        assert [r[0] for r in codes] == [250, 250, 250, 250, 250]
        assert codes[2][1].startswith(f"2.0.0 {len(part1)} octets")
        assert c.code("BDAT 0 LAST") == 503         # no transaction any more
    [stored] = messages(server, "alice@example.test")
    assert stored.endswith(part1 + part2)


def test_bdat_errors(make_server: Any) -> None:
    """BDAT without MAIL: 503 with its data read and discarded; DATA after BDAT: 503; a chunk
    with a bare LF or past the size limit refuses the transaction; later chunks get 503."""
    server = make_server(limits={"max_message_size": "1K"})
    add_users(server, "alice@example.test")
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"BDAT 5\r\nhelloNOOP\r\n")
        assert [c.reply()[0] for _ in range(2)] == [503, 250]
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\n"
               b"BDAT 3\r\nab\nDATA\r\n")
        assert [c.reply()[0] for _ in range(4)] == [250, 250, 554, 503]
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\n"
               b"BDAT 2000\r\n" + b"y" * 2000 + b"BDAT 3 LAST\r\nxyz")
        replies = [c.reply() for _ in range(4)]
        assert [r[0] for r in replies] == [250, 250, 552, 503]
        assert replies[2][1].startswith("5.3.4")
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\n"
               b"BDAT 4\r\nab\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(4)] == [250, 250, 250, 503]
        c.send(b"BDAT 1 LAST\r\n\r")
        code, text = c.reply()
        assert code == 554 and "bare CR or LF" in text
    assert messages(server, "alice@example.test") == []
    assert tmp_files(server) == []


SMUGGLING = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r.\n"]


@pytest.mark.parametrize("vector", SMUGGLING, ids=repr)
def test_smuggling_never_makes_two_messages(server: Any, vector: bytes) -> None:
    """PROMISES M1/M2 (SMTP smuggling): DATA holding `vector` then a second MAIL FROM never
    produces two messages; the message is refused with a 5xx and a sentence, and the session
    stays in step (the smuggled commands are never executed)."""
    add_users(server, "alice@example.test")
    add_users(server, "victim@example.test")
    payload = (b"From: x@remote.example\r\nSubject: one\r\n\r\nfirst" + vector +
               b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<victim@example.test>\r\nDATA\r\n"
               b"From: admin@example.test\r\nSubject: smuggled\r\n\r\nevil\r\n.\r\n")
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(3)] == [250, 250, 354]
        c.send(payload)
        code, text = c.reply()
        assert code // 100 == 5 and "bare CR or LF" in text
        c.sock.settimeout(0.3)
        assert not c.closed() and c.buf == b""          # no reply to smuggled commands
        c.sock.settimeout(10)
        assert c.code("NOOP") == 250
    stored = messages(server, "alice@example.test") + messages(server, "victim@example.test")
    assert len(stored) <= 1
    assert messages(server, "victim@example.test") == []


def test_starttls_injection(server: Any) -> None:
    """PROMISES T1 (RFC 3207 §4.2): `STARTTLS\\r\\nRSET\\r\\n` in one packet: the RSET is
    thrown away, never answered inside TLS; and T2: the session is reset after TLS."""
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"STARTTLS\r\nRSET\r\n")
        code, _ = c.reply()
        assert code == 220
        assert c.buf == b""
        c.sock = server.ssl_context().wrap_socket(c.sock)
        c.sock.settimeout(0.5)
        assert not c.closed()                          # nothing arrives: RSET was dropped
        assert c.buf == b""
        c.sock.settimeout(10)
        assert c.code("MAIL FROM:<x@remote.example>") == 503     # EHLO forgotten
        code, caps = c.ehlo()
        assert code == 250 and "STARTTLS" not in caps
        assert c.code("STARTTLS") == 503


def test_client_disconnects_mid_data(server: Any) -> None:
    """Issue 5, bad input: a client that vanishes in DATA leaves nothing stored or queued."""
    add_users(server, "alice@example.test")
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        c.send(b"MAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\n"
               b"RCPT TO:<alice+x@example.test>\r\nDATA\r\n")
        assert [c.reply()[0] for _ in range(4)] == [250, 250, 250, 354]
        c.send(MESSAGE + b"y" * 3_000_000)        # large enough to spill to a temp file
    time.sleep(0.3)
    with Raw(server.port("smtp")) as c:           # the server is fine and still serving
        assert c.code("NOOP") == 250
    assert messages(server, "alice@example.test") == []
    assert queue(server) == []
    assert tmp_files(server) == []


def test_long_line_and_too_many_recipients(server: Any) -> None:
    """RFC 5321 §4.5.3.1: a command line over 1000 octets is 500 5.5.2 and the session goes
    on; recipient 101 is 452 4.5.3 (§4.5.3.1.8)."""
    add_users(server, "alice@example.test")
    with Raw(server.port("smtp")) as c:
        c.ehlo()
        code, text = c.cmd(b"MAIL FROM:<" + b"a" * 1200 + b"@remote.example>")
        assert (code, text[:5]) == (500, "5.5.2")
        assert c.code("MAIL FROM:<x@remote.example>") == 250
        c.send(b"RCPT TO:<alice@example.test>\r\n" * 101)
        codes = [c.reply() for _ in range(101)]
        assert all(r[0] == 250 for r in codes[:100])
        assert codes[100][0] == 452 and codes[100][1].startswith("4.5.3")
        assert c.code("DATA") == 354
        assert c.code(MESSAGE + b".") == 250
    assert len(messages(server, "alice@example.test")) == 1


def test_idle_timeout(make_server: Any) -> None:
    """Issue 5 §7: an idle client is told 421 4.4.2 and disconnected (`[smtp]
    command_timeout`)."""
    server = make_server(smtp={"command_timeout": 1})
    with Raw(server.port("smtp")) as c:
        code, text = c.reply()
        assert (code, text[:5]) == (421, "4.4.2")
        assert c.closed()


def test_too_many_errors_disconnects(server: Any) -> None:
    """PROMISES P5: repeated protocol errors end the session with 421."""
    with Raw(server.port("smtp")) as c:
        c.send(b"BOGUS\r\n" * 25)
        codes = [c.reply()[0] for _ in range(21)]
        assert codes[:20] == [500] * 20 and codes[20] == 421
        assert c.closed()


def test_quit_and_eof(server: Any) -> None:
    with Raw(server.port("smtp")) as c:
        code, text = c.cmd("QUIT")
        assert code == 221 and text.startswith("2.0.0")
        assert c.closed()
    assert c.greeting[0] == 220 and "ESMTP" in c.greeting[1]


# The state machine: each row is a session of commands and the reply codes expected.
SEQUENCES = [
    ("rcpt before mail", ["EHLO c", "RCPT TO:<alice@example.test>"], [250, 503]),
    ("mail before ehlo", ["MAIL FROM:<x@remote.example>"], [503]),
    ("data before mail", ["EHLO c", "DATA"], [250, 503]),
    ("data before rcpt", ["EHLO c", "MAIL FROM:<x@r.example>", "DATA"], [250, 250, 554]),
    ("nested mail", ["EHLO c", "MAIL FROM:<x@r.example>", "MAIL FROM:<x@r.example>"],
     [250, 250, 503]),
    ("rset clears", ["EHLO c", "MAIL FROM:<x@r.example>", "RSET", "RCPT TO:<alice@example.test>"],
     [250, 250, 250, 503]),
    ("ehlo resets", ["EHLO c", "MAIL FROM:<x@r.example>", "EHLO c", "RCPT TO:<alice@example.test>"],
     [250, 250, 250, 503]),
    ("helo has no params", ["HELO c", "MAIL FROM:<x@r.example> SIZE=10"], [250, 555]),
    ("helo plain works", ["HELO c", "MAIL FROM:<x@r.example>", "RCPT TO:<alice@example.test>"],
     [250, 250, 250]),
    ("unknown param", ["EHLO c", "MAIL FROM:<x@r.example> FOO=BAR"], [250, 555]),
    ("bad address", ["EHLO c", "MAIL FROM:<not an address>"], [250, 501]),
    ("unknown command", ["XYZZY"], [500]),
    ("vrfy expn help noop", ["VRFY alice", "EXPN staff", "HELP", "NOOP"], [252, 502, 214, 250]),
    ("starttls twice", ["EHLO c", "STARTTLS x"], [250, 501]),
    ("bdat needs ehlo", ["HELO c", "MAIL FROM:<x@r.example>", "RCPT TO:<alice@example.test>",
                         "BDAT 0 LAST"], [250, 250, 250, 503]),
    ("empty message by BDAT", ["EHLO c", "MAIL FROM:<x@r.example>", "RCPT TO:<alice@example.test>",
                               "BDAT 0 LAST"], [250, 250, 250, 250]),
    ("auth on mx", ["EHLO c", "AUTH PLAIN"], [250, 503]),
]


def test_state_machine_sequences(server: Any) -> None:
    """Commands out of order (503 5.5.1), syntax (500/501), unknown parameters (555): each
    reply carries an enhanced status code in the right class."""
    add_users(server, "alice@example.test")
    for name, commands, expected in SEQUENCES:
        with Raw(server.port("smtp")) as c:
            got = []
            for line in commands:
                code, text = c.cmd(line)
                got.append(code)
                if code // 100 in (2, 4, 5) and not line.startswith(("EHLO", "HELO")):
                    assert text[:1] == str(code)[0] and text[1:2] == ".", (name, line, text)
            assert got == expected, name


def test_connection_refused_reply_is_421(server: Any) -> None:
    """Service.refuse speaks SMTP (421 4.7.0) for the connection limiter."""
    from casella.smtp.server import services
    reply = services(server.app)["smtp"].refuse(None, "too many connections")  # type: ignore
    assert reply.startswith(b"421 4.7.0 mail.example.test too many connections")
    assert reply.endswith(b"\r\n") and reply.count(b"\r\n") == 1


def test_greeting_over_socket_timeout_is_prompt(server: Any) -> None:
    """The greeting comes at once (no banner delay to confuse clients)."""
    sock = socket.create_connection(("127.0.0.1", server.port("smtp")), timeout=5)
    try:
        assert sock.recv(100).startswith(b"220 mail.example.test ESMTP")
    finally:
        sock.close()


def test_byte_at_a_time(server: Any) -> None:
    """The same session fed one byte per packet: framing never depends on packet borders."""
    add_users(server, "alice@example.test")
    stream = (b"EHLO c\r\nMAIL FROM:<x@remote.example>\r\nRCPT TO:<alice@example.test>\r\n"
              b"DATA\r\n" + MESSAGE.replace(b"Hello.", b".Hello\r\n..") + b".\r\n"
              b"BDAT 5\r\nab\r\ncBDAT 0 LAST\r\nQUIT\r\n")
    with Raw(server.port("smtp")) as c:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(len(stream)):
            c.send(stream[i:i + 1])
        codes = []
        while True:
            code, _ = c.reply()
            codes.append(code)
            if code == 221:
                break
    assert codes == [250, 250, 250, 354, 250, 503, 503, 221]
    [stored] = messages(server, "alice@example.test")
    assert stored.endswith(MESSAGE.replace(b"Hello.", b"Hello\r\n."))
