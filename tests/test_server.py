"""The server process: listeners start on the configured addresses, `casella serve` prints its
endpoints and data dir and stops cleanly (exit 0) on SIGINT/SIGTERM; bad listen addresses stop
start-up with one line."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.conftest import RunningServer, available_listeners

CASELLA = str(Path(sys.executable).parent / "casella")


def test_fixture_server_answers_http(server: RunningServer) -> None:
    port = server.port("http")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
        assert r.status == 200 and r.read() == b"ok\n"
    server.add_user("a@example.test")
    url = f"http://127.0.0.1:{port}/mail/config-v1.1.xml?emailaddress=a@example.test"
    with urllib.request.urlopen(url, timeout=10) as r:
        body = r.read().decode()
    assert "<domain>example.test</domain>" in body
    assert "mail.example.test" in body
    assert f"<port>{server.port('imaps')}</port>" in body
    assert server.cafile.exists()


def _write_config(tmp_path: Path) -> Path:
    listen = "\n".join(f'{name} = "127.0.0.1:0"' for name in available_listeners())
    cfg = tmp_path / "casella.toml"
    cfg.write_text(f'hostname = "mail.example.test"\ndata_dir = "{tmp_path / "var"}"\n'
                   f"[server]\nallow_root = true\n[listen]\n{listen}\n")
    return cfg


def _start(cfg: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, int], str]:
    proc = subprocess.Popen([CASELLA, "--config", str(cfg), "serve", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ports: dict[str, int] = {}
    out = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        out.append(line)
        m = re.match(r"\s+(\w+)\s+127\.0\.0\.1:(\d+)$", line.rstrip())
        if m:
            ports[m.group(1)] = int(m.group(2))
        if line.startswith("Stop with Ctrl-C"):
            break
    return proc, ports, "".join(out)


def test_serve_prints_endpoints_and_stops_on_sigint(tmp_path: Path) -> None:
    cfg = _write_config(tmp_path)
    proc, ports, out = _start(cfg, "--demo")
    try:
        assert f"data in {tmp_path / 'var'}" in out
        assert "demo@example.test" in out
        assert set(ports) == set(available_listeners())
        with socket.create_connection(("127.0.0.1", ports["http"]), timeout=10):
            pass
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    # A second run keeps the demo account and says so again.
    proc, ports, out = _start(cfg, "--demo")
    try:
        assert "demo@example.test" in out
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    cfg = tmp_path / "casella.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "var"}"\n[server]\nallow_root = true\n'
                   f'[listen]\nhttp = "127.0.0.1:{port}"\n')
    try:
        r = subprocess.run([CASELLA, "--config", str(cfg), "serve"], capture_output=True,
                           text=True, timeout=60)
    finally:
        blocker.close()
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"casella: listen.http = '127.0.0.1:{port}': cannot listen")


def test_unreadable_certificate_is_one_line(tmp_path: Path) -> None:
    cfg = tmp_path / "casella.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "var"}"\n[listen]\nhttp = "127.0.0.1:0"\n'
                   f'[tls]\ncert = "{tmp_path}/missing.pem"\nkey = "{tmp_path}/missing.key"\n')
    r = subprocess.run([CASELLA, "--config", str(cfg), "serve"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert "cannot load certificate" in r.stderr.strip().splitlines()[-1]


def test_root_drops_privileges_or_refuses(tmp_path: Path) -> None:
    """Issue 7 §5: started as root, casella binds and then runs as server.user; as root without
    one it refuses to start."""
    import pwd
    import tempfile

    if os.geteuid() != 0:
        import pytest
        pytest.skip("needs root: the privilege drop only happens when started as root")
    nobody = pwd.getpwnam("nobody")
    base = Path(tempfile.mkdtemp(prefix="casella-priv-"))
    os.chmod(base, 0o755)
    try:
        refuse = base / "refuse.toml"
        refuse.write_text(f'data_dir = "{base / "var1"}"\n[listen]\nhttp = "127.0.0.1:0"\n')
        r = subprocess.run([CASELLA, "--config", str(refuse), "serve"], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 1
        assert "refuses to run as root" in r.stderr.strip().splitlines()[-1]

        cfg = base / "drop.toml"
        cfg.write_text(f'data_dir = "{base / "var2"}"\n[server]\nuser = "nobody"\n'
                       f'[listen]\nhttp = "127.0.0.1:0"\n')
        proc, ports, out = _start(cfg)
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
            uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
            assert uid_line.split()[1:] == [str(nobody.pw_uid)] * 4
            with urllib.request.urlopen(f"http://127.0.0.1:{ports['http']}/health",
                                        timeout=10) as resp:
                assert resp.read() == b"ok\n"
            assert (base / "var2" / "casella.db").stat().st_uid == nobody.pw_uid
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            proc.kill()
            proc.wait()
    finally:
        import shutil
        shutil.rmtree(base, ignore_errors=True)
