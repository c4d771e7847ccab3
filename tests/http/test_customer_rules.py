"""The customer page's vacation reply and forward forms over real sockets (issue 20 §5): they
write Sieve into the account's active script, read back on the page, in the store and through
a real ManageSieve session; the customer's own rules outside the page's section survive; mail
delivered over SMTP gets the vacation reply and is forwarded with an SRS sender through the
outbound queue to a fake remote MX; bad input and a script the page cannot read get a clear
sentence and change nothing; every POST needs the CSRF token."""

from __future__ import annotations

import html
import re
import smtplib
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta

import httpx
import pytest

from casella.delivery.filtering import filtering_for
from casella.delivery.sieve.pagesection import END
from casella.http.rulesview import today
from casella.smtp.resolver import StaticResolver
from tests.conftest import RunningServer
from tests.http.conftest import PASSWORD, base_url, csrf_of, log_in
from tests.outbound.fakemx import FakeMX
from tests.outbound.helpers import mailbox_messages, parse
from tests.sieve.test_managesieve_session import Client as SieveClient

ALICE = "alice@example.test"
OWN_SCRIPT = (b'require ["fileinto", "mailbox"];\r\n# rule:[invoices]\r\n'
              b'if header :contains "subject" "invoice" {\r\n'
              b'  fileinto :create "Invoices";\r\n}\r\n')


@pytest.fixture
def srv(make_server: Callable[..., RunningServer], remote: FakeMX,
        dns: StaticResolver) -> RunningServer:
    s = make_server(delivery={"routes": {"remote.test": f"127.0.0.1:{remote.port}"}},
                    inbound={"checks": False}, srs={"secret": "test-secret"})
    s.add_user(ALICE, PASSWORD)
    s.add_user("carol@example.test", PASSWORD)
    return s


@pytest.fixture
def page(srv: RunningServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url(srv), timeout=30) as c:
        assert log_in(c).status_code == 303
        yield c


def post(c: httpx.Client, path: str, **fields: str) -> httpx.Response:
    return c.post(path, data={"csrf": csrf_of(c.get("/").text), **fields})


def vacation(c: httpx.Client, enabled: bool = True, subject: str = "Away",
             message: str = "I am away.", days: str = "3", first: str = "",
             last: str = "") -> httpx.Response:
    fields = {"subject": subject, "message": message, "days": days, "first": first,
              "last": last}
    if enabled:
        fields["enabled"] = "on"
    return post(c, "/vacation", **fields)


def forward(c: httpx.Client, addresses: str, keep: bool = True) -> httpx.Response:
    fields = {"addresses": addresses}
    if keep:
        fields["keep"] = "on"
    return post(c, "/forward", **fields)


def text_of(page: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}"[^>]*>(.*?)</(p|textarea)>', page, re.DOTALL)
    assert m, element_id
    return html.unescape(re.sub(r"<[^>]+>", "", m.group(1))).strip()


def value_of(page: str, element_id: str) -> str:
    m = re.search(rf'id="{element_id}"[^>]*value="([^"]*)"', page, re.DOTALL)
    assert m, element_id
    return html.unescape(m.group(1))


def scripts(srv: RunningServer, address: str = ALICE) -> dict[str, tuple[bool, str]]:
    async def go() -> dict[str, tuple[bool, str]]:
        acct = await srv.store.get_account(address)
        assert acct is not None
        out = {}
        for s in await srv.store.sieve_list(acct.id):
            full = await srv.store.sieve_get(acct.id, s.name)
            assert full is not None
            out[s.name] = (s.active, full.content)
        return out
    return srv.run(go())


def managesieve(srv: RunningServer, address: str = ALICE) -> SieveClient:
    c = SieveClient(srv.port("managesieve"))
    c.starttls(srv.ssl_context())
    assert c.login(address, PASSWORD).startswith(b"OK")
    return c


def getscript(c: SieveClient, name: str) -> bytes:
    lines, final = c.cmd(b'GETSCRIPT "' + name.encode() + b'"')
    assert final == b"OK" and len(lines) == 1
    return lines[0]


def test_vacation_and_forward_are_sieve_read_back_and_seen_over_managesieve(
        srv: RunningServer, page: httpx.Client) -> None:
    start = page.get("/").text
    assert text_of(start, "vacation-state") == "Off: nobody gets an automatic reply."
    assert text_of(start, "forward-state") == "Your mail is not forwarded."
    assert value_of(start, "vacation-days") == "7"          # [sieve] vacation_default_days
    assert scripts(srv) == {}
    first, last = today(), today() + timedelta(days=10)
    r = vacation(page, subject="Out of office", message="I am away.\r\n.\r\nAsk Carol.",
                 days="3", first=first.isoformat(), last=last.isoformat())
    assert r.status_code == 303 and r.headers["Location"] == "/?done=vacation-on#vacation"
    r = forward(page, "Fwd@Remote.test\r\ncarol@example.test, fwd@remote.test")
    assert r.status_code == 303 and r.headers["Location"] == "/?done=forward-on#forward"

    shown = page.get("/?done=forward-on").text
    assert "Your forwarding was saved." in shown
    assert text_of(shown, "vacation-state") == (
        f"On until {last.isoformat()} (included): each sender gets your reply at most once "
        "every 3 days.")
    assert text_of(shown, "forward-state") == (
        "Your mail is forwarded to fwd@remote.test, carol@example.test; a copy stays in this "
        "mailbox.")
    assert 'id="vacation-enabled" name="enabled" value="on" checked' in shown
    assert value_of(shown, "vacation-subject") == "Out of office"
    assert text_of(shown, "vacation-message") == "I am away.\n.\nAsk Carol."
    assert value_of(shown, "vacation-days") == "3"
    assert value_of(shown, "vacation-first") == first.isoformat()
    assert value_of(shown, "vacation-last") == last.isoformat()
    assert text_of(shown, "forward-addresses") == "fwd@remote.test\ncarol@example.test"
    assert "These settings are kept in your filter script “casella”" in shown

    # The store: one script, "casella", active, compiling with the server's own bounds.
    stored = scripts(srv)
    assert list(stored) == ["casella"] and stored["casella"][0]
    text = stored["casella"][1]
    filtering_for(srv.store, srv.config).compile(text)
    assert 'vacation :days 3 :subject "Out of office" text:\r\nI am away.\r\n..\r\nAsk Carol.' \
        in text
    assert f'currentdate :value "ge" "date" "{first.isoformat()}"' in text
    assert 'redirect :copy "fwd@remote.test";\r\nredirect :copy "carol@example.test";' in text
    # ManageSieve (RFC 5804) shows the same script, active, to a mail program.
    ms = managesieve(srv)
    assert ms.cmd(b"LISTSCRIPTS") == ([b'"casella" ACTIVE'], b"OK")
    assert getscript(ms, "casella") == text.encode()
    assert ms.cmd(b"CHECKSCRIPT {%d+}\r\n" % len(text.encode()) + text.encode())[1] == \
        b'OK "The script is valid"'

    # Off: no reply, but the text stays for the next time (in an `if false`).
    assert vacation(page, enabled=False, subject="Out of office",
                    message="I am away.").status_code == 303
    shown = page.get("/").text
    assert text_of(shown, "vacation-state") == "Off: nobody gets an automatic reply."
    assert 'name="enabled" value="on" checked' not in shown
    assert text_of(shown, "vacation-message") == "I am away."
    assert "if false {" in getscript(ms, "casella").decode()
    # Everything off and empty: the page's section is gone; the script stays, active.
    assert vacation(page, enabled=False, subject="", message="").status_code == 303
    assert forward(page, "").status_code == 303
    assert "no longer forwarded" in page.get("/?done=forward-off").text
    assert scripts(srv) == {"casella": (True, "")}


def test_the_customers_own_rules_outside_the_section_survive(
        srv: RunningServer, page: httpx.Client) -> None:
    ms = managesieve(srv)
    assert ms.put("mine", OWN_SCRIPT) == b'OK "Stored"'
    assert ms.cmd(b'SETACTIVE "mine"')[1].startswith(b"OK")
    assert vacation(page).status_code == 303
    assert forward(page, "fwd@remote.test", keep=False).status_code == 303
    # The active script was edited in place: no second script, the customer's lines intact.
    assert ms.cmd(b"LISTSCRIPTS") == ([b'"mine" ACTIVE'], b"OK")
    text = getscript(ms, "mine")
    begin, end = text.index(b"# casella page: begin"), text.index(END.encode())
    tail = text[end:].split(b"\r\n", 1)[1]
    assert text[:begin] + tail == OWN_SCRIPT
    assert text[:begin] == b'require ["fileinto", "mailbox"];\r\n'   # requires stay first
    # The customer adds a rule of their own in their mail program, keeping the section.
    edited = text + b'if header :contains "subject" "spam" {\r\n  discard;\r\n}\r\n'
    assert ms.put("mine", edited) == b'OK "Stored"'
    shown = page.get("/").text
    assert text_of(shown, "vacation-state").startswith("On: each sender")
    assert text_of(shown, "forward-state") == (
        "Your mail is forwarded to fwd@remote.test; no copy stays in this mailbox.")
    # The page changes its part only.
    assert vacation(page, subject="Back soon").status_code == 303
    again = getscript(ms, "mine")
    assert b':subject "Back soon"' in again and again.endswith(
        b'if header :contains "subject" "spam" {\r\n  discard;\r\n}\r\n')
    assert vacation(page, enabled=False, subject="", message="").status_code == 303
    assert forward(page, "").status_code == 303
    assert getscript(ms, "mine") == OWN_SCRIPT + \
        b'if header :contains "subject" "spam" {\r\n  discard;\r\n}\r\n'


def _send(srv: RunningServer, subject: str) -> None:
    data = (f"From: Someone <someone@remote.test>\r\nTo: <{ALICE}>\r\nSubject: {subject}\r\n"
            f"Message-ID: <{time.time_ns()}@remote.test>\r\n\r\nHello Alice.\r\n").encode()
    with smtplib.SMTP("127.0.0.1", srv.port("smtp"), timeout=30) as s:
        assert s.sendmail("someone@remote.test", [ALICE], data) == {}


def _submitted(srv: RunningServer) -> int:
    acct = srv.run(srv.store.get_account(ALICE))
    return sum(e.count for e in srv.run(srv.store.send_events(acct.id, 0))
               if e.kind == "submitted")


def test_delivered_mail_gets_the_reply_and_is_forwarded_with_srs(
        srv: RunningServer, page: httpx.Client, remote: FakeMX) -> None:
    assert vacation(page, subject="Away", message="Back on Monday.", days="2",
                    first=today().isoformat()).status_code == 303
    assert forward(page, "fwd@remote.test", keep=False).status_code == 303
    _send(srv, "plans")
    # Both left through the outbound queue and count against alice's hourly limit.
    assert _submitted(srv) == 2
    got = {m.rcpts[0]: m for m in remote.wait_for(2)}
    copy, reply = got["fwd@remote.test"], got["someone@remote.test"]
    # The forwarded copy: an SRS0 sender of our domain, Delivered-To on top.
    assert copy.mail_from.startswith("SRS0=") and copy.mail_from.endswith(
        "=remote.test=someone@mail.example.test")
    assert copy.data.startswith(f"Delivered-To: {ALICE}\r\n".encode())
    assert b"Subject: plans" in copy.data
    # The vacation reply (RFC 5230 / RFC 3834): null sender, auto-replied, the page's text.
    assert reply.mail_from == ""
    msg = parse(reply.data)
    assert msg["Subject"] == "Away" and msg["Auto-Submitted"].startswith("auto-replied")
    assert msg["From"].addresses[0].addr_spec == ALICE
    assert b"Back on Monday." in reply.data
    # No copy kept.
    acct = srv.run(srv.store.get_account(ALICE))
    assert srv.run(mailbox_messages(srv.store, acct)) == []
    # A second message from the same sender: forwarded, not answered again (:days 2).
    _send(srv, "more plans")
    assert _submitted(srv) == 3
    assert [m.rcpts for m in remote.wait_for(3)][2] == ["fwd@remote.test"]


def test_no_reply_before_the_first_day(srv: RunningServer, page: httpx.Client) -> None:
    """The dates are `currentdate` tests (RFC 5260): before the first day nothing is sent;
    the message is kept (decided before the 250, so the count is final when it comes)."""
    tomorrow = today() + timedelta(days=1)
    assert vacation(page, first=tomorrow.isoformat()).status_code == 303
    assert text_of(page.get("/").text, "vacation-state").startswith(
        f"On from {tomorrow.isoformat()}:")
    _send(srv, "early")
    assert _submitted(srv) == 0
    acct = srv.run(srv.store.get_account(ALICE))
    assert len(srv.run(mailbox_messages(srv.store, acct))) == 1


def test_forwarding_into_a_hosted_mailbox(srv: RunningServer, page: httpx.Client) -> None:
    assert forward(page, "carol@example.test", keep=True).status_code == 303
    _send(srv, "for carol too")
    carol = srv.run(srv.store.get_account("carol@example.test"))
    alice = srv.run(srv.store.get_account(ALICE))
    got = srv.run(mailbox_messages(srv.store, carol))
    assert len(got) == 1 and got[0].startswith(f"Delivered-To: {ALICE}\r\n".encode())
    assert len(srv.run(mailbox_messages(srv.store, alice))) == 1


PAST = (today() - timedelta(days=1)).isoformat()
BAD_VACATION = [
    ({"days": "0"}, "a whole number from 1 to 30"),
    ({"days": "31"}, "a whole number from 1 to 30"),
    ({"days": "3x"}, "a whole number from 1 to 30"),
    ({"days": "٣"}, "a whole number from 1 to 30"),
    ({"first": "2024-13-01"}, "The first day must be a date written YYYY-MM-DD."),
    ({"last": "tomorrow"}, "The last day must be a date written YYYY-MM-DD."),
    ({"first": "2030-02-01", "last": "2030-01-01"}, "The first day comes after the last day."),
    ({"last": PAST}, f"The last day ({PAST}) is already past."),
    ({"message": "  \r\n "}, "Write the message of the reply."),
    ({"subject": "s" * 201}, "The subject may have at most 200 characters."),
    ({"subject": "a\x07b"}, "The subject contains a control character."),
    ({"message": "x\x00y"}, "The message contains a control character."),
    ({"message": "Hi ${name}"}, "cannot contain “${”"),
    ({"message": "m" * 8001}, "The message may have at most 8000 characters."),
]


@pytest.mark.parametrize("change,problem", BAD_VACATION)
def test_bad_vacation_input_is_refused_on_the_page(srv: RunningServer, page: httpx.Client,
                                                   change: dict[str, str],
                                                   problem: str) -> None:
    fields = {"subject": "Away", "message": "I am away.", "days": "3", "first": "",
              "last": "", "enabled": "on", **change}
    r = post(page, "/vacation", **fields)
    assert r.status_code == 400
    assert problem in text_of(r.text, "vacation-error")
    # The page shows what was typed, to correct it; nothing was stored.
    if "subject" in change and "\x07" not in change["subject"]:
        assert value_of(r.text, "vacation-subject") == change["subject"]
    assert scripts(srv) == {}


BAD_FORWARD = [
    ("not-an-address", "“not-an-address” is not an e-mail address."),
    ("a@b@", "is not an e-mail address."),
    (ALICE, "Mail cannot be forwarded to this mailbox itself."),
    ("ALICE@Example.TEST", "Mail cannot be forwarded to this mailbox itself."),
    ("alice+lists@example.test", "delivers into this mailbox itself."),
    ("me@example.test", "delivers into this mailbox itself."),         # an alias of alice
    ("nobody@example.test", "There is no mailbox nobody@example.test on this server."),
    ("a@x.test b@x.test c@x.test d@x.test e@x.test", "at most 4 addresses"),
    ("x" * 321 + "@remote.test", "at most 320 characters"),
    ("a@x.test\n" * 1000, "The list of addresses is too long."),
]


@pytest.mark.parametrize("addresses,problem", BAD_FORWARD)
def test_bad_forward_input_is_refused_on_the_page(srv: RunningServer, page: httpx.Client,
                                                  addresses: str, problem: str) -> None:
    srv.run(srv.store.add_alias("me@example.test", [ALICE]))
    r = forward(page, addresses)
    assert r.status_code == 400
    assert problem in text_of(r.text, "forward-error")
    assert scripts(srv) == {}


def test_the_forward_cap_follows_max_destinations(
        make_server: Callable[..., RunningServer]) -> None:
    """[forwarding] max_destinations caps the page's forward (and [sieve] max_redirects,
    since each address is one redirect of the script's run)."""
    srv = make_server(forwarding={"max_destinations": 2}, inbound={"checks": False})
    srv.add_user(ALICE, PASSWORD)
    with httpx.Client(base_url=base_url(srv), timeout=30) as c:
        assert log_in(c).status_code == 303
        assert "at most 2; empty: do not forward" in " ".join(c.get("/").text.split())
        r = forward(c, "a@remote.test b@remote.test c@remote.test")
        assert r.status_code == 400 and "at most 2 addresses" in r.text
        assert forward(c, "a@remote.test b@remote.test").status_code == 303


def test_the_customers_redirects_count_against_the_cap(srv: RunningServer,
                                                       page: httpx.Client) -> None:
    ms = managesieve(srv)
    own = b'require "copy";\r\nredirect :copy "x@remote.test";\r\n' \
          b'redirect :copy "y@remote.test";\r\n'
    assert ms.put("mine", own) == b'OK "Stored"'
    assert ms.cmd(b'SETACTIVE "mine"')[1].startswith(b"OK")
    r = forward(page, "a@remote.test b@remote.test c@remote.test")
    assert r.status_code == 400 and "forward to at most 2 here" in r.text
    assert getscript(ms, "mine") == own


def test_a_form_without_its_fields_gets_a_plain_400(srv: RunningServer,
                                                    page: httpx.Client) -> None:
    r = post(page, "/vacation", subject="x")
    assert r.status_code == 400 and r.text.startswith("The form is incomplete: message, days")
    r = post(page, "/forward", keep="on")
    assert r.status_code == 400 and "addresses missing" in r.text
    assert scripts(srv) == {}


def test_both_forms_need_the_csrf_token(srv: RunningServer, page: httpx.Client) -> None:
    fields = {"subject": "s", "message": "m", "days": "3", "first": "", "last": "",
              "enabled": "on", "addresses": "a@remote.test"}
    for path in ("/vacation", "/forward"):
        assert page.post(path, data=fields).status_code == 403
        assert page.post(path, data={**fields, "csrf": "forged"}).status_code == 403
        # A token of another (logged-out) session is no good either.
        with httpx.Client(base_url=page.base_url) as other:
            token = csrf_of(other.get("/").text)
        assert page.post(path, data={**fields, "csrf": token}).status_code == 403
        # JSON instead of the form: no token can be read from it.
        assert page.post(path, json={**fields, "csrf": csrf_of(page.get("/").text)}
                         ).status_code == 403
    assert scripts(srv) == {}
    # Logged out: the token of the login page is valid, but there is no account to change.
    with httpx.Client(base_url=page.base_url) as anonymous:
        token = csrf_of(anonymous.get("/").text)
        r = anonymous.post("/vacation", data={**fields, "csrf": token})
        assert r.status_code == 303 and r.headers["Location"] == "/"
    assert scripts(srv) == {}


UNREADABLE = [
    ((b'require "vacation";\r\n# casella page: begin\r\nvacation :days 3 "x";\r\n'
     b"discard;\r\n# casella page: end\r\n"), "was changed by hand or by a mail program"),
    (b"# casella page: begin\r\nkeep;\r\n", "missing, repeated or out of order"),
]


@pytest.mark.parametrize("script,problem", UNREADABLE)
def test_a_script_the_page_cannot_read_is_left_alone(srv: RunningServer, page: httpx.Client,
                                                     script: bytes, problem: str) -> None:
    ms = managesieve(srv)
    assert ms.put("mine", script) == b'OK "Stored"'
    assert ms.cmd(b'SETACTIVE "mine"')[1].startswith(b"OK")
    shown = page.get("/").text
    assert problem in text_of(shown, "rules-problem")
    assert "<fieldset disabled>" in shown
    r = vacation(page)
    assert r.status_code == 400 and problem in text_of(r.text, "vacation-error")
    r = forward(page, "a@remote.test")
    assert r.status_code == 400 and problem in text_of(r.text, "forward-error")
    assert getscript(ms, "mine") == script


def test_an_active_script_that_does_not_compile_is_left_alone(srv: RunningServer,
                                                              page: httpx.Client) -> None:
    """A script stored before the bounds were lowered (or by other means) and no longer
    accepted: the page says so and does not write."""
    broken = 'require "fileinto";\r\nfileinto;\r\n'

    async def put() -> None:
        acct = await srv.store.get_account(ALICE)
        assert acct is not None
        await srv.store.sieve_put(acct.id, "old", broken)
        await srv.store.sieve_set_active(acct.id, "old")
    srv.run(put())
    assert "line 2: fileinto takes 1 argument" in text_of(page.get("/").text, "rules-problem")
    r = vacation(page)
    assert r.status_code == 400 and "is not valid" in text_of(r.text, "vacation-error")
    assert scripts(srv) == {"old": (True, broken)}


def test_a_vacation_of_the_customers_own_is_not_doubled(srv: RunningServer,
                                                        page: httpx.Client) -> None:
    """RFC 5230: one vacation action per run; a second would fail the script."""
    ms = managesieve(srv)
    own = b'require "vacation";\r\nvacation "my own reply";\r\n'
    assert ms.put("mine", own) == b'OK "Stored"'
    assert ms.cmd(b'SETACTIVE "mine"')[1].startswith(b"OK")
    assert "have a vacation reply of their own" in page.get("/").text
    r = vacation(page)
    assert r.status_code == 400 and "already have a vacation reply" in r.text
    # Off is fine (kept in an `if false`), and so is a forward.
    assert vacation(page, enabled=False).status_code == 303
    assert forward(page, "a@remote.test").status_code == 303
    assert filtering_for(srv.store, srv.config).compile(getscript(ms, "mine"))


def test_script_size_and_count_limits(make_server: Callable[..., RunningServer]) -> None:
    """[sieve] max_script_size bounds the text (and the whole script); [sieve] max_scripts
    the new script the page would make."""
    srv = make_server(sieve={"max_script_size": "2K", "max_scripts": 1},
                      inbound={"checks": False})
    srv.add_user(ALICE, PASSWORD)
    with httpx.Client(base_url=base_url(srv), timeout=30) as c:
        assert log_in(c).status_code == 303
        assert 'maxlength="1024"' in c.get("/").text
        r = vacation(c, message="m" * 1025)
        assert r.status_code == 400 and "at most 1024 characters" in r.text
        ms = managesieve(srv)
        own = b"# " + b"x" * 1400 + b"\r\nkeep;\r\n"
        assert ms.put("mine", own) == b'OK "Stored"'
        # No active script: the page would make "casella", one script too many.
        r = vacation(c)
        assert r.status_code == 400 and "You already have 1 filter scripts" in r.text
        assert ms.cmd(b'SETACTIVE "mine"')[1].startswith(b"OK")
        r = vacation(c, message="m" * 1000)
        assert r.status_code == 400 and "would not be accepted" in r.text and \
            "more than the 2048 allowed" in r.text
        assert getscript(ms, "mine") == own
        assert vacation(c, message="m" * 100).status_code == 303


def test_the_page_says_what_the_account_forward_does(srv: RunningServer,
                                                     page: httpx.Client) -> None:
    """`casella user forward` (the admin's) stays as it is; the page says how it combines."""
    srv.run(srv.store.set_forward(ALICE, ["boss@remote.test"], keep=False))
    shown = page.get("/").text
    assert ("forwards all your mail to boss@remote.test without keeping a copy here. While "
            "that forward is on, the vacation reply and the forwarding set on this page do "
            "not run.") in " ".join(shown.split())
    srv.run(srv.store.set_forward(ALICE, ["boss@remote.test"], keep=True))
    shown = " ".join(page.get("/").text.split())
    assert "also forwards all your mail to boss@remote.test (a copy stays here)" in shown


def test_a_date_range_in_the_past_of_a_kept_reply_is_shown(srv: RunningServer,
                                                           page: httpx.Client) -> None:
    """A reply whose last day went by is shown as such (set when that day was still to
    come; here written over ManageSieve as the page would have)."""
    from casella.delivery.sieve.pagesection import PageRules, VacationRule, render_section
    text = render_section(PageRules(VacationRule(True, "s", "m", 3, date(2020, 1, 1),
                                                 date(2020, 1, 31))))
    ms = managesieve(srv)
    assert ms.put("mine", text.encode()) == b'OK "Stored"'
    assert ms.cmd(b'SETACTIVE "mine"')[1].startswith(b"OK")
    assert text_of(page.get("/").text, "vacation-state") == (
        "On, but its last day (2020-01-31) is past: no more replies are sent.")


def test_filters_turned_off_are_mentioned(make_server: Callable[..., RunningServer]) -> None:
    srv = make_server(sieve={"enabled": False}, inbound={"checks": False})
    srv.add_user(ALICE, PASSWORD)
    with httpx.Client(base_url=base_url(srv), timeout=30) as c:
        assert log_in(c).status_code == 303
        assert "Filters are turned off on this server" in c.get("/").text


def test_an_inactive_casella_script_is_reused_without_its_old_settings(
        srv: RunningServer, page: httpx.Client) -> None:
    """No active script, but a "casella" one left inactive (a mail program switched it off):
    the page showed its settings as off, so saving one form does not bring back the other."""
    from casella.delivery.sieve.pagesection import ForwardRule, PageRules, render_section
    own = b"# kept\r\n" + render_section(PageRules(
        forward=ForwardRule(("old@remote.test",), False))).encode()
    ms = managesieve(srv)
    assert ms.put("casella", own) == b'OK "Stored"'
    assert text_of(page.get("/").text, "forward-state") == "Your mail is not forwarded."
    assert vacation(page).status_code == 303
    assert ms.cmd(b"LISTSCRIPTS") == ([b'"casella" ACTIVE'], b"OK")
    text = getscript(ms, "casella")
    assert text.startswith(b"# kept\r\n# casella page: begin") and b"old@remote.test" not in text
    assert text_of(page.get("/").text, "forward-state") == "Your mail is not forwarded."


def test_a_multipart_body_is_refused_like_any_other_non_form_body(
        srv: RunningServer, page: httpx.Client) -> None:
    """The page's forms are sent urlencoded; the HTTP guard has read the body already, so a
    multipart one could not be parsed again: it gets the 403 of a missing token, not a 500."""
    token = csrf_of(page.get("/").text)
    for path in ("/forward", "/login"):
        r = page.post(path, files={"csrf": (None, token), "addresses": (None, "a@remote.test")})
        assert r.status_code == 403
    assert scripts(srv) == {}
