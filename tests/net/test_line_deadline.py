"""The per-line deadline of Connection.read_line (issue 7 §2): a line once started must end
within `line_timeout`, so a slow-drip (slowloris) client is cut off although it keeps sending,
while an idle client only meets the ordinary timeout. Over real loopback sockets."""

from __future__ import annotations

import asyncio
import time

from casella.config import HostPort
from casella.net.listener import ListenerGroup
from casella.net.streams import (
    Connection,
    ConnectionClosed,
    LineTimeout,
    LineTooLong,
    ReadTimeout,
)


class Lines:
    """Test service: answers each line, LINE-TIMEOUT or IDLE-TIMEOUT, then ends."""

    name = "lines"
    implicit_tls = False

    def __init__(self, timeout: float, line_timeout: float, max_length: int = 100) -> None:
        self.timeout = timeout
        self.line_timeout = line_timeout
        self.max_length = max_length

    def refuse(self, conn: Connection, reason: str) -> bytes:
        return b"NO\r\n"

    async def handle(self, conn: Connection) -> None:
        while True:
            try:
                line = await conn.read_line(self.max_length, timeout=self.timeout,
                                            line_timeout=self.line_timeout)
            except LineTimeout:
                await conn.send(b"LINE-TIMEOUT\r\n")
                return
            except ReadTimeout:
                await conn.send(b"IDLE-TIMEOUT\r\n")
                return
            except LineTooLong:
                await conn.send(b"TOOLONG\r\n")
                continue
            except (ConnectionClosed, OSError):
                return
            await conn.send(b"OK " + line + b"\r\n")


async def serve(service: Lines) -> tuple[ListenerGroup, int]:
    group = ListenerGroup(tls_context=None)
    bound = await group.start("lines", HostPort("127.0.0.1", 0), service)
    return group, bound.port


async def drip(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    for i in range(len(data)):
        writer.write(data[i:i + 1])
        await writer.drain()
        await asyncio.sleep(every)


async def test_slow_drip_is_cut_off_by_the_line_deadline() -> None:
    """One byte every 0.1 s keeps the connection busy but never finishes a line: the line
    deadline (0.5 s) ends it, far before the 30 s idle timeout."""
    group, port = await serve(Lines(timeout=30, line_timeout=0.5))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        task = asyncio.create_task(drip(writer, b"A" * 60, 0.1))
        answer = await asyncio.wait_for(reader.readline(), 10)
        assert answer == b"LINE-TIMEOUT\r\n"
        assert 0.4 < time.monotonic() - started < 3
        task.cancel()
        writer.close()
    finally:
        await group.stop(1)


async def test_idle_client_meets_the_idle_timeout_not_the_line_deadline() -> None:
    """An idle connection (no byte of a new line) is only bound by `timeout`."""
    group, port = await serve(Lines(timeout=0.8, line_timeout=0.2))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        started = time.monotonic()
        assert await asyncio.wait_for(reader.readline(), 10) == b"IDLE-TIMEOUT\r\n"
        assert time.monotonic() - started > 0.7
        writer.close()
    finally:
        await group.stop(1)


async def test_each_line_gets_its_own_deadline() -> None:
    """Many lines in a row, each finished in time, never trip the deadline, however long the
    session; a line split over several packets within the deadline is fine too."""
    group, port = await serve(Lines(timeout=5, line_timeout=0.6))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for n in range(8):
            writer.write(b"ab")
            await writer.drain()
            await asyncio.sleep(0.1)
            writer.write(f"c{n}\r\n".encode())
            await writer.drain()
            assert await asyncio.wait_for(reader.readline(), 5) == f"OK abc{n}\r\n".encode()
            await asyncio.sleep(0.1)
        writer.close()
    finally:
        await group.stop(1)


async def test_an_over_long_slow_line_is_cut_off_too() -> None:
    """A line past max_length that is then dripped is discarded under the same deadline."""
    group, port = await serve(Lines(timeout=30, line_timeout=0.5, max_length=10))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"x" * 50)
        await writer.drain()
        task = asyncio.create_task(drip(writer, b"y" * 50, 0.1))
        assert await asyncio.wait_for(reader.readline(), 10) == b"LINE-TIMEOUT\r\n"
        task.cancel()
        writer.close()
    finally:
        await group.stop(1)


async def test_without_line_timeout_nothing_changes() -> None:
    """Backward compatible: read_line(max_length, timeout) behaves as before."""

    class Plain(Lines):
        async def handle(self, conn: Connection) -> None:
            try:
                line = await conn.read_line(100, timeout=0.6)
                await conn.send(b"OK " + line + b"\r\n")
            except LineTimeout:
                await conn.send(b"LINE-TIMEOUT\r\n")
            except ReadTimeout:
                await conn.send(b"IDLE-TIMEOUT\r\n")

    group, port = await serve(Plain(0, 0))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        task = asyncio.create_task(drip(writer, b"A" * 60, 0.05))
        assert await asyncio.wait_for(reader.readline(), 10) == b"IDLE-TIMEOUT\r\n"
        task.cancel()
        writer.close()
    finally:
        await group.stop(1)
