"""The customer page's two rule forms: `POST /vacation` (an automatic reply: on or off, subject,
text, days between two replies to one sender, an optional first and last day) and `POST
/forward` (addresses to send every message on to, keeping a copy or not). Both end up as Sieve
in the account's active script (casella.delivery.pagerules), where ManageSieve clients read
the same rules.

Lives here: the handlers, the checks of each field (a clear sentence on the page and status
400 for bad input; a plain 400 when a field of the form is missing altogether, which only a
program other than the page's form does) and `routes`. Like every POST of the page, both need
the session's CSRF token (403) and answer success with a 303 to the page. Must never: write a
script itself, accept a value it would have to cut, or change anything on a GET.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from datetime import date

from aiohttp import web

from casella.delivery.filtering import filtering_for
from casella.delivery.pagerules import (
    RulesProblem,
    check_forward_addresses,
    forward_limit,
    save_forward,
    save_vacation,
)
from casella.delivery.sieve.pagesection import ForwardRule, VacationRule
from casella.http.common import APP, render
from casella.http.customer import MAX_ADDRESS, _account_context, _checked
from casella.http.rulesview import MAX_SUBJECT, message_limit, today
from casella.http.sessions import Session
from casella.store.model import Account

VACATION_FIELDS = ("subject", "message", "days", "first", "last")
FORWARD_FIELDS = ("addresses",)
MAX_ADDRESSES_FIELD = 8 * 1024       # characters of the address list as typed
log = logging.getLogger("casella.http")
_SPLIT = re.compile(r"[\s,;]+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class _Bad(Exception):
    """A field the customer must correct; the text is shown above the form."""


def _complete(form: dict[str, str], fields: tuple[str, ...]) -> None:
    absent = [f for f in fields if f not in form]
    if absent:
        raise web.HTTPBadRequest(text=f"The form is incomplete: {', '.join(absent)} "
                                      f"missing.\n")


def _plain(value: str, what: str, newlines: bool = False) -> None:
    """No control characters (a tab, and line ends where allowed, aside), and nothing Sieve's
    variables extension would read as a reference (RFC 5229 §3: "${")."""
    for ch in value:
        if unicodedata.category(ch) == "Cc" and ch != "\t" and not (newlines and ch == "\n"):
            raise _Bad(f"The {what} contains a control character.")
    if "${" in value:
        raise _Bad(f"The {what} cannot contain “${{” (filters would read it as a variable).")


def _day(value: str, what: str) -> date | None:
    value = value.strip()
    if not value:
        return None
    try:
        if not _DATE.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise _Bad(f"The {what} must be a date written YYYY-MM-DD.") from None


def vacation_rule(form: dict[str, str], request: web.Request) -> VacationRule | None:
    """The rule the form asks for; None when it is off and nothing is left to keep."""
    cfg = request.app[APP].config.sieve
    enabled = form.get("enabled", "") not in ("", "0", "off")
    subject = form["subject"].strip()
    message = form["message"].replace("\r\n", "\n").replace("\r", "\n").strip("\n").rstrip()
    if len(subject) > MAX_SUBJECT:
        raise _Bad(f"The subject may have at most {MAX_SUBJECT} characters.")
    _plain(subject, "subject")
    limit = message_limit(request.app[APP])
    if len(message) > limit:
        raise _Bad(f"The message may have at most {limit} characters.")
    _plain(message, "message", newlines=True)
    days_text = form["days"].strip()
    low, high = cfg.vacation_min_days, cfg.vacation_max_days
    if not days_text:
        days = cfg.vacation_default_days
    elif not days_text.isascii() or not days_text.isdigit() or not low <= int(days_text) <= high:
        raise _Bad(f"The days between two replies to the same sender must be a whole number "
                   f"from {low} to {high}.")
    else:
        days = int(days_text)
    first, last = _day(form["first"], "first day"), _day(form["last"], "last day")
    if first is not None and last is not None and first > last:
        raise _Bad("The first day comes after the last day.")
    if enabled:
        if not message:
            raise _Bad("Write the message of the reply.")
        if last is not None and last < today():
            raise _Bad(f"The last day ({last.isoformat()}) is already past.")
    elif not (subject or message or first or last):
        return None
    return VacationRule(enabled, subject, message, days, first, last)


async def _page(request: web.Request, account: Account, session: Session, status: int,
                **overrides: object) -> web.Response:
    ctx = await _account_context(request, account, session)
    ctx.update(overrides)
    return render(request, "account.html", status=status, notice="", error="",
                  password_error="", pop3_error="", **ctx)


async def vacation(request: web.Request) -> web.Response:
    form, session, account = await _checked(request)
    if account is None or session is None:
        raise web.HTTPSeeOther("/")
    _complete(form, VACATION_FIELDS)
    app = request.app[APP]
    try:
        rule = vacation_rule(form, request)
        await save_vacation(app.store, filtering_for(app.store, app.config), account, rule)
    except (_Bad, RulesProblem) as exc:
        shown: dict[str, object] = {k: form.get(k, "") for k in VACATION_FIELDS}
        shown["enabled"] = form.get("enabled", "") not in ("", "0", "off")
        return await _page(request, account, session, 400, vacation_error=str(exc), vform=shown)
    on = rule is not None and rule.enabled
    log.info("customer page: %s set the vacation reply %s", account.address,
             "on" if on else "off")
    raise web.HTTPSeeOther(f"/?done={'vacation-on' if on else 'vacation-off'}#vacation")


async def forward(request: web.Request) -> web.Response:
    form, session, account = await _checked(request)
    if account is None or session is None:
        raise web.HTTPSeeOther("/")
    _complete(form, FORWARD_FIELDS)
    app = request.app[APP]
    filtering = filtering_for(app.store, app.config)
    keep = form.get("keep", "") not in ("", "0", "off")
    text = form["addresses"]
    try:
        if len(text) > MAX_ADDRESSES_FIELD:
            raise _Bad("The list of addresses is too long.")
        given = list(dict.fromkeys(a for a in _SPLIT.split(text) if a))
        limit = forward_limit(filtering)
        if len({a.lower() for a in given}) > limit:
            raise _Bad(f"Mail can be forwarded to at most {limit} "
                       f"address{'es' if limit != 1 else ''}.")
        for a in given:
            if len(a) > MAX_ADDRESS:
                raise _Bad(f"An address may have at most {MAX_ADDRESS} characters.")
        addresses = await check_forward_addresses(app.store, account, given)
        rule = ForwardRule(tuple(addresses), keep) if addresses else None
        await save_forward(app.store, filtering, account, rule)
    except (_Bad, RulesProblem) as exc:
        return await _page(request, account, session, 400, forward_error=str(exc),
                           fform={"addresses": text[:MAX_ADDRESSES_FIELD], "keep": keep})
    log.info("customer page: %s set forwarding to %d address(es)", account.address,
             len(rule.addresses) if rule else 0)
    raise web.HTTPSeeOther(f"/?done={'forward-on' if rule else 'forward-off'}#forward")


def routes() -> list[web.RouteDef]:
    return [web.post("/vacation", vacation), web.post("/forward", forward)]
