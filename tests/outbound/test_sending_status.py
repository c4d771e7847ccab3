"""What the customer's page says about sending (casella.limits.sendlimit.sending_status),
around a real store.enqueue and a real queue runner: usage against the account's limits, and
each reason sending is stopped with when it lifts."""

from __future__ import annotations

from casella.limits.sendlimit import WINDOW, sending_status
from tests.outbound.conftest import Env


async def test_nothing_sent(env: Env) -> None:
    alice = await env.user()
    status = await sending_status(env.store, env.config.limits, alice)
    assert (status.usage.submitted, status.limits.messages_per_hour) == (0, 180)
    assert status.limits.defers_failures_per_hour == 5
    assert not status.blocked


async def test_hourly_limit_used_up_lifts_an_hour_after_the_first_message(env: Env) -> None:
    alice = await env.user()
    await env.store.set_send_limits(alice.address, {"messages_per_hour": 3})
    await env.enqueue(["a@remote.test", "b@remote.test"], account=alice)
    await env.enqueue(["c@remote.test"], account=alice)
    events = await env.store.send_events(alice.id, 0)
    first = min(int(ev.at) for ev in events)
    last = max(int(ev.at) for ev in events)
    status = await sending_status(env.store, env.config.limits, alice, now=last)
    assert status.usage.submitted == 3 and status.blocked
    # Both recipients of the first message leave the window together: then 1 of 3 is used.
    assert status.hourly_full_until == first + WINDOW
    later = await sending_status(env.store, env.config.limits, alice, now=first + WINDOW)
    assert later.hourly_full_until is None and not later.blocked


async def test_defers_and_failures_guard_with_when_it_lifts(env: Env) -> None:
    alice = await env.user()
    for i in range(5):
        env.mx.rcpt_replies[f"gone{i}@remote.test"] = "550 5.1.1 no such user"
    await env.enqueue([f"gone{i}@remote.test" for i in range(5)] + ["ok@remote.test"],
                      account=alice)
    await env.runner.run_once()
    status = await sending_status(env.store, env.config.limits, alice)
    assert (status.usage.defers_failures, status.usage.attempts) == (5, 6)
    assert status.guard_until is not None and status.guard_until > env.clock.now()
    assert status.blocked and not status.held


async def test_admin_hold(env: Env) -> None:
    alice = await env.user()
    await env.store.set_sending_held(alice.address, True)
    status = await sending_status(env.store, env.config.limits, alice)
    assert status.held and status.blocked
