"""The Temporal SDK's metrics on the process's registry: one runtime per process for every client
of the one client factory, its exporter on a loopback port read at each collection."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from models.settings import Settings
from workers.client import connect
from workers.temporal_metrics import TemporalMetrics, temporal_runtime

EXPORTED = """# HELP temporal_workflow_completed_total Count of successfully completed workflows
# TYPE temporal_workflow_completed_total counter
temporal_workflow_completed_total{namespace="default",task_queue="q",workflow_type="W"} 3
# HELP temporal_num_pollers Current number of active pollers
# TYPE temporal_num_pollers gauge
temporal_num_pollers{namespace="default",poller_type="workflow_task",task_queue="q"} 2
# HELP temporal_request_latency_seconds Histogram of client request latencies
# TYPE temporal_request_latency_seconds histogram
temporal_request_latency_seconds_bucket{operation="GetSystemInfo",le="0.05"} 1
temporal_request_latency_seconds_bucket{operation="GetSystemInfo",le="+Inf"} 1
temporal_request_latency_seconds_sum{operation="GetSystemInfo"} 0.004
temporal_request_latency_seconds_count{operation="GetSystemInfo"} 1
"""


@pytest.fixture
def exporter() -> Iterator[tuple[int, dict[str, Any]]]:
    """A stand-in for the SDK's exporter: serves `state["text"]` (or `state["status"]`)."""
    state: dict[str, Any] = {"text": EXPORTED, "status": 200}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = state["text"].encode()
            self.send_response(state["status"])
            self.send_header("content-type", "text/plain; version=0.0.4")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], state
    finally:
        server.shutdown()
        server.server_close()


def test_the_exporters_families_are_re_exposed(exporter: tuple[int, dict[str, Any]]) -> None:
    port, _ = exporter
    registry = CollectorRegistry()
    registry.register(TemporalMetrics(port))
    assert (
        registry.get_sample_value(
            "temporal_workflow_completed_total",
            {"namespace": "default", "task_queue": "q", "workflow_type": "W"},
        )
        == 3
    )
    assert (
        registry.get_sample_value(
            "temporal_request_latency_seconds_bucket", {"operation": "GetSystemInfo", "le": "+Inf"}
        )
        == 1
    )
    text = generate_latest(registry).decode()
    assert "# TYPE temporal_workflow_completed_total counter" in text
    assert "# TYPE temporal_num_pollers gauge" in text
    assert "# TYPE temporal_request_latency_seconds histogram" in text


def test_an_exporter_that_fails_leaves_the_rest_of_the_scrape(
    exporter: tuple[int, dict[str, Any]], caplog: pytest.LogCaptureFixture
) -> None:
    port, state = exporter
    registry = CollectorRegistry()
    registry.register(TemporalMetrics(port))
    state["status"] = 500
    with caplog.at_level(logging.WARNING, logger="leadflow.metrics"):
        assert generate_latest(registry) == b""
        generate_latest(registry)
    assert caplog.text.count("cannot be read") == 1  # said once, not at every scrape
    state["status"] = 200
    assert b"temporal_num_pollers" in generate_latest(registry)


async def test_clients_of_the_factory_share_one_runtime_whose_metrics_are_on_the_registry(
    temporal_address: str, settings_factory: Any, sqlite_url: str
) -> None:
    settings: Settings = settings_factory(sqlite_url)
    first = await connect(settings, address=temporal_address)
    second = await connect(settings, address=temporal_address)
    runtime = temporal_runtime()
    assert first.service_client.config.runtime is runtime
    assert second.service_client.config.runtime is runtime
    await first.count_workflows()  # a request of this client
    families = {
        f.name: f for f in text_string_to_metric_families(generate_latest(REGISTRY).decode())
    }
    requests = families["temporal_request"]
    assert requests.type == "counter"
    operations = {s.labels.get("operation") for s in requests.samples if s.value >= 1}
    assert {"GetSystemInfo", "CountWorkflowExecutions"} <= operations
    assert families["temporal_request_latency_seconds"].type == "histogram"
