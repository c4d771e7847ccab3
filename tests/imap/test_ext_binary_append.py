"""APPEND of binary content and what FETCH then puts on the wire, over real sockets: RFC 3516
§4.4 (a literal8 may carry NUL; the server may change the transfer encoding without losing
data), §4.2/§4.3 (BINARY[] is the decoded content, as a literal8 when it holds NUL; partial
ranges count decoded octets; BINARY.SIZE), §6 (BODY[] and BODYSTRUCTURE show the part in an
encoding the base protocol carries), RFC 9051 §4.3 (an ordinary literal cannot carry NUL)."""

from __future__ import annotations

import base64
import os

from tests.imap.util import Raw, new_user

SINGLE = (b"From: user@domain.org\r\nDate: Sat, 24 Mar 2007 23:00:00 +0200\r\n"
          b"Mime-Version: 1.0\r\nContent-Type: application/octet-stream\r\n"
          b"Content-Transfer-Encoding: binary\r\n\r\n\x00-\xe4\n\r\n\n")
DECODED = b"\x00-\xe4\n\r\n\n"


def append(raw: Raw, data: bytes, literal: bytes = b"~") -> bytes:
    raw.send(b"a1 APPEND INBOX " + literal + b"{%d}\r\n" % len(data))
    assert raw.line().startswith(b"+")
    raw.send(data + b"\r\n")
    return raw.line()


def fetch_bytes(raw: Raw, items: str) -> bytes:
    """The one FETCH response of message 1, exactly as sent (literals included)."""
    (line,) = raw.ok(f"FETCH 1 ({items})")
    return line


def test_literal8_binary_part(srv) -> None:
    """The imaptest append-binary case: BODY[1] is the base64 form (no NUL on the wire, as
    Dovecot sends it), BODYSTRUCTURE says base64, BINARY[1] is the 7 octets sent as a literal8
    (NUL, bare CR and LF intact), BINARY.SIZE[1] is 7, partial ranges count decoded octets and
    use a literal8 only when the piece holds NUL; a second session reads the same."""
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    assert append(raw, SINGLE).startswith(b"a1 OK [APPENDUID ")
    raw.ok("SELECT INBOX")
    assert fetch_bytes(raw, "BODY.PEEK[1]") == b"* 1 FETCH (BODY[1] {12}\r\nAC3kCg0KCg==)"
    assert fetch_bytes(raw, "BINARY.SIZE[1] BINARY.PEEK[1]") == (
        b"* 1 FETCH (BINARY.SIZE[1] 7 BINARY[1] ~{7}\r\n" + DECODED + b")")
    assert fetch_bytes(raw, "BINARY.PEEK[1]<0.3> BINARY.PEEK[1]<1.2> BINARY.PEEK[1]<7.5>") == (
        b"* 1 FETCH (BINARY[1]<0> ~{3}\r\n\x00-\xe4 BINARY[1]<1> {2}\r\n-\xe4 "
        b'BINARY[1]<7> "")')
    structure = fetch_bytes(raw, "BODYSTRUCTURE")
    assert b'("application" "octet-stream" NIL NIL NIL "base64" 12 ' in structure
    whole = fetch_bytes(raw, "RFC822.SIZE BODY.PEEK[]")
    size = int(whole.split(b"RFC822.SIZE ")[1].split(b" ")[0])
    body = whole.split(b"BODY[] {%d}\r\n" % size, 1)[1]
    assert b"\x00" not in whole and len(body) == size + 1      # and the closing ")"
    assert body.endswith(b"Content-Transfer-Encoding: base64\r\n\r\nAC3kCg0KCg==)")
    other = Raw(srv)
    other.login(acct)
    other.ok("EXAMINE INBOX")
    assert fetch_bytes(other, "BINARY.PEEK[1]") == (
        b"* 1 FETCH (BINARY[1] ~{7}\r\n" + DECODED + b")")
    raw.close()
    other.close()


def test_large_literal8_is_streamed_and_encoded(srv) -> None:
    """A literal8 over 64 KiB (read apart from the command) gets the same treatment: the
    binary part comes back from BINARY[2] octet for octet, BODY[2] is its base64 in lines of
    76 characters, nothing with NUL is sent but BINARY, and a text part is left as it was."""
    acct = new_user(srv)
    blob = os.urandom(90_000) + b"\x00\r\n\n\r"
    data = (b"From: a@x\r\nSubject: big\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="=b="\r\n\r\n'
            b"--=b=\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n"
            b"--=b=\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: binary\r\n\r\n" + blob + b"\r\n--=b=--\r\n")
    assert b"\n--=b=" not in blob
    raw = Raw(srv)
    raw.login(acct)
    assert append(raw, data).startswith(b"a1 OK ")
    raw.ok("SELECT INBOX")
    assert fetch_bytes(raw, "BINARY.SIZE[2]") == b"* 1 FETCH (BINARY.SIZE[2] %d)" % len(blob)
    assert fetch_bytes(raw, "BINARY.PEEK[2]") == (
        b"* 1 FETCH (BINARY[2] ~{%d}\r\n" % len(blob) + blob + b")")
    encoded = base64.encodebytes(blob).replace(b"\n", b"\r\n")[:-2]
    assert fetch_bytes(raw, "BODY.PEEK[2]") == (
        b"* 1 FETCH (BODY[2] {%d}\r\n" % len(encoded) + encoded + b")")
    assert fetch_bytes(raw, "BODY.PEEK[1]") == b"* 1 FETCH (BODY[1] {14}\r\nsee attachment)"
    whole = fetch_bytes(raw, "RFC822.SIZE BINARY.SIZE[] BODY.PEEK[]")
    assert b"\x00" not in whole
    size = int(whole.split(b"RFC822.SIZE ")[1].split(b" ")[0])
    assert b"BINARY.SIZE[] %d " % size in whole
    raw.close()


def test_nul_in_an_ordinary_literal(srv) -> None:
    """RFC 9051 §4.3: an ordinary literal cannot carry NUL; one that does is stored with 0x80
    in its place (as Dovecot does), so no FETCH sends a NUL; the rest is kept."""
    acct = new_user(srv)
    data = b"From: a@x\r\nSubject: nul\r\n\r\nbefore\x00after\r\n"
    raw = Raw(srv)
    raw.login(acct)
    assert append(raw, data, literal=b"").startswith(b"a1 OK ")
    raw.ok("SELECT INBOX")
    assert fetch_bytes(raw, "BODY.PEEK[TEXT]") == (
        b"* 1 FETCH (BODY[TEXT] {14}\r\nbefore\x80after\r\n)")
    raw.close()


def test_literal8_multipart_with_unknown_encoding(srv) -> None:
    """RFC 3516 §4.3: a part in an encoding the server does not know keeps it, so BINARY of it
    is NO [UNKNOWN-CTE] and sets no \\Seen; the binary part beside it decodes; BINARY[] of a
    multipart message is the whole stored message (its BINARY.SIZE is RFC822.SIZE)."""
    acct = new_user(srv)
    data = (b"From: a@x\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=q\r\n"
            b"\r\n--q\r\nContent-Transfer-Encoding: binary\r\n\r\n\x00\x01\x02\r\n"
            b"--q\r\nContent-Transfer-Encoding: x-odd\r\n\r\nodd\r\n--q--\r\n")
    raw = Raw(srv)
    raw.login(acct)
    assert append(raw, data).startswith(b"a1 OK ")
    raw.ok("SELECT INBOX")
    _, tagged = raw.command("FETCH 1 (BINARY[2])")
    assert b" NO [UNKNOWN-CTE] " in tagged
    assert raw.ok("FETCH 1 FLAGS") == [b"* 1 FETCH (FLAGS (\\Recent))"]
    _, tagged = raw.command("FETCH 1 (BINARY.SIZE[2])")
    assert b" NO [UNKNOWN-CTE] " in tagged
    assert fetch_bytes(raw, "BINARY.PEEK[1] BINARY.SIZE[1]") == (
        b"* 1 FETCH (BINARY[1] ~{3}\r\n\x00\x01\x02 BINARY.SIZE[1] 3)")
    line = fetch_bytes(raw, "RFC822.SIZE BINARY.SIZE[]")
    size = int(line.split(b"RFC822.SIZE ")[1].split(b" ")[0])
    assert line.endswith(b"BINARY.SIZE[] %d)" % size)
    raw.close()
