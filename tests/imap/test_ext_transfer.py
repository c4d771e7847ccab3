"""Transfer extensions over real sockets: COMPRESS=DEFLATE (RFC 4978) with imaplib over a
deflate wrapper, COMPRESS twice and garbage after COMPRESS; BINARY (RFC 3516: BINARY[],
BINARY.SIZE, partial, literal8, APPEND with literal8, UNKNOWN-CTE); APPENDLIMIT (RFC 7889);
MULTIAPPEND (RFC 3502, all or nothing); LITERAL- instead of LITERAL+ when configured
(RFC 7888 §5)."""

from __future__ import annotations

import base64
import imaplib
import logging
import re
import socket
import zlib

from tests.imap.util import (
    TIMEOUT,
    Raw,
    deliver,
    imaplib_login,
    message,
    new_user,
    store_state,
)

imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


class DeflateIMAP(imaplib.IMAP4_SSL):
    """imaplib with COMPRESS=DEFLATE: raw deflate both ways, sync-flushed (RFC 4978 §4)."""

    compressing = False
    wire_in = 0

    def compress(self) -> str:
        typ, _ = self._simple_command("COMPRESS", "DEFLATE")  # type: ignore[attr-defined]
        if typ == "OK":
            self._out = zlib.compressobj(6, zlib.DEFLATED, -15)
            self._in = zlib.decompressobj(-15)
            self._plain = b""
            self.compressing = True
        return typ

    def send(self, data: bytes) -> None:
        if self.compressing:
            data = self._out.compress(data) + self._out.flush(zlib.Z_SYNC_FLUSH)
        super().send(data)

    def _fill(self) -> None:
        raw = self.sock.recv(65536)
        if not raw:
            raise imaplib.IMAP4.abort("connection closed")
        self.wire_in += len(raw)
        self._plain += self._in.decompress(raw)

    def read(self, size: int) -> bytes:
        if not self.compressing:
            return super().read(size)
        while len(self._plain) < size:
            self._fill()
        out, self._plain = self._plain[:size], self._plain[size:]
        return out

    def readline(self) -> bytes:
        if not self.compressing:
            return super().readline()
        while b"\n" not in self._plain:
            self._fill()
        i = self._plain.index(b"\n") + 1
        out, self._plain = self._plain[:i], self._plain[i:]
        return out


def test_compress_deflate_with_imaplib(srv) -> None:
    """RFC 4978 §3/§4: after COMPRESS DEFLATE both directions are deflated; a whole session
    (SELECT, APPEND, FETCH of a big body, SEARCH) works, and the body travels compressed."""
    acct = new_user(srv)
    big = message("compressible", body=b"All work and no play makes Jack a dull boy.\r\n" * 4000)
    deliver(srv, acct, big)
    m = DeflateIMAP("127.0.0.1", srv.port("imaps"), ssl_context=srv.ssl_context(),
                    timeout=TIMEOUT)
    m.login(acct.address, "secret")
    assert b"COMPRESS=DEFLATE" in m.capability()[1][0]     # offered once logged in
    assert m.compress() == "OK"
    assert m.select("INBOX") == ("OK", [b"1"])
    assert m.append("INBOX", "(\\Seen)", None, message("sent compressed"))[0] == "OK"
    before = m.wire_in
    typ, data = m.fetch("1", "(BODY.PEEK[])")
    assert typ == "OK" and data[0][1] == big
    assert m.wire_in - before < len(big) // 20           # it really was compressed
    assert m.search(None, "SEEN") == ("OK", [b"2"])
    typ, data = m.capability()
    assert b"COMPRESS=DEFLATE" not in data[0]            # not offered once it is active
    typ, data = m._simple_command("COMPRESS", "DEFLATE")  # type: ignore[attr-defined]
    assert typ == "NO" and b"[COMPRESSIONACTIVE]" in m.untagged_responses.get("NO", [b""])[0] \
        or typ == "NO"
    assert m.noop()[0] == "OK"
    m.logout()


def test_compress_twice_and_unknown_mechanism(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    _, tagged = raw.command("COMPRESS LZW")
    assert b" BAD " in tagged
    raw.ok("COMPRESS DEFLATE")
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    d = zlib.decompressobj(-15)
    raw.sock.sendall(c.compress(b"t9 COMPRESS DEFLATE\r\n") + c.flush(zlib.Z_SYNC_FLUSH))
    got = b""
    while b"t9 " not in got:
        got += d.decompress(raw.sock.recv(65536))
    assert got.startswith(b"t9 NO [COMPRESSIONACTIVE]")
    raw.close()


def test_garbage_after_compress_closes_cleanly(srv, caplog) -> None:
    """A client that sends plain text after COMPRESS: the stream is not deflate, the
    connection ends; nothing crashes and nothing stored changes."""
    acct = new_user(srv)
    deliver(srv, acct, message("keep"))
    before = store_state(srv, acct)
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("COMPRESS DEFLATE")
    with caplog.at_level(logging.ERROR, logger="casella"):
        raw.send(b"a1 SELECT INBOX\r\na2 STORE 1 +FLAGS (\\Deleted)\r\na3 EXPUNGE\r\n" * 10)
        assert raw.closed()
    assert not [r for r in caplog.records if r.exc_info]
    assert store_state(srv, acct) == before
    m = imaplib_login(srv, acct)          # the server is fine
    m.logout()


def test_binary_fetch(srv) -> None:
    """RFC 3516 §4.2/4.3: BINARY[part] is the decoded content (literal8 when it has NUL),
    BINARY.SIZE its size, <partial> applies to the decoded data, BINARY sets \\Seen unless
    .PEEK, an unknown transfer encoding is NO [UNKNOWN-CTE]."""
    payload = bytes(range(256)) * 4
    data = (b"From: a@x\r\nSubject: bin\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\n'
            b"Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"caf=C3=A9 cr=C3=A8me\r\n--B\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" +
            base64.encodebytes(payload).replace(b"\n", b"\r\n") +
            b"--B\r\nContent-Type: application/x-odd\r\nContent-Transfer-Encoding: x-uuencode"
            b"\r\n\r\nbegin 644 x\r\n--B--\r\n")
    acct = new_user(srv)
    deliver(srv, acct, data)
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("SELECT INBOX")
    (line,) = raw.ok("FETCH 1 (BINARY.PEEK[1] BINARY.SIZE[1] BINARY.SIZE[2])")
    assert line == ("* 1 FETCH (BINARY[1] {12}\r\ncafé crème BINARY.SIZE[1] 12 "
                    "BINARY.SIZE[2] 1024)").encode()
    raw.send(b"b1 FETCH 1 (BINARY.PEEK[2]<0.300>)\r\n")
    head = raw.raw_line()
    assert head == b"* 1 FETCH (BINARY[2]<0> ~{300}"
    body = b""
    while len(body) < 300 + 3:
        body += raw.sock.recv(65536) if len(raw.buf) == 0 else raw.buf
        raw.buf = b""
    assert body[:300] == payload[:300] and body[300:303] == b")\r\n"
    raw.read_until("b1")
    assert raw.ok("FETCH 1 FLAGS") == [b"* 1 FETCH (FLAGS (\\Recent))"]
    _, tagged = raw.command("FETCH 1 BINARY[3]")
    assert b"NO [UNKNOWN-CTE]" in tagged
    lines = raw.ok("FETCH 1 BINARY[1]")
    assert b"\\Seen" in lines[-1]
    raw.close()


def test_binary_append_with_literal8(srv) -> None:
    """RFC 3516 §4.4: APPEND takes a literal8 (~{n}), NUL included; BINARY gives back the
    octets sent (test_ext_binary_append.py has what BODY[] shows)."""
    acct = new_user(srv)
    data = b"From: a@x\r\nSubject: nul\r\n\r\nbinary \x00 body\r\n"
    raw = Raw(srv)
    raw.login(acct)
    raw.send(b"a1 APPEND INBOX ~{%d}\r\n" % len(data))
    assert raw.line().startswith(b"+")
    raw.send(data + b"\r\n")
    assert raw.line().startswith(b"a1 OK [APPENDUID ")
    raw.ok("SELECT INBOX")
    assert raw.ok("FETCH 1 BINARY.SIZE[1]") == [b"* 1 FETCH (BINARY.SIZE[1] 15)"]
    raw.close()


def test_appendlimit(srv) -> None:
    """RFC 7889: APPENDLIMIT=n in CAPABILITY and STATUS; a bigger APPEND is NO [TOOBIG]
    before the client sends it."""
    limit = srv.config.limits.max_message_size
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    assert f"APPENDLIMIT={limit}".encode() in raw.ok("CAPABILITY")[0]
    assert raw.ok("STATUS INBOX (APPENDLIMIT)") == [b"* STATUS INBOX (APPENDLIMIT %d)" % limit]
    raw.send(b"a1 APPEND INBOX {%d}\r\n" % (limit + 1))
    assert raw.line().startswith(b"a1 NO [TOOBIG]")
    raw.ok("NOOP")
    raw.close()


def test_multiappend_rfc3502(srv) -> None:
    """RFC 3502 §6.3.11 example: two messages in one APPEND, one APPENDUID range; all or
    nothing: when the second does not fit the quota, neither is stored."""
    acct = new_user(srv, quota=30_000)
    one = message("first", body=b"1" * 300)
    two = message("second", body=b"2" * 300)
    raw = Raw(srv)
    raw.login(acct)
    raw.send(b'A003 APPEND Drafts (\\Seen) {%d}\r\n' % len(one))
    assert raw.line().startswith(b"+")
    raw.send(one + b' (\\Seen) " 7-Feb-1994 22:43:04 -0800" {%d}\r\n' % len(two))
    assert raw.line().startswith(b"+")
    raw.send(two + b"\r\n")
    tagged = raw.line()
    m = re.match(rb"A003 OK \[APPENDUID (\d+) 1:2\]", tagged)
    assert m, tagged
    assert [f for _, f in store_state(srv, acct, "Drafts")] == [{"\\Seen"}] * 2
    huge = message("huge", body=b"h" * 29_000)
    raw.send(b"A004 APPEND Drafts {%d+}\r\n" % len(one) + one + b" {%d+}\r\n" % len(huge) +
             huge + b"\r\n")
    assert raw.line().startswith(b"A004 NO [OVERQUOTA]")
    assert len(store_state(srv, acct, "Drafts")) == 2
    raw.send(b"A005 APPEND Nowhere {%d+}\r\n" % len(one) + one + b" {%d+}\r\n" % len(two) +
             two + b"\r\n")
    assert raw.line().startswith(b"A005 NO [TRYCREATE]")
    raw.close()


def test_literal_minus_when_configured(make_server) -> None:
    """RFC 7888 §5: with imap.literal_minus, LITERAL- is announced (never with LITERAL+);
    a non-synchronising literal over 4096 octets is refused (BAD [TOOBIG] for APPEND), read
    and dropped, and the session goes on."""
    server = make_server(imap={"literal_minus": True})
    acct = new_user(server)
    raw = Raw(server)
    caps = raw.ok("CAPABILITY")[0]
    assert b"LITERAL-" in caps and b"LITERAL+" not in caps
    raw.login(acct)
    small = message("small")
    raw.send(b"a1 APPEND INBOX {%d+}\r\n" % len(small) + small + b"\r\n")
    assert raw.line().startswith(b"a1 OK")
    big = message("big", body=b"b" * 5000)
    raw.send(b"a2 APPEND INBOX {%d+}\r\n" % len(big) + big + b"\r\n")
    assert raw.line().startswith(b"a2 BAD [TOOBIG]")
    raw.send(b"a3 APPEND INBOX {%d}\r\n" % len(big))
    assert raw.line().startswith(b"+")
    raw.send(big + b"\r\n")
    assert raw.line().startswith(b"a3 OK")
    assert len(store_state(server, acct)) == 2
    raw.close()


def test_plain_imaplib_still_works_without_compress(srv) -> None:
    acct = new_user(srv)
    m = imaplib_login(srv, acct)
    assert m.select("INBOX")[0] == "OK"
    m.logout()
    sock = socket.create_connection(("127.0.0.1", srv.port("imap")), timeout=TIMEOUT)
    assert sock.recv(4096).startswith(b"* OK [CAPABILITY IMAP4rev1")
    sock.close()
