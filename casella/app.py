"""The running server's shared objects, handed to every protocol service.

Lives here: `App` (config, store, authenticator, TLS context, the connection counter this
process counts with, the spam filter). Must never: start listeners or contain protocol
logic.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from casella.auth.authenticator import Authenticator
from casella.config import Config, HostPort
from casella.limits.connections import ConnectionCounter
from casella.store.base import Store

if TYPE_CHECKING:
    from casella.delivery.spam import SpamFilter


@dataclass
class App:
    config: Config
    store: Store
    auth: Authenticator
    tls_context: ssl.SSLContext
    connections: ConnectionCounter
    # Where each listener is bound (a configured port 0 shows the port picked): what client
    # autoconfiguration tells mail programs.
    bound: dict[str, HostPort] = field(default_factory=dict)
    spam: SpamFilter | None = None      # [spam]: Rspamd checks and learning (issue 20)

    @property
    def hostname(self) -> str:
        return self.config.hostname
