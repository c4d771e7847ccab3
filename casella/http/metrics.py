"""GET /metrics: casella's metrics in Prometheus text format, for the HTTP listener to mount.

Lives here: `routes(app)`, the route of /metrics (casella.http.server adds it to its
application), and the scrape: the counts of every worker process (casella.metrics) followed by
gauges read from the store at that moment (domains, accounts, holds, queue size and age).
Must never: answer a client outside `[http] admin_from`, or read the metrics files on the
event loop.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from casella import metrics
from casella.app import App
from casella.http.access import admin_allowed


def routes(app: App) -> list[web.RouteDef]:
    async def scrape(request: web.Request) -> web.Response:
        if not admin_allowed(app.config, request.remote):
            return web.Response(status=403, text="forbidden: not in [http] admin_from\n")
        stats = await app.store.stats()
        oldest = max(time.time() - stats.queue_oldest, 0.0) if stats.queue_oldest else 0.0
        gauges = metrics.store_gauges(
            domains=stats.domains, accounts=stats.accounts,
            accounts_sending_held=stats.accounts_sending_held,
            queue_messages=stats.queue_entries, queue_recipients=stats.queue_recipients,
            queue_oldest_seconds=oldest)
        body = await asyncio.to_thread(metrics.render, gauges)
        return web.Response(body=body, headers={"Content-Type": metrics.CONTENT_TYPE})

    return [web.get("/metrics", scrape)]
