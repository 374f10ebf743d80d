"""The naive baseline the first prototypes used: one record after another in one process, with
no Temporal, calling the same per-record code the workers run (`EnrichmentActivities`, built
by the enrichment plugin exactly as the worker builds it, each call through temporalio's
`ActivityEnvironment`). Runs against the stack's database, fixture web and LLM settings (the
environment `bench.enrichment` passes), for a fresh tenant and sites no job has cached.

Writes {"rows", "done", "failed", "seconds", "rss_kib", "peak_rss_kib"} to --output.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from pathlib import Path

import httpx
from temporalio.testing import ActivityEnvironment

from activities.plugin_api import PluginContext
from activities.web.plugin import enrichment_activities
from bench.enrichment import create_tenant, lead_rows, proc_memory_kib, to_csv
from models.db import Database
from models.enrichment import ALL_STEPS, ProcessRecordInput, RecordStatus, StoreRowsInput
from models.repo import enrichment as repo
from models.settings import Settings
from workers.plugins import discover, registry_of

FIRST_SITE = 500_000  # far from the job's sites: nothing cached, nothing shared


async def run(rows: int, web_port: int) -> dict[str, float | int]:
    settings = Settings()
    url = settings.resolved_database_url
    tenant_id, _ = await create_tenant(url)
    db = Database(url)
    http = httpx.AsyncClient(timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=False)
    try:
        from bench.worker import bench_plugin

        loaded = discover()
        registry = registry_of(loaded)
        registry.llm_providers.update(bench_plugin().llm_providers)
        acts = enrichment_activities(
            PluginContext(settings=settings, db=db, http=http, registry=registry)
        )
        job_id = uuid.uuid4().hex[:12]
        leads = lead_rows(rows, web_port=web_port, seed_offset=FIRST_SITE)
        source = to_csv(leads).decode()
        async with db.session() as session:
            await repo.create_job(
                session,
                job_id=job_id,
                tenant_id=tenant_id,
                filename="baseline.csv",
                columns=list(leads[0]),
                total=rows,
                source=source,
                delimiter=",",
                concurrency=1,
                steps=[s.value for s in ALL_STEPS],
                playbook=None,
            )
        env = ActivityEnvironment()
        await env.run(acts.store_rows, StoreRowsInput(tenant_id=tenant_id, job_id=job_id))
        done = failed = 0
        started = time.monotonic()
        for row_number in range(1, rows + 1):
            try:
                result = await env.run(
                    acts.process_record,
                    ProcessRecordInput(tenant_id=tenant_id, job_id=job_id, row_number=row_number),
                )
                ok = result.status == RecordStatus.DONE
            except Exception:
                ok = False  # the prototype had no retries: an error is a failed record
            done, failed = done + ok, failed + (not ok)
        seconds = time.monotonic() - started
    finally:
        await http.aclose()
        await db.dispose()
    rss, peak = proc_memory_kib(os.getpid())
    return {
        "rows": rows,
        "done": done,
        "failed": failed,
        "seconds": seconds,
        "rss_kib": rss,
        "peak_rss_kib": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=40)
    parser.add_argument("--web-port", type=int, required=True)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    figures = asyncio.run(run(args.rows, args.web_port))
    args.output.write_text(json.dumps(figures))


if __name__ == "__main__":
    main()
