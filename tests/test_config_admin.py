"""The config keys of issue 18 on the admin side: `[http] admin_from` and `[dns] resolver`
(and `[http] max_body_size`, which the admin API reads): defaults, good values, and one line
naming the key for a bad one."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from casella.config import load_config
from casella.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "casella.toml"
    path.write_text(text)
    return path


def test_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, ""))
    assert cfg.http.admin_from == (ipaddress.ip_network("127.0.0.0/8"),
                                   ipaddress.ip_network("::1/128"))
    assert cfg.http.max_body_size == 1024**2
    assert cfg.dns.resolver == ()


def test_values(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[http]\nadmin_from = ["10.0.0.0/8", "192.0.2.7", '
                                      '"2001:db8::/32"]\nmax_body_size = "64K"\n'
                                      '[dns]\nresolver = ["192.0.2.53", "127.0.0.1:5353", '
                                      '"[::1]:53"]\n'))
    assert [str(n) for n in cfg.http.admin_from] == ["10.0.0.0/8", "192.0.2.7/32",
                                                     "2001:db8::/32"]
    assert cfg.http.max_body_size == 64 * 1024
    assert cfg.dns.resolver == (("192.0.2.53", 53), ("127.0.0.1", 5353), ("::1", 53))


@pytest.mark.parametrize("text, needle", [
    ('[http]\nadmin_from = "127.0.0.1"\n', "http.admin_from = '127.0.0.1'"),
    ('[http]\nadmin_from = ["everyone"]\n', "http.admin_from = 'everyone'"),
    ('[http]\nadmin_from = [10]\n', "http.admin_from = 10"),
    ('[http]\nmax_body_size = "huge"\n', "http.max_body_size = 'huge'"),
    ('[http]\nmax_body_size = 100\n', "http.max_body_size = 100"),
    ('[http]\nbogus = 1\n', "unknown key http.bogus"),
    ('[dns]\nresolver = "127.0.0.1"\n', "dns.resolver = '127.0.0.1'"),
    ('[dns]\nresolver = ["ns.example.net"]\n', "dns.resolver = 'ns.example.net'"),
    ('[dns]\nresolver = ["127.0.0.1:70000"]\n', "dns.resolver = '127.0.0.1:70000'"),
    ('[dns]\nmta_sts_mode = "strict"\n', "unknown key dns.mta_sts_mode"),
    ('[dns]\nbogus = 1\n', "unknown key dns.bogus"),
])
def test_bad_values_name_key_and_value(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert needle in str(err.value) and "\n" not in str(err.value)
