"""SRS against the published vectors of postsrsd's black-box test (secret "tops3cr3t", domain
example.com, 2020-01-01 00:01 UTC), as libsrs2 computes them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from casella.delivery.srs import Srs, SrsError

NOW = datetime(2020, 1, 1, 0, 1, tzinfo=UTC).timestamp()
SRS = Srs([b"tops3cr3t"], "example.com", max_age_days=21)
LONG = "a" * (512 - 9)

FORWARD = [
    ("test@example.com", "test@example.com"),          # our own domain: no rewrite
    ("test@otherdomain.com", "SRS0=vmyz=2W=otherdomain.com=test@example.com"),
    ("testing@otherdomain.com", "SRS0=rNNq=2W=otherdomain.com=testing@example.com"),
    ("SRS0=opaque+string@otherdomain.com",
     "SRS1=chaI=otherdomain.com==opaque+string@example.com"),
    ("SRS1=X=thirddomain.com==opaque+string@otherdomain.com",
     "SRS1=JIBX=thirddomain.com==opaque+string@example.com"),
    (f"test@{LONG}.net", f"SRS0=G7tR=2W={LONG}.net=test@example.com"),
]


@pytest.mark.parametrize("sender,rewritten", FORWARD)
def test_forward(sender: str, rewritten: str) -> None:
    assert SRS.forward(sender, now=NOW) == rewritten


@pytest.mark.parametrize("sender", ["foo", "", "@x.test", "SRS1=X=thirddomain.com@other.com"])
def test_forward_refuses(sender: str) -> None:
    with pytest.raises(SrsError):
        SRS.forward(sender, now=NOW)


REVERSE = [
    ("SRS0=XjO9=2V=otherdomain.com=test@example.com", "test@otherdomain.com"),
    ("SRS1=JIBX=thirddomain.com==opaque+string@example.com",
     "SRS0=opaque+string@thirddomain.com"),
    ("srs0=xjo9=2v=otherdomain.com=test@example.com", "test@otherdomain.com"),
    ("SRS0=XJO9=2V=OTHERDOMAIN.COM=TEST@EXAMPLE.COM", "TEST@OTHERDOMAIN.COM"),
    (f"SRS0=G7tR=2W={LONG}.net=test@example.com", f"test@{LONG}.net"),
]


@pytest.mark.parametrize("address,original", REVERSE)
def test_reverse(address: str, original: str) -> None:
    assert SRS.reverse(address, now=NOW) == original


BAD_REVERSE = [
    ("test@example.com", "not an SRS"),
    ("SRS0=te87=T7=otherdomain.com=test@example.com", "expired"),     # 6 months old
    ("SRS0=VcIb=7N=otherdomain.com=test@example.com", "expired"),     # 6 months ahead
    ("SRS0=FAKE=2V=otherdomain.com=test@example.com", "hash"),
    ("SRS0=@example.com", "malformed"),
    ("SRS0=XjO9@example.com", "malformed"),
    ("SRS0=XjO9=2V@example.com", "malformed"),
    ("SRS0=XjO9=2V=otherdomain.com@example.com", "malformed"),
    ("", "not an SRS"),
    ("some random string", "not an SRS"),
    ("SRS1-@example.com", "malformed"),
    ("SRS1=XXXX=thirddomain.com==opaque+string@example.com", "hash"),
    ("SRS0=XjO9=00=otherdomain.com=test@example.com", "timestamp"),
]


@pytest.mark.parametrize("address,why", BAD_REVERSE)
def test_reverse_refuses(address: str, why: str) -> None:
    with pytest.raises(SrsError, match=why):
        SRS.reverse(address, now=NOW)


def test_round_trip_and_rotation() -> None:
    """A bounce to an address signed with the previous secret is still reversed."""
    old = Srs([b"old-secret"], "fwd.example")
    new = Srs([b"new-secret", b"old-secret"], "fwd.example")
    address = old.forward("someone@sender.example", now=NOW)
    assert new.reverse(address, now=NOW + 86400 * 3) == "someone@sender.example"
    with pytest.raises(SrsError, match="expired"):
        new.reverse(address, now=NOW + 86400 * 22)
