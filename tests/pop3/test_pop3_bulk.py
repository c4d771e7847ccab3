"""A maildrop of 10,000 messages: login, STAT, LIST, UIDL and a full DELE/QUIT answer promptly
(issue 4: "10,000 messages in INBOX"). Limits are generous; `make bench` measures properly."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.pop3.util import Raw, add_user, deliver, inbox_uids, message

USER = "user@example.test"
N = 10_000


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def test_ten_thousand_messages(make_server: Callable[..., Any]) -> None:
    srv = make_server(auth={"allow_plaintext_without_tls": True})
    acct = add_user(srv, USER)
    deliver(srv, acct, message("bulk"), count=N)
    c = Raw(srv.port("pop3"))
    t_login, reply = timed(lambda: c.login(USER))
    assert reply.startswith(b"+OK Logged in: 10000 messages")
    t_stat, stat = timed(lambda: c.cmd(b"STAT"))
    assert stat.startswith(b"+OK 10000 ")

    def listing(cmd: bytes) -> list[bytes]:
        assert c.cmd(cmd).startswith(b"+OK")
        return c.multi()
    t_list, scan = timed(lambda: listing(b"LIST"))
    t_uidl, uidl = timed(lambda: listing(b"UIDL"))
    assert len(scan) == len(uidl) == N
    assert len({line.split()[1] for line in uidl}) == N
    t_retr, body = timed(lambda: listing(b"RETR 9999"))
    assert b"Subject: bulk" in body
    for i in range(1, N + 1, 2):
        c.send(b"DELE %d\r\n" % i)
    for i in range(1, N + 1, 2):
        assert c.line().startswith(b"+OK")
    t_stat2, stat = timed(lambda: c.cmd(b"STAT"))
    assert stat.startswith(b"+OK 5000 ")
    t_list2, scan = timed(lambda: listing(b"LIST"))
    assert len(scan) == N // 2
    t_quit, bye = timed(lambda: c.cmd(b"QUIT"))
    assert bye == b"+OK Logging out, 5000 messages deleted."
    assert len(inbox_uids(srv, acct)) == N // 2
    times = {"login": t_login, "stat": t_stat, "list": t_list, "uidl": t_uidl, "retr": t_retr,
                 "stat_after_dele": t_stat2, "list_after_dele": t_list2, "quit_5000": t_quit}
    print(" ".join(f"{k}={v * 1000:.1f}ms" for k, v in times.items()))
    for name in ("stat", "list", "uidl", "stat_after_dele", "list_after_dele"):
        assert times[name] < 2.0, times
    assert t_login < 10.0 and t_quit < 10.0, times
