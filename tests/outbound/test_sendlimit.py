"""The two sending limits, called as the submission session calls them (at RCPT), around a
real store.enqueue and a real queue runner: the exact refusal texts, the rolling window, the
lower of account and domain limits, the defers-and-failures guard and its one notice,
durability across a restart, and the admin hold."""

from __future__ import annotations

from casella.config import LimitsConfig
from casella.limits.sendlimit import (
    WINDOW,
    check_send_limits,
    effective_limits,
    guard_blocked,
    usage_from_events,
)
from casella.store.sending import SendEvent
from casella.store.sqlite import SQLiteStore
from tests.outbound.conftest import Env
from tests.outbound.helpers import mailbox_messages, parse


async def submit(env: Env, account, recipients: list[str]) -> str | None:
    """What the session does: check each RCPT, then queue the accepted ones."""
    accepted: list[str] = []
    refusal = None
    for r in recipients:
        ref = await check_send_limits(env.store, env.config.limits, account,
                                      pending=len(accepted))
        if ref is not None:
            refusal = str(ref)
            continue
        accepted.append(r)
    if accepted:
        await env.enqueue(accepted, account=account)
    return refusal


async def test_the_181st_recipient_is_refused_until_the_window_moves_on(env: Env) -> None:
    alice = await env.user()
    for _ in range(18):
        assert await submit(env, alice, [f"r{i}@remote.test" for i in range(10)]) is None
    refusal = await check_send_limits(env.store, env.config.limits, alice)
    assert str(refusal) == ("450 4.7.1 alice@example.test has exceeded the max emails per hour "
                            "(180/180 (100%)) allowed")
    assert (refusal.code, refusal.status) == (450, "4.7.1")
    later = env.clock.now() + WINDOW + 1
    assert await check_send_limits(env.store, env.config.limits, alice, now=later) is None


async def test_recipients_already_in_the_transaction_count(env: Env) -> None:
    alice = await env.user()
    await submit(env, alice, [f"r{i}@remote.test" for i in range(170)])
    refusal = await submit(env, alice, [f"s{i}@remote.test" for i in range(15)])
    assert refusal == ("450 4.7.1 alice@example.test has exceeded the max emails per hour "
                       "(180/180 (100%)) allowed")
    entries = await env.store.list_queue()
    assert sum(len(e.recipients) for e in entries) == 180       # 10 of the 15 went through


async def test_domain_limit_lower_than_account_limit_wins(env: Env) -> None:
    alice = await env.user()
    await env.store.set_send_limits("example.test", {"messages_per_hour": 3})
    await env.store.set_send_limits("alice@example.test", {"messages_per_hour": 10})
    refusal = await submit(env, alice, ["a@remote.test", "b@remote.test", "c@remote.test",
                                        "d@remote.test"])
    assert refusal == ("450 4.7.1 alice@example.test has exceeded the max emails per hour "
                       "(3/3 (100%)) allowed")
    # The account's own lower limit wins over the domain's too.
    bob = await env.user("bob@example.test")
    await env.store.set_send_limits("bob@example.test", {"messages_per_hour": 2})
    assert "(2/2 (100%))" in (await submit(env, bob, ["a@remote.test", "b@remote.test",
                                                       "c@remote.test"]) or "")


def test_effective_limits_rules() -> None:
    from casella.store.model import Account, Domain

    d = LimitsConfig(messages_per_hour=180, defers_failures_per_hour=5,
                     defers_failures_percent=55)
    acct = Account(1, "a@x.test", 1, "", 0, 0, 0, 0, 0)
    assert effective_limits(d, acct, None).messages_per_hour == 180
    dom = Domain(1, "x.test", 0, messages_per_hour=500)
    assert effective_limits(d, acct, dom).messages_per_hour == 500   # set beats default
    acct0 = Account(1, "a@x.test", 1, "", 0, 0, 0, 0, 0, messages_per_hour=0)
    assert effective_limits(d, acct0, dom).messages_per_hour == 500  # 0 = unlimited
    assert effective_limits(d, acct0, None).messages_per_hour == 0


async def test_defers_and_failures_at_the_percentage_block(env: Env) -> None:
    """5 failures out of 9 attempts (55%) at the default 5 / 55%: blocked, with the shape;
    one plain-language notice in the INBOX."""
    alice = await env.user()
    for i in range(5):
        env.mx.rcpt_replies[f"gone{i}@remote.test"] = "550 5.1.1 no such user"
    rcpts = [f"gone{i}@remote.test" for i in range(5)] + [f"ok{i}@remote.test"
                                                          for i in range(4)]
    assert await submit(env, alice, rcpts) is None
    await env.runner.run_once()
    refusal = await check_send_limits(env.store, env.config.limits, alice)
    assert str(refusal) == ("450 4.7.1 alice@example.test has exceeded the max defers and "
                            "failures per hour (5/5 (55%)) allowed")
    inbox = [parse(m) for m in await mailbox_messages(env.store, alice)]
    notices = [m for m in inbox if m["Subject"].startswith("Your outgoing mail is paused")]
    assert len(notices) == 1
    text = notices[0].get_content()
    assert "gone0@remote.test" in text and "gone4@remote.test" in text
    assert "You can send again from" in text and "5 of the 9 deliveries" in text
    # Another failure during the same block: still blocked, no second notice.
    env.mx.rcpt_replies["gone9@remote.test"] = "550 5.1.1 no such user"
    await env.enqueue(["gone9@remote.test"], account=alice)
    await env.runner.run_once()
    inbox = [parse(m) for m in await mailbox_messages(env.store, alice)]
    assert len([m for m in inbox if m["Subject"].startswith("Your outgoing")]) == 1
    # After the hour the account may send again.
    later = env.clock.now() + WINDOW + 1
    assert await check_send_limits(env.store, env.config.limits, alice, now=later) is None


async def test_below_the_percentage_does_not_block(env: Env) -> None:
    """5 failures out of 10 attempts is 50% < 55%: not blocked."""
    alice = await env.user()
    for i in range(5):
        env.mx.rcpt_replies[f"gone{i}@remote.test"] = "550 5.1.1 no such user"
    await submit(env, alice, [f"gone{i}@remote.test" for i in range(5)] +
                 [f"ok{i}@remote.test" for i in range(5)])
    await env.runner.run_once()
    assert await check_send_limits(env.store, env.config.limits, alice) is None
    inbox = [parse(m) for m in await mailbox_messages(env.store, alice)]
    assert not [m for m in inbox if m["Subject"].startswith("Your outgoing")]


async def test_deferrals_count_as_well(env: Env) -> None:
    alice = await env.user()
    env.mx.modes = ["greet_421"] * 100
    await submit(env, alice, ["x@remote.test"])
    for _ in range(5):
        await env.runner.run_once()
        env.clock.advance(60)
        await env.store.queue_flush(None, int(env.clock.now()))
    refusal = await check_send_limits(env.store, env.config.limits, alice, now=env.clock.now())
    assert refusal is not None and "(5/5 (100%))" in str(refusal)


def test_guard_rule_table() -> None:
    from casella.limits.sendlimit import Limits

    lim = Limits(180, 5, 55)
    ev = [SendEvent(100, "failed", 1)] * 5 + [SendEvent(100, "delivered", 1)] * 4
    assert guard_blocked(lim, usage_from_events(ev, 200))
    assert not guard_blocked(lim, usage_from_events(ev + [SendEvent(100, "delivered", 1)],
                                                    200))
    assert not guard_blocked(lim, usage_from_events(ev[:4], 200))          # only 4
    assert not guard_blocked(Limits(180, 0, 55), usage_from_events(ev, 200))  # guard off
    assert not guard_blocked(lim, usage_from_events(ev, 100 + WINDOW))      # window passed


async def test_counters_survive_a_restart(env: Env) -> None:
    alice = await env.user()
    await env.store.set_send_limits("alice@example.test", {"messages_per_hour": 2})
    await submit(env, alice, ["a@remote.test", "b@remote.test"])
    await env.store.close()
    env.store = SQLiteStore(env.data_dir)
    await env.store.open()
    refusal = await check_send_limits(env.store, env.config.limits, alice)
    assert refusal is not None and "(2/2 (100%))" in str(refusal)


async def test_held_account_is_refused_and_its_queue_kept(env: Env) -> None:
    alice = await env.user()
    qid = await env.enqueue(["a@remote.test"], account=alice)
    await env.store.set_sending_held("alice@example.test", True)
    refusal = await check_send_limits(env.store, env.config.limits, alice)
    assert str(refusal) == ("450 4.7.1 alice@example.test may not send mail at the moment: "
                            "the administrator has put its outgoing mail on hold")
    assert await env.runner.run_once() == 0
    assert await env.store.get_queue_entry(qid) is not None
    await env.store.set_sending_held("alice@example.test", False)
    assert await check_send_limits(env.store, env.config.limits, alice) is None
    await env.runner.run_once()
    assert env.mx.accepted() == ["a@remote.test"]


async def test_reset_unblocks(env: Env) -> None:
    alice = await env.user()
    await env.store.set_send_limits("alice@example.test", {"messages_per_hour": 1})
    await submit(env, alice, ["a@remote.test"])
    assert await check_send_limits(env.store, env.config.limits, alice) is not None
    await env.store.reset_send_usage([alice.id])
    assert await check_send_limits(env.store, env.config.limits, alice) is None
