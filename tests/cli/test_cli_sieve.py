"""`casella sieve ...` and `casella user forward ...` through the real console script (issue
20): exit 0, 1 with one line on stderr (a script that does not compile names its line and is
never stored), 2 for bad usage."""

from __future__ import annotations

import pytest

from tests.cli.test_cli import cli as cli_fixture
from tests.cli.util import fails, ok

cli = cli_fixture


@pytest.fixture
def user(cli):  # type: ignore[no-untyped-def]
    ok(cli("domain", "add", "example.test"))
    ok(cli("user", "add", "bob@example.test", "--password-stdin", stdin="pw\n"))
    return cli


def test_sieve_put_list_get_activate_deactivate_delete(user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "s.sieve"
    script.write_text('require "fileinto";\nfileinto "Lists";\n')
    assert "stored" in ok(user("sieve", "put", "bob@example.test", "main", str(script)))
    ok(user("sieve", "put", "bob@example.test", "other", stdin="keep;\n"))
    ok(user("sieve", "activate", "bob@example.test", "main"))
    listing = ok(user("sieve", "list", "bob@example.test"))
    assert "main\t" in listing and "(active)" in listing.splitlines()[0]
    assert ok(user("sieve", "get", "bob@example.test", "main")) == script.read_text()
    assert "active" in fails(user("sieve", "delete", "bob@example.test", "main"))
    ok(user("sieve", "deactivate", "bob@example.test"))
    ok(user("sieve", "delete", "bob@example.test", "main"))
    assert ok(user("sieve", "list", "bob@example.test")).startswith("other\t")


def test_sieve_errors(user, tmp_path) -> None:  # type: ignore[no-untyped-def]
    err = fails(user("sieve", "put", "bob@example.test", "bad", stdin="keep;\nfrob;\n"))
    assert "line 2: unknown command 'frob'" in err
    assert ok(user("sieve", "list", "bob@example.test")) == ""
    assert "does not exist" in fails(user("sieve", "list", "nobody@example.test"))
    assert "no script" in fails(user("sieve", "get", "bob@example.test", "nope"))
    fails(user("sieve", "activate", "bob@example.test", "nope"))
    fails(user("sieve", "put", "bob@example.test", "x", str(tmp_path / "missing")))
    fails(user("sieve", "frob"), code=2)
    fails(user("sieve", "put", "bob@example.test"), code=2)


def test_user_forward(user) -> None:  # type: ignore[no-untyped-def]
    out = ok(user("user", "forward", "bob@example.test", "a@remote.test", "--keep"))
    assert "a@remote.test" in out and "a copy is kept" in out
    ok(user("user", "forward", "bob@example.test", "--off"))
    assert "itself" in fails(user("user", "forward", "bob@example.test", "BOB@example.test"))
    assert "bad forwarding address" in fails(user("user", "forward", "bob@example.test",
                                                  "not-an-address"))
    fails(user("user", "forward", "bob@example.test"))
    many = [f"x{i}@remote.test" for i in range(6)]
    assert "at most 5" in fails(user("user", "forward", "bob@example.test", *many))
