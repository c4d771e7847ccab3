"""A raw asyncio SMTP load client (RFC 5321): one message per connection, as MX traffic
mostly arrives, with MAIL/RCPT/DATA pipelined when the server offers PIPELINING (RFC 2920),
as Postfix's own smtp client does.

Must never: import casella.
"""

from __future__ import annotations

import time

from bench.clients.base import DEFAULT_TIMEOUT, ProtocolError, Stream


def dot_stuff(data: bytes) -> bytes:
    """RFC 5321 §4.5.2 transparency, plus the final CRLF "." CRLF."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    stuffed = data.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed + b".\r\n"


async def _reply(s: Stream, timeout: float) -> tuple[int, bytes]:
    """One (possibly multi-line) reply: its code and its last line."""
    while True:
        line = await s.read_line(timeout)
        if len(line) < 3 or not line[:3].isdigit():
            raise ProtocolError(f"bad SMTP reply line {line[:100]!r}")
        if len(line) == 3 or line[3:4] == b" ":
            return int(line[:3]), line
        # "250-..." continues


async def send_mail(host: str, port: int, sender: str, recipients: list[str], data: bytes, *,
                    helo: str = "bench-client.example.net", tls: bool = False,
                    source: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                    stuffed: bytes | None = None) -> float:
    """Connect, EHLO, send one message to `recipients`, QUIT. Returns the time.monotonic()
    of the 250 after the data (the server took responsibility then). Raises ProtocolError
    unless every step succeeded."""
    s = await Stream.open(host, port, tls=tls, source=source, timeout=timeout)
    try:
        code, line = await _reply(s, timeout)
        if code != 220:
            raise ProtocolError(f"greeting {line[:100]!r}")
        await s.send(b"EHLO " + helo.encode() + b"\r\n")
        pipelining = False
        while True:
            line = await s.read_line(timeout)
            if not line.startswith(b"250"):
                raise ProtocolError(f"EHLO: {line[:100]!r}")
            if line[4:].upper().startswith(b"PIPELINING"):
                pipelining = True
            if line[3:4] != b"-":
                break
        cmds = [b"MAIL FROM:<" + sender.encode() + b">\r\n"]
        cmds += [b"RCPT TO:<" + r.encode() + b">\r\n" for r in recipients]
        cmds.append(b"DATA\r\n")
        if pipelining:
            await s.send(b"".join(cmds))
            replies = [await _reply(s, timeout) for _ in cmds]
        else:
            replies = []
            for c in cmds:
                await s.send(c)
                replies.append(await _reply(s, timeout))
        for (code, line), want in zip(replies, [250] * (len(cmds) - 1) + [354]):
            if code != want:
                raise ProtocolError(f"expected {want}, got {line[:200]!r}")
        await s.send(stuffed if stuffed is not None else dot_stuff(data))
        code, line = await _reply(s, timeout)
        if code != 250:
            raise ProtocolError(f"end of data: {line[:200]!r}")
        accepted = time.monotonic()
        s.write(b"QUIT\r\n")
        try:
            await _reply(s, 5.0)
        except (ConnectionError, ProtocolError, TimeoutError, OSError):
            pass
        return accepted
    finally:
        await s.aclose()
