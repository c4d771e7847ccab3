"""Mailbox-level extensions over real sockets, with their RFCs' examples adapted: LIST-EXTENDED
(RFC 5258: selection and return options, several patterns, CHILDINFO), LIST-STATUS (RFC 5819),
CREATE-SPECIAL-USE (RFC 6154 §3, §5.3), STATUS=SIZE (RFC 8438), and OBJECTID's MAILBOXID
(RFC 8474 §4: kept by RENAME, new after DELETE and CREATE)."""

from __future__ import annotations

import re

from tests.imap.util import Raw, deliver, get_mailbox, message, new_user


def logged_in(srv, acct) -> Raw:
    raw = Raw(srv)
    raw.login(acct)
    return raw


def mailbox_id(raw: Raw, name: str) -> bytes:
    (line,) = raw.ok(f"STATUS {name} (MAILBOXID)")
    m = re.fullmatch(rb"\* STATUS \S+ \(MAILBOXID \(([A-Za-z0-9_-]+)\)\)", line)
    assert m, line
    return m.group(1)


def test_list_extended_rfc5258_examples(srv) -> None:
    """RFC 5258 §5: selection options, RETURN options, several patterns, RECURSIVEMATCH with
    CHILDINFO for a parent whose subscribed child does not match."""
    acct = new_user(srv)
    raw = logged_in(srv, acct)
    for name in ("Fruit", "Fruit/Apple", "Fruit/Banana", "Tofu", "Vegetable/Broccoli"):
        raw.ok(f"CREATE {name}")
    raw.ok("SUBSCRIBE Fruit/Banana")
    raw.ok("SUBSCRIBE Vegetable/Broccoli")
    lines = raw.ok('LIST (SUBSCRIBED) "" "*"')
    assert b'* LIST (\\HasNoChildren \\Subscribed) "/" Fruit/Banana' in lines
    assert not any(b"Tofu" in x for x in lines)
    lines = raw.ok('LIST () "" "%" RETURN (CHILDREN)')
    assert b'* LIST (\\HasChildren) "/" Fruit' in lines
    assert b'* LIST (\\HasNoChildren) "/" Tofu' in lines
    lines = raw.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    assert b'* LIST (\\HasChildren) "/" Fruit ("CHILDINFO" ("SUBSCRIBED"))' in lines
    assert b'* LIST (\\HasChildren) "/" Vegetable ("CHILDINFO" ("SUBSCRIBED"))' in lines
    # A parent whose only subscribed child matches the patterns itself gets no CHILDINFO.
    lines = raw.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" ("Fruit" "Fruit/Banana")')
    assert lines == [b'* LIST (\\HasNoChildren \\Subscribed) "/" Fruit/Banana']
    _, tagged = raw.command('LIST (RECURSIVEMATCH REMOTE) "" "%"')
    assert tagged.split(b" ")[1] == b"BAD"
    lines = raw.ok('LIST "" ("INBOX" "Fruit/%")')
    assert [x.rsplit(b" ", 1)[1] for x in lines] == [b"INBOX", b"Fruit/Apple", b"Fruit/Banana"]
    lines = raw.ok('LIST (SPECIAL-USE) "" "*" RETURN (SPECIAL-USE)')
    assert len(lines) == 5 and all(b"\\" in x.split(b")")[0] for x in lines)
    raw.close()


def test_list_status_rfc5819(srv) -> None:
    """RFC 5819 §3: LIST ... RETURN (STATUS (...)) gives a STATUS after each selectable
    mailbox's LIST, none for \\Noselect ones; HIGHESTMODSEQ, SIZE and MAILBOXID work too."""
    acct = new_user(srv)
    deliver(srv, acct, message("one"))
    deliver(srv, acct, message("two"), flags=("\\Seen",))
    raw = logged_in(srv, acct)
    raw.ok("CREATE Lists/Family")
    raw.ok("DELETE Lists")            # has a child: stays, \Noselect
    lines = raw.ok('LIST "" "*" RETURN (STATUS (MESSAGES UNSEEN))')
    i = lines.index(b'* LIST (\\HasNoChildren) "/" INBOX')
    assert lines[i + 1] == b"* STATUS INBOX (MESSAGES 2 UNSEEN 1)"
    j = next(k for k, x in enumerate(lines) if x.endswith(b'"/" Lists'))
    assert b"\\Noselect" in lines[j] and not lines[j + 1].startswith(b"* STATUS Lists ")
    mb = get_mailbox(srv, acct)
    lines = raw.ok('LIST "" INBOX RETURN (STATUS (SIZE HIGHESTMODSEQ))')
    assert lines[1] == b"* STATUS INBOX (SIZE %d HIGHESTMODSEQ %d)" % (mb.size, mb.highestmodseq)
    raw.close()


def test_create_special_use_rfc6154(srv) -> None:
    """RFC 6154 §3 and §5.3: CREATE name (USE (attr)) makes a special-use mailbox; an
    attribute casella cannot give (\\All, \\Flagged: virtual mailboxes, or unknown) is
    NO [USEATTR] and nothing is created."""
    acct = new_user(srv)
    raw = logged_in(srv, acct)
    _, tagged = raw.command('CREATE MySpecialArchive (USE (\\Archive))')
    assert re.match(rb"t\d+ OK \[MAILBOXID \(F[0-9a-f]+\)\] CREATE completed", tagged)
    assert raw.ok('LIST "" MySpecialArchive RETURN (SPECIAL-USE)') == \
        [b'* LIST (\\HasNoChildren \\Archive) "/" MySpecialArchive']
    for attr in ("\\All", "\\Important", "\\Flagged", "\\Drafts \\Sent"):
        _, tagged = raw.command(f'CREATE "Everything" (USE ({attr}))')
        assert b"NO [USEATTR]" in tagged, attr
    assert raw.ok('LIST "" Everything') == []
    _, tagged = raw.command("CREATE x (FOO (\\Archive))")
    assert b" BAD " in tagged
    raw.close()


def test_status_size_rfc8438(srv) -> None:
    """RFC 8438 §2: STATUS SIZE is the total of the messages' RFC822.SIZE."""
    acct = new_user(srv)
    for i in range(3):
        deliver(srv, acct, message(f"size{i}"))
    mb = get_mailbox(srv, acct)
    metas = srv.run(srv.store.fetch_meta(mb.id, [(1, 10)]))
    raw = logged_in(srv, acct)
    assert raw.ok("STATUS INBOX (SIZE)") == [b"* STATUS INBOX (SIZE %d)" %
                                             sum(m.size for m in metas)]
    raw.close()


def test_mailboxid_rfc8474(srv) -> None:
    """RFC 8474 §4: CREATE names the new MAILBOXID, SELECT reports it, RENAME keeps it,
    DELETE and CREATE of the same name gives a new one."""
    acct = new_user(srv)
    raw = logged_in(srv, acct)
    _, tagged = raw.command("CREATE foo")
    created = re.search(rb"\[MAILBOXID \(([^)]+)\)\]", tagged).group(1)
    assert mailbox_id(raw, "foo") == created
    lines = raw.ok("SELECT foo")
    assert b"* OK [MAILBOXID (%s)] Ok" % created in lines
    raw.ok("UNSELECT")
    raw.ok("RENAME foo bar")
    assert mailbox_id(raw, "bar") == created
    raw.ok("DELETE bar")
    raw.ok("CREATE bar")
    assert mailbox_id(raw, "bar") != created
    assert len({mailbox_id(raw, n) for n in ("INBOX", "Sent", "Trash", "bar")}) == 4
    raw.close()
