"""The log: one line per event, written in batches (info lines within the flush interval,
warnings at once, everything pending at exit and before a fork, never twice)."""

from __future__ import annotations

import io
import logging
import os
import time

from casella.log import BatchingHandler, LineFormatter


def _logger(stream: io.StringIO, interval: float = 0.05) -> tuple[logging.Logger, BatchingHandler]:
    handler = BatchingHandler(stream, interval=interval)
    handler.setFormatter(LineFormatter())
    logger = logging.getLogger(f"casella.test-log.{id(stream)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, handler


def _wait_for(stream: io.StringIO, text: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while text not in stream.getvalue():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_lines_carry_the_session_fields_and_escape_line_breaks() -> None:
    stream = io.StringIO()
    logger, handler = _logger(stream)
    logger.info("EHLO %s -> 250", "evil\r\nhost", extra={"conn": "a1", "proto": "smtp",
                                                         "remote": "192.0.2.1", "user": "-"})
    handler.flush()
    line = stream.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    assert " info casella.test-log." in line
    assert "conn=a1 proto=smtp remote=192.0.2.1 EHLO evil\\r\\nhost -> 250" in line
    assert "user=" not in line


def test_info_waits_for_the_interval_and_a_warning_goes_at_once() -> None:
    stream = io.StringIO()
    logger, handler = _logger(stream, interval=30.0)
    logger.info("first")
    assert stream.getvalue() == ""                # batched
    logger.warning("second")
    out = stream.getvalue()                       # written with everything before it, in order
    assert out.index("first") < out.index("second")

    stream2 = io.StringIO()
    logger2, _ = _logger(stream2, interval=0.05)
    logger2.info("by the flusher")
    assert _wait_for(stream2, "by the flusher")


def test_flush_writes_what_is_pending_once() -> None:
    stream = io.StringIO()
    logger, handler = _logger(stream, interval=30.0)
    for n in range(5):
        logger.info("line %d", n)
    handler.flush()
    handler.flush()
    assert [line.rsplit(" ", 1)[1] for line in stream.getvalue().splitlines()] == \
        ["0", "1", "2", "3", "4"]


def test_a_forked_child_writes_its_own_lines_only(tmp_path) -> None:
    path = tmp_path / "log"
    with open(path, "w", buffering=1) as f:
        handler = BatchingHandler(f, interval=30.0)
        handler.setFormatter(LineFormatter())
        logger = logging.getLogger("casella.test-log.fork")
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
        logger.info("before the fork")
        pid = os.fork()
        if pid == 0:
            try:
                logger.info("in the child")
                handler.flush()
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert status == 0
        logger.info("in the parent")
        handler.flush()
    lines = path.read_text().splitlines()
    assert sum("before the fork" in line for line in lines) == 1
    assert sum("in the child" in line for line in lines) == 1
    assert sum("in the parent" in line for line in lines) == 1
