"""The outbound queue runner and its parts: `runner` (QueueRunner), `routing` (MX and
`[delivery] routes`), `notices` (DSNs and guard notices), `clock` (real or hand-moved time).
Must never: be imported by the SMTP receive path except for `QueueRunner.wake`."""

from casella.smtp.queue.clock import Clock, ManualClock
from casella.smtp.queue.runner import QueueRunner, retry_delay

__all__ = ["Clock", "ManualClock", "QueueRunner", "retry_delay"]
