"""The configuration of what happens to mail as it arrives (issue 20): `[sieve]` (the bounds of
a customer's filters and vacation replies), `[managesieve]` (the listener's timeouts and script
quotas), `[srs]` (the Sender Rewriting Scheme) and `[forwarding]` (account forwards and loops).

Lives here: those frozen sections with their defaults and `delivery_sections`, which
casella.config calls to validate them with its one-line errors. Must never: open sockets,
touch the store, or read a file (the SRS secret file is read by casella.delivery.filtering).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from casella.errors import ConfigError


@dataclass(frozen=True)
class SieveConfig:
    enabled: bool = True                  # run the account's active script at delivery
    max_script_size: int = 64 * 1024      # bytes of one script
    max_scripts: int = 16                 # scripts per account
    max_nesting: int = 15                 # blocks and tests nested in one another
    max_commands: int = 2000              # commands and tests in one script
    max_steps: int = 100_000              # work of one run (tests, commands, comparisons)
    max_run_time: float = 2.0             # seconds of one run
    max_actions: int = 32                 # fileinto, redirect, vacation... of one run
    max_redirects: int = 4                # redirect actions of one run
    max_variables: int = 128
    max_variable_size: int = 4096         # bytes; RFC 5229 §5 asks for at least 4000
    max_body_size: int = 1024 * 1024      # bytes of a message the body test looks at
    vacation_default_days: int = 7        # RFC 5230 §4.1
    vacation_min_days: int = 1
    vacation_max_days: int = 30


@dataclass(frozen=True)
class ManageSieveConfig:
    login_timeout: int = 60               # seconds to log in after connecting
    idle_timeout: int = 1800              # seconds without a command once logged in
    line_timeout: int = 60                # a started command line must end within this
    max_bad_commands: int = 20            # protocol errors per connection, then BYE
    max_auth_failures: int = 3            # per connection, then BYE


@dataclass(frozen=True)
class SrsConfig:
    domain: str = ""                      # "" = hostname; must reach this server's MX
    secret: str = ""                      # "" = a random one kept in data_dir/srs.secret
    max_age_days: int = 21                # a bounce to an older SRS address is refused


@dataclass(frozen=True)
class ForwardingConfig:
    max_destinations: int = 5             # addresses of one account forward
    max_hops: int = 25                    # Delivered-To fields before mail is kept, not sent on


_SIZE_KEYS = {"max_script_size", "max_variable_size", "max_body_size"}


def _section_values(cls: type, name: str, table: Mapping[str, object]) -> dict[str, Any]:
    from casella.config import _check_keys, _expect, _field_names, _int, _seconds, _size

    _check_keys(name, table, _field_names(cls))
    defaults = cls()
    out: dict[str, Any] = {}
    for f in fields(cls):
        key = f"{name}.{f.name}"
        value = table.get(f.name, getattr(defaults, f.name))
        if f.type == "bool":
            out[f.name] = _expect(key, value, bool, "true or false")
        elif f.type == "str":
            out[f.name] = _expect(key, value, str, "a string")
        elif f.type == "float":
            out[f.name] = _seconds(key, value, 60.0)
        elif f.name in _SIZE_KEYS:
            out[f.name] = _size(key, value)
        else:
            out[f.name] = _int(key, value, 1)
    return out


def delivery_sections(raw: Mapping[str, object]
                      ) -> tuple[SieveConfig, ManageSieveConfig, SrsConfig, ForwardingConfig]:
    from casella.config import _section

    sieve_values = _section_values(SieveConfig, "sieve", _section(raw, "sieve"))
    if sieve_values["max_variable_size"] < 4000:
        raise ConfigError(f"sieve.max_variable_size = {sieve_values['max_variable_size']}: "
                          "RFC 5229 asks for at least 4000 bytes")
    if sieve_values["max_script_size"] > 16 * 1024 * 1024:
        raise ConfigError(f"sieve.max_script_size = {sieve_values['max_script_size']}: "
                          "expected at most 16M")
    if sieve_values["max_nesting"] > 100:
        raise ConfigError(f"sieve.max_nesting = {sieve_values['max_nesting']}: expected at "
                          "most 100")
    sieve = SieveConfig(**sieve_values)
    if not sieve.vacation_min_days <= sieve.vacation_default_days <= sieve.vacation_max_days:
        raise ConfigError(f"sieve.vacation_default_days = {sieve.vacation_default_days}: "
                          "expected between vacation_min_days and vacation_max_days")
    managesieve = ManageSieveConfig(**_section_values(ManageSieveConfig, "managesieve",
                                                      _section(raw, "managesieve")))
    srs_values = _section_values(SrsConfig, "srs", _section(raw, "srs"))
    domain = srs_values["domain"]
    if domain and ("@" in domain or " " in domain or "." not in domain.strip(".")):
        raise ConfigError(f"srs.domain = {domain!r}: expected a domain name")
    srs = SrsConfig(**srs_values)
    forwarding = ForwardingConfig(**_section_values(ForwardingConfig, "forwarding",
                                                    _section(raw, "forwarding")))
    return sieve, managesieve, srs, forwarding


def srs_secret_path(data_dir: Path) -> Path:
    return data_dir / "srs.secret"
