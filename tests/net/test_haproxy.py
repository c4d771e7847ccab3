"""casella behind a real HAProxy (Debian's haproxy, its own config, in the foreground on
loopback ports; issue 19): `send-proxy` (v1) and `send-proxy-v2` in front of IMAP, IMAPS,
POP3 and SMTP, with HAProxy's health checks sending PROXY headers too (v2: the LOCAL
command). The client connects from 127.0.0.2, HAProxy from 127.0.0.1, and casella counts,
limits and records 127.0.0.2.

Must never: use /etc/haproxy or the system service, or leave the process running.
"""

from __future__ import annotations

import imaplib
import poplib
import shutil
import smtplib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import RunningServer
from tests.move.dovecot_peer import free_port, wait_listening
from tests.net.test_proxy_listener import USER, failures, proxied
from tests.smtp.helpers import messages

CLIENT = "127.0.0.2"       # all of 127/8 is loopback on Linux: a second client address


@pytest.fixture
def behind_haproxy(make_server: Callable[..., RunningServer], tmp_path: Path
                   ) -> Iterator[tuple[RunningServer, dict[str, int]]]:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed (Debian package haproxy; .ci/run installs it)")
    server = proxied(make_server, trusted="127.0.0.1/32")
    fronts = {name: free_port() for name in ("imap", "imaps", "pop3", "smtp")}
    sends = {"imap": "send-proxy", "imaps": "send-proxy-v2", "pop3": "send-proxy-v2",
             "smtp": "send-proxy"}
    # Health checks that need the greeting (or, on imaps, the TLS handshake) behind the
    # header: a check casella closed would mark the server DOWN.
    checks = {"imap": "option tcp-check\n    tcp-check expect string *\\ OK",
              "imaps": "", "pop3": "option tcp-check\n    tcp-check expect string +OK",
              "smtp": "option smtpchk"}
    tls_check = {"imaps": " check-ssl verify none"}
    sections = []
    for name, port in fronts.items():
        sections.append(f"""
frontend {name}_in
    bind 127.0.0.1:{port}
    default_backend {name}_out

backend {name}_out
    {checks[name]}
    server casella 127.0.0.1:{server.port(name)} {sends[name]} check-send-proxy check \
inter 300ms{tls_check.get(name, "")}
""")
    config = tmp_path / "haproxy.cfg"
    config.write_text(f"""\
global
    maxconn 200
    pidfile {tmp_path}/haproxy.pid
    log stdout format raw local0 info

defaults
    log global
    mode tcp
    timeout connect 5s
    timeout client 30s
    timeout server 30s
{"".join(sections)}""")
    log = open(tmp_path / "haproxy.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([haproxy, "-f", str(config), "-db"], stdin=subprocess.DEVNULL,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        for port in fronts.values():
            if not wait_listening(port, 15):
                pytest.fail(f"haproxy is not listening: {(tmp_path / 'haproxy.log').read_text()}")
        time.sleep(1.5)            # a few health checks (with their PROXY headers) go by
        yield server, fronts
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
    assert proc.returncode is not None
    text = (tmp_path / "haproxy.log").read_text()
    assert "DOWN" not in text and "failed" not in text, text   # every health check passed


def connect(port: int) -> socket.socket:
    sock = socket.socket()
    sock.bind((CLIENT, 0))
    sock.settimeout(15)
    sock.connect(("127.0.0.1", port))
    return sock


class _Imap(imaplib.IMAP4):
    def _create_socket(self, timeout: float | None) -> socket.socket:
        return connect(self.port)


class _Imaps(imaplib.IMAP4_SSL):
    def _create_socket(self, timeout: float | None) -> socket.socket:
        return self.ssl_context.wrap_socket(connect(self.port), server_hostname=self.host)


class _Pop3(poplib.POP3):
    def _create_socket(self, timeout: float | None) -> socket.socket:
        return connect(self.port)


class _Smtp(smtplib.SMTP):
    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return connect(port)


def test_haproxy_send_proxy_v1_and_v2(
        behind_haproxy: tuple[RunningServer, dict[str, int]]) -> None:
    server, fronts = behind_haproxy
    with _Imap("127.0.0.1", fronts["imap"]) as c, pytest.raises(imaplib.IMAP4.error):  # v1
        c.login(USER, "wrong")
    assert failures(server, CLIENT) == 1
    ctx = server.ssl_context()
    with _Imaps("127.0.0.1", fronts["imaps"], ssl_context=ctx) as c:   # v2, then TLS
        c.login(USER, "secret")
        assert c.select("INBOX")[0] == "OK"
        with pytest.raises(imaplib.IMAP4.error):
            _Imaps("127.0.0.1", fronts["imaps"], ssl_context=ctx).login(USER, "wrong")
    assert failures(server, CLIENT) == 2
    p = _Pop3("127.0.0.1", fronts["pop3"])                           # v2
    p.user(USER)
    with pytest.raises(poplib.error_proto):
        p.pass_("wrong")
    p.quit()
    assert failures(server, CLIENT) == 3
    assert failures(server, "127.0.0.1") == 0
    with _Smtp("127.0.0.1", fronts["smtp"]) as s:                    # v1
        assert s.sendmail("s@remote.example", [USER],
                          b"Subject: via haproxy\r\n\r\nhi\r\n") == {}
    (stored,) = messages(server, USER)
    (received,) = [h for h in stored.split(b"\r\n\r\n")[0].split(b"\r\n")
                   if h.startswith(b"Received:")]
    assert CLIENT.encode() in received, received
