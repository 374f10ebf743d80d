"""The Temporal SDK's runtime metrics on leadflow's own `/metrics`.

One `temporalio.runtime.Runtime` per process (`temporal_runtime()`), used by every client the one
client factory makes (workers/client.py), and so by every worker built on such a client. The SDK
aggregates its metrics in Rust and serves them with its own Prometheus exporter, bound to a
loopback port of this process only; `TemporalMetrics`, a prometheus-client collector in the
default registry, reads that endpoint when `/metrics` is scraped and re-exposes the families
next to leadflow's own (models/metrics.py). One endpoint per process for Prometheus.

Why this and not a `MetricBuffer` drained into prometheus-client: measured here, the buffer costs
about 5 µs of Python per SDK update, and a conversation turn makes a few hundred (54 for a
workflow of one activity): a millisecond of worker CPU per message for metrics (issue 8 counts
CPU per message). The exporter costs nothing per message; a scrape costs ~25 ms of parsing. The
Python SDK does not report the port an exporter bound to "port 0", so the port is picked free
here and the bind retried should another process take it first.

Names (with the SDK's options below): the `temporal_` prefix; counters `<name>_total`;
duration histograms in seconds, `<name>_seconds_bucket/_sum/_count`; gauges as they are. Labels
are the SDK's (namespace, task_queue, workflow_type, activity_type, operation, ...)."""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from collections.abc import Iterable

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

log = logging.getLogger("leadflow.metrics")

LOOPBACK = "127.0.0.1"
BIND_ATTEMPTS = 5
SCRAPE_TIMEOUT_SECONDS = 5.0


class TemporalMetrics(Collector):
    """Re-exposes what the SDK's exporter on loopback `port` serves, read at each collection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.url = f"http://{LOOPBACK}:{port}/metrics"
        self._failing = False

    def _read(self) -> str:
        connection = http.client.HTTPConnection(LOOPBACK, self.port, timeout=SCRAPE_TIMEOUT_SECONDS)
        try:
            connection.request("GET", "/metrics")
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                raise OSError(f"HTTP {response.status}")
            return body.decode("utf-8")
        finally:
            connection.close()

    def collect(self) -> Iterable[Metric]:
        try:
            families = list(text_string_to_metric_families(self._read()))
        except Exception as exc:
            # The process's own series still go out; the gap in the SDK's says something broke.
            if not self._failing:
                log.warning("the Temporal SDK's metrics at %s cannot be read: %s", self.url, exc)
            self._failing = True
            return []
        self._failing = False
        return families

    def describe(self) -> Iterable[Metric]:
        # No fixed names to announce: registering must not scrape.
        return []


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def _exporting_runtime() -> tuple[Runtime, int]:
    """A runtime whose metrics the SDK serves on a free loopback port, and that port."""
    error: Exception | None = None
    for _ in range(BIND_ATTEMPTS):
        port = _free_loopback_port()
        config = PrometheusConfig(
            bind_address=f"{LOOPBACK}:{port}",
            counters_total_suffix=True,
            unit_suffix=True,
            durations_as_seconds=True,
        )
        try:
            # No service_name label on every series: it is always "temporal-core-sdk".
            runtime = Runtime(telemetry=TelemetryConfig(metrics=config, attach_service_name=False))
        except ValueError as exc:  # "Address already in use": another process was quicker
            error = exc
            continue
        return runtime, port
    raise RuntimeError(f"could not start the Temporal SDK's metrics exporter: {error}")


_lock = threading.Lock()
_runtime: Runtime | None = None


def temporal_runtime(registry: CollectorRegistry = REGISTRY) -> Runtime:
    """This process's Temporal runtime, its metrics collected into `registry` (made on first
    use). Every client of the process shares it: one Core thread pool and one set of series,
    however many clients (tests make many)."""
    global _runtime
    with _lock:
        if _runtime is None:
            runtime, port = _exporting_runtime()
            registry.register(TemporalMetrics(port))
            _runtime = runtime
        return _runtime
