"""The queue runner's and the sending limits' metrics (issue 18 §6), against the scripted fake
remote MX: each recipient delivered counts as sent, a temporary refusal as deferred, a
permanent one as bounced; the defers-and-failures guard counts a hold when it trips and a
refusal when it then refuses a recipient."""

from __future__ import annotations

from casella import metrics
from casella.limits.sendlimit import check_send_limits
from tests.http.conftest import samples, value
from tests.outbound.conftest import Env


async def test_delivery_outcomes_holds_and_refusals_are_counted(env: Env) -> None:
    before = samples(metrics.render())
    alice = await env.user()
    for i in range(5):
        env.mx.rcpt_replies[f"gone{i}@remote.test"] = "550 5.1.1 no such user"
    env.mx.rcpt_replies["later@remote.test"] = "450 4.2.0 try again later"
    rcpts = [f"gone{i}@remote.test" for i in range(5)] + \
        [f"ok{i}@remote.test" for i in range(4)] + ["later@remote.test"]
    await env.enqueue(rcpts, account=alice)
    await env.runner.run_once()
    refusal = await check_send_limits(env.store, env.config.limits, alice)
    assert refusal is not None and "defers and failures" in str(refusal)
    after = samples(metrics.render())

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("casella_messages_total", event="sent") == 4
    assert delta("casella_messages_total", event="bounced") == 5
    assert delta("casella_messages_total", event="deferred") == 1
    assert delta("casella_send_holds_total", cause="guard") == 1
    assert delta("casella_send_refusals_total", reason="defers_failures") == 1
