"""Installing the peers from Debian's packages when they are missing.

Lives here: `missing(names)` (dpkg's view) and `ensure(names, log)`, which runs apt-get with
Postfix pre-answered "No configuration" (so the package writes no /etc/postfix/main.cf) and,
when the machine has no /usr/sbin/policy-rc.d, a temporary one that forbids starting services:
installing must never start or restart the system's dovecot or postfix. The bench runs its own
instances from bench/peers/.

Must never: start, stop or reconfigure a system service; remove packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

DOVECOT_PACKAGES = ("dovecot-core", "dovecot-imapd", "dovecot-pop3d")
POSTFIX_PACKAGES = ("postfix",)
_POLICY = Path("/usr/sbin/policy-rc.d")


def missing(packages: tuple[str, ...]) -> list[str]:
    out = []
    for pkg in packages:
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Status}", pkg], capture_output=True,
                           text=True, check=False)
        if r.returncode != 0 or "install ok installed" not in r.stdout:
            out.append(pkg)
    return out


def version(package: str) -> str:
    r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True,
                       text=True, check=False)
    return r.stdout.strip() if r.returncode == 0 else ""


def ensure(packages: tuple[str, ...], log: Callable[[str], None],
           allow_install: bool = True) -> str | None:
    """Install what is missing. Returns None when everything is there, else why not."""
    if shutil.which("dpkg-query") is None:
        return "not a Debian system (no dpkg-query)"
    todo = missing(packages)
    if not todo:
        return None
    if not allow_install:
        return f"not installed: {' '.join(todo)} (--no-install)"
    if os.geteuid() != 0:
        return f"not installed: {' '.join(todo)}, and installing needs root"
    if shutil.which("apt-get") is None:
        return "apt-get not found"
    log(f"installing {' '.join(todo)} with apt-get (system services are not started)")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    made_policy = False
    try:
        if not _POLICY.exists():
            _POLICY.write_text("#!/bin/sh\n# casella bench: no service starts during install\n"
                               "exit 101\n")
            _POLICY.chmod(0o755)
            made_policy = True
        subprocess.run(["debconf-set-selections"],
                       input="postfix postfix/main_mailer_type select No configuration\n",
                       text=True, capture_output=True, env=env, check=False)
        upd = subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True,
                             env=env, timeout=600, check=False)
        if upd.returncode != 0:
            log(f"apt-get update failed: {upd.stderr.strip()[-300:]}")
        r = subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *todo],
                           capture_output=True, text=True, env=env, timeout=900, check=False)
        if r.returncode != 0:
            return f"apt-get install {' '.join(todo)} failed: {r.stderr.strip()[-300:]}"
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"installing {' '.join(todo)} failed: {exc}"
    finally:
        if made_policy:
            _POLICY.unlink(missing_ok=True)
    still = missing(packages)
    return f"still missing after apt-get: {' '.join(still)}" if still else None
