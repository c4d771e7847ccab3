"""The customer's own page at `/`: log in with the mailbox address and password, see the
mailbox and sending usage, change the password and the POP3 policy, read the set-up guide
(the vacation reply and forward forms are casella.http.rules').

Lives here: the aiohttp handlers (`GET /`, `POST /login`, `POST /logout`, `POST /password`,
`POST /pop3`, `GET /guide`, `GET /static/casella.css`) and what each page shows. Logins go
through the same Authenticator as IMAP, POP3 and SMTP (the same failure delay, counters and
blocks); every POST carries the session's CSRF token (403 without it); the session lives in a
signed cookie (casella.http.sessions). Must never: say whether an address exists, show or log
a password, change anything on a GET, or answer a POST with a page the browser could
resubmit (a success redirects with 303).
"""

from __future__ import annotations

import asyncio
import hmac
import importlib.resources
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from casella.auth.passwords import hash_password
from casella.config import human_size
from casella.errors import NotFound, UserError
from casella.http.common import APP, SESSIONS, USER, peer_ip, render, settings_of
from casella.http.rulesview import rules_context
from casella.http.sessions import COOKIE_NAME, CSRF_FIELD, Session, cookie_attributes
from casella.limits.sendlimit import SendingStatus, sending_status
from casella.store.model import POP3_DELETE_POLICIES, Account

# The limits of the forms (a longer value is refused, never cut).
MAX_ADDRESS = 320
MAX_PASSWORD = 1024
MIN_PASSWORD = 8
MAX_EXPIRE_DAYS = 3650
QUOTA_WARN, QUOTA_FULL = 80, 95   # the same thresholds as the quota warning messages

_CSS = importlib.resources.files("casella.http").joinpath("static/casella.css").read_text(
    encoding="utf-8")

_DONE = {
    "password": "Your password was changed. Use the new one in every mail program.",
    "pop3": "Your POP3 settings were saved. They apply from the next POP3 login.",
    "logout": "You are logged out.",
    "vacation-on": "Your vacation reply was saved and is on.",
    "vacation-off": "Your vacation reply was saved; it is off.",
    "forward-on": "Your forwarding was saved.",
    "forward-off": "Your mail is no longer forwarded.",
}
_POLICY_TEXT = {
    "expunge": "deleted from the server",
    "move-to-trash": "moved to the Trash folder",
    "hide": "hidden from POP3 but kept for IMAP (webmail, phone)",
}


def _when(ts: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts))


# --- sessions ------------------------------------------------------------------------------------

async def current(request: web.Request) -> tuple[Session | None, Account | None]:
    """The request's session (None when it has no valid cookie) and, when it is logged in and
    the password has not changed since, the account."""
    codec = request.app[SESSIONS]
    session = codec.decode(request.cookies.get(COOKIE_NAME))
    if session is None or not session.logged_in:
        return session, None
    account = await request.app[APP].store.get_account_by_id(session.account_id)
    if account is None or not hmac.compare_digest(
            codec.fingerprint(account.password_hash), session.fingerprint):
        return None, None
    request[USER] = account.address
    return session, account


def _with_session(request: web.Request, resp: web.StreamResponse, session: Session) -> None:
    codec = request.app[SESSIONS]
    resp.set_cookie(COOKIE_NAME, codec.encode(session),
                    **cookie_attributes(request.secure, codec.lifetime))  # type: ignore[arg-type]


def _redirect(location: str) -> web.HTTPSeeOther:
    return web.HTTPSeeOther(location)


async def _form(request: web.Request) -> dict[str, str]:
    """The submitted form; empty for any other body (which then fails the CSRF check). The
    page's forms are urlencoded; a multipart body cannot be parsed here because the HTTP guard
    has already read it off the stream."""
    if request.content_type != "application/x-www-form-urlencoded":
        return {}
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


async def _checked(request: web.Request) -> tuple[dict[str, str], Session | None,
                                                   Account | None]:
    """The form of a POST, after the CSRF check (403 when the token is missing or is not this
    session's)."""
    form = await _form(request)
    session, account = await current(request)
    if session is None:
        # A logged-in cookie whose password changed still has a valid token for its id.
        session = request.app[SESSIONS].decode(request.cookies.get(COOKIE_NAME))
    if not request.app[SESSIONS].check_csrf(session, form.get(CSRF_FIELD, "")):
        raise web.HTTPForbidden(text="The form has expired or did not come from this site. "
                                     "Reload the page and try again.\n")
    return form, session, account


# --- pages ---------------------------------------------------------------------------------------

def _login_page(request: web.Request, session: Session, status: int = 200,
                error: str = "", notice: str = "", address: str = "") -> web.Response:
    resp = render(request, "login.html", status=status, error=error, notice=notice,
                  address=address, csrf=request.app[SESSIONS].csrf_token(session),
                  hostname=request.app[APP].config.hostname)
    _with_session(request, resp, session)
    return resp


@dataclass(frozen=True)
class Meter:
    used: int
    limit: int            # 0 = unlimited
    percent: float

    @property
    def level(self) -> str:
        if not self.limit:
            return "ok"
        return "full" if self.percent >= QUOTA_FULL else "warn" \
            if self.percent >= QUOTA_WARN else "ok"


def _meter(used: int, limit: int) -> Meter:
    return Meter(used, limit, min(100.0, used * 100.0 / limit) if limit else 0.0)


def _sending_notices(status: SendingStatus) -> list[str]:
    notices = []
    if status.held:
        notices.append("Your outgoing mail is on hold: the administrator paused it, usually "
                       "because the account seemed to send mail its owner did not write. "
                       "Messages you send stay in your mail program's outbox. Change your "
                       "password and contact support to have it lifted.")
    if status.guard_until is not None:
        u = status.usage
        notices.append(f"Sending is paused until {_when(status.guard_until)}: {u.defers_failures}"
                       f" of the {u.attempts} deliveries tried for you in the last hour failed "
                       "or were put off by the receiving servers. Check the addresses you "
                       "write to; your mail program keeps new messages in its outbox and sends "
                       "them later.")
    if status.hourly_full_until is not None:
        notices.append(f"You have sent {status.usage.submitted} messages in the last hour, the "
                       f"most allowed ({status.limits.messages_per_hour} an hour). You can send "
                       f"again from {_when(status.hourly_full_until)}.")
    return notices


async def _account_context(request: web.Request, account: Account,
                           session: Session) -> dict[str, Any]:
    app = request.app[APP]
    store = app.store
    mailboxes = [mb for mb in await store.list_mailboxes(account.id) if mb.selectable]
    status = await sending_status(store, app.config.limits, account)
    pop3 = app.config.pop3
    settings = settings_of(app)
    return {
        "account": account,
        "csrf": request.app[SESSIONS].csrf_token(session),
        "storage": _meter(account.used_bytes, account.quota_bytes),
        "message_quota": _meter(account.used_messages, account.quota_messages),
        "human": human_size,
        "folders": mailboxes,
        "sending": status,
        "sent": _meter(status.usage.submitted, status.limits.messages_per_hour),
        "failed": _meter(status.usage.defers_failures, status.limits.defers_failures_per_hour),
        "sending_notices": _sending_notices(status),
        "policies": POP3_DELETE_POLICIES,
        "policy_text": _POLICY_TEXT,
        "pop3_default_delete": pop3.delete,
        "pop3_default_expire": pop3.expire_days,
        "pop3_delete": account.pop3_delete or pop3.delete,
        "pop3_expire": account.pop3_expire_days if account.pop3_expire_days is not None
        else pop3.expire_days,
        "settings": settings,
        "hostname": app.config.hostname,
        # The vacation reply and forward forms (casella.http.rules).
        **await rules_context(app, account),
    }


async def index(request: web.Request) -> web.Response:
    session, account = await current(request)
    if account is None or session is None:
        fresh = session if session is not None and not session.logged_in else \
            request.app[SESSIONS].new()
        notice = _DONE.get(request.query.get("done", ""), "")
        return _login_page(request, fresh, notice=notice if notice == _DONE["logout"] else "")
    ctx = await _account_context(request, account, session)
    return render(request, "account.html", notice=_DONE.get(request.query.get("done", ""), ""),
                  error="", password_error="", pop3_error="", **ctx)


async def guide(request: web.Request) -> web.Response:
    session, account = await current(request)
    if account is None or session is None:
        raise _redirect("/")
    ctx = await _account_context(request, account, session)
    return render(request, "guide.html", notice="", error="", **ctx)


async def login(request: web.Request) -> web.Response:
    form, session, _ = await _checked(request)
    assert session is not None
    address = form.get("address", "").strip()
    password = form.get("password", "")
    app = request.app[APP]
    account = None
    if address and password and len(address) <= MAX_ADDRESS and len(password) <= MAX_PASSWORD:
        account = await app.auth.login(address, password, remote_ip=peer_ip(request),
                                       protocol="http")
    elif address or password:
        # Refused without asking the store, but as slowly as a wrong password.
        await asyncio.sleep(app.auth.failure_delay(1))
    if account is None:
        return _login_page(request, session, status=401, address=address[:MAX_ADDRESS],
                           error="The address or the password is not right.")
    # A new session id at login, so a cookie planted before it is worth nothing after.
    resp = _redirect("/")
    _with_session(request, resp, request.app[SESSIONS].new(account.id, account.password_hash))
    raise resp


async def logout(request: web.Request) -> web.Response:
    await _checked(request)
    resp = _redirect("/?done=logout")
    _with_session(request, resp, request.app[SESSIONS].new())
    raise resp


async def change_password(request: web.Request) -> web.Response:
    form, session, account = await _checked(request)
    if account is None or session is None:
        raise _redirect("/")
    old, new, repeat = form.get("old", ""), form.get("new", ""), form.get("repeat", "")
    problem = ""
    if not old or not new:
        problem = "Fill in your current password and the new one."
    elif len(new) < MIN_PASSWORD:
        problem = f"The new password must have at least {MIN_PASSWORD} characters."
    elif len(new) > MAX_PASSWORD or len(old) > MAX_PASSWORD:
        problem = f"A password may have at most {MAX_PASSWORD} characters."
    elif new != repeat:
        problem = "The new password and its repetition are not the same."
    elif new == old:
        problem = "The new password is the same as the current one."
    app = request.app[APP]
    # The same check (and failure delay and counters) as every other login.
    if not problem and await app.auth.login(account.address, old, remote_ip=peer_ip(request),
                                            protocol="http") is None:
        problem = "Your current password is not right."
    if problem:
        ctx = await _account_context(request, account, session)
        return render(request, "account.html", status=400, notice="", error="",
                      password_error=problem, pop3_error="", **ctx)
    hashed = await asyncio.get_running_loop().run_in_executor(None, hash_password, new)
    await app.store.set_password(account.address, hashed)
    resp = _redirect("/?done=password")
    _with_session(request, resp, request.app[SESSIONS].new(account.id, hashed))
    raise resp


async def pop3_settings(request: web.Request) -> web.Response:
    form, session, account = await _checked(request)
    if account is None or session is None:
        raise _redirect("/")
    delete: str | None = form.get("delete", "default")
    expire_text = form.get("expire", "").strip()
    expire: int | None = None
    problem = ""
    if delete == "default":
        delete = None
    elif delete not in POP3_DELETE_POLICIES:
        problem = "Choose what deleting in a POP3 program does."
    if expire_text and expire_text != "default":
        if not expire_text.isdigit() or not 0 <= int(expire_text) <= MAX_EXPIRE_DAYS:
            problem = f"Days must be a whole number from 0 to {MAX_EXPIRE_DAYS}."
        else:
            expire = int(expire_text)
    if not problem:
        try:
            await request.app[APP].store.set_pop3_policy(account.address, delete, expire)
        except (UserError, NotFound) as exc:
            problem = str(exc)
    if problem:
        ctx = await _account_context(request, account, session)
        return render(request, "account.html", status=400, notice="", error="",
                      password_error="", pop3_error=problem, **ctx)
    raise _redirect("/?done=pop3")


async def stylesheet(request: web.Request) -> web.Response:
    resp = web.Response(text=_CSS, content_type="text/css", charset="utf-8")
    resp.headers["Cache-Control"] = "max-age=3600"
    return resp


def routes() -> list[web.RouteDef]:
    return [
        web.get("/", index),
        web.get("/guide", guide),
        web.post("/login", login),
        web.post("/logout", logout),
        web.post("/password", change_password),
        web.post("/pop3", pop3_settings),
        web.get("/static/casella.css", stylesheet),
    ]
