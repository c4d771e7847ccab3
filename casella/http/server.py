"""The HTTP listener: health check and mail-client autoconfiguration.

Lives here: a small HTTP/1.1 responder for `GET /health` (is the store answering) and the
Thunderbird autoconfig document (`/mail/config-v1.1.xml`,
`/.well-known/autoconfig/mail/config-v1.1.xml`) that tells clients the IMAP, POP3 and
submission ports. Must never: serve files from disk, or reveal whether an address exists.
"""

from __future__ import annotations

import logging
from html import escape
from urllib.parse import parse_qs, urlsplit

from casella.app import App
from casella.config import HostPort
from casella.net.listener import Service
from casella.net.streams import ConnectionClosed, Connection, LineTooLong, ReadTimeout

log = logging.getLogger("casella.http")

MAX_LINE = 8192
MAX_HEADERS = 100
TIMEOUT = 15.0


def _port(app: App, name: str, default: int) -> int:
    hp: HostPort | None = app.config.listen.get(name)
    return hp.port if hp else default


def autoconfig_xml(app: App, email: str) -> str:
    """Thunderbird autoconfig (https://wiki.mozilla.org/Thunderbird:Autoconfiguration)."""
    host = escape(app.config.hostname)
    domain = escape(email.rsplit("@", 1)[1] if "@" in email else app.config.hostname)
    servers = []
    if "imaps" in app.config.listen:
        servers.append(("incomingServer", "imap", _port(app, "imaps", 993), "SSL"))
    if "imap" in app.config.listen:
        servers.append(("incomingServer", "imap", _port(app, "imap", 143), "STARTTLS"))
    if "pop3s" in app.config.listen:
        servers.append(("incomingServer", "pop3", _port(app, "pop3s", 995), "SSL"))
    if "pop3" in app.config.listen:
        servers.append(("incomingServer", "pop3", _port(app, "pop3", 110), "STARTTLS"))
    if "submissions" in app.config.listen:
        servers.append(("outgoingServer", "smtp", _port(app, "submissions", 465), "SSL"))
    if "submission" in app.config.listen:
        servers.append(("outgoingServer", "smtp", _port(app, "submission", 587), "STARTTLS"))
    body = [f'<?xml version="1.0" encoding="UTF-8"?>\n<clientConfig version="1.1">\n'
            f'  <emailProvider id="{domain}">\n    <domain>{domain}</domain>\n'
            f'    <displayName>{domain} mail</displayName>\n']
    for tag, kind, port, socket_type in servers:
        body.append(f'    <{tag} type="{kind}">\n      <hostname>{host}</hostname>\n'
                    f'      <port>{port}</port>\n      <socketType>{socket_type}</socketType>\n'
                    f'      <authentication>password-cleartext</authentication>\n'
                    f'      <username>%EMAILADDRESS%</username>\n    </{tag}>\n')
    body.append("  </emailProvider>\n</clientConfig>\n")
    return "".join(body)


class HTTPService:
    name = "http"
    implicit_tls = False

    def __init__(self, app: App) -> None:
        self.app = app

    def refuse(self, conn: Connection, reason: str) -> bytes:
        return (f"HTTP/1.1 503 Service Unavailable\r\nContent-Length: {len(reason)}\r\n"
                f"Connection: close\r\n\r\n{reason}").encode()

    async def handle(self, conn: Connection) -> None:
        try:
            while True:
                request = await conn.read_line(MAX_LINE, TIMEOUT)
                if not request:
                    continue
                headers: dict[str, str] = {}
                for _ in range(MAX_HEADERS + 1):
                    line = await conn.read_line(MAX_LINE, TIMEOUT)
                    if not line:
                        break
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                else:
                    await self._send(conn, 431, "text/plain", "too many headers", close=True)
                    return
                parts = request.decode("latin-1").split()
                if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                    await self._send(conn, 400, "text/plain", "bad request\n", close=True)
                    return
                method, target, _ = parts
                length = int(headers.get("content-length", "0") or 0)
                if length:
                    if length > 65536:
                        await self._send(conn, 413, "text/plain", "too large\n", close=True)
                        return
                    await conn.read_exactly(length, TIMEOUT)
                keep = headers.get("connection", "").lower() != "close"
                await self._route(conn, method, target, keep)
                if not keep:
                    return
        except (ConnectionClosed, ReadTimeout, LineTooLong, ValueError):
            return

    async def _route(self, conn: Connection, method: str, target: str, keep: bool) -> None:
        url = urlsplit(target)
        if method not in ("GET", "HEAD"):
            await self._send(conn, 405, "text/plain", "method not allowed\n", close=not keep)
            return
        if url.path == "/health":
            try:
                await self.app.store.list_domains()
                await self._send(conn, 200, "text/plain", "ok\n", close=not keep)
            except Exception:
                await self._send(conn, 503, "text/plain", "store unavailable\n", close=not keep)
            return
        if url.path in ("/mail/config-v1.1.xml", "/.well-known/autoconfig/mail/config-v1.1.xml"):
            email = parse_qs(url.query).get("emailaddress", [""])[0]
            await self._send(conn, 200, "application/xml", autoconfig_xml(self.app, email),
                             close=not keep)
            return
        await self._send(conn, 404, "text/plain", "not found\n", close=not keep)

    async def _send(self, conn: Connection, status: int, ctype: str, body: str,
                    close: bool) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  413: "Payload Too Large", 431: "Request Header Fields Too Large",
                  503: "Service Unavailable"}[status]
        data = body.encode()
        head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}; charset=utf-8\r\n"
                f"Content-Length: {len(data)}\r\n"
                f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n").encode()
        await conn.send(head + data)
        log.info("%s %d", status, len(data), extra=conn.describe())


def services(app: App) -> dict[str, Service]:
    return {"http": HTTPService(app)}
