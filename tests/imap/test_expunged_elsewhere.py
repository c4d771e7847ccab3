"""Commands on messages another session has just expunged (RFC 2180 §4, over real sockets):
STORE changes the flags of the messages that still exist, answers FETCH only for them and
completes OK (RFC 2180 §4.2.1, as Dovecot does; EXPUNGEISSUED, RFC 5530 §3, says why some got
no answer); FETCH answers the messages that still exist and says NO [EXPUNGEISSUED] for the
others (RFC 2180 §4.1.2), also when a body goes between the metadata read and the body read,
and never NO [UNAVAILABLE]; SEARCH of body text skips such a message. No EXPUNGE is sent
during FETCH, STORE or SEARCH (RFC 9051 §7.5.1)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.imap.util import Raw, deliver, get_mailbox, message, new_user, store_state


def two_sessions(srv: Any, count: int) -> tuple[Any, Raw, Raw]:
    acct = new_user(srv)
    for i in range(count):
        deliver(srv, acct, message(f"m{i + 1}"))
    viewer, other = Raw(srv), Raw(srv)
    for raw in (other, viewer):     # the first to select takes \Recent (RFC 3501 §2.3.2)
        raw.login(acct)
        raw.ok("SELECT INBOX")
    return acct, viewer, other


def reply(tagged: bytes) -> bytes:
    """The tagged line without its tag."""
    return tagged.split(b" ", 1)[1]


def expunge(raw: Raw, messages: str) -> None:
    raw.ok(f"STORE {messages} +FLAGS.SILENT (\\Deleted)")
    raw.ok("EXPUNGE")


def test_store_on_messages_expunged_by_another_session(srv) -> None:
    """The second session expunged messages 2 and 3 (UIDs 2, 3). STORE 1:3 sets the flag on
    message 1 only, answers FETCH for it alone and OK [EXPUNGEISSUED], both before this
    session has heard of the expunge and after (when it holds it back, X1)."""
    acct, viewer, other = two_sessions(srv, 4)
    expunge(other, "2:3")
    lines, tagged = viewer.command("STORE 1:3 +FLAGS (\\Flagged)")
    assert reply(tagged).startswith(b"OK [EXPUNGEISSUED]"), tagged
    assert lines == [b"* 1 FETCH (FLAGS (\\Flagged))"]
    # Now the expunge is known but not yet announced: the same answer, still no EXPUNGE.
    lines, tagged = viewer.command("STORE 1:4 +FLAGS (\\Seen)")
    assert reply(tagged).startswith(b"OK [EXPUNGEISSUED]"), tagged
    assert lines == [b"* 1 FETCH (FLAGS (\\Seen \\Flagged))", b"* 4 FETCH (FLAGS (\\Seen))"]
    # Only expunged messages, .SILENT or not, \Deleted as imaptest's "DELETE" sends it.
    for command in ("STORE 2:3 +FLAGS.SILENT (\\Deleted)", "STORE 2 +FLAGS (\\Deleted)"):
        lines, tagged = viewer.command(command)
        assert lines == [] and b" OK [EXPUNGEISSUED]" in tagged, (command, lines, tagged)
    assert store_state(srv, acct) == [(1, frozenset({"\\Flagged", "\\Seen"})),
                                      (4, frozenset({"\\Seen"}))]
    # UID STORE of UIDs that do not exist is a plain OK (RFC 9051 §6.4.9) and may announce.
    lines, tagged = viewer.command("UID STORE 2:4 +FLAGS (\\Answered)")
    assert reply(tagged) == b"OK STORE completed"
    assert lines == [b"* 4 FETCH (UID 4 FLAGS (\\Seen \\Answered))", b"* 2 EXPUNGE",
                     b"* 2 EXPUNGE"]
    # The other session hears of the flag changes.
    lines = other.ok("NOOP")
    assert lines == [b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Flagged \\Recent))",
                     b"* 2 FETCH (UID 4 FLAGS (\\Seen \\Answered \\Recent))"]
    viewer.close()
    other.close()


def test_fetch_of_bodies_collected_between_metadata_and_body(srv) -> None:
    """The race behind imaptest's `FETCH2 failed: NO [UNAVAILABLE]`: another session expunged
    messages after this FETCH read their metadata, and their bodies were collected before it
    read them. Those messages get no response and the FETCH says NO [EXPUNGEISSUED] (RFC 2180
    §4.1.2) whether the body was small (in the database), larger (a file read ahead) or large
    (a file streamed); the others are answered whole; the session goes on."""
    acct = new_user(srv)
    bodies = [message("m1"), message("m2"), message("m3", b"x" * 100_000 + b"\r\n"),
              message("m4"), message("m5", b"y" * 300_000 + b"\r\n")]
    for data in bodies:
        deliver(srv, acct, data)
    box = get_mailbox(srv, acct)
    viewer = Raw(srv)
    viewer.login(acct)
    viewer.ok("SELECT INBOX")
    store = srv.store
    real = store.fetch_messages

    async def expunged_meanwhile(*args: Any, **kwargs: Any) -> Any:
        got = await real(*args, **kwargs)
        await store.remove_messages(box.id, [(2, 3), (5, 5)])
        await store.add_domain(f"flush{acct.id}.test")    # the collector's turn
        for _ in range(200):
            if len(await store.stored_bodies()) <= before:
                break
            await asyncio.sleep(0.05)
        return got

    before = len(srv.run(store.stored_bodies())) - 3
    store.fetch_messages = expunged_meanwhile
    try:
        lines, tagged = viewer.command("FETCH 1:5 (UID BODY.PEEK[])")
    finally:
        del store.fetch_messages
    assert reply(tagged).startswith(b"NO [EXPUNGEISSUED]"), tagged
    assert [line.split(b" (", 1)[0] for line in lines] == [b"* 1 FETCH", b"* 4 FETCH"]
    assert lines[0] == b"* 1 FETCH (UID 1 BODY[] {%d}\r\n" % len(bodies[0]) + bodies[0] + b")"
    assert lines[1] == b"* 4 FETCH (UID 4 BODY[] {%d}\r\n" % len(bodies[3]) + bodies[3] + b")"
    assert viewer.ok("NOOP") == [b"* 2 EXPUNGE", b"* 2 EXPUNGE", b"* 3 EXPUNGE"]
    assert viewer.ok("FETCH 2 (UID BODY.PEEK[])") == \
        [b"* 2 FETCH (UID 4 BODY[] {%d}\r\n" % len(bodies[3]) + bodies[3] + b")"]
    viewer.close()


def test_search_body_skips_a_message_collected_meanwhile(srv) -> None:
    """SEARCH BODY reads the bodies: one whose message went meanwhile matches nothing, and the
    SEARCH completes OK instead of NO [UNAVAILABLE]. (A needle of two characters, which the
    search index does not look up, so that the bodies are read.)"""
    acct = new_user(srv)
    for i in range(3):
        deliver(srv, acct, message(f"s{i + 1}", b"needle %d\r\n" % i))
    box = get_mailbox(srv, acct)
    viewer = Raw(srv)
    viewer.login(acct)
    viewer.ok("SELECT INBOX")
    store = srv.store
    real = store.fetch_static

    async def expunged_meanwhile(*args: Any, **kwargs: Any) -> Any:
        got = await real(*args, **kwargs)
        await store.remove_messages(box.id, [(2, 2)])
        await store.add_domain(f"flush{acct.id}.test")
        for _ in range(200):
            if len(await store.stored_bodies()) <= before:
                break
            await asyncio.sleep(0.05)
        return got

    before = len(srv.run(store.stored_bodies())) - 1
    store.fetch_static = expunged_meanwhile
    try:
        lines = viewer.ok("SEARCH BODY ed")
    finally:
        del store.fetch_static
    assert lines == [b"* SEARCH 1 3"]
    viewer.close()
