"""The running server's shared objects, handed to every protocol service.

Lives here: `App` (config, store, authenticator, TLS context). Must never: start listeners or
contain protocol logic.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from casella.auth.authenticator import Authenticator
from casella.config import Config, HostPort
from casella.store.base import Store


@dataclass
class App:
    config: Config
    store: Store
    auth: Authenticator
    tls_context: ssl.SSLContext
    # Where each listener is bound (a configured port 0 shows the port picked): what client
    # autoconfiguration tells mail programs.
    bound: dict[str, HostPort] = field(default_factory=dict)

    @property
    def hostname(self) -> str:
        return self.config.hostname
