"""The secret that signs the customer page's session cookies, kept in data_dir.

Lives here: `load_or_create`, which reads `data_dir/http-session.key` or creates it once (32
random bytes, mode 0600, written to a temporary file, fsynced and linked into place, so two
worker processes starting together end up with the same key). Every worker signs and checks
with it, so a session works whichever process a request reaches. Must never: log the key, or
replace an existing one (that would log every customer out).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

FILE_NAME = "http-session.key"
KEY_BYTES = 32


def load_or_create(data_dir: Path) -> bytes:
    path = data_dir / FILE_NAME
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = b""
    if len(key) >= KEY_BYTES:
        return key
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = data_dir / f".{FILE_NAME}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(secrets.token_bytes(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        try:
            # link() never replaces: if another process got there first, its key stands.
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(data_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    key = path.read_bytes()
    if len(key) < KEY_BYTES:
        raise OSError(f"{path} holds a key shorter than {KEY_BYTES} bytes")
    return key
