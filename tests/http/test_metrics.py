"""GET /metrics (issue 18 §6) on a running server: what real IMAP, POP3 and SMTP clients do
shows up as connections per listener, commands and errors per command, logins and failures,
messages received, store latency; the store's gauges (queue size and age, holds) and the
sending limits' refusals are there too. Counters are compared before and after, since one
test process runs many servers."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import time

import httpx
import pytest

from tests.http.conftest import AdminSite, samples, value


def scrape(admin: AdminSite) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = httpx.get(admin.url("/metrics"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    return samples(r.text)


def test_protocol_activity_is_counted(admin: AdminSite) -> None:
    srv = admin.server
    srv.add_user("alice@example.test", "pw")
    before = scrape(admin)

    with imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ssl_context()) as c:
        c.login("alice@example.test", "pw")
        c.noop()
        c.logout()
    with imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ssl_context()) as c, \
            pytest.raises(imaplib.IMAP4.error):
        c.login("alice@example.test", "wrong")
    pop = poplib.POP3_SSL("127.0.0.1", srv.port("pop3s"), context=srv.ssl_context())
    pop.user("alice@example.test")
    pop.pass_("pw")
    pop.stat()
    with pytest.raises(poplib.error_proto):
        pop._shortcmd("XYZZY")
    pop.quit()
    with smtplib.SMTP("127.0.0.1", srv.port("smtp")) as smtp:
        smtp.sendmail("someone@remote.test", ["alice@example.test"],
                      b"Subject: hi\r\n\r\nhello\r\n")
        code, _ = smtp.docmd("MAIL FROM:<a@remote.test> BOGUS=1")
        assert code >= 500
    after = scrape(admin)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("casella_connections_total", listener="imaps") == 2
    assert delta("casella_connections_total", listener="pop3s") == 1
    assert delta("casella_connections_total", listener="smtp") == 1
    assert delta("casella_commands_total", protocol="imap", command="LOGIN", result="ok") == 1
    assert delta("casella_commands_total", protocol="imap", command="LOGIN", result="no") == 1
    assert delta("casella_commands_total", protocol="imap", command="NOOP", result="ok") == 1
    assert delta("casella_commands_total", protocol="pop3", command="STAT", result="ok") == 1
    assert delta("casella_commands_total", protocol="pop3", command="UNKNOWN",
                 result="bad") == 1
    assert delta("casella_commands_total", protocol="smtp", command="DATA", result="ok") == 1
    assert delta("casella_commands_total", protocol="smtp", command="MAIL", result="ok") == 1
    assert delta("casella_commands_total", protocol="smtp", command="MAIL", result="bad") == 1
    assert delta("casella_logins_total", protocol="imap", result="ok") == 1
    assert delta("casella_logins_total", protocol="imap", result="failed") == 1
    assert delta("casella_logins_total", protocol="pop3", result="ok") == 1
    assert delta("casella_messages_total", event="received") == 1
    assert delta("casella_store_seconds_count", op="read") > 0
    assert delta("casella_store_seconds_count", op="write") > 0
    assert value(after, "casella_accounts") == 1 and value(after, "casella_domains") == 1
    # Every client has gone: the open connections are back where they were.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        now = scrape(admin)
        if all(value(now, "casella_connections_open", listener=name) ==
               value(before, "casella_connections_open", listener=name)
               for name in ("imaps", "pop3s", "smtp")):
            break
        time.sleep(0.05)
    else:
        raise AssertionError("connections_open did not come back down")


def test_queue_gauges_holds_and_limit_refusals(make_admin: object) -> None:
    """A submission refused while held and past the hourly limit; what it queued shows in the
    queue gauges; a delivery attempt to a closed port counts as deferred."""
    admin = make_admin()  # type: ignore[operator]  (remote.test: a closed port)
    srv = admin.server
    srv.add_user("alice@example.test", "pw")
    before = scrape(admin)
    with admin.client(admin.token()) as api:
        assert api.patch("/limits/alice@example.test",
                         json={"sending_held": True}).status_code == 200
        held = scrape(admin)
        assert value(held, "casella_accounts_sending_held") == 1
        with smtplib.SMTP_SSL("127.0.0.1", srv.port("submissions"),
                              context=srv.ssl_context()) as smtp:
            smtp.login("alice@example.test", "pw")
            smtp.mail("alice@example.test")
            assert smtp.rcpt("bob@remote.test")[0] == 450
        assert api.patch("/limits/alice@example.test", json={
            "sending_held": False, "messages_per_hour": 1}).status_code == 200
    with smtplib.SMTP_SSL("127.0.0.1", srv.port("submissions"),
                          context=srv.ssl_context()) as smtp:
        smtp.login("alice@example.test", "pw")
        smtp.mail("alice@example.test")
        assert smtp.rcpt("bob@remote.test")[0] == 250
        assert smtp.rcpt("carol@remote.test")[0] == 450
        assert smtp.data(b"From: <alice@example.test>\r\nSubject: hi\r\n\r\nhello\r\n")[0] \
            == 250
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        after = scrape(admin)
        if value(after, "casella_messages_total", event="deferred") > \
                value(before, "casella_messages_total", event="deferred"):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the delivery attempt to a closed port was not counted")

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("casella_send_holds_total", cause="admin") == 1
    assert delta("casella_send_refusals_total", reason="held") == 1
    assert delta("casella_send_refusals_total", reason="messages_per_hour") == 1
    assert value(after, "casella_accounts_sending_held") == 0
    assert value(after, "casella_queue_messages") == 1
    assert value(after, "casella_queue_recipients") == 1
    assert 0 <= value(after, "casella_queue_oldest_seconds") < 120


def test_metrics_outside_admin_from_get_403(make_admin: object) -> None:
    admin = make_admin(http={"admin_from": ["10.0.0.0/8"]})  # type: ignore[operator]
    r = httpx.get(admin.url("/metrics"))
    assert r.status_code == 403 and "casella_" not in r.text
