"""What the customer page shows of the vacation reply and the forward: the settings read back
from the account's Sieve script, in plain sentences, the values the two forms start with, and
what else decides what happens to the mail (the admin's account forward, filters turned off,
a vacation reply of the customer's own).

Lives here: `rules_context` (the template variables of the two forms), `vacation_fields` and
`forward_fields` (a form's values as strings), `today` and `zone_label` (the dates a vacation
reply runs between are days in the server's time zone, as Sieve's `currentdate` sees them,
RFC 5260 §5). Must never: change anything, or build HTML (the template escapes what it shows).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from casella.app import App
from casella.delivery.filtering import filtering_for
from casella.delivery.pagerules import CurrentRules, forward_limit, load
from casella.delivery.sieve.pagesection import ForwardRule, VacationRule
from casella.store.model import Account

MAX_SUBJECT = 200               # characters of the reply's subject
MAX_MESSAGE = 8000              # characters of its text (and the script must fit max_script_size)
SECTION_ROOM = 1024             # bytes of the page's section besides the text


def today() -> date:
    """Today in the server's time zone: the zone `currentdate` uses without :zone."""
    return datetime.now().astimezone().date()


def zone_label() -> str:
    offset = datetime.now().astimezone().strftime("%z")
    return "UTC" if offset in ("+0000", "-0000", "") else f"UTC{offset[:3]}:{offset[3:]}"


def message_limit(app: App) -> int:
    """Characters of a vacation text: MAX_MESSAGE, and less when `[sieve] max_script_size`
    leaves no room for it (the whole script is checked against that size before it is stored,
    so text in a script already near it is refused with a sentence saying so)."""
    return max(0, min(MAX_MESSAGE, app.config.sieve.max_script_size - SECTION_ROOM))


def vacation_fields(rule: VacationRule | None, default_days: int) -> dict[str, Any]:
    if rule is None:
        return {"enabled": False, "subject": "", "message": "", "days": str(default_days),
                "first": "", "last": ""}
    return {"enabled": rule.enabled, "subject": rule.subject, "message": rule.message,
            "days": str(rule.days), "first": rule.first.isoformat() if rule.first else "",
            "last": rule.last.isoformat() if rule.last else ""}


def forward_fields(rule: ForwardRule | None) -> dict[str, Any]:
    if rule is None:
        return {"addresses": "", "keep": True}
    return {"addresses": "\n".join(rule.addresses), "keep": rule.keep}


def _vacation_state(rule: VacationRule | None) -> str:
    if rule is None or not rule.enabled:
        return "Off: nobody gets an automatic reply."
    now = today()
    when = ""
    if rule.first is not None and rule.first > now:
        when += f" from {rule.first.isoformat()}"
    if rule.last is not None:
        when += f" until {rule.last.isoformat()} (included)"
    text = (f"On{when}: each sender gets your reply at most once every {rule.days} "
            f"day{'s' if rule.days != 1 else ''}.")
    if rule.last is not None and rule.last < now:
        text = (f"On, but its last day ({rule.last.isoformat()}) is past: no more replies "
                "are sent.")
    return text


def _forward_state(rule: ForwardRule | None) -> str:
    if rule is None:
        return "Your mail is not forwarded."
    copy = "a copy stays in this mailbox" if rule.keep else "no copy stays in this mailbox"
    return f"Your mail is forwarded to {', '.join(rule.addresses)}; {copy}."


def _notices(current: CurrentRules) -> list[str]:
    out = []
    if not current.sieve_enabled:
        out.append("Filters are turned off on this server at the moment: the vacation reply "
                   "and the forwarding below are kept but do nothing until the administrator "
                   "turns them on again.")
    if current.scripts_skipped:
        out.append(f"Your administrator forwards all your mail to "
                   f"{', '.join(current.account_forward)} without keeping a copy here. While "
                   "that forward is on, the vacation reply and the forwarding set on this page "
                   "do not run.")
    elif current.account_forward:
        out.append(f"Your administrator also forwards all your mail to "
                   f"{', '.join(current.account_forward)} (a copy stays here). That happens as "
                   "well as the vacation reply and the forwarding set on this page.")
    if current.outside_vacation:
        out.append("Your own filters (set up in a mail program) have a vacation reply of their "
                   "own; change or turn it off there.")
    return out


async def rules_context(app: App, account: Account) -> dict[str, Any]:
    filtering = filtering_for(app.store, app.config)
    current = await load(app.store, filtering, account)
    cfg = app.config.sieve
    return {
        "rules": current,
        "rules_notices": _notices(current),
        "vacation_state": _vacation_state(current.rules.vacation),
        "forward_state": _forward_state(current.rules.forward),
        "vform": vacation_fields(current.rules.vacation, cfg.vacation_default_days),
        "fform": forward_fields(current.rules.forward),
        "vacation_error": "",
        "forward_error": "",
        "vacation_days": (cfg.vacation_min_days, cfg.vacation_max_days),
        "max_subject": MAX_SUBJECT,
        "max_message": message_limit(app),
        "forward_limit": forward_limit(filtering),
        "zone": zone_label(),
    }
