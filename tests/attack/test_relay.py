"""Open-relay attempts in the classic forms (issue 7, PROMISES M4/M5): percent hack, source
routes, quoted local parts holding an address, bang paths, unqualified recipients and address
literals, on the MX without authentication. Each is refused at RCPT with the right reply
(550 5.7.1 relay denied; 501 5.1.3 for what is not an address at all), nothing is queued, and
the same forms on the submission port without AUTH never get past MAIL (530 5.7.0)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.attack.util import Smtp, add_user

DENIED = (550, "5.7.1")
BAD_SYNTAX = (501, "5.1.3")

FORMS = [
    # percent hack: relay through the hosted domain to another
    ("<user%elsewhere.example@example.test>", DENIED),
    ("<USER%ELSEWHERE.EXAMPLE@EXAMPLE.TEST>", DENIED),
    ('<"user%elsewhere.example"@example.test>', DENIED),
    # source routes (RFC 5321 App. C): the route is ignored, the mailbox is foreign
    ("<@example.test:user@elsewhere.example>", DENIED),
    ("<@a.example,@example.test:user@elsewhere.example>", DENIED),
    # a quoted local part holding an address
    ('<"user@elsewhere.example"@example.test>', DENIED),
    ('<"user@elsewhere.example">', BAD_SYNTAX),
    # bang path (UUCP)
    ("<elsewhere.example!user@example.test>", DENIED),
    ("<elsewhere.example!user>", BAD_SYNTAX),
    # two @ signs
    ("<user@elsewhere.example@example.test>", BAD_SYNTAX),
    # unqualified recipients
    ("<user>", BAD_SYNTAX),
    ("user@elsewhere.example", BAD_SYNTAX),
    ("<>", BAD_SYNTAX),
    # address literals: IPv4, IPv6, this very server
    ("<user@[192.0.2.1]>", DENIED),
    ("<user@[127.0.0.1]>", DENIED),
    ("<user@[IPv6:2001:db8::1]>", DENIED),
    ('<"user@elsewhere.example"@[127.0.0.1]>', DENIED),
    # plain foreign domains, and names that only look local
    ("<user@elsewhere.example>", DENIED),
    ("<user@localhost>", DENIED),
    ("<user@mail.example.test>", DENIED),
    ("<user@example.test.elsewhere.example>", DENIED),
    ("<user@example.test.>", BAD_SYNTAX),
]


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.conftest import RunningServer, build_test_config
    server = RunningServer(build_test_config(tmp_path_factory.mktemp("relay") / "var",
                                             auth={"allow_plaintext_without_tls": True}))
    add_user(server, "user@example.test")
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("rcpt,expected", FORMS, ids=[f[0] for f in FORMS])
def test_relay_form_refused_on_the_mx(srv: Any, rcpt: str, expected: tuple[int, str]) -> None:
    with Smtp(srv.port("smtp")) as c:
        assert c.code("EHLO relay-tester.example") == 250
        assert c.code("MAIL FROM:<spammer@elsewhere.example>") == 250
        code, text = c.cmd(f"RCPT TO:{rcpt}")
        assert (code, text[:5]) == expected, text
        # Nothing to send: DATA has no recipient.
        assert c.code("DATA") in (503, 554)
        assert c.code("RSET") == 250
    assert srv.run(srv.store.list_queue()) == []


def test_hosted_user_is_still_accepted(srv: Any) -> None:
    """Control: the plain hosted address (any case) is taken, so refusals are not blanket."""
    with Smtp(srv.port("smtp")) as c:
        assert c.code("EHLO relay-tester.example") == 250
        assert c.code("MAIL FROM:<someone@elsewhere.example>") == 250
        assert c.code("RCPT TO:<user@example.test>") == 250
        assert c.code("RCPT TO:<User@Example.Test>") == 250


@pytest.mark.parametrize("rcpt", ["<user@elsewhere.example>",
                                  "<user%elsewhere.example@example.test>",
                                  "<@example.test:user@elsewhere.example>"])
def test_submission_without_auth_is_no_relay(srv: Any, rcpt: str) -> None:
    """The submission port without AUTH: MAIL is refused (530 5.7.0), so is RCPT."""
    with Smtp(srv.port("submission")) as c:
        assert c.code("EHLO relay-tester.example") == 250
        code, text = c.cmd("MAIL FROM:<user@example.test>")
        assert (code, text[:5]) == (530, "5.7.0")
        assert c.code(f"RCPT TO:{rcpt}") == 503
    assert srv.run(srv.store.list_queue()) == []
