"""The queue runner against a scripted fake remote MX: delivery, per-recipient states, retries
and the backoff schedule on a hand-moved clock, bounces, the one delay notice, faults."""

from __future__ import annotations

import asyncio

import pytest

from casella.smtp.queue import QueueRunner, retry_delay
from casella.smtp.resolver import TIMEOUT
from casella.store.model import QueueRecipient
from casella.store.sqlite import SQLiteStore
from tests.outbound.conftest import FAST, Env, build_config, message
from tests.outbound.fakemx import FakeMX, tls_context_for
from tests.outbound.helpers import dsn_fields, mailbox_messages, parse


async def test_accept_delivers_every_recipient_in_one_pipelined_transaction(env: Env) -> None:
    """RFC 2920: MAIL, RCPTs and DATA in one group; the entry leaves the queue when done."""
    alice = await env.user()
    qid = await env.enqueue(["bob@remote.test", "carol@remote.test"], account=alice)
    assert await env.runner.run_once() == 1
    assert sorted(env.mx.accepted()) == ["bob@remote.test", "carol@remote.test"]
    assert env.mx.transactions == 1
    assert await env.store.get_queue_entry(qid) is None
    assert "PIPELINING" not in " ".join(env.mx.commands)
    assert env.mx.messages[0].mail_from == "alice@example.test"
    assert b"Subject: hello" in env.mx.messages[0].data


async def test_recipients_of_two_domains_are_two_transactions(env: Env) -> None:
    await env.user()
    await env.enqueue(["bob@remote.test", "dan@other.test"])
    assert await env.runner.run_once() == 2
    assert sorted(env.mx.accepted()) == ["bob@remote.test", "dan@other.test"]
    assert env.mx.transactions == 2


async def test_dsn_parameters_are_passed_on(env: Env) -> None:
    """RFC 3461 §5.2: a DSN-capable server gets NOTIFY, ORCPT, RET and ENVID (xtext)."""
    await env.user()
    await env.enqueue([QueueRecipient("bob@remote.test", "rfc822;Bob+x@remote.test",
                                      ("SUCCESS", "FAILURE"))], envid="id 1", ret="HDRS")
    await env.runner.run_once()
    m = env.mx.messages[0]
    assert "RET=HDRS" in m.mail_params and "ENVID=id+201" in m.mail_params
    assert m.rcpt_params == ["NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;Bob+2Bx@remote.test"]


async def test_permanent_failure_bounces_into_the_local_senders_inbox(env: Env) -> None:
    """5xx: permanent; the DSN (RFC 3464) goes to the local sender's INBOX with the original
    headers, and the other recipient is delivered."""
    alice = await env.user()
    env.mx.rcpt_replies["nobody@remote.test"] = "550 5.1.1 <nobody@remote.test>: no such user"
    qid = await env.enqueue(["bob@remote.test", "nobody@remote.test"], account=alice,
                            envid="ENV-42")
    await env.runner.run_once()
    assert env.mx.accepted() == ["bob@remote.test"]
    assert await env.store.get_queue_entry(qid) is None
    inbox = await mailbox_messages(env.store, alice)
    assert len(inbox) == 1
    bounce = parse(inbox[0])
    assert inbox[0].startswith(b"Return-Path: <>\r\n")
    assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
    assert "MAILER-DAEMON@mail.example.test" in bounce["From"]
    per_msg, per_rcpt = dsn_fields(inbox[0])
    assert per_msg["original-envelope-id"] == "ENV-42"
    assert len(per_rcpt) == 1
    assert per_rcpt[0]["final-recipient"] == "rfc822; nobody@remote.test"
    assert per_rcpt[0]["action"] == "failed" and per_rcpt[0]["status"] == "5.1.1"
    assert "550 5.1.1" in per_rcpt[0]["diagnostic-code"]
    assert per_rcpt[0]["remote-mta"] == "dns; 127.0.0.1"
    assert b"Subject: hello" in inbox[0]            # the original message comes back
    assert b"no such user" in inbox[0]


async def test_backoff_schedule_and_give_up(env: Env) -> None:
    """4xx forever: retried after 5m, 10m, 20m, 40m … capped at 4h; after 5 days a bounce."""
    alice = await env.user()
    env.mx.rcpt_replies["bob@remote.test"] = "451 4.3.0 try again later"
    qid = await env.enqueue(["bob@remote.test"], account=alice)
    expected_waits = [300, 600, 1200, 2400, 4800, 9600, 14400, 14400]
    await env.runner.run_once()
    for n, wait in enumerate(expected_waits, start=1):
        entry = await env.store.get_queue_entry(qid)
        assert entry is not None
        r = entry.recipients[0]
        assert r.state == "deferred" and r.attempts == n
        assert r.next_attempt == int(env.clock.now()) + wait
        assert "451 4.3.0" in r.last_reply
        env.clock.advance(wait - 1)
        assert await env.runner.run_once() == 0      # not due yet
        env.clock.advance(1)
        assert await env.runner.run_once() == 1
    assert retry_delay(30, 300, 14400) == 14400
    created = (await env.store.get_queue_entry(qid)).created
    env.clock.advance(created + 5 * 86400 - env.clock.now())
    await env.runner.run_once()
    assert await env.store.get_queue_entry(qid) is None
    inbox = await mailbox_messages(env.store, alice)
    kinds = [dsn_fields(m)[1][0]["action"] for m in inbox]
    assert kinds == ["delayed", "failed"]                # one delay notice, then the bounce
    failed = dsn_fields(inbox[1])[1][0]
    assert failed["status"] == "5.3.0" and "gave up after 5 days" in failed["diagnostic-code"]


async def test_one_delay_notice_after_four_hours(env: Env) -> None:
    alice = await env.user()
    env.mx.rcpt_replies["bob@remote.test"] = "452 4.2.2 mailbox full, later"
    qid = await env.enqueue(["bob@remote.test"], account=alice)
    for _ in range(12):
        await env.runner.run_once()
        env.clock.advance(3600)
    inbox = await mailbox_messages(env.store, alice)
    assert len(inbox) == 1
    _, per_rcpt = dsn_fields(inbox[0])
    assert per_rcpt[0]["action"] == "delayed" and per_rcpt[0]["status"] == "4.2.2"
    assert "will-retry-until" in per_rcpt[0]
    assert parse(inbox[0])["Subject"] == "Delayed Mail (still being retried)"
    assert (await env.store.get_queue_entry(qid)) is not None
    env.mx.rcpt_replies.clear()
    env.clock.advance(4 * 3600)
    await env.runner.run_once()
    assert env.mx.accepted() == ["bob@remote.test"]
    assert len(await mailbox_messages(env.store, alice)) == 1


async def test_notify_never_and_null_sender_get_no_bounce(env: Env) -> None:
    """RFC 3461 NOTIFY=NEVER; PROMISES M6: no DSN for the null reverse path."""
    alice = await env.user()
    env.mx.rcpt_replies["nobody@remote.test"] = "550 5.1.1 no such user"
    q1 = await env.enqueue([QueueRecipient("nobody@remote.test", notify=("NEVER",))],
                           account=alice)
    q2 = await env.enqueue(["nobody@remote.test"], sender="")
    await env.runner.run_once()
    assert await env.store.get_queue_entry(q1) is None
    assert await env.store.get_queue_entry(q2) is None
    assert await mailbox_messages(env.store, alice) == []
    assert [e for e in await env.store.list_queue()] == []


async def test_bounce_for_a_remote_sender_is_queued_with_the_null_sender(env: Env) -> None:
    env.mx.rcpt_replies["nobody@remote.test"] = "550 5.1.1 no such user"
    await env.enqueue(["nobody@remote.test"], sender="someone@other.test")
    await env.runner.run_once()
    # The bounce went into the queue for other.test, and the runner delivered it there.
    await env.runner.run_once()
    bounce = env.mx.messages[-1]
    assert bounce.mail_from == "" and bounce.rcpts == ["someone@other.test"]
    assert b"multipart/report" in bounce.data


async def test_success_notice_when_the_remote_has_no_dsn(env: Env) -> None:
    """RFC 3461 §5.2.2.1: relaying to a server without DSN, we report "relayed"."""
    alice = await env.user()
    env.mx.dsn = False
    await env.enqueue([QueueRecipient("bob@remote.test", notify=("SUCCESS",))], account=alice)
    await env.runner.run_once()
    inbox = await mailbox_messages(env.store, alice)
    assert [dsn_fields(m)[1][0]["action"] for m in inbox] == ["relayed"]


@pytest.mark.parametrize("mode", ["drop_mid_data", "drop_after_data", "stall_after_data",
                                  "garbage", "greet_421", "stall_greeting"])
async def test_faults_defer_and_the_retry_delivers_once(env: Env, mode: str) -> None:
    """A remote that drops, stalls (timeouts), or answers garbage: the recipient is deferred
    and delivered exactly once by the retry; nothing is lost."""
    alice = await env.user()
    env.mx.modes = [mode]
    qid = await env.enqueue(["bob@remote.test"], account=alice)
    await env.runner.run_once()
    assert await env.states(qid) == {"bob@remote.test": "deferred"}
    assert env.mx.accepted() == []
    env.clock.advance(300)
    await env.runner.run_once()
    assert env.mx.accepted() == ["bob@remote.test"]
    assert await env.store.get_queue_entry(qid) is None


async def test_dns_timeout_defers_and_null_mx_or_missing_domain_bounce(env: Env) -> None:
    alice = await env.user()
    env.resolver.add("slow.test", "MX", TIMEOUT)
    env.resolver.add("nullmx.test", "MX", [(0, "")])
    env.resolver.add("exists.test", "TXT", ["v=spf1 -all"])   # exists, no MX, no address
    qid = await env.enqueue(["a@slow.test", "b@nullmx.test", "c@missing.test",
                             "d@exists.test"], account=alice)
    await env.runner.run_once()
    entry = await env.store.get_queue_entry(qid)
    assert entry is not None
    by = {r.address: r for r in entry.recipients}
    assert by["a@slow.test"].state == "deferred" and "4.4.3" in by["a@slow.test"].last_reply
    assert {a for a, r in by.items() if r.state == "failed"} == {
        "b@nullmx.test", "c@missing.test", "d@exists.test"}
    inbox = await mailbox_messages(env.store, alice)
    statuses = sorted(r["status"] for m in inbox for r in dsn_fields(m)[1])
    assert statuses == ["5.1.10", "5.1.2", "5.1.2"]


async def test_mx_preference_order_and_fallback_to_the_next_host(
        env: Env, tmp_path: object) -> None:
    """RFC 5321 §5.1: the best MX first; a 4xx greeting moves on to the next MX."""
    first = FakeMX(host="127.0.0.2", name="mx1.far.test", modes=["greet_421"])
    second = FakeMX(host="127.0.0.3", bind_port=first.port, name="mx2.far.test")
    try:
        env.resolver.add("far.test", "MX", [(20, "mx2.far.test"), (10, "mx1.far.test")])
        env.resolver.add("mx1.far.test", "A", ["127.0.0.2"])
        env.resolver.add("mx2.far.test", "A", ["127.0.0.3"])
        runner = QueueRunner(env.store, env.config, clock=env.clock, timeouts=FAST,
                             mx_port=first.port)
        await env.user()
        await env.enqueue(["x@far.test"])
        await runner.run_once()
        assert first.connections == 1 and first.accepted() == []
        assert second.accepted() == ["x@far.test"]
    finally:
        first.close()
        second.close()


async def test_implicit_mx_uses_the_domain_address(env: Env) -> None:
    env.resolver.add("plain.test", "A", ["127.0.0.1"])
    runner = QueueRunner(env.store, env.config, clock=env.clock, timeouts=FAST,
                         mx_port=env.mx.port)
    await env.enqueue(["p@plain.test"], sender="")
    await runner.run_once()
    assert env.mx.accepted() == ["p@plain.test"]


async def test_starttls_is_used_when_offered(env: Env, tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    env.mx.starttls = True
    env.mx.tls_context = tls_context_for(tmp_path)
    await env.enqueue(["bob@remote.test"], sender="")
    await env.runner.run_once()
    assert env.mx.messages[0].tls
    assert "STARTTLS" in env.mx.commands


async def test_broken_tls_falls_back_to_plaintext(env: Env, tmp_path: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    env.mx.starttls = True
    env.mx.tls_context = tls_context_for(tmp_path)
    env.mx.modes = ["tls_broken"]
    await env.enqueue(["bob@remote.test"], sender="")
    await env.runner.run_once()
    assert env.mx.accepted() == ["bob@remote.test"] and not env.mx.messages[0].tls


async def test_smarthost_auth(tmp_path: object, resolver: object) -> None:
    from pathlib import Path

    assert isinstance(tmp_path, Path)
    mx = FakeMX(auth=("relay-user", "relay-pass"))
    store = SQLiteStore(tmp_path / "d")
    await store.open()
    try:
        config = build_config(tmp_path / "d", mx, delivery={
            "routes": {"*": f"127.0.0.1:{mx.port}"},
            "route_auth": {"*": {"username": "relay-user", "password": "relay-pass"}}})
        runner = QueueRunner(store, config, timeouts=FAST)
        blob = await store.blobs.stage(message(to="z@anywhere.test"))
        await store.enqueue(blob, "", [QueueRecipient("z@anywhere.test")])
        blob.discard()
        await runner.run_once()
        assert mx.messages[0].auth == "relay-user"
    finally:
        await store.close()
        mx.close()


async def test_smtputf8_needed_but_not_offered_fails(env: Env) -> None:
    alice = await env.user()
    env.mx.smtputf8 = False
    await env.enqueue(["jörg@remote.test"], account=alice)
    await env.runner.run_once()
    inbox = await mailbox_messages(env.store, alice)
    assert dsn_fields(inbox[0])[1][0]["status"] == "5.6.7"


async def test_smtputf8_and_8bitmime_when_needed(env: Env) -> None:
    await env.enqueue(["jörg@remote.test"], sender="",
                      data="Subject: grüße\r\n\r\nÄ\r\n".encode())
    await env.runner.run_once()
    m = env.mx.messages[0]
    assert "SMTPUTF8" in m.mail_params and "BODY=8BITMIME" in m.mail_params


async def test_without_pipelining_commands_go_one_by_one(env: Env) -> None:
    env.mx.pipelining = False
    env.mx.rcpt_replies["no@remote.test"] = "550 5.1.1 no"
    await env.enqueue(["yes@remote.test", "no@remote.test"], sender="")
    await env.runner.run_once()
    assert env.mx.accepted() == ["yes@remote.test"]


async def test_dot_stuffing_and_line_endings_on_the_wire(env: Env) -> None:
    """PROMISES M3: no bare CR or LF on the wire, every line starting with "." doubled."""
    data = b"Subject: dots\r\n\r\n.leading\r\nmid\n.after-bare-lf\r..after-cr\r\n.\r\nend"
    await env.enqueue(["bob@remote.test"], sender="", data=data)
    await env.runner.run_once()
    raw = env.mx.messages[0].raw
    assert raw.count(b"\n") == raw.count(b"\r\n") and raw.count(b"\r") == raw.count(b"\r\n")
    assert b"\r\n..leading\r\n" in raw and b"\r\n..after-bare-lf\r\n" in raw
    assert b"\r\n...after-cr\r\n" in raw and b"\r\n..\r\nend\r\n.\r\n" in raw


async def test_hold_and_release(env: Env) -> None:
    alice = await env.user()
    qid = await env.enqueue(["bob@remote.test"], account=alice)
    await env.store.queue_set_held(qid, True)
    assert await env.runner.run_once() == 0
    await env.store.queue_set_held(qid, False)
    await env.store.set_sending_held(alice.address, True)
    assert await env.runner.run_once() == 0
    assert (await env.store.get_queue_entry(qid)) is not None       # held, not dropped
    await env.store.set_sending_held(alice.address, False)
    assert await env.runner.run_once() == 1
    assert env.mx.accepted() == ["bob@remote.test"]


async def test_restart_in_the_middle_of_a_run_delivers_each_recipient_once(
        env: Env, tmp_path: object) -> None:
    """A runner stopped while one host stalls: the delivered recipient is never sent again,
    the stalled one is tried again after the restart; each accepted exactly once."""
    slow = FakeMX(modes=["stall_after_data"])
    try:
        config = build_config(env.data_dir, env.mx, delivery={"routes": {
            "remote.test": f"127.0.0.1:{env.mx.port}",
            "slow.test": f"127.0.0.1:{slow.port}"}})
        slow_timeouts = FAST.__class__(connect=2, greeting=2, command=2, data_init=2,
                                       data_block=2, data_end=60)
        runner = QueueRunner(env.store, config, clock=env.clock, timeouts=slow_timeouts,
                             poll_interval=0.05)
        alice = await env.user()
        qid = await env.enqueue(["bob@remote.test", "sue@slow.test"], account=alice)
        await runner.start()
        for _ in range(200):
            if env.mx.accepted() and slow.transactions:
                break
            await asyncio.sleep(0.05)
        assert env.mx.accepted() == ["bob@remote.test"] and slow.transactions == 1
        await runner.stop()
        assert await env.states(qid) == {"bob@remote.test": "delivered",
                                         "sue@slow.test": "sending"}
        await env.store.close()
        # "Restart": a new store object on the same files and a new runner.
        env.store = SQLiteStore(env.data_dir)
        await env.store.open()
        runner = QueueRunner(env.store, config, clock=env.clock, timeouts=FAST,
                             poll_interval=0.05)
        await runner.start()
        for _ in range(200):
            if slow.accepted():
                break
            await asyncio.sleep(0.05)
        await runner.stop()
        assert env.mx.accepted() == ["bob@remote.test"]
        assert slow.accepted() == ["sue@slow.test"]
        assert await env.store.get_queue_entry(qid) is None
    finally:
        slow.close()


async def test_background_runner_delivers_without_being_asked(env: Env) -> None:
    await env.runner.start()
    await env.enqueue(["bob@remote.test"], sender="")
    env.runner.wake()
    for _ in range(200):
        if env.mx.accepted():
            break
        await asyncio.sleep(0.05)
    assert env.mx.accepted() == ["bob@remote.test"]


async def test_ret_hdrs_returns_only_the_header(env: Env) -> None:
    """RFC 3461 §4.3: RET=HDRS: the bounce carries the original header, not the body."""
    alice = await env.user()
    env.mx.rcpt_replies["nobody@remote.test"] = "550 5.1.1 no such user"
    await env.enqueue(["nobody@remote.test"], account=alice, ret="HDRS",
                      data=message(body="SECRET BODY\r\n"))
    await env.runner.run_once()
    inbox = await mailbox_messages(env.store, alice)
    assert b"text/rfc822-headers" in inbox[0] and b"Subject: hello" in inbox[0]
    assert b"SECRET BODY" not in inbox[0]
