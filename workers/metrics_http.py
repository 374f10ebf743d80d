"""`/metrics` of a worker process: prometheus-client's HTTP server on
`LEADFLOW_WORKER_METRICS_HOST:LEADFLOW_WORKER_METRICS_PORT` (0 = none), serving the process's
registry: leadflow's series (models/metrics.py) and the Temporal SDK's
(workers/temporal_metrics.py).

The API serves the same registry of its own process on its `/metrics` route."""

from __future__ import annotations

import logging
import threading

from prometheus_client import start_http_server

from models.settings import Settings

log = logging.getLogger("leadflow.metrics")

_lock = threading.Lock()
_serving: int | None = None


def serve_worker_metrics(settings: Settings) -> int | None:
    """Start this process's metrics server once; returns its port, None when off or when the
    port is taken.

    A port that is taken (another worker on this machine with the same setting) is a warning
    that names it, not a reason to stop serving Temporal: the worker's work matters more than
    its metrics."""
    global _serving
    port = settings.worker_metrics_port
    if port <= 0:
        return None
    with _lock:
        if _serving is not None:
            return _serving
        try:
            start_http_server(port, addr=settings.worker_metrics_host)
        except OSError as exc:
            log.warning(
                "worker metrics not served: %s:%d is unavailable (%s); set "
                "LEADFLOW_WORKER_METRICS_PORT to a free port, or 0 for none",
                settings.worker_metrics_host,
                port,
                exc,
            )
            return None
        _serving = port
        log.info("worker metrics on http://%s:%d/metrics", settings.worker_metrics_host, port)
        return port
