"""The CLI's choice of log format (workers/cli.py `_logging`), and `leadflow api` as a process:
its uvicorn access and error lines are leadflow's JSON lines."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import typer

from tests.live_stack import free_port
from tests.logs.conftest import Captured
from workers import cli, logs

pytestmark = pytest.mark.timeout(180)

REPO = Path(__file__).resolve().parents[2]


def _our_formatter() -> logging.Formatter | None:
    [handler] = [h for h in logging.getLogger().handlers if getattr(h, "_leadflow", False)]
    return handler.formatter


def test_up_logs_text_and_its_workers_inherit_it(
    captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_LOG_FORMAT", "json")
    monkeypatch.delenv("LEADFLOW_LOG_FORMAT")  # restored (removed) after the test
    cli._logging(False, default_format="text", children_inherit=True)
    assert isinstance(_our_formatter(), logs.TextFormatter)
    # `up` starts its workers with its own environment: they log text as well.
    assert os.environ["LEADFLOW_LOG_FORMAT"] == "text"


def test_api_and_worker_default_to_json(
    captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_LOG_FORMAT", "json")
    monkeypatch.delenv("LEADFLOW_LOG_FORMAT")
    cli._logging(False)
    assert isinstance(_our_formatter(), logs.JsonLineFormatter)
    assert "LEADFLOW_LOG_FORMAT" not in os.environ  # nothing to pass on: they start no process


def test_the_setting_wins_over_the_default(
    captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEADFLOW_LOG_FORMAT", "json")
    cli._logging(True, default_format="text")
    assert isinstance(_our_formatter(), logs.JsonLineFormatter)
    assert logging.getLogger().level == logging.DEBUG


def test_an_unknown_format_is_refused_with_what_is_allowed(
    captured: Captured, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LEADFLOW_LOG_FORMAT", "yaml")
    with pytest.raises(typer.Exit) as exit_:
        cli._logging(False)
    assert exit_.value.exit_code == 2
    said = " ".join(capsys.readouterr().err.split())
    assert "invalid settings" in said and "log_format" in said
    assert "'json' or 'text'" in said
    assert not [h for h in logging.getLogger().handlers if getattr(h, "_leadflow", False)]


def test_leadflow_api_writes_its_access_and_error_logs_as_json_lines(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "LEADFLOW_DATA_DIR": str(tmp_path / "data"),
        "LEADFLOW_DEV_MODE": "1",
        "LEADFLOW_API_PORT": str(port),
        # Nothing listens here: /health does not need Temporal, and the API must still start.
        "LEADFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
    }
    env.pop("LEADFLOW_LOG_FORMAT", None)
    stderr = tmp_path / "api.log"
    with open(stderr, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers.cli", "api"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            while True:  # until it answers (its imports take seconds on a loaded machine)
                assert process.poll() is None, stderr.read_text()
                try:
                    health = client.get("/health")
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, stderr.read_text()
                    time.sleep(0.2)
            assert health.status_code == 200
            unknown = client.post("/webhooks/waha/no-such-tenant", json={})
            assert unknown.status_code in (401, 404, 422)
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
    lines = stderr.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line, not only uvicorn's
    access = {r["path"]: r for r in records if r["logger"] == "uvicorn.access"}
    assert access["/health"]["status"] == 200
    assert access["/health"]["method"] == "GET"
    webhook = access["/webhooks/waha/no-such-tenant"]
    assert (webhook["status"], webhook["tenant"]) == (unknown.status_code, "no-such-tenant")
    started = [r for r in records if r["logger"] == "uvicorn.error"]
    assert any("Uvicorn running on" in r["message"] for r in started)
