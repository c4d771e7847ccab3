"""ManageSieve (RFC 5804) over real sockets: a Python client speaking the protocol byte by
byte, and Debian's sieve-connect where it is installed. Scripts uploaded here act on mail
delivered over SMTP."""

from __future__ import annotations

import base64
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.outbound.helpers import mailbox_messages


class Client:
    """A blocking ManageSieve client that returns raw responses."""

    def __init__(self, port: int, timeout: float = 15.0) -> None:
        self.sock: socket.socket = socket.create_connection(("127.0.0.1", port),
                                                            timeout=timeout)
        self.buf = b""
        self.greeting = self.response()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("closed")
        self.buf += data

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def response(self) -> tuple[list[bytes], bytes]:
        """(the lines before the final OK/NO/BYE, that final line); literals are inlined."""
        lines: list[bytes] = []
        while True:
            line = self.line()
            if line.endswith(b"}") and b"{" in line:
                n = int(line[line.rindex(b"{") + 1:-1].rstrip(b"+"))
                while len(self.buf) < n:
                    self._fill()
                line = line[:line.rindex(b"{")] + self.buf[:n]
                self.buf = self.buf[n:]
                rest = self.line()
                line += rest
            if line.split(b" ", 1)[0] in (b"OK", b"NO", b"BYE"):
                return lines, line
            lines.append(line)

    def cmd(self, data: bytes) -> tuple[list[bytes], bytes]:
        self.send(data + b"\r\n")
        return self.response()

    def starttls(self, ctx: ssl.SSLContext) -> list[bytes]:
        assert self.cmd(b"STARTTLS")[1].startswith(b"OK")
        self.sock = ctx.wrap_socket(self.sock)
        caps, final = self.response()
        assert final.startswith(b"OK")
        return caps

    def login(self, user: str, password: str = "secret") -> bytes:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.cmd(f'AUTHENTICATE "PLAIN" "{token}"'.encode())[1]

    def put(self, name: str, script: bytes) -> bytes:
        return self.cmd(f'PUTSCRIPT "{name}" {{{len(script)}+}}\r\n'.encode() + script)[1]


@pytest.fixture
def srv(make_server: Callable[..., Any]) -> Any:
    s = make_server(inbound={"checks": False},
                    sieve={"max_scripts": 3, "max_script_size": "2K"},
                    managesieve={"max_auth_failures": 3})
    s.add_user("bob@example.test")
    return s


def logged_in(srv: Any) -> Client:
    c = Client(srv.port("managesieve"))
    c.starttls(srv.ssl_context())
    assert c.login("bob@example.test").startswith(b"OK")
    return c


def test_greeting_starttls_and_plaintext_refused(srv: Any) -> None:
    """RFC 5804 §1.7/§2.2 and PROMISES A1: no SASL mechanism in the clear; after STARTTLS
    the capabilities come again, with PLAIN and LOGIN and without STARTTLS."""
    c = Client(srv.port("managesieve"))
    caps, final = c.greeting
    assert final.startswith(b"OK")
    assert b'"STARTTLS"' in caps and b'"SASL" ""' in caps
    assert any(line.startswith(b'"SIEVE" "fileinto') and b"vacation" in line and
               b"imap4flags" in line for line in caps)
    assert c.login("bob@example.test") == b'NO (ENCRYPT-NEEDED) "Use STARTTLS first"'
    caps = c.starttls(srv.ssl_context())
    assert b'"SASL" "PLAIN LOGIN"' in caps and b'"STARTTLS"' not in caps
    assert c.cmd(b"STARTTLS")[1].startswith(b"NO")
    assert c.cmd(b"LISTSCRIPTS")[1] == b'NO "Log in first"'
    assert c.login("bob@example.test", "wrong").startswith(b"NO")
    assert c.login("bob@example.test").startswith(b"OK")
    caps, final = c.cmd(b"CAPABILITY")
    assert b'"OWNER" "bob@example.test"' in caps


def test_login_mechanism_and_failures_end_the_connection(srv: Any) -> None:
    c = Client(srv.port("managesieve"))
    c.starttls(srv.ssl_context())
    c.send(b'AUTHENTICATE "LOGIN"\r\n')
    assert base64.b64decode(c.line().strip(b'"')) == b"Username:"
    c.send(b'"' + base64.b64encode(b"bob@example.test") + b'"\r\n')
    assert base64.b64decode(c.line().strip(b'"')) == b"Password:"
    c.send(b"{8+}\r\n" + base64.b64encode(b"secret") + b"\r\n")
    assert c.response()[1].startswith(b"OK")
    other = Client(srv.port("managesieve"))
    other.starttls(srv.ssl_context())
    assert other.login("bob@example.test", "bad").startswith(b"NO")
    assert other.login("bob@example.test", "bad").startswith(b"NO")
    assert other.login("nobody@example.test", "bad").startswith(b"BYE")
    # The same brute-force memory as IMAP: the failures are counted for the address.
    status = srv.run(srv.store.auth_status(["ip:127.0.0.1"], 2**40))
    assert status["ip:127.0.0.1"][0] >= 3


def test_scripts_put_check_activate_get_rename_delete(srv: Any) -> None:
    c = logged_in(srv)
    script = b'require "fileinto";\r\nif header :contains "subject" "x" {\r\n' \
             b'  fileinto "X";\r\n}\r\n'
    assert c.put("main", script) == b'OK "Stored"'
    assert c.put("vacances d'été", b"keep;") == b'OK "Stored"'
    assert c.cmd(b'SETACTIVE "main"')[1].startswith(b"OK")
    assert c.cmd(b"LISTSCRIPTS") == (
        [b'"main" ACTIVE', "\"vacances d'été\"".encode()], b"OK")
    lines, final = c.cmd(b'GETSCRIPT "main"')
    assert (lines, final) == ([script], b"OK")
    assert c.cmd(b"CHECKSCRIPT {5+}\r\nkeep;")[1] == b'OK "The script is valid"'
    assert c.cmd(b'DELETESCRIPT "main"')[1].startswith(b"NO (ACTIVE)")
    assert c.cmd(b'RENAMESCRIPT "main" "vacances d\'\xc3\xa9t\xc3\xa9"')[1].startswith(
        b"NO (ALREADYEXISTS)")
    assert c.cmd(b'RENAMESCRIPT "main" "filters"')[1].startswith(b"OK")
    assert c.cmd(b'GETSCRIPT "main"')[1].startswith(b"NO (NONEXISTENT)")
    assert c.cmd(b'SETACTIVE "nope"')[1].startswith(b"NO (NONEXISTENT)")
    assert c.cmd(b'SETACTIVE ""')[1].startswith(b"OK")
    assert c.cmd(b'DELETESCRIPT "filters"')[1].startswith(b"OK")
    assert c.cmd(b"LISTSCRIPTS") == (["\"vacances d'été\"".encode()], b"OK")
    assert c.cmd(b'NOOP "t1"')[1] == b'OK (TAG "t1") "Done"'
    assert c.cmd(b"UNAUTHENTICATE")[1].startswith(b"OK")
    assert c.cmd(b"LISTSCRIPTS")[1] == b'NO "Log in first"'
    assert c.cmd(b"LOGOUT")[1].startswith(b"OK")


BAD_SCRIPTS = [
    (b'require "fileinto";\r\nkeep;\r\nfileinto;\r\n', b'NO "line 3: fileinto takes 1 argument'),
    (b"if true {\r\n" * 20 + b"keep;" + b"}" * 20, b'NO "line 16: tests are nested more'),
    (b'require "nonsense";', b'NO "line 1: unsupported extension'),
    (b"keep;\xff", b'NO "line 1: the script is not valid UTF-8'),
]


@pytest.mark.parametrize("script,answer", BAD_SCRIPTS)
def test_a_bad_script_is_refused_with_its_line_and_never_installed(
        srv: Any, script: bytes, answer: bytes) -> None:
    c = logged_in(srv)
    assert c.put("bad", script).startswith(answer)
    assert c.cmd(b"CHECKSCRIPT " + b"{%d+}\r\n" % len(script) + script)[1].startswith(answer)
    assert c.cmd(b"LISTSCRIPTS") == ([], b"OK")


def test_quotas_on_size_and_count(srv: Any) -> None:
    """NO (QUOTA/MAXSIZE) and NO (QUOTA/MAXSCRIPTS) (RFC 5804 §1.3); a literal far beyond
    the limit ends the connection instead of being read."""
    c = logged_in(srv)
    assert c.cmd(b'HAVESPACE "a" 100')[1] == b"OK"
    assert c.cmd(b'HAVESPACE "a" 5000')[1].startswith(b"NO (QUOTA/MAXSIZE)")
    big = b"keep;" + b"#" * 3000
    assert c.put("big", big).startswith(b"NO (QUOTA/MAXSIZE)")
    for name in ("one", "two", "three"):
        assert c.put(name, b"keep;") == b'OK "Stored"'
    assert c.put("four", b"keep;").startswith(b"NO (QUOTA/MAXSCRIPTS)")
    assert c.cmd(b'HAVESPACE "four" 10')[1].startswith(b"NO (QUOTA/MAXSCRIPTS)")
    assert c.put("three", b"discard;") == b'OK "Stored"'          # replacing is fine
    c.send(b'PUTSCRIPT "huge" {99999999+}\r\n')
    assert c.response()[1].startswith(b"BYE (QUOTA/MAXSIZE)")


def test_bad_commands_get_no_and_then_bye(make_server: Callable[..., Any]) -> None:
    srv = make_server(managesieve={"max_bad_commands": 3})
    c = Client(srv.port("managesieve"))
    assert c.cmd(b"FROBNICATE")[1] == b'NO "unknown command FROBNICATE"'
    assert c.cmd(b'GETSCRIPT "unclosed')[1].startswith(b"NO")
    assert c.cmd(b"X" * 9000)[1] == b'BYE "Too many errors"'


def test_uploaded_script_acts_on_mail(srv: Any) -> None:
    c = logged_in(srv)
    assert c.put("main", b'require ["fileinto", "mailbox"];\r\n'
                         b'fileinto :create "Filtered";\r\n') == b'OK "Stored"'
    assert c.cmd(b'SETACTIVE "main"')[1].startswith(b"OK")
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=30) as s:
        s.sendmail("a@remote.test", ["bob@example.test"],
                   b"From: a@remote.test\r\nSubject: s\r\n\r\nbody\r\n")
    acct = srv.run(srv.store.get_account("bob@example.test"))
    assert len(srv.run(mailbox_messages(srv.store, acct, "Filtered"))) == 1


SIEVE_CONNECT = shutil.which("sieve-connect")


@pytest.mark.skipif(SIEVE_CONNECT is None, reason="Debian's sieve-connect is not installed "
                    "(apt-get install sieve-connect; .ci/run installs it when it can)")
def test_sieve_connect_uploads_lists_activates_downloads(srv: Any, tmp_path: Path) -> None:
    """A real client: upload, list, activate, download, check and delete over STARTTLS."""
    assert SIEVE_CONNECT is not None
    local = tmp_path / "filters.sieve"
    local.write_text('require "fileinto";\nif header :contains "subject" "x" '
                     '{ fileinto "X"; }\n')

    def run(*args: str, expect: int = 0) -> str:
        r, w = os.pipe()
        os.write(w, b"secret\n")
        os.close(w)
        try:
            proc = subprocess.run(
                [SIEVE_CONNECT, "--server", "127.0.0.1", "--port", str(srv.port("managesieve")),
                 "--user", "bob@example.test", "--passwordfd", str(r), "--notlsverify",
                 "--authmech", "PLAIN", *args],
                pass_fds=(r,), capture_output=True, text=True, timeout=60,
                stdin=subprocess.DEVNULL, check=False)
        finally:
            os.close(r)
        assert proc.returncode == expect, proc.stdout + proc.stderr
        return proc.stdout + proc.stderr

    run("--upload", "--localsieve", str(local), "--remotesieve", "filters")
    run("--activate", "--remotesieve", "filters")
    assert "filters" in run("--list")
    down = tmp_path / "down.sieve"
    run("--download", "--remotesieve", "filters", "--localsieve", str(down))
    assert down.read_text() == local.read_text()
    acct = srv.run(srv.store.get_account("bob@example.test"))
    assert [(s.name, s.active) for s in srv.run(srv.store.sieve_list(acct.id))] == [
        ("filters", True)]
    bad = tmp_path / "bad.sieve"
    bad.write_text("keep;\nfrobnicate;\n")
    out = run("--upload", "--localsieve", str(bad), "--remotesieve", "bad", expect=1)
    assert "line 2" in out
    run("--deactivate")
    run("--delete", "--remotesieve", "filters")
    assert srv.run(srv.store.sieve_list(acct.id)) == []


def test_login_timeout(make_server: Callable[..., Any]) -> None:
    """[managesieve] login_timeout: a connection that does not log in is closed with BYE."""
    srv = make_server(managesieve={"login_timeout": 1})
    c = Client(srv.port("managesieve"))
    assert c.response()[1].startswith(b"BYE (TRYLATER)")
