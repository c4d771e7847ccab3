"""The config file: schema of DESIGN.md, defaults, and one-line errors naming key and value."""

from __future__ import annotations

from pathlib import Path

import pytest

from casella.config import DEV_LISTEN, HostPort, config_from_mapping, load_config, parse_size
from casella.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "casella.toml"
    p.write_text(text)
    return p


def test_sizes() -> None:
    assert parse_size("512K") == 512 * 1024
    assert parse_size("50M") == 50 * 1024**2
    assert parse_size("1G") == 1024**3
    assert parse_size("1g") == 1024**3
    assert parse_size(1000) == 1000
    assert parse_size("1000") == 1000
    for bad in ("10Q", "", "M", "-1", "1.5G", True):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CASELLA_CONFIG", raising=False)
    cfg = load_config()
    assert cfg.data_dir == tmp_path / "var"
    assert {k: str(v) for k, v in cfg.listen.items()} == DEV_LISTEN
    assert cfg.limits.messages_per_hour == 180
    assert cfg.limits.defers_failures_per_hour == 5
    assert cfg.limits.defers_failures_percent == 55
    assert cfg.limits.max_message_size == 50 * 1024**2
    assert cfg.pop3.delete == "expunge"
    assert cfg.auth.allow_plaintext_without_tls is False


def test_full_file(tmp_path: Path) -> None:
    p = write(tmp_path, """
hostname = "mail.example.test"
data_dir = "data"
[listen]
imaps = "127.0.0.1:9993"
smtp = "[::1]:2525"
[tls]
cert = "/etc/c.pem"
key = "/etc/k.pem"
[auth]
allow_plaintext_without_tls = true
[store]
backend = "sqlite"
vacuum_threshold = "64M"
vacuum_step_pages = 128
vacuum_interval = 0.5
vacuum_check_interval = 300
[limits]
default_quota = "2G"
max_message_size = "25M"
messages_per_hour = 100
[pop3]
delete = "hide"
expire_days = 30
[delivery]
routes = { "example.org" = "127.0.0.1:2526" }
""")
    cfg = load_config(p)
    assert cfg.hostname == "mail.example.test"
    assert cfg.data_dir == tmp_path / "data"
    assert cfg.listen == {"imaps": HostPort("127.0.0.1", 9993), "smtp": HostPort("::1", 2525)}
    assert cfg.tls.cert == Path("/etc/c.pem")
    assert cfg.limits.default_quota == 2 * 1024**3 and cfg.limits.max_message_size == 25 << 20
    assert cfg.pop3.delete == "hide" and cfg.pop3.expire_days == 30
    assert cfg.delivery.routes == {"example.org": HostPort("127.0.0.1", 2526)}
    assert (cfg.store.vacuum_threshold, cfg.store.vacuum_step_pages, cfg.store.vacuum_interval,
            cfg.store.vacuum_check_interval) == (64 << 20, 128, 0.5, 300.0)


def test_env_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, 'hostname = "from.env.test"\n')
    monkeypatch.setenv("CASELLA_CONFIG", str(p))
    assert load_config().hostname == "from.env.test"


@pytest.mark.parametrize("text, needle", [
    ('frobnicate = 1\n', "unknown key frobnicate"),
    ('[limits]\nmax_quota = "1G"\n', "unknown key limits.max_quota"),
    ('[listen]\nimap = "nowhere"\n', "listen.imap = 'nowhere'"),
    ('[listen]\nimap = "127.0.0.1:99999"\n', "listen.imap"),
    ('[listen]\ngopher = "127.0.0.1:70"\n', "unknown key listen.gopher"),
    ('[limits]\ndefault_quota = "10Q"\n', "limits.default_quota = '10Q'"),
    ('[limits]\nmessages_per_hour = -1\n', "limits.messages_per_hour"),
    ('[limits]\ndefers_failures_percent = 101\n', "limits.defers_failures_percent"),
    ('[auth]\nverified_cache_ttl = -5\n', "auth.verified_cache_ttl = -5"),
    ('[server]\nevent_loop = "trio"\n', "server.event_loop = 'trio'"),
    ('[pop3]\ndelete = "shred"\n', "pop3.delete = 'shred'"),
    ('[store]\nbackend = "mysql"\n', "store.backend = 'mysql'"),
    ('[store]\nbackend = "postgres"\n', "store.dsn"),
    # issue 21: the online vacuum
    ('[store]\nvacuum_threshold = "much"\n', "store.vacuum_threshold = 'much'"),
    ('[store]\nvacuum_step_pages = -1\n', "store.vacuum_step_pages = -1"),
    ('[store]\nsearch_index = "yes"\n', "store.search_index"),
    ('[store]\nvacuum_interval = 0\n', "store.vacuum_interval = 0"),
    ('[store]\nvacuum_check_interval = 0.5\n', "store.vacuum_check_interval = 0.5"),
    ('[tls]\ncert = "/x.pem"\n', "tls"),
    ('[auth]\nallow_plaintext_without_tls = "yes"\n', "auth.allow_plaintext_without_tls"),
    ('hostname = "bad host"\n', "hostname = 'bad host'"),
    ('[delivery]\nroutes = { "a.test" = "x" }\n', "delivery.routes.a.test"),
    ('not toml at all [\n', "not valid TOML"),
    # issue 20: [sieve], [managesieve], [srs], [forwarding]
    ('[sieve]\nmax_redirects = 0\n', "sieve.max_redirects = 0"),
    ('[sieve]\nmax_script_size = "lots"\n', "sieve.max_script_size = 'lots'"),
    ('[sieve]\nmax_variable_size = 100\n', "sieve.max_variable_size = 100"),
    ('[sieve]\nmax_nesting = 1000\n', "sieve.max_nesting = 1000"),
    ('[sieve]\nenabled = "yes"\n', "sieve.enabled = 'yes'"),
    ('[sieve]\nvacation_default_days = 90\n', "sieve.vacation_default_days = 90"),
    ('[sieve]\nmax_run_time = 1000\n', "sieve.max_run_time = 1000"),
    ('[sieve]\nscripts = 3\n', "unknown key sieve.scripts"),
    ('[managesieve]\nidle_timeout = 0\n', "managesieve.idle_timeout = 0"),
    ('[srs]\ndomain = "not a domain"\n', "srs.domain = 'not a domain'"),
    ('[srs]\nmax_age_days = 0\n', "srs.max_age_days = 0"),
    ('[forwarding]\nmax_hops = -1\n', "forwarding.max_hops = -1"),
    ('[listen]\nmanagesieve = "x"\n', "listen.managesieve = 'x'"),
])
def test_bad_values_name_key_and_value(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    message = str(err.value)
    assert needle in message
    assert "\n" not in message


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.toml")


def test_protocol_limits(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "[imap]\nidle_timeout = 3600\n[smtp]\nmax_recipients = 50\n"
                                      "[pop3]\nidle_timeout = 900\n"))
    assert cfg.imap.idle_timeout == 3600 and cfg.imap.max_connections_per_user_ip == 10
    assert cfg.smtp.max_recipients == 50 and cfg.smtp.command_timeout == 300
    assert cfg.pop3.idle_timeout == 900 and cfg.pop3.delete == "expunge"
    for text, needle in (("[imap]\nidle_timeout = 0\n", "imap.idle_timeout"),
                         ("[smtp]\nbogus = 1\n", "unknown key smtp.bogus"),
                         ('[pop3]\nline_timeout = "x"\n', "pop3.line_timeout")):
        with pytest.raises(ConfigError, match=needle):
            load_config(write(tmp_path, text))


def test_event_loop_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """[server] event_loop: auto takes uvloop when it can be imported and falls back quietly;
    asking for uvloop without it installed stops start-up with one clear line."""
    import asyncio
    import sys

    from casella import eventloop

    assert eventloop.loop_factory("asyncio") is asyncio.new_event_loop
    loop = eventloop.new_event_loop("auto")
    try:
        expected = "uvloop" if eventloop.loop_factory("auto") is not asyncio.new_event_loop \
            else "asyncio"
        assert type(loop).__module__.split(".")[0] == expected
    finally:
        loop.close()
    assert eventloop.run(asyncio.sleep(0, "done"), "auto") == "done"
    monkeypatch.setitem(sys.modules, "uvloop", None)     # as if not installed
    assert eventloop.loop_factory("auto") is asyncio.new_event_loop
    assert config_from_mapping({"server": {"event_loop": "auto"}}).server.event_loop == "auto"
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        config_from_mapping({"server": {"event_loop": "uvloop"}})


def test_proxy_protocol_keys(tmp_path: Path) -> None:
    """[listen] proxy_protocol_from / proxy_protocol_timeout (issue 19): networks, seconds,
    and a one-line error naming the key for anything else."""
    import ipaddress

    cfg = load_config(write(tmp_path, '[listen]\nimap = "127.0.0.1:143"\n'
                                      'proxy_protocol_from = ["10.0.0.0/8", "2001:db8::/32", '
                                      '"192.0.2.7"]\nproxy_protocol_timeout = 2.5\n'))
    assert cfg.listen == {"imap": HostPort("127.0.0.1", 143)}
    assert cfg.proxy_protocol.trusted == (ipaddress.ip_network("10.0.0.0/8"),
                                          ipaddress.ip_network("2001:db8::/32"),
                                          ipaddress.ip_network("192.0.2.7/32"))
    assert cfg.proxy_protocol.timeout == 2.5
    plain = load_config(write(tmp_path, '[listen]\nimap = "127.0.0.1:143"\n'))
    assert plain.proxy_protocol.trusted == () and plain.proxy_protocol.timeout == 5.0
    for text, needle in (
            ('proxy_protocol_from = "10.0.0.0/8"', "listen.proxy_protocol_from = '10.0.0.0/8'"),
            ('proxy_protocol_from = ["10.0.0.1/8"]', "listen.proxy_protocol_from: '10.0.0.1/8'"),
            ('proxy_protocol_from = ["everyone"]', "listen.proxy_protocol_from: 'everyone'"),
            ('proxy_protocol_timeout = 0', "listen.proxy_protocol_timeout = 0"),
            ('proxy_protocol_timeout = 301', "listen.proxy_protocol_timeout = 301"),
            ('proxy_protocol_timeout = "5s"', "listen.proxy_protocol_timeout = '5s'")):
        with pytest.raises(ConfigError) as err:
            load_config(write(tmp_path, f'[listen]\nimap = "127.0.0.1:143"\n{text}\n'))
        assert needle in str(err.value) and "\n" not in str(err.value)


def test_delivery_sections(tmp_path: Path) -> None:
    """Issue 20: the defaults, and values as an admin writes them."""
    cfg = load_config(write(tmp_path, '[sieve]\nmax_script_size = "32K"\nmax_redirects = 2\n'
                                      '[srs]\ndomain = "fwd.example.com"\n'
                                      '[forwarding]\nmax_hops = 10\n'))
    assert cfg.sieve.max_script_size == 32 * 1024 and cfg.sieve.max_redirects == 2
    assert cfg.sieve.max_scripts == 16 and cfg.sieve.enabled
    assert cfg.srs.domain == "fwd.example.com" and cfg.srs.max_age_days == 21
    assert cfg.forwarding.max_hops == 10 and cfg.managesieve.idle_timeout == 1800
