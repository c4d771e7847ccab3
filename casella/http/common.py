"""What the HTTP handlers share: the keys under which the running server's objects hang on the
aiohttp application, the Jinja2 environment (autoescaping on), and small helpers.

Lives here: `APP` (casella.app.App), `LIFECYCLE`, `USER`, `TEMPLATES`, `SESSIONS`, `SIGNER`
(what signs Apple profiles), `render`, `peer_ip`, `settings_of`. Must never: touch the store or
files itself, or build HTML by string formatting (templates escape everything they print).
"""

from __future__ import annotations

from typing import Any

import jinja2
from aiohttp import web

from casella.app import App
from casella.http.clientconfig import MailSettings, mail_settings
from casella.http.mobileconfig import SigningIdentity
from casella.http.sessions import SessionCodec


class Lifecycle:
    """Whether the server is stopping: answers then say Connection: close."""

    def __init__(self) -> None:
        self.stopping = False


APP = web.AppKey("casella.app", App)
LIFECYCLE = web.AppKey("casella.lifecycle", Lifecycle)
USER = web.RequestKey("casella.user", str)      # the logged-in address, for the log line
TEMPLATES = web.AppKey("casella.templates", jinja2.Environment)
SESSIONS = web.AppKey("casella.sessions", SessionCodec)
class ProfileSigner:
    """What signs Apple profiles: the TLS identity, or None (self-signed: left unsigned)."""

    def __init__(self, identity: SigningIdentity | None) -> None:
        self.identity = identity


SIGNER = web.AppKey("casella.signer", ProfileSigner)

TEMPLATE_NAMES = ("base.html", "login.html", "account.html", "guide.html")


def template_environment() -> jinja2.Environment:
    """Templates from the package, compiled now (a worker that dropped privileges may not be
    able to read the package later), autoescaped, and strict about undefined names."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("casella.http", "templates"),
        autoescape=True, undefined=jinja2.StrictUndefined)
    for name in TEMPLATE_NAMES:
        env.get_template(name)
    return env


def render(request: web.Request, name: str, status: int = 200,
           **context: Any) -> web.Response:
    env = request.app[TEMPLATES]
    text = env.get_template(name).render(**context)
    resp = web.Response(text=text, status=status, content_type="text/html", charset="utf-8")
    # Pages show account data: never cached by the browser or a proxy.
    resp.headers["Cache-Control"] = "no-store"
    return resp


def peer_ip(request: web.Request) -> str:
    """The client's address as the socket sees it (proxy headers are not trusted: a client
    could name any address and dodge the brute-force defence)."""
    transport = request.transport
    peer = transport.get_extra_info("peername") if transport is not None else None
    return str(peer[0]) if peer else ""


def settings_of(app: App) -> MailSettings:
    return mail_settings(app.config.hostname, app.bound)
