"""Metrics: every counter and gauge casella exports at /metrics, and their rendering.

Lives here: the metric definitions (prometheus-client), one small function per event that the
protocols, the listener, the store and the queue runner call from their single dispatch or
error-mapping point, `enable_multiprocess` (the supervisor, before it forks its workers: each
process then writes its counts to files under data_dir/metrics, which any worker sums when it
answers /metrics) and `render`. This module sits below every other layer: it imports nothing
from casella. Must never: do I/O other than prometheus-client's own files, block, or take a
label value that a client chooses (only names from a fixed set: a client's made-up command
would otherwise create a time series per request).

Every metric has labels on purpose: prometheus-client creates the value of a labelled metric
when a label set is first used, so values made after `enable_multiprocess` are the
file-backed kind even though this module was imported before it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# The `_created` series exist in one process only (multiprocess mode has none): leave them out
# so that /metrics looks the same with one worker or several.
disable_created_metrics()

_registry = CollectorRegistry(auto_describe=True)

CONNECTIONS = Counter("casella_connections", "Connections accepted, per listener",
                      ["listener"], registry=_registry)
CONNECTIONS_OPEN = Gauge("casella_connections_open", "Connections open now, per listener",
                         ["listener"], registry=_registry, multiprocess_mode="livesum")
CONNECTIONS_REFUSED = Counter("casella_connections_refused",
                              "Connections refused by the connection limits, per listener",
                              ["listener"], registry=_registry)
COMMANDS = Counter("casella_commands", "Commands answered, per protocol, command and result "
                   "(ok, no, bad or error)", ["protocol", "command", "result"],
                   registry=_registry)
LOGINS = Counter("casella_logins", "Login attempts, per protocol and result (ok, failed, "
                 "blocked)", ["protocol", "result"], registry=_registry)
MESSAGES = Counter("casella_messages", "Messages received (accepted over SMTP), and outbound "
                   "recipients sent, deferred or bounced (failed for good)", ["event"],
                   registry=_registry)
SEND_REFUSALS = Counter("casella_send_refusals", "Recipients refused at submission by the "
                        "sending limits, per reason (held, messages_per_hour, "
                        "defers_failures)", ["reason"], registry=_registry)
SEND_HOLDS = Counter("casella_send_holds", "Accounts whose sending was paused, per cause "
                     "(guard: the defers-and-failures guard tripped)", ["cause"],
                     registry=_registry)
STORE_SECONDS = Histogram("casella_store_seconds", "Time from a store call to its answer, "
                          "per kind (read, write)", ["op"], registry=_registry,
                          buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0))

_ALL = (CONNECTIONS, CONNECTIONS_OPEN, CONNECTIONS_REFUSED, COMMANDS, LOGINS, MESSAGES,
        SEND_REFUSALS, SEND_HOLDS, STORE_SECONDS)

_multiprocess_dir: Path | None = None

# Children by label values: `labels()` takes a lock and builds a key on every call, which the
# per-command paths need not pay each time.
_children: dict[tuple[object, ...], object] = {}


def _child(metric: Any, *labels: str) -> Any:
    key = (id(metric), *labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


# --- events ----------------------------------------------------------------------------------

def connection_opened(listener: str) -> None:
    _child(CONNECTIONS, listener).inc()
    _child(CONNECTIONS_OPEN, listener).inc()


def connection_closed(listener: str) -> None:
    _child(CONNECTIONS_OPEN, listener).dec()


def connection_refused(listener: str) -> None:
    _child(CONNECTIONS_REFUSED, listener).inc()


def command(protocol: str, name: str, result: str) -> None:
    """One command answered. `name` must come from the protocol's own table of commands."""
    _child(COMMANDS, protocol, name, result).inc()


def login(protocol: str, result: str) -> None:
    _child(LOGINS, protocol or "unknown", result).inc()


def message(event: str, count: int = 1) -> None:
    if count:
        _child(MESSAGES, event).inc(count)


def send_refused(reason: str) -> None:
    _child(SEND_REFUSALS, reason).inc()


def send_held(cause: str) -> None:
    _child(SEND_HOLDS, cause).inc()


def store_latency(op: str, seconds: float) -> None:
    _child(STORE_SECONDS, op).observe(seconds)


# --- several processes -----------------------------------------------------------------------

def enable_multiprocess(directory: Path) -> None:
    """The supervisor, before it forks: counts of every process go to files in `directory`,
    which is emptied first (the counts of an earlier run are not this run's)."""
    global _multiprocess_dir
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.db"):
        old.unlink()
    _children.clear()
    for metric in _ALL:
        metric.clear()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    # prometheus-client picks the kind of value when it creates one; from here on, the kind
    # that writes to this process's file in the directory.
    values.ValueClass = values.MultiProcessValue()
    _multiprocess_dir = directory


def mark_process_dead(pid: int) -> None:
    """A worker ended: its share of the live gauges (open connections) no longer counts.
    Its counters stay, so totals never go down."""
    if _multiprocess_dir is not None:
        multiprocess.mark_process_dead(pid, str(_multiprocess_dir))


def store_gauges(*, domains: int, accounts: int, accounts_sending_held: int,
                 queue_messages: int, queue_recipients: int,
                 queue_oldest_seconds: float) -> list[Metric]:
    """The gauges read from the store at each scrape (they hold for every process alike)."""
    values = {
        "casella_domains": ("Hosted domains", domains),
        "casella_accounts": ("Mail accounts", accounts),
        "casella_accounts_sending_held": (
            "Accounts whose outgoing mail an admin has put on hold", accounts_sending_held),
        "casella_queue_messages": (
            "Messages in the outbound queue with recipients still to be delivered",
            queue_messages),
        "casella_queue_recipients": (
            "Recipients in the outbound queue still to be delivered", queue_recipients),
        "casella_queue_oldest_seconds": (
            "Age of the oldest waiting message in the outbound queue (0: none)",
            queue_oldest_seconds),
    }
    return [GaugeMetricFamily(name, text, value=value)
            for name, (text, value) in values.items()]


class _Families(Collector):
    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


def render(extra: Iterable[Metric] = ()) -> bytes:
    """The Prometheus text exposition of every metric (of all processes in multiprocess mode),
    followed by `extra` (gauges the caller read at scrape time, e.g. from the store)."""
    if _multiprocess_dir is not None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(_multiprocess_dir))
        out = generate_latest(registry)
    else:
        out = generate_latest(_registry)
    more = CollectorRegistry(auto_describe=False)
    more.register(_Families(extra))
    return out + generate_latest(more)


def render_directory(directory: Path) -> bytes:
    """The sums of the files in a multiprocess directory, as /metrics shows them (tests and
    debugging read a running server's counts this way)."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(directory))
    return generate_latest(registry)
