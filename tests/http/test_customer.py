"""The customer's page over real sockets (issue 18 §3): login through the shared
Authenticator, CSRF on every POST, the session cookie, what the page shows, the password and
POP3 forms, and the session working in whichever worker process a request reaches."""

from __future__ import annotations

import imaplib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from casella.store.blobs import StagedBlob
from casella.store.model import QueueRecipient
from tests.conftest import RunningServer
from tests.http.conftest import PASSWORD, base_url, csrf_of, https_client, log_in


def test_login_page_and_cookie(client: httpx.Client) -> None:
    r = client.get("/")
    assert r.status_code == 200 and 'action="/login"' in r.text
    cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie        # plain http (loopback, or behind a proxy)


def test_cookie_is_secure_on_https(web: RunningServer) -> None:
    with https_client(web) as c:
        cookie = c.get("/").headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        r = log_in(c)
        assert r.status_code == 303 and "Secure" in r.headers["Set-Cookie"]
        assert "alice@example.test" in c.get("/").text


def test_wrong_password_and_unknown_address_look_the_same(client: httpx.Client) -> None:
    """PROMISES A3: the same status and sentence whether the account exists or not."""
    wrong = log_in(client, password="wrong password")
    unknown = log_in(client, address="nobody@example.test", password="wrong password")
    assert wrong.status_code == unknown.status_code == 401
    sentence = "The address or the password is not right."
    assert sentence in wrong.text and sentence in unknown.text
    strip = re.compile(r'value="[^"]*"')
    assert strip.sub("", wrong.text) == strip.sub("", unknown.text)
    assert "alice@example.test" not in client.get("/").text.split("<main>")[1].split(
        "action")[0]


def test_address_is_escaped(client: httpx.Client) -> None:
    r = log_in(client, address='"><script>alert(1)</script>', password="x")
    assert r.status_code == 401
    assert "<script>" not in r.text and "&lt;script&gt;" in r.text


def test_web_logins_count_against_the_same_block_as_imap(
        make_server: Callable[..., RunningServer]) -> None:
    """The web login goes through the Authenticator: failures here block the IP on IMAP too
    (and a blocked IP cannot log in on the web even with the right password)."""
    srv = make_server(auth={"block_after": 3, "allow_plaintext_without_tls": True,
                            "failure_delay": 0.01, "max_failure_delay": 0.02})
    srv.add_user("alice@example.test", PASSWORD)
    with httpx.Client(base_url=base_url(srv), timeout=30) as c:
        for _ in range(3):
            assert log_in(c, password="guess").status_code == 401
        imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("alice@example.test", PASSWORD)
        imap.logout()
        assert log_in(c).status_code == 401


def test_posts_without_the_csrf_token_get_403(client: httpx.Client) -> None:
    client.get("/")
    for path, data in (("/login", {"address": "alice@example.test", "password": PASSWORD}),
                       ("/logout", {}), ("/password", {"old": PASSWORD, "new": "x" * 9,
                                                       "repeat": "x" * 9}),
                       ("/pop3", {"delete": "hide"})):
        assert client.post(path, data=data).status_code == 403
        assert client.post(path, data={**data, "csrf": "forged"}).status_code == 403
    # A token from another session is no good either.
    with httpx.Client(base_url=client.base_url) as other:
        token = csrf_of(other.get("/").text)
    assert client.post("/login", data={"csrf": token, "address": "alice@example.test",
                                       "password": PASSWORD}).status_code == 403
    # Without any cookie at all.
    with httpx.Client(base_url=client.base_url) as fresh:
        assert fresh.post("/login", data={"csrf": token}).status_code == 403


def test_a_multipart_body_gets_403_not_500(client: httpx.Client) -> None:
    """The forms are urlencoded; the HTTP guard has read a body before the handler, so a
    multipart one cannot be parsed again: it is refused like any body without the token."""
    token = csrf_of(client.get("/").text)
    r = client.post("/login", files={"csrf": (None, token), "address": (None, "a@b.test"),
                                     "password": (None, PASSWORD)})
    assert r.status_code == 403


def test_forged_or_tampered_cookie_is_not_a_session(client: httpx.Client) -> None:
    assert log_in(client).status_code == 303
    value = client.cookies["casella_session"]
    payload, _, mac = value.partition(".")
    client.cookies.set("casella_session", payload + "." + mac[::-1])
    assert 'action="/login"' in client.get("/").text


def _append(srv: RunningServer, address: str, size: int, n: int = 1) -> None:
    c = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ssl_context())
    c.login(address, PASSWORD)
    for i in range(n):
        c.append("INBOX", None, None, b"Subject: m%d\r\n\r\n" % i + b"x" * size + b"\r\n")
    c.logout()


def test_account_page_shows_quota_folders_and_sending(web: RunningServer,
                                                      client: httpx.Client) -> None:
    _append(web, "alice@example.test", 2000, n=2)
    assert log_in(client).status_code == 303
    page = client.get("/").text
    assert "alice@example.test" in page and 'id="quota-bar"' in page
    assert "of 1.0 GB used" in page and "quota-warning" not in page
    rows = re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">(\d+)</td>", page)
    assert ("INBOX", "2") in rows and ("Sent", "0") in rows and ("Trash", "0") in rows
    assert "<strong>0</strong> of 180 messages an hour" in page
    assert "<strong>0</strong> of 5 failed or delayed deliveries" in page
    assert "You can send mail." in page
    for link in ("profile-imap", "profile-pop3"):
        href = re.search(rf'href="([^"]+)" id="{link}"', page)
        assert href, link
        profile = client.get(href.group(1).replace("&amp;", "&"))
        assert profile.status_code == 200 and b"alice@example.test" in profile.content
    guide = client.get("/guide").text
    for section in ("thunderbird", "outlook", "apple", "android", "gmail"):
        assert f'id="{section}"' in guide
    assert "Leave a copy of" in guide and str(web.port("pop3s")) in guide
    assert str(web.port("submission")) in guide and "Send mail as" in guide


@pytest.mark.parametrize("used,level", [(7_000, None), (8_300, "more than 80 %"),
                                         (9_700, "almost full")])
def test_quota_warnings_at_80_and_95_percent(web: RunningServer, client: httpx.Client,
                                             used: int, level: str | None) -> None:
    web.run(web.store.set_quota("alice@example.test", 10_000))
    _append(web, "alice@example.test", used - 20)
    log_in(client)
    page = client.get("/").text
    if level is None:
        assert "quota-warning" not in page
    else:
        assert 'id="quota-warning"' in page and level in page


def test_held_and_hourly_limit_notices(web: RunningServer, client: httpx.Client) -> None:
    log_in(client)
    web.run(web.store.set_sending_held("alice@example.test", True))
    page = client.get("/").text
    assert "Your outgoing mail is on hold" in page and "You can send mail." not in page
    web.run(web.store.set_sending_held("alice@example.test", False))
    web.run(web.store.set_send_limits("alice@example.test", {"messages_per_hour": 1}))
    account = web.run(web.store.get_account("alice@example.test"))

    async def queue_one() -> None:
        blob: StagedBlob = await web.store.blobs.stage(b"Subject: x\r\n\r\nx\r\n")
        try:
            await web.store.enqueue(blob, "alice@example.test",
                                    [QueueRecipient("bob@remote.test")], account.id)
        finally:
            blob.discard()
    web.run(queue_one())
    page = client.get("/").text
    assert "You have sent 1 messages in the last hour" in page
    assert re.search(r"send again from \d{4}-\d\d-\d\d \d\d:\d\d UTC", page)


def test_change_password(web: RunningServer, client: httpx.Client) -> None:
    log_in(client)
    token = csrf_of(client.get("/").text)
    cases = [({"old": PASSWORD, "new": "short", "repeat": "short"}, "at least 8"),
             ({"old": PASSWORD, "new": "new password 1", "repeat": "other"}, "not the same"),
             ({"old": "not it", "new": "new password 1", "repeat": "new password 1"},
              "current password is not right")]
    for form, problem in cases:
        r = client.post("/password", data={"csrf": token, **form})
        assert r.status_code == 400 and problem in r.text
    r = client.post("/password", data={"csrf": token, "old": PASSWORD, "new": "new password 1",
                                       "repeat": "new password 1"})
    assert r.status_code == 303 and r.headers["Location"] == "/?done=password"
    assert "Your password was changed" in client.get(r.headers["Location"]).text
    # The new password is the mailbox password everywhere.
    imap = imaplib.IMAP4_SSL("127.0.0.1", web.port("imaps"), ssl_context=web.ssl_context())
    imap.login("alice@example.test", "new password 1")
    imap.logout()
    with httpx.Client(base_url=client.base_url) as other:
        assert log_in(other).status_code == 401
        assert log_in(other, password="new password 1").status_code == 303


def test_password_changed_elsewhere_ends_the_session(web: RunningServer,
                                                     client: httpx.Client) -> None:
    from casella.auth.passwords import hash_password

    log_in(client)
    assert "quota-bar" in client.get("/").text
    web.run(web.store.set_password("alice@example.test", hash_password("changed by admin")))
    assert 'action="/login"' in client.get("/").text


def test_pop3_settings(web: RunningServer, client: httpx.Client) -> None:
    log_in(client)
    page = client.get("/").text
    assert "deleted from the server" in page
    token = csrf_of(page)
    r = client.post("/pop3", data={"csrf": token, "delete": "hide", "expire": "30"})
    assert r.status_code == 303
    account = web.run(web.store.get_account("alice@example.test"))
    assert (account.pop3_delete, account.pop3_expire_days) == ("hide", 30)
    page = client.get("/").text
    assert "hidden from POP3 but kept for IMAP" in page and "<strong>30</strong> days" in page
    for bad in ({"delete": "shred"}, {"delete": "hide", "expire": "-1"},
                {"delete": "hide", "expire": "99999"}, {"delete": "hide", "expire": "x"}):
        assert client.post("/pop3", data={"csrf": token, **bad}).status_code == 400
    assert client.post("/pop3", data={"csrf": token, "delete": "default",
                                       "expire": ""}).status_code == 303
    account = web.run(web.store.get_account("alice@example.test"))
    assert (account.pop3_delete, account.pop3_expire_days) == (None, None)


def test_logout(client: httpx.Client) -> None:
    log_in(client)
    token = csrf_of(client.get("/").text)
    r = client.post("/logout", data={"csrf": token})
    assert r.status_code == 303
    page = client.get(r.headers["Location"]).text
    assert 'action="/login"' in page and "You are logged out" in page
    assert client.get("/guide").status_code == 303 and "quota-bar" not in client.get("/").text


def test_guide_needs_a_login(client: httpx.Client) -> None:
    r = client.get("/guide", follow_redirects=False)
    assert r.status_code == 303 and r.headers["Location"] == "/"


def test_form_body_over_the_limit_gets_413(make_server: Callable[..., RunningServer]) -> None:
    srv = make_server(http={"max_body_size": "1K"})
    with httpx.Client(base_url=base_url(srv), timeout=30) as c:
        token = csrf_of(c.get("/").text)
        r = c.post("/login", data={"csrf": token, "address": "a@example.test",
                                   "password": "p" * 2000})
        assert r.status_code == 413


def test_user_show_prints_the_accounts_pop3_choice(tmp_path: Path) -> None:
    casella = str(Path(sys.executable).parent / "casella")
    cfg = tmp_path / "casella.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n[listen]\nimap = "127.0.0.1:0"\n')

    def run(*args: str) -> str:
        r = subprocess.run([casella, "--config", str(cfg), *args], capture_output=True,
                           text=True, timeout=60, input="a password\n", check=False,
                           env={**os.environ, "CASELLA_CONFIG": ""})
        assert r.returncode == 0, r.stderr
        return r.stdout

    run("domain", "add", "example.test")
    run("user", "add", "alice@example.test", "--password-stdin")
    assert "pop3" not in run("user", "show", "alice@example.test")

    import asyncio

    from casella.config import load_config
    from casella.server import open_store

    async def choose() -> None:
        store = open_store(load_config(cfg))
        await store.open(repair=False)
        try:
            await store.set_pop3_policy("alice@example.test", "move-to-trash", None)
        finally:
            await store.close()
    asyncio.run(choose())
    assert "pop3      delete = move-to-trash, expire_days = 0 (the account's own choice)" in \
        run("user", "show", "alice@example.test")


def test_sessions_work_in_every_worker(tmp_path: Path) -> None:
    """With [server] workers = 2, a session made by one worker is good in the other: twenty
    new connections (spread by the kernel between the two) all see the logged-in page."""
    casella = str(Path(sys.executable).parent / "casella")
    cfg = tmp_path / "casella.toml"
    cfg.write_text(f'hostname = "mail.example.test"\ndata_dir = "{tmp_path / "var"}"\n'
                   '[server]\nworkers = 2\nallow_root = true\n'
                   '[listen]\nhttp = "127.0.0.1:0"\nimaps = "127.0.0.1:0"\n')
    env = {**os.environ, "CASELLA_CONFIG": ""}
    for args in (["domain", "add", "example.test"],
                 ["user", "add", "alice@example.test", "--password-stdin"]):
        subprocess.run([casella, "--config", str(cfg), *args], input=PASSWORD + "\n",
                       capture_output=True, text=True, timeout=60, env=env, check=True)
    proc = subprocess.Popen([casella, "--config", str(cfg), "serve"], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert proc.stdout is not None
        port = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not port:
            line = proc.stdout.readline()
            m = re.match(r"\s+http\s+127\.0\.0\.1:(\d+)$", line.rstrip())
            port = int(m.group(1)) if m else 0
        assert port
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
            assert log_in(c).status_code == 303
            cookie = c.cookies["casella_session"]
        for _ in range(20):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30,
                              cookies={"casella_session": cookie},
                              headers={"Connection": "close"}) as fresh:
                assert "quota-bar" in fresh.get("/").text
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
