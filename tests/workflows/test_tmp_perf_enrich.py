from __future__ import annotations

import asyncio
import time

import httpx
from temporalio.client import Client

from activities.llm.offline import offline_provider
from activities.web.activities import EnrichmentActivities
from activities.web.search import duckduckgo_provider
from models.db import Database
from tests.fakes.web import FakeWeb
from tests.workflows.test_enrichment import make_worker, site_rows, start_job


class SlowLlm:
    name = "slow"

    def __init__(self) -> None:
        self.inner = offline_provider(None, None)  # type: ignore[arg-type]

    async def write_email(self, request):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.5)
        return await self.inner.write_email(request)


async def test_perf(
    temporal_client: Client, task_queue: str, sqlite_db: Database, settings_factory, sqlite_url
) -> None:  # type: ignore[no-untyped-def]
    with FakeWeb(latency=0.3) as web:
        settings = settings_factory(
            sqlite_url,
            ssrf_allowlist=["127.0.0.1"],
            duckduckgo_url=web.search_url,
            llm_provider="slow",
            fetch_per_host_concurrency=100,
        )
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=200)) as http:
            acts = EnrichmentActivities(
                db=sqlite_db,
                settings=settings,
                http=http,
                llm_providers={"slow": lambda s, h: SlowLlm()},
                search_providers={"duckduckgo": duckduckgo_provider},
            )
            rows = site_rows(web, [f"perf-{i}" for i in range(600)])
            async with make_worker(temporal_client, task_queue, acts):
                t = time.monotonic()
                _, job_id, handle = await start_job(
                    temporal_client,
                    sqlite_db,
                    task_queue,
                    rows,
                    concurrency=40,
                    records_per_run=500,
                )
                p = await handle.result()
                dt = time.monotonic() - t
    print(f"\nPERF {len(rows)} rows in {dt:.1f}s = {len(rows) / dt:.1f} rec/s; {p}")
