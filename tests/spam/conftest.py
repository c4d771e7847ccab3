"""Fixtures of the spam filtering tests (issue 20): a real Rspamd of our own, and a fake one.

`rspamd` starts Debian's rspamd once per test session, never the system service: its own
configuration directory (the packaged rules and modules from /etc/rspamd, our worker sections,
actions and test rules), its own run, database and log directories, the normal and controller
workers on free loopback ports, the controller's password required from every address, Bayes
kept in SQLite files (no Redis), and a DNS server that refuses at once (tests never ask the
internet). What each message gets is driven by rules, not by scores: the GTUBE test patterns
(Rspamd's "test patterns": reject, add header, rewrite subject, no action) and a prefilter that
sets the action named in an `X-Casella-Test-Action` header (greylist, soft reject). Tests that
need it skip, saying so, when rspamd is not installed (`apt-get install rspamd`; .ci/run
installs it).

`fake_http` is a small HTTP server in a thread whose answer each test chooses (garbage, a
delay, a huge body, a status) and which records every request, for what needs no Rspamd.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

PASSWORD = "controller-secret"

GTUBE = "JS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"
GTUBE_REJECT = "X" + GTUBE
GTUBE_ADD_HEADER = "Y" + GTUBE
GTUBE_REWRITE_SUBJECT = "Z" + GTUBE
GTUBE_NO_ACTION = "A" + GTUBE

_RSPAMD_CONF = """
.include "$CONFDIR/common.conf"
options {{
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}}
logging {{
    type = "file";
    filename = "$LOGDIR/rspamd.log";
    level = "info";
}}
worker "normal" {{
    bind_socket = "127.0.0.1:{normal}";
    .include "$CONFDIR/worker-normal.inc"
}}
worker "controller" {{
    bind_socket = "127.0.0.1:{controller}";
    count = 1;
    password = "{password}";
    enable_password = "{password}";
    static_dir = "${{WWWDIR}}";
}}
"""

_OPTIONS = """
enable_test_patterns = true;
disable_hyperscan = true;
dns {{ nameserver = ["127.0.0.1:{dns}"]; timeout = 0.2s; retransmits = 1; }}
"""

# Scores never decide an action here: the thresholds are out of reach of ordinary symbols
# (with DNS refused, a plain message collects a few points), the test rules decide.
_ACTIONS = """
reject = 150;
add_header = 60;
greylist = 40;
subject = "*** SPAM *** %s";
"""

# Everything in our own directory: the learn cache too (its compiled-in default is a file in
# /var/lib/rspamd, the system instance's).
_BAYES = """
backend = "sqlite3";
min_learns = 1;
cache {
  type = "sqlite3";
  file = "$DBDIR/learn_cache.sqlite";
}
statfile {
  symbol = "BAYES_HAM";
  spam = false;
  path = "$DBDIR/bayes.ham.sqlite";
}
statfile {
  symbol = "BAYES_SPAM";
  spam = true;
  path = "$DBDIR/bayes.spam.sqlite";
}
"""

_LOCAL_LUA = """
rspamd_config:register_symbol({
  name = 'CASELLA_TEST_ACTION',
  type = 'prefilter',
  priority = 10,
  callback = function(task)
    local want = task:get_header('X-Casella-Test-Action')
    if want then
      task:set_pre_result(want, 'casella test asked for ' .. want, 'casella_test')
    end
  end,
})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Rspamd:
    normal: str             # base URL of the normal worker
    controller: str         # base URL of the controller worker
    password: str
    log: Path

    def stat(self) -> dict[str, object]:
        req = urllib.request.Request(self.controller + "/stat",
                                     headers={"Password": self.password})
        with urllib.request.urlopen(req, timeout=10) as resp:
            data: dict[str, object] = json.loads(resp.read())
        return data

    def learned(self) -> int:
        value = self.stat()["learned"]
        assert isinstance(value, int)
        return value


def _ping(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/ping", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture(scope="session")
def rspamd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rspamd]:
    binary = shutil.which("rspamd")
    if binary is None:
        pytest.skip("Debian's rspamd is not installed (apt-get install rspamd; .ci/run "
                    "installs it when it runs as root)")
    root = tmp_path_factory.mktemp("rspamd")
    local = root / "local.d"
    local.mkdir()
    for sub in ("run", "db", "log"):
        (root / sub).mkdir()
    normal, controller = free_port(), free_port()
    # A UDP port nobody listens on: every DNS query is refused at once.
    dns = free_port()
    (root / "rspamd.conf").write_text(_RSPAMD_CONF.format(normal=normal, controller=controller,
                                                          password=PASSWORD))
    (local / "options.inc").write_text(_OPTIONS.format(dns=dns))
    (local / "actions.conf").write_text(_ACTIONS)
    (local / "classifier-bayes.conf").write_text(_BAYES)
    (root / "rspamd.local.lua").write_text(_LOCAL_LUA)
    cmd = [binary, "-f", "-c", str(root / "rspamd.conf"), f"--var=LOCAL_CONFDIR={root}",
           f"--var=RUNDIR={root / 'run'}", f"--var=DBDIR={root / 'db'}",
           f"--var=LOGDIR={root / 'log'}"]
    if os.geteuid() == 0:
        # Rspamd will not run its workers as root unless told to; the files are ours.
        cmd += ["-u", "root", "-g", "root", "--insecure"]
    with open(root / "stdout.log", "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=root,
                                start_new_session=True)
    handle = Rspamd(f"http://127.0.0.1:{normal}", f"http://127.0.0.1:{controller}", PASSWORD,
                    root / "log" / "rspamd.log")
    try:
        deadline = time.monotonic() + 180
        while not (_ping(handle.normal) and _ping(handle.controller)):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (root / "stdout.log").read_text(errors="replace")[-2000:]
                pytest.fail(f"our rspamd did not start (exit {proc.poll()}):\n{tail}")
            time.sleep(0.2)
        yield handle
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)     # its own session: rspamd and its workers
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


# --- the fake HTTP server ---------------------------------------------------------------------

@dataclass
class Request:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


@dataclass
class Answer:
    status: int = 200
    body: bytes = b""
    delay: float = 0.0            # seconds to wait before answering
    chunked: bool = False         # no Content-Length: chunks until `body` is sent
    content_length: int | None = None   # announce this instead of len(body)
    gate: threading.Event | None = None  # answer only once the test sets it


@dataclass
class FakeHttp:
    url: str
    answer: Answer = field(default_factory=Answer)
    requests: list[Request] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    answer_for: Callable[[Request], Answer] | None = None

    def wait_requests(self, n: int, timeout: float = 20.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.requests) >= n:
                    return list(self.requests)
            time.sleep(0.02)
        with self.lock:
            return list(self.requests)


def rspamd_json(action: str, score: float = 0.0, **extra: object) -> bytes:
    obj: dict[str, object] = {"is_skipped": False, "score": score, "required_score": 15.0,
                              "action": action, "symbols": {}, "messages": {}}
    obj.update(extra)
    return json.dumps(obj).encode()


@pytest.fixture
def fake_http() -> Iterator[FakeHttp]:
    state = FakeHttp("")

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            req = Request("POST", self.path, list(self.headers.items()), body)
            with state.lock:
                state.requests.append(req)
                state.in_flight += 1
                state.most_in_flight = max(state.most_in_flight, state.in_flight)
            try:
                answer = state.answer_for(req) if state.answer_for else state.answer
                if answer.delay:
                    time.sleep(answer.delay)
                if answer.gate is not None:
                    answer.gate.wait(60)
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                if answer.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for i in range(0, len(answer.body), 65536):
                        piece = answer.body[i:i + 65536]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    length = answer.content_length
                    self.send_header("Content-Length", str(len(answer.body) if length is None
                                                           else length))
                    self.end_headers()
                    self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            finally:
                with state.lock:
                    state.in_flight -= 1

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
