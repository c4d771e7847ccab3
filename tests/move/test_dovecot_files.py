"""The parsers of a Dovecot Maildir's files (casella.move.dovecot) and the folder reader built
on them: table tests of good and bad input, in the forms Dovecot 2.3 writes (the samples are
what Debian's Dovecot wrote in a private instance)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from casella.errors import UserError
from casella.move.common import SourceMessage, choose_uidls
from casella.move.dovecot import (
    DovecotFormatError,
    UidlistEntry,
    expand_uidl_format,
    folder_name,
    maildir_flags,
    parse_keywords,
    parse_subscriptions,
    parse_uidlist,
    split_filename,
)
from casella.move.dovecot_import import (
    DOVECOT_MODSEQ,
    find_users,
    folders,
    read_folder,
    read_passwd_file,
)

UIDLIST_V3 = ("3 V1796639883 N6 G571f39088b8c166b0816000083ecc375\n"
              "1 P000000016b168c8b :1796639883.M133840P5640.vm,S=51,W=56\n"
              "3 P000000036b168c8b W56 :1796639883.M175630P5640.vm,S=51,W=56\n"
              "5 :1796639883.M202895P5640.vm,S=51,W=56\n")


def test_uidlist_version_3() -> None:
    u = parse_uidlist(UIDLIST_V3)
    assert (u.uidvalidity, u.next_uid) == (1796639883, 6)
    assert u.entries == (
        UidlistEntry(1, "1796639883.M133840P5640.vm,S=51,W=56", {"P": "000000016b168c8b"}),
        UidlistEntry(3, "1796639883.M175630P5640.vm,S=51,W=56",
                     {"P": "000000036b168c8b", "W": "56"}),
        UidlistEntry(5, "1796639883.M202895P5640.vm,S=51,W=56", {}))


def test_uidlist_version_1_and_an_empty_folder() -> None:
    u = parse_uidlist("1 1100000000 9\n3 1100000000.1.host\n8 1100000001.2.host\n")
    assert (u.uidvalidity, u.next_uid) == (1100000000, 9)
    assert [(e.uid, e.filename) for e in u.entries] == [(3, "1100000000.1.host"),
                                                        (8, "1100000001.2.host")]
    empty = parse_uidlist("3 V1796639887 N1 G304abc0f8b8c166b0816000083ecc375\n")
    assert (empty.uidvalidity, empty.next_uid, empty.entries) == (1796639887, 1, ())
    # A next UID below the last entry (a damaged header) is lifted above it.
    assert parse_uidlist("3 V5 N2\n7 :a\n").next_uid == 8


@pytest.mark.parametrize("text, error", [
    ("", "empty header"),
    ("2 V1 N1\n", "version '2' is not supported"),
    ("3 N4\n", "lacks V or N"),
    ("3 Vx N4\n", "not a number"),
    ("3 V0 N4\n", "out of range"),
    ("3 V1 N4\n1 P1 no-colon\n", "bad line"),
    ("3 V1 N4\n2 :a\n2 :b\n", "does not ascend"),
    ("1 7\n", "bad version 1 header"),
    ("1 7 9\n4\n", "bad line"),
])
def test_bad_uidlists(text: str, error: str) -> None:
    with pytest.raises(DovecotFormatError, match=error):
        parse_uidlist(text)


def test_keywords_and_flags() -> None:
    keywords = parse_keywords("0 $Label1\n1 Junk\nbad line\n30 TooFar\n")
    assert keywords == {0: "$Label1", 1: "Junk"}
    assert split_filename("1796.M1P2.vm,S=51,W=56:2,Sab") == ("1796.M1P2.vm,S=51,W=56", "Sab")
    assert split_filename("1796.M1P2.vm,S=51") == ("1796.M1P2.vm,S=51", "")
    assert maildir_flags("DFPRSTabz", keywords) == (
        "\\Draft", "\\Flagged", "\\Answered", "\\Seen", "\\Deleted", "$Label1", "Junk")
    assert maildir_flags("", keywords) == ()


@pytest.mark.parametrize("dirname, name", [
    (".Sent", "Sent"), (".Lists.dev", "Lists/dev"), (".Gr&APwA3w-e", "Grüße"),
    (".a&-b", "a&b"), (".Über", "Über"),
])
def test_folder_names(dirname: str, name: str) -> None:
    assert folder_name(dirname) == name


@pytest.mark.parametrize("dirname", ["Sent", ".", "..", ".a..b", ".a.", ".bad&mutf7"])
def test_bad_folder_names(dirname: str) -> None:
    with pytest.raises(DovecotFormatError):
        folder_name(dirname)


def test_subscriptions_both_versions() -> None:
    assert parse_subscriptions("V\t2\n\nLists\tdev\nSent\nGr&APwA3w-e\ninbox\n") == [
        "Lists/dev", "Sent", "Grüße", "INBOX"]
    assert parse_subscriptions("Sent\nLists.dev\n\n") == ["Sent", "Lists/dev"]
    assert parse_subscriptions("") == []


@pytest.mark.parametrize("fmt, expected", [
    ("%08Xu%08Xv", "000000016b168c8b"),             # Dovecot's default, lower-case hex
    ("%u.%v", "1.1796639883"),
    ("%08u", "00000001"),
    ("%v-%f", "1796639883-1796.M1P2.vm"),
    ("%g", "abc"), ("%Uf", "1796.M1P2.VM"), ("%XUv", "6B168C8B"),
    ("100%%", "100%"), ("plain", "plain"),
])
def test_uidl_formats(fmt: str, expected: str) -> None:
    assert expand_uidl_format(fmt, 1, 1796639883, "1796.M1P2.vm", "abc") == expected


def test_guid_defaults_to_the_file_name() -> None:
    assert expand_uidl_format("%g", 1, 2, "base") == "base"


@pytest.mark.parametrize("fmt", ["%m", "%08Xm", "50%", "%{uid}", "%Xf"])
def test_unsupported_uidl_formats(fmt: str) -> None:
    with pytest.raises(DovecotFormatError):
        expand_uidl_format(fmt, 1, 2, "base")


def _msg(uid: int, uidl: str | None) -> SourceMessage:
    return SourceMessage(uid=uid, modseq=1, flags=(), internaldate=0, load=bytes,
                         pop3_uidl=uidl)


def test_choose_uidls_keeps_what_pop3_needs_and_only_that() -> None:
    """PROMISES U5: a UIDL equal to the derived one is not stored; duplicates, invalid ones
    and ones in casella's own form for another UID fall back to the derived UIDL."""
    v = 0x6B168C8B
    kept, dropped = choose_uidls([
        _msg(1, "000000016B168C8B"),       # what casella derives for UID 1: nothing to keep
        _msg(2, "000000026b168c8b"),       # Dovecot's lower-case form: kept
        _msg(3, "00000009" + "6B168C8B"),  # casella's form of UID 9: would clash later
        _msg(4, "dup"), _msg(5, "dup"),    # the second one goes
        _msg(6, "has space"),
        _msg(7, "taken-before"),
        _msg(8, None),
    ], v, taken=["taken-before"])
    assert kept == {2: "000000026b168c8b", 4: "dup"}
    assert dropped == [3, 5, 6, 7]


def _maildir(root: Path) -> Path:
    for sub in ("cur", "new", "tmp"):
        (root / sub).mkdir(parents=True)
    return root


def test_read_folder(tmp_path: Path) -> None:
    """UIDs from the uidlist, files it does not name yet after them (oldest first), flags
    and keywords from the names, the INTERNALDATE from the mtime, bodies with CRLF, POP3
    UIDLs from P or the format (INBOX only), every MODSEQ the import's own."""
    box = _maildir(tmp_path / "Maildir")
    (box / "dovecot-uidlist").write_text(
        "3 V1796639883 N6 G57\n1 P000000016b168c8b :one\n4 :four\n5 :five-gone\n")
    (box / "dovecot-keywords").write_text("0 $Label1\n")
    (box / "cur" / "one:2,Sa").write_bytes(b"Subject: one\n\nbody\n")
    (box / "cur" / "four:2,").write_bytes(b"Subject: four\r\n\r\nbody\r\n")
    (box / "new" / "late-b").write_bytes(b"Subject: b\n\n")
    (box / "new" / "late-a").write_bytes(b"Subject: a\n\n")
    os.utime(box / "cur" / "one:2,Sa", (1_700_000_000, 1_700_000_000))
    os.utime(box / "new" / "late-b", (1_700_000_500, 1_700_000_500))
    os.utime(box / "new" / "late-a", (1_700_000_900, 1_700_000_900))
    src = read_folder(box, "INBOX", "%u-%v", 999)
    assert (src.uidvalidity, src.uidnext, src.highestmodseq) == (1796639883, 8,
                                                                 DOVECOT_MODSEQ)
    assert [(m.uid, m.flags, m.pop3_uidl) for m in src.messages] == [
        (1, ("\\Seen", "$Label1"), "000000016b168c8b"), (4, (), "4-1796639883"),
        (6, (), "6-1796639883"), (7, (), "7-1796639883")]
    assert src.messages[0].internaldate == 1_700_000_000
    assert src.messages[2].load() == b"Subject: b\r\n\r\n"          # older unlisted first
    assert src.messages[0].load() == b"Subject: one\r\n\r\nbody\r\n"
    assert src.messages[1].load() == b"Subject: four\r\n\r\nbody\r\n"
    assert all(m.modseq == DOVECOT_MODSEQ for m in src.messages)
    sub = _maildir(tmp_path / "Maildir" / ".Sent")
    (sub / "cur" / "x:2,S").write_bytes(b"Subject: x\n\n")
    sent = read_folder(sub, "Sent", "%u", 1234)
    assert (sent.uidvalidity, sent.uidnext) == (1234, 2)           # no uidlist yet
    assert [(m.uid, m.pop3_uidl) for m in sent.messages] == [(1, None)]
    assert folders(box) == [("INBOX", box), ("Sent", sub)]


def test_find_users_by_layout_and_by_mapping(tmp_path: Path) -> None:
    _maildir(tmp_path / "example.test" / "alice" / "Maildir")
    _maildir(tmp_path / "example.test" / "bob")                    # the home is the Maildir
    (tmp_path / "example.test" / "nobody").mkdir()                  # no Maildir: left out
    _maildir(tmp_path / "other.test" / "Carol" / "Maildir")
    found = [(u.address, u.maildir.relative_to(tmp_path)) for u in find_users(tmp_path)]
    assert found == [("alice@example.test", Path("example.test/alice/Maildir")),
                     ("bob@example.test", Path("example.test/bob")),
                     ("carol@other.test", Path("other.test/Carol/Maildir"))]
    mapping = tmp_path / "map.txt"
    mapping.write_text("# address home\nboss@example.test example.test/alice\n")
    assert [(u.address, u.maildir) for u in find_users(tmp_path, mapping)] == [
        ("boss@example.test", tmp_path / "example.test" / "alice" / "Maildir")]
    mapping.write_text("boss@example.test example.test/nobody\n")
    with pytest.raises(UserError, match="no Maildir"):
        find_users(tmp_path, mapping)


def test_passwd_file_keeps_argon2_hashes_only(tmp_path: Path) -> None:
    f = tmp_path / "users"
    f.write_text("alice@example.test:{ARGON2ID}$argon2id$v=19$m=1024,t=1,p=1$abc$def::::::\n"
                 "bob@example.test:{SHA512-CRYPT}$6$salt$hash::::::\n"
                 "Carol@Example.test:$argon2i$v=19$m=8,t=1,p=1$abc$def\n"
                 "# comment\nnodomain:{ARGON2ID}$argon2id$x\n")
    assert read_passwd_file(f) == {
        "alice@example.test": "$argon2id$v=19$m=1024,t=1,p=1$abc$def",
        "carol@example.test": "$argon2i$v=19$m=8,t=1,p=1$abc$def"}
