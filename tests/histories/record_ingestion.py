"""Record InventoryIngestionWorkflow histories for the replay tests:
`uv run python -m tests.histories.record_ingestion ingestion_<version>`.

Runs real ingestions on a throwaway dev server with the real worker (every plugin loaded, as
`leadflow worker` builds it) against the fake dealer site of tests/fakes/dealer.py on loopback,
and writes two histories next to this file:

    <prefix>_applied.json   a listing page read and applied (what changed in the result)
    <prefix>_refused.json   a feed that suddenly lists nothing: the run fails, the failure is
                            recorded on the source by the workflow's failure path

Existing files are never overwritten: one file per recorded version, so old shapes stay covered."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowFailureError, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from models import search_attributes
from models.db import Database, migrate
from models.knowledge.ingestion import (
    WORKFLOW_NAME,
    IngestResult,
    IngestSourceInput,
    ingestion_workflow_id,
)
from models.knowledge_sources import SourceSpec
from models.repo import knowledge_sources as source_repo
from models.settings import Settings
from models.task_queues import ENRICHMENT
from tests.conftest import TEST_SECRET, make_tenant, temporal_cli_path
from tests.fakes.dealer import JSON, FakeDealerSite, make_inventory
from workers.devserver import SINGLE_PARTITION
from workers.worker import WorkerProcess

HERE = Path(__file__).parent
KINDS = ("applied", "refused")


async def _run(client: Client, db: Database, spec: SourceSpec) -> WorkflowHandle[Any, Any]:
    tenant_id, _ = await make_tenant(db)
    async with db.session() as session:
        row = await source_repo.create_source(session, tenant_id=tenant_id, spec=spec)
    handle: WorkflowHandle[Any, Any] = await client.start_workflow(
        WORKFLOW_NAME,
        IngestSourceInput(tenant_id=tenant_id, source_id=row.id),
        id=ingestion_workflow_id(tenant_id, row.id),
        task_queue=ENRICHMENT,
        result_type=IngestResult,
    )
    return handle


async def record(client: Client, db: Database, site: FakeDealerSite, kind: str) -> Any:
    if kind == "applied":
        handle = await _run(client, db, site.listing_spec())
        result = await handle.result()
        if result.diff.added != len(site.inventory):
            raise RuntimeError(f"expected every car added, got {result.diff}")
        return handle
    spec = site.json_spec()
    first = await _run(client, db, spec)
    await first.result()
    # The same source again, now listing nothing: refused.
    tenant_id = first.id.split(":")[1]
    source_id = first.id.split(":")[2]
    site.serve("/feed.json", '{"vehicles": []}', content_type=JSON)
    try:
        handle = await client.start_workflow(
            WORKFLOW_NAME,
            IngestSourceInput(tenant_id=tenant_id, source_id=source_id),
            id=ingestion_workflow_id(tenant_id, source_id),
            task_queue=ENRICHMENT,
        )
        try:
            await handle.result()
        except WorkflowFailureError:
            return handle
        raise RuntimeError("expected the run to be refused")
    finally:
        site.restore("/feed.json")


async def main(prefix: str) -> None:
    targets = {kind: HERE / f"{prefix}_{kind}.json" for kind in KINDS}
    existing = [str(t) for t in targets.values() if t.exists()]
    if existing:
        # One file per recorded version, never overwritten: old shapes stay covered.
        raise SystemExit(f"{', '.join(existing)} exist(s); record a new version under a new name")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=pydantic_data_converter,
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
        dev_server_extra_args=[*SINGLE_PARTITION],
    )
    try:
        with tempfile.TemporaryDirectory() as tmp, FakeDealerSite(make_inventory(12, 5)) as site:
            url = f"sqlite+aiosqlite:///{tmp}/db.sqlite"
            migrate(url)
            db = Database(url)
            settings = Settings(
                database_url=url,
                data_dir=Path(tmp),
                secret_key=TEST_SECRET,
                ssrf_allowlist=["127.0.0.1"],
            )
            worker = WorkerProcess(settings, queues=[ENRICHMENT], client=env.client)
            await worker.start()
            task = asyncio.create_task(worker.run())
            try:
                for kind in KINDS:
                    handle = await record(env.client, db, site, kind)
                    history = await handle.fetch_history()
                    targets[kind].write_text(history.to_json())
                    print(f"wrote {targets[kind]} ({len(history.events)} events)")
            finally:
                worker.stop()
                await task
                await db.dispose()
    finally:
        await env.shutdown()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("prefix", help="e.g. ingestion_v1 (files <prefix>_<kind>.json)")
    args = parser.parse_args()
    if not args.prefix.startswith("ingestion_") or args.prefix.endswith(".json"):
        raise SystemExit("the prefix is ingestion_<version>, without .json")
    asyncio.run(main(args.prefix))
