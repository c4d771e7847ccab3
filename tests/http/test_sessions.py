"""Session cookies and CSRF tokens (casella.http.sessions) and the key that signs them
(casella.auth.sessionkey): signed, expiring, bound to the password, shared by processes."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest

from casella.auth import sessionkey
from casella.config import config_from_mapping
from casella.errors import ConfigError
from casella.http.sessions import SessionCodec

KEY = b"k" * 32


def test_round_trip_and_logged_in() -> None:
    codec = SessionCodec(KEY, 3600)
    anon = codec.new(now=1000)
    assert not anon.logged_in and anon.expires == 4600
    assert codec.decode(codec.encode(anon), now=1001) == anon
    user = codec.new(7, "$argon2id$hash", now=1000)
    assert user.logged_in and user.fingerprint == codec.fingerprint("$argon2id$hash")
    assert codec.fingerprint("$argon2id$hash") != codec.fingerprint("$argon2id$other")
    assert "argon2" not in codec.encode(user)
    assert user.sid != anon.sid


@pytest.mark.parametrize("mangle", [
    lambda v: v[:-1] + ("A" if v[-1] != "A" else "B"),       # signature changed
    lambda v: "x" + v,                                        # payload changed
    lambda v: v.replace(".", ""), lambda v: v + ".x", lambda v: "", lambda v: "a" * 5000,
    lambda v: "!!!.???",
])
def test_tampered_cookies_are_refused(mangle) -> None:
    codec = SessionCodec(KEY, 3600)
    value = codec.encode(codec.new(1, "h", now=1000))
    assert codec.decode(mangle(value), now=1001) is None


def test_expired_and_other_key() -> None:
    """[http] session_lifetime: a session is refused from its end on."""
    codec = SessionCodec(KEY, 60)
    value = codec.encode(codec.new(1, "h", now=1000))
    assert codec.decode(value, now=1059) is not None
    assert codec.decode(value, now=1060) is None
    assert SessionCodec(b"o" * 32, 60).decode(value, now=1001) is None


def test_csrf_token_is_bound_to_the_session() -> None:
    codec = SessionCodec(KEY, 3600)
    a, b = codec.new(), codec.new()
    assert codec.check_csrf(a, codec.csrf_token(a))
    assert not codec.check_csrf(a, codec.csrf_token(b))
    assert not codec.check_csrf(a, "") and not codec.check_csrf(None, codec.csrf_token(a))
    assert not codec.check_csrf(a, "é" * 10)


def _load(path: str, queue: multiprocessing.Queue) -> None:
    queue.put(sessionkey.load_or_create(Path(path)))


def test_key_is_created_once_and_shared(tmp_path: Path) -> None:
    """Processes starting together end with one key; it is kept across restarts, mode 0600."""
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue = ctx.Queue()
    procs = [ctx.Process(target=_load, args=(str(tmp_path), queue)) for _ in range(4)]
    for p in procs:
        p.start()
    keys = {queue.get(timeout=30) for _ in procs}
    for p in procs:
        p.join(30)
    assert len(keys) == 1
    key = keys.pop()
    assert len(key) == sessionkey.KEY_BYTES
    assert sessionkey.load_or_create(tmp_path) == key
    mode = (tmp_path / sessionkey.FILE_NAME).stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == [sessionkey.FILE_NAME]


@pytest.mark.parametrize("table,message", [
    ({"nope": 1}, "unknown key http.nope"),
    ({"max_body_size": "12"}, "http.max_body_size = '12': expected at least 1K"),
    ({"max_body_size": "big"}, "http.max_body_size = 'big'"),
    ({"request_timeout": 0}, "http.request_timeout = 0"),
    ({"session_lifetime": "5s"}, "http.session_lifetime = '5s': expected at least 60"),
    ({"mta_sts_mode": "strict"}, "http.mta_sts_mode = 'strict'"),
    ({"mta_sts_max_age": "400d"}, "http.mta_sts_max_age = '400d'"),
])
def test_bad_http_config_is_one_line(table: dict, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_mapping({"http": table})
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_http_config_defaults_and_values() -> None:
    d = config_from_mapping({}).http
    assert (d.max_body_size, d.request_timeout, d.session_lifetime, d.mta_sts_mode,
            d.mta_sts_max_age) == (1024 * 1024, 30, 8 * 3600, "enforce", 7 * 86400)
    c = config_from_mapping({"http": {"max_body_size": "64K", "request_timeout": 10,
                                      "session_lifetime": "1h", "mta_sts_mode": "testing",
                                      "mta_sts_max_age": 86400}}).http
    assert (c.max_body_size, c.request_timeout, c.session_lifetime, c.mta_sts_mode,
            c.mta_sts_max_age) == (65536, 10, 3600, "testing", 86400)
    dev = config_from_mapping({}).listen
    assert str(dev["https"]) == "127.0.0.1:8443" and str(dev["http"]) == "127.0.0.1:8080"
