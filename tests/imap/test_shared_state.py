"""casella.imap.shared under the orders of events a busy server produces: a session that asks
to claim \\Recent (RFC 3501 §2.3.2) right after another session's claim finished, before that
claim's done callback ran, takes its outcome instead of spinning for ever on the finished claim
(which hung a whole worker under imaptest's stress load: every session of that worker stalled).
Run in a child process: the bug never yields to the event loop, so only a kill ends it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCENARIO = '''
import asyncio
from casella.imap.shared import SharedMailboxState

class Store:
    calls = 0
    async def claim_recent(self, mailbox_id):
        self.calls += 1
        await self.gate
        return (10, 16)

async def main():
    store = Store()
    store.gate = asyncio.get_running_loop().create_future()
    state = SharedMailboxState(store)
    first = asyncio.ensure_future(state.claim_recent(1, 7, 10))
    for _ in range(3):
        await asyncio.sleep(0)          # the first session's claim is in flight
    store.gate.set_result(None)
    # Queued right behind the claim's last step: runs once the claim has finished and before
    # the claim's done callback.
    second = asyncio.ensure_future(state.claim_recent(1, 7, 12))
    print(await first, await second, store.calls)

asyncio.run(main())
'''


def test_a_claim_finished_but_not_yet_called_back_is_not_waited_on_for_ever() -> None:
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True,
                          check=False,
                          timeout=60, cwd=root)
    assert done.returncode == 0, done.stderr
    # The second session's UIDs (up to 12) were taken by the first claim (up to 16): none
    # for it, and no second claim written.
    assert done.stdout.split() == ["(10,", "16)", "None", "1"]
