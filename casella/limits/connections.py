"""Connection limits that hold across every worker process and every node: open connections
per client address (`limits.max_connections_per_ip`, all listeners together) and IMAP
sessions per user and address (`imap.max_connections_per_user_ip`, like Dovecot's
mail_max_userip_connections). Both are counted in the store (`Store.connections_*`), because
DESIGN.md puts the counters that limits depend on where every worker and node sees them: with
`[server] workers = 2` a user still gets the limit, not twice it.

Lives here: `ConnectionCounter`, one per server process, which holds that process's owner id
("<node>/<worker>": its counts are dropped when the worker is replaced or the node starts),
and the names of the counted keys. Must never: keep a count in this process's memory only,
or refuse a connection because the counts could not be reached (the connection is then let in
uncounted, and the log says so).
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass

from casella.errors import StorageError
from casella.store.base import Store

log = logging.getLogger("casella.limits")


def node_name() -> str:
    """This machine's name among the nodes sharing a store (its host name)."""
    return socket.gethostname() or "localhost"


def owner_id(worker: int, node: str | None = None) -> str:
    """The owner of the counts one server process holds: "<node>/<worker index>"."""
    return f"{node or node_name()}/{worker}"


def ip_key(ip: str) -> str:
    return f"ip:{ip}"


def user_ip_key(address: str, ip: str) -> str:
    return f"imap-user-ip:{address} {ip}"


@dataclass(frozen=True)
class Slot:
    """A connection let in: the keys it was counted against (none if the store could not be
    reached, so nothing is released for it)."""
    keys: tuple[str, ...]


class ConnectionCounter:
    def __init__(self, store: Store, owner: str) -> None:
        self.store = store
        self.owner = owner

    async def acquire(self, limits: Sequence[tuple[str, int]]) -> Slot | None:
        """Count a connection against each (key, limit): a Slot to release when the connection
        ends, or None when a key is already at its limit (nothing is counted then)."""
        try:
            refused = await self.store.connections_acquire(self.owner, limits)
        except StorageError as exc:
            log.warning("connection limits not checked (the counts are unavailable): %s", exc)
            return Slot(())
        if refused is not None:
            return None
        return Slot(tuple(k for k, _ in limits))

    async def release(self, slot: object | None) -> None:
        """The end of a connection counted by `acquire` (None, or any other object: nothing)."""
        if not isinstance(slot, Slot) or not slot.keys:
            return
        try:
            await self.store.connections_release(self.owner, slot.keys)
        except StorageError as exc:
            # Counted until this worker is replaced or the node restarts: worth knowing.
            log.warning("a connection's count was not released: %s", exc)

    async def acquire_ip(self, ip: str, limit: int) -> Slot | None:
        """limits.max_connections_per_ip, for a connection just accepted on any listener."""
        return await self.acquire([(ip_key(ip), limit)])

    async def acquire_user_ip(self, address: str, ip: str, limit: int) -> Slot | None:
        """imap.max_connections_per_user_ip, for an IMAP session that just logged in."""
        return await self.acquire([(user_ip_key(address, ip), limit)])

    async def forget_own(self) -> int:
        """Drop what this owner id holds: what the worker it replaces left counted (at start),
        or what is left when it stops."""
        return await self.store.connections_forget(self.owner)
