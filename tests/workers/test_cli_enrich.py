"""`leadflow enrich` against an API served on loopback."""

from __future__ import annotations

import asyncio
import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
import typer
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse
from typer.testing import CliRunner

from tests.live_stack import free_port, serve_app
from workers import cli_enrich

KEY = "lf_test_key"


def cli() -> typer.Typer:
    app = typer.Typer()
    cli_enrich.register(app)

    @app.callback()
    def _root() -> None:  # keeps `enrich` a subcommand, as in the real CLI
        pass

    return app


def fake_jobs_api() -> FastAPI:
    """A tiny stand-in for the jobs contract, for the CLI's error paths."""
    app = FastAPI()
    jobs: dict[str, dict[str, Any]] = {}

    def auth(request: Request) -> JSONResponse | None:
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return JSONResponse({"error": "invalid API key", "detail": None}, status_code=401)
        return None

    @app.post("/api/v1/jobs")
    async def create(
        request: Request,
        file: UploadFile = File(...),
        concurrency: int | None = Form(None),
    ) -> JSONResponse:
        if (refused := auth(request)) is not None:
            return refused
        text = (await file.read()).decode()
        lines = text.strip().splitlines()
        if not lines or "company" not in lines[0]:
            return JSONResponse(
                {
                    "error": "invalid CSV",
                    "detail": [{"line": 1, "problem": "no identifying column (company)"}],
                },
                status_code=422,
            )
        job_id = f"job-{len(jobs) + 1}"
        jobs[job_id] = {"rows": lines[1:], "polls": 0, "concurrency": concurrency}
        return JSONResponse({"job_id": job_id, "status": "running", "rows": len(lines) - 1}, 202)

    @app.get("/api/v1/jobs/{job_id}")
    async def view(job_id: str, request: Request) -> JSONResponse:
        if (refused := auth(request)) is not None:
            return refused
        job = jobs[job_id]
        job["polls"] += 1
        total = len(job["rows"])
        finished = min(total, job["polls"])
        failed = 1 if finished == total else 0
        return JSONResponse(
            {
                "id": job_id,
                "status": "completed" if finished == total else "running",
                "filename": "x.csv",
                "created_at": "2025-01-01T00:00:00Z",
                "finished_at": None,
                "total": total,
                "counts": {
                    "pending": total - finished,
                    "running": 0,
                    "done": finished - failed,
                    "failed": failed,
                },
                "throughput_per_s": 2.5,
                "eta_seconds": total - finished,
                "cost": {"input_tokens": 0, "output_tokens": 0, "usd": 0},
            }
        )

    @app.get("/api/v1/jobs/{job_id}/results")
    async def results(job_id: str) -> PlainTextResponse:
        rows = jobs[job_id]["rows"]
        return PlainTextResponse("company,status\n" + "".join(f"{r},done\n" for r in rows))

    @app.get("/api/v1/jobs/{job_id}/records")
    async def records(job_id: str, status: str) -> dict[str, Any]:
        return {
            "records": [
                {"row_number": 2, "status": "failed", "error": "site unreachable", "input": {}}
            ]
        }

    return app


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli(), ["enrich", *args], catch_exceptions=False)


@pytest.fixture
async def fake_api() -> Any:
    async with serve_app(fake_jobs_api()) as url:
        yield url


def write_csv(tmp_path: Path, text: str, name: str = "leads.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def test_enrich_against_fake_contract(fake_api: str, tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path, "company\nAcme\nGlobex\nInitech\n")
    result = await asyncio.to_thread(
        invoke, str(csv_path), "--api-url", fake_api, "--api-key", KEY, "--poll-seconds", "0.05"
    )
    assert result.exit_code == 0, result.output
    out = tmp_path / "leads.enriched.csv"
    assert out.read_text().startswith("company,status\n")
    assert "site unreachable" in result.output
    assert "1 failed" in result.output


async def test_no_wait_prints_urls(fake_api: str, tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path, "company\nAcme\n")
    result = await asyncio.to_thread(
        invoke, str(csv_path), "--api-url", fake_api, "--api-key", KEY, "--no-wait"
    )
    assert result.exit_code == 0, result.output
    assert "job-1" in result.output
    assert f"{fake_api}/api/v1/jobs/job-1/results" in result.output
    assert not (tmp_path / "leads.enriched.csv").exists()


async def test_wrong_key_is_explained(fake_api: str, tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path, "company\nAcme\n")
    result = await asyncio.to_thread(
        invoke, str(csv_path), "--api-url", fake_api, "--api-key", "nope"
    )
    assert result.exit_code == 1
    assert "refused the key" in result.output
    assert "LEADFLOW_API_KEY" in result.output


async def test_bad_csv_lists_problems_with_lines(fake_api: str, tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path, "name\nAcme\n")
    result = await asyncio.to_thread(invoke, str(csv_path), "--api-url", fake_api, "--api-key", KEY)
    assert result.exit_code == 1
    assert "invalid CSV" in result.output
    assert "line 1: no identifying column" in result.output


def test_unreachable_api_is_named(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path, "company\nAcme\n")
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke(str(csv_path), "--api-url", url, "--api-key", KEY)
    assert result.exit_code == 1
    assert f"cannot reach the leadflow API at {url}" in result.output
    assert "leadflow up" in result.output


def test_missing_key_and_missing_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADFLOW_API_KEY", raising=False)
    result = invoke(str(tmp_path / "leads.csv"))
    assert result.exit_code == 2
    assert "no API key" in result.output
    result = invoke(str(tmp_path / "missing.csv"), "--api-key", KEY)
    assert result.exit_code == 1
    assert "no such file" in result.output


# -- against the real API, a real worker and the Temporal dev server ----------------------


@pytest.fixture
async def real_stack(temporal_client: Any, settings_factory: Any, sqlite_url: str) -> Any:
    from models.task_queues import ENRICHMENT
    from tests.fakes.web import FakeWeb
    from tests.stack import live_stack

    with FakeWeb() as web:
        settings = settings_factory(
            sqlite_url, ssrf_allowlist=["127.0.0.1"], duckduckgo_url=web.search_url
        )
        async with live_stack(temporal_client, settings, queues=[ENRICHMENT]) as live:
            yield live, web


async def test_enrich_end_to_end(real_stack: Any, tmp_path: Path) -> None:
    stack, web = real_stack
    csv_path = write_csv(
        tmp_path,
        "company,website\n"
        f"Acme,{web.site('acme')}\n"
        f"Globex,{web.site('globex')}\n"
        f"Gone Inc,{web.site('missing')}\n",
    )
    out = tmp_path / "out.csv"
    result = await asyncio.to_thread(
        invoke,
        str(csv_path),
        "--api-url",
        stack.api_url,
        "--api-key",
        stack.api_key,
        "--output",
        str(out),
        "--concurrency",
        "2",
        "--poll-seconds",
        "0.2",
    )
    assert result.exit_code == 0, result.output
    assert "completed: 2 done, 1 failed" in result.output
    assert "HTTP 404" in result.output  # the failures summary
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [r["company"] for r in rows] == ["Acme", "Globex", "Gone Inc"]
    assert [r["status"] for r in rows] == ["done", "done", "failed"]
    assert rows[0]["email_body"]


async def test_real_api_errors(real_stack: Any, tmp_path: Path) -> None:
    stack, _ = real_stack
    bad = write_csv(tmp_path, "notes,colour\nhello,red\n", name="bad.csv")
    result = await asyncio.to_thread(
        invoke, str(bad), "--api-url", stack.api_url, "--api-key", stack.api_key
    )
    assert result.exit_code == 1
    assert "the API refused the CSV: invalid CSV" in result.output
    assert "line 1: no identifying column" in result.output

    result = await asyncio.to_thread(
        invoke, str(bad), "--api-url", stack.api_url, "--api-key", "lf_wrong"
    )
    assert result.exit_code == 1
    assert "the API refused the key: invalid API key" in result.output

    good = write_csv(tmp_path, "company\nAcme\n", name="good.csv")
    result = await asyncio.to_thread(
        invoke, str(good), "--api-url", stack.api_url, "--api-key", stack.api_key, "--no-wait"
    )
    assert result.exit_code == 0, result.output
    assert f"{stack.api_url}/api/v1/jobs/" in result.output


def invoke_job(*args: str) -> Any:
    return CliRunner().invoke(cli(), ["job", *args], catch_exceptions=False)


async def test_job_commands_steer_a_running_job(real_stack: Any, tmp_path: Path) -> None:
    from tests.fakes.web import FakeWeb

    stack, _ = real_stack
    auth = ("--api-url", stack.api_url, "--api-key", stack.api_key)
    with FakeWeb(latency=0.4) as slow_web:
        rows = "".join(f"Company {i},{slow_web.site(f'cli-{i}')}\n" for i in range(10))
        csv_path = write_csv(tmp_path, "company,website\n" + rows)
        started = await asyncio.to_thread(
            invoke, str(csv_path), *auth, "--no-wait", "--concurrency", "1"
        )
        assert started.exit_code == 0, started.output
        match = re.search(r"job (\w+) started", started.output)
        assert match, started.output
        job_id = match.group(1)

        paused = await asyncio.to_thread(invoke_job, "pause", job_id, *auth)
        assert paused.exit_code == 0, paused.output
        assert f"job {job_id}: paused" in paused.output
        again = await asyncio.to_thread(invoke_job, "pause", job_id, *auth)
        assert again.exit_code == cli_enrich.REFUSED_EXIT
        assert "pause refused: job is already paused" in again.output

        resumed = await asyncio.to_thread(invoke_job, "resume", job_id, *auth)
        assert resumed.exit_code == 0 and f"job {job_id}: running" in resumed.output

        keyed = (*auth, "--idempotency-key", "cli-cancel-1")
        cancelled = await asyncio.to_thread(invoke_job, "cancel", job_id, *keyed)
        assert cancelled.exit_code == 0 and f"job {job_id}: cancelled" in cancelled.output
        retried = await asyncio.to_thread(invoke_job, "cancel", job_id, *keyed)
        assert retried.exit_code == 0 and f"job {job_id}: cancelled" in retried.output
        twice = await asyncio.to_thread(invoke_job, "cancel", job_id, *auth)
        assert twice.exit_code == cli_enrich.REFUSED_EXIT
        assert "cancel refused: job is already cancelled" in twice.output

    unknown = await asyncio.to_thread(invoke_job, "resume", "no-such-job", *auth)
    assert unknown.exit_code == 1 and "job not found" in unknown.output
    wrong_key = await asyncio.to_thread(
        invoke_job, "pause", job_id, "--api-url", stack.api_url, "--api-key", "lf_wrong"
    )
    assert wrong_key.exit_code == 1 and "refused the key" in wrong_key.output


def test_job_command_without_a_key_or_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEADFLOW_API_KEY", raising=False)
    result = invoke_job("pause", "job-1")
    assert result.exit_code == 2 and "no API key" in result.output
    url = f"http://127.0.0.1:{free_port()}"
    result = invoke_job("cancel", "job-1", "--api-url", url, "--api-key", KEY)
    assert result.exit_code == 1 and f"cannot reach the leadflow API at {url}" in result.output
