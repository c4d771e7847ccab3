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


def test_download_reads_ahead_and_stays_exact(make_server: Callable[..., Any]) -> None:
    """RETR reads the following small messages ahead in one store round trip and streams big
    ones: downloading a maildrop of small, big (above the 256 KiB read piece) and dot-leading
    messages returns every message byte for byte, in order, with the size LIST announced,
    also after DELE of a message that was read ahead and after RSET."""
    srv = make_server(auth={"allow_plaintext_without_tls": True})
    acct = add_user(srv, USER)
    big = b"".join(b".line %06d of a big message\r\n" % i for i in range(12_000))
    bodies = [b"small one\r\n", big, b".starts with a dot\r\n..two\r\n", b"x\r\n" * 3000,
              big[:big.index(b"\r\n", 200_000) + 2], b"last\r\n"]
    datas = [message(f"m{i}", body) for i, body in enumerate(bodies)]
    for data in datas:
        deliver(srv, acct, data)
    reads: list[int] = []
    real = srv.store.read_blobs

    async def counting(pieces: Any) -> Any:
        reads.append(len(pieces))
        return await real(pieces)
    srv.store.read_blobs = counting
    c = Raw(srv.port("pop3"))
    assert c.login(USER).startswith(b"+OK")
    assert c.cmd(b"LIST").startswith(b"+OK")
    sizes = [int(line.split()[1]) for line in c.multi()]
    assert sizes == [len(d) for d in datas]

    def retr(n: int) -> bytes:
        assert c.cmd(b"RETR %d" % n) == b"+OK %d octets" % sizes[n - 1]
        return b"".join(line[1:] if line.startswith(b".") else line
                        for line in (l + b"\r\n" for l in c.multi()))
    assert retr(1) == datas[0]
    assert c.cmd(b"DELE 3").startswith(b"+OK")        # read ahead with message 1
    assert retr(2) == datas[1]                          # streamed, not read ahead
    assert c.cmd(b"RETR 3").startswith(b"-ERR")
    assert c.cmd(b"RSET").startswith(b"+OK")
    for n in (3, 4, 5, 6):
        assert retr(n) == datas[n - 1]
    assert retr(1) == datas[0]
    assert c.cmd(b"QUIT").startswith(b"+OK")
    # RETR 1 read 1 and 3 to 6 (2 is big: streamed); RETR 3 after DELE and RSET read 3 to 6;
    # the second RETR 1 read its window again.
    assert reads == [5, 4, 5], reads
