"""A worker process's `/metrics`: on its configured port (0 = none), one server per process, a
taken port a warning that names the setting (the worker keeps serving Temporal); under `up`,
worker i gets the base port + i - 1."""

from __future__ import annotations

import logging
import socket
from typing import Any

import httpx
import pytest

from tests.live_stack import free_port
from workers.cli import _worker_specs
from workers.metrics_http import serve_worker_metrics


def test_up_gives_each_worker_process_its_own_port(settings_factory: Any, sqlite_url: str) -> None:
    settings = settings_factory(sqlite_url, worker_metrics_port=9500)
    specs = _worker_specs(settings, 3, verbose=False)
    assert [(s.env or {})["LEADFLOW_WORKER_METRICS_PORT"] for s in specs] == [
        "9500",
        "9501",
        "9502",
    ]
    off = _worker_specs(settings.model_copy(update={"worker_metrics_port": 0}), 2, verbose=False)
    assert [(s.env or {})["LEADFLOW_WORKER_METRICS_PORT"] for s in off] == ["0", "0"]


def test_port_zero_serves_nothing(settings_factory: Any, sqlite_url: str) -> None:
    assert serve_worker_metrics(settings_factory(sqlite_url, worker_metrics_port=0)) is None


async def test_one_server_per_process_and_a_taken_port_is_a_warning(
    settings_factory: Any, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with caplog.at_level(logging.WARNING, logger="leadflow.metrics"):
            assert (
                serve_worker_metrics(settings_factory(sqlite_url, worker_metrics_port=port)) is None
            )
        assert f"127.0.0.1:{port} is unavailable" in caplog.text
        assert "LEADFLOW_WORKER_METRICS_PORT" in caplog.text

    port = free_port()
    assert serve_worker_metrics(settings_factory(sqlite_url, worker_metrics_port=port)) == port
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert "# TYPE leadflow_turns_total counter" in response.text
    # A second call (another WorkerProcess in the same process) keeps the one server.
    other = settings_factory(sqlite_url, worker_metrics_port=free_port())
    assert serve_worker_metrics(other) == port
