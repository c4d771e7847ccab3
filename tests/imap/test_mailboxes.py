"""Mailbox commands over real sockets (RFC 9051 §6.3): CREATE, DELETE, RENAME, SUBSCRIBE,
UNSUBSCRIBE, LIST (wildcards, CHILDREN, \\Noselect/\\NonExistent, SPECIAL-USE, extended
options, LIST "" ""), LSUB, STATUS, with modified UTF-7 names and bad names (PROMISES N1-N3)."""

from __future__ import annotations

import re

import pytest

from tests.imap.util import (
    Raw,
    deliver,
    get_mailbox,
    imapclient_login,
    imaplib_login,
    message,
    new_user,
)


def list_names(lines: list[bytes]) -> dict[str, bytes]:
    """LIST/LSUB lines -> {name: attributes}."""
    out = {}
    for line in lines:
        m = re.match(rb'\* (?:LIST|LSUB) \(([^)]*)\) "/" (.*?)( \(.*\))?$', line)
        if m:
            name = m.group(2)
            if name.startswith(b'"'):
                name = name[1:-1]
            out[name.decode()] = m.group(1)
    return out


def test_default_mailboxes_with_special_use(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    got = list_names(raw.ok('LIST "" *'))
    assert set(got) == {"INBOX", "Drafts", "Sent", "Trash", "Junk", "Archive"}
    assert got["Sent"] == b"\\HasNoChildren \\Sent"
    assert got["Trash"] == b"\\HasNoChildren \\Trash"
    assert got["INBOX"] == b"\\HasNoChildren"
    assert raw.ok('LIST "" ""') == [b'* LIST (\\Noselect) "/" ""']
    only = list_names(raw.ok('LIST (SPECIAL-USE) "" *'))
    assert set(only) == {"Drafts", "Sent", "Trash", "Junk", "Archive"}
    raw.close()


def test_create_hierarchy_and_wildcards(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("CREATE Work/2024/Q1")
    raw.ok("CREATE Work/Projects/")          # trailing delimiter: hierarchy intent
    raw.ok('CREATE "Sent Items"')
    everything = list_names(raw.ok('LIST "" *'))
    assert everything["Work"] == b"\\HasChildren"
    assert everything["Work/2024"] == b"\\HasChildren"
    assert everything["Work/2024/Q1"] == b"\\HasNoChildren"
    assert "Work/Projects" in everything and "Sent Items" in everything
    top = list_names(raw.ok('LIST "" %'))
    assert "Work" in top and "Work/2024" not in top
    level = list_names(raw.ok('LIST "" Work/%'))
    assert set(level) == {"Work/2024", "Work/Projects"}
    assert set(list_names(raw.ok('LIST Work/ %'))) == {"Work/2024", "Work/Projects"}
    assert set(list_names(raw.ok('LIST "" inbox'))) == {"INBOX"}
    assert set(list_names(raw.ok('LIST "" *Q1'))) == {"Work/2024/Q1"}
    assert list_names(raw.ok('LIST "" nothing*')) == {}
    _, tagged = raw.command("CREATE Work")
    assert b"NO [ALREADYEXISTS]" in tagged
    _, tagged = raw.command("CREATE INBOX")
    assert b"NO [ALREADYEXISTS]" in tagged
    raw.close()


def test_delete_with_children_leaves_noselect(srv) -> None:
    """RFC 3501 §6.3.4: a deleted parent stays as \\Noselect for its children."""
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("CREATE a/b")
    raw.ok("DELETE a")
    got = list_names(raw.ok('LIST "" a*'))
    assert got["a"] == b"\\Noselect \\HasChildren" and "a/b" in got
    _, tagged = raw.command("SELECT a")
    assert b" NO " in tagged
    _, tagged = raw.command("STATUS a (MESSAGES)")
    assert b" NO " in tagged
    raw.ok("DELETE a/b")
    _, tagged = raw.command("DELETE nothing")
    assert b"NO [NONEXISTENT]" in tagged
    _, tagged = raw.command("DELETE INBOX")
    assert b"NO [CANNOT]" in tagged
    raw.close()


def test_rename_keeps_messages_and_children(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("CREATE old/child")
    deliver(srv, acct, message("kept"), mailbox="old")
    before = get_mailbox(srv, acct, "old")
    raw.ok("RENAME old new")
    after = get_mailbox(srv, acct, "new")
    assert after.uidvalidity == before.uidvalidity and after.messages == 1
    got = list_names(raw.ok('LIST "" *'))
    assert "new/child" in got and "old" not in got
    _, tagged = raw.command("RENAME missing other")
    assert b"NO [NONEXISTENT]" in tagged
    _, tagged = raw.command("RENAME new Trash")
    assert b"NO [ALREADYEXISTS]" in tagged
    # RFC 3501 §6.3.5: renaming INBOX moves its messages and leaves INBOX empty.
    deliver(srv, acct, message("in inbox"))
    raw.ok("RENAME INBOX Saved")
    assert get_mailbox(srv, acct, "Saved").messages == 1
    assert get_mailbox(srv, acct, "INBOX").messages == 0
    raw.close()


def test_modified_utf7_names(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("CREATE Entw&APw-rfe/&ZeVnLIqe-")
    assert get_mailbox(srv, acct, "Entwürfe/日本語").selectable
    got = list_names(raw.ok('LIST "" Entw&APw-rfe/*'))
    assert "Entw&APw-rfe/&ZeVnLIqe-" in got
    raw.ok("SELECT Entw&APw-rfe/&ZeVnLIqe-")
    lines = raw.ok("STATUS Entw&APw-rfe (MESSAGES)")
    assert lines == [b"* STATUS Entw&APw-rfe (MESSAGES 0)"]
    raw.close()
    c = imapclient_login(srv, acct)
    c.create_folder("Ünïcødé")
    assert get_mailbox(srv, acct, "Ünïcødé")
    assert "Ünïcødé" in [f[2] for f in c.list_folders()]
    c.logout()


@pytest.mark.parametrize("name", [
    b'""',                     # empty
    b"a//b",                   # empty level
    b"/lead",                  # leading delimiter
    b"trail//",                # doubled trailing
    b"../etc",                 # N1
    b"a/./b",
    b"~root",
    b"&AGE-",                  # non-canonical mUTF-7 (N2)
    b"&Jjo",                   # broken mUTF-7
    b"{3}\r\n\xc3\xa9t",       # raw 8-bit: not mUTF-7
    b"Tab&AAk-name",           # control character
    b'"' + b"x" * 256 + b'"',  # level over 255 octets (N3)
])
def test_invalid_names_are_refused(srv, name: bytes) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    before = sorted(list_names(raw.ok('LIST "" *')))
    for verb in (b"CREATE ", b"RENAME Archive "):
        _, tagged = raw.command(verb + name)
        assert tagged.split(b" ")[1] == b"NO", (verb, tagged)
        assert b"[CANNOT]" in tagged or b"[NONEXISTENT]" in tagged
    assert sorted(list_names(raw.ok('LIST "" *'))) == before     # nothing changed
    raw.close()


def test_subscribe_lsub_and_list_subscribed(srv) -> None:
    acct = new_user(srv)
    raw = Raw(srv)
    raw.login(acct)
    raw.ok("CREATE lists/python")
    raw.ok("CREATE lists/rust")
    raw.ok("SUBSCRIBE lists/python")
    raw.ok("UNSUBSCRIBE Junk")
    lsub = list_names(raw.ok('LSUB "" *'))
    assert "lists/python" in lsub and "Junk" not in lsub and "INBOX" in lsub
    # `%` stops above a subscribed child: the parent shows as \Noselect.
    assert list_names(raw.ok('LSUB "" lists')) == {}
    assert list_names(raw.ok('LSUB "" %'))["lists"] == b"\\Noselect"
    sub = list_names(raw.ok('LIST (SUBSCRIBED) "" *'))
    assert b"\\Subscribed" in sub["lists/python"] and "lists/rust" not in sub
    rm = list_names(raw.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" %'))
    assert "lists" in rm
    lines = raw.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" %')
    assert any(x.endswith(b' ("CHILDINFO" ("SUBSCRIBED"))') for x in lines), lines
    ret = list_names(raw.ok('LIST "" lists/* RETURN (SUBSCRIBED CHILDREN)'))
    assert b"\\Subscribed" in ret["lists/python"] and b"\\Subscribed" not in ret["lists/rust"]
    # Subscribed but deleted: \NonExistent (RFC 5258 §3.1).
    raw.ok("DELETE lists/python")
    sub = list_names(raw.ok('LIST (SUBSCRIBED) "" lists/*'))
    assert b"\\NonExistent" in sub.get("lists/python", b"\\NonExistent")
    raw.close()


def test_status_items(srv) -> None:
    acct = new_user(srv)
    deliver(srv, acct, message("one"))
    deliver(srv, acct, message("two"), flags=("\\Seen",))
    deliver(srv, acct, message("three"), flags=("\\Deleted",))
    mb = get_mailbox(srv, acct)
    raw = Raw(srv)
    raw.login(acct)
    (line,) = raw.ok("STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN SIZE DELETED)")
    assert line == (b"* STATUS INBOX (MESSAGES 3 RECENT 3 UIDNEXT 4 UIDVALIDITY %d UNSEEN 2 "
                    b"SIZE %d DELETED 1)" % (mb.uidvalidity, mb.size))
    _, tagged = raw.command("STATUS nothing (MESSAGES)")
    assert b"NO [NONEXISTENT]" in tagged
    lines = raw.ok('LIST "" INBOX RETURN (STATUS (MESSAGES UNSEEN))')
    assert lines[1] == b"* STATUS INBOX (MESSAGES 3 UNSEEN 2)"
    raw.close()
    m = imaplib_login(srv, acct, tls="starttls")
    typ, data = m.status("INBOX", "(MESSAGES UNSEEN)")
    assert typ == "OK" and data[0] == b"INBOX (MESSAGES 3 UNSEEN 2)"
    m.logout()


def test_imaplib_mailbox_commands(srv) -> None:
    acct = new_user(srv)
    m = imaplib_login(srv, acct)
    assert m.create("Folder")[0] == "OK"
    assert m.rename("Folder", "Renamed")[0] == "OK"
    assert m.subscribe("Renamed")[0] == "OK"
    typ, data = m.lsub()
    assert typ == "OK" and any(b"Renamed" in d for d in data)
    assert m.unsubscribe("Renamed")[0] == "OK"
    typ, data = m.list('""', "R%")
    assert data == [b'(\\HasNoChildren) "/" Renamed']
    assert m.delete("Renamed")[0] == "OK"
    assert m.create("Renamed")[0] == "OK"
    m.logout()


def test_imapclient_mailbox_commands(srv) -> None:
    acct = new_user(srv)
    c = imapclient_login(srv, acct)
    c.create_folder("A/B")
    assert c.folder_exists("A/B")
    c.rename_folder("A/B", "A/C")
    c.subscribe_folder("A/C")
    assert "A/C" in [f[2] for f in c.list_sub_folders()]
    c.unsubscribe_folder("A/C")
    assert c.find_special_folder(b"\\Sent") == "Sent"
    st = c.folder_status("INBOX", ["MESSAGES", "UIDNEXT"])
    assert st[b"MESSAGES"] == 0 and st[b"UIDNEXT"] == 1
    c.delete_folder("A/C")
    assert not c.folder_exists("A/C")
    with pytest.raises(c.Error):
        c.select_folder("nope")
    c.logout()
