"""The running server's shared objects, handed to every protocol service.

Lives here: `App` (config, store, authenticator, TLS context, spam filter). Must never: start
listeners or contain protocol logic.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from casella.auth.authenticator import Authenticator
from casella.config import Config
from casella.store.base import Store

if TYPE_CHECKING:
    from casella.delivery.spam import SpamFilter


@dataclass
class App:
    config: Config
    store: Store
    auth: Authenticator
    tls_context: ssl.SSLContext
    spam: SpamFilter | None = None      # [spam]: Rspamd checks and learning (issue 20)

    @property
    def hostname(self) -> str:
        return self.config.hostname
