"""Record EraseContactWorkflow histories for the replay tests:
`uv run python -m tests.histories.record_erasure erase_contact_<version>`.

Runs real erasures on a throwaway dev server with the real worker (every plugin loaded, as
`leadflow worker` builds it), the lead first synced to the HubSpot fake of tests/fakes/crm.py by
a real CRM sync saga, and writes two histories next to this file:

    <prefix>_crm.json      erased with `crm=true`: its sync workflow purged, HubSpot's contact
                           deleted, its rows gone
    <prefix>_local.json    erased without the CRM: workflows purged, rows gone

Existing files are never overwritten: one file per recorded version, so old shapes stay covered."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from models import search_attributes
from models.crm import CrmKind
from models.db import Database, migrate
from models.erasure import ERASE_WORKFLOW, EraseContactInput, ErasureReport, erase_workflow_id
from models.settings import Settings
from models.task_queues import CONVERSATIONS
from tests.conftest import TEST_SECRET, make_tenant, temporal_cli_path
from tests.fakes.crm import HubSpotFake
from tests.histories.record_crm import HS_MAPPING, Recorder
from workers.devserver import SINGLE_PARTITION
from workers.worker import WorkerProcess

HERE = Path(__file__).parent


async def _erase(
    client: Client, tenant_id: str, lead_id: str, *, crm: bool
) -> WorkflowHandle[object, ErasureReport]:
    handle: WorkflowHandle[object, ErasureReport] = await client.start_workflow(
        ERASE_WORKFLOW,
        EraseContactInput(tenant_id=tenant_id, lead_id=lead_id, crm=crm),
        id=erase_workflow_id(tenant_id, lead_id),
        task_queue=CONVERSATIONS,
        result_type=ErasureReport,
    )
    report = await handle.result()
    if not report.lead_found:
        raise RuntimeError(f"expected the lead to be erased, got {report}")
    if crm and not report.crm:
        raise RuntimeError(f"expected a CRM record deleted, got {report}")
    return handle


async def record(
    client: Client, db: Database, *, crm: bool
) -> WorkflowHandle[object, ErasureReport]:
    recorder = Recorder(client, db)
    tenant_id, _ = await make_tenant(db)
    with HubSpotFake(token="pat") as hs:
        await recorder.integration(
            tenant_id, CrmKind.HUBSPOT, hs.url, {"access_token": "pat"}, HS_MAPPING
        )
        lead_id = await recorder.lead(
            tenant_id, name="Eva Erase", email="eva@example.com", score=40, quality="WARM"
        )
        await recorder.sync(tenant_id, lead_id)  # a CRM record and a sync workflow to purge
        if not hs.by_email("eva@example.com"):
            raise RuntimeError("the sync did not reach HubSpot")
        handle = await _erase(client, tenant_id, lead_id, crm=crm)
        if crm and hs.by_email("eva@example.com"):
            raise RuntimeError("HubSpot still holds the contact")
    return handle


async def main(prefix: str) -> None:
    targets = {kind: HERE / f"{prefix}_{kind}.json" for kind in ("crm", "local")}
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
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite+aiosqlite:///{tmp}/db.sqlite"
            migrate(url)
            db = Database(url)
            settings = Settings(database_url=url, data_dir=Path(tmp), secret_key=TEST_SECRET)
            worker = WorkerProcess(settings, client=env.client)
            await worker.start()
            task = asyncio.create_task(worker.run())
            try:
                for kind in ("crm", "local"):
                    handle = await record(env.client, db, crm=kind == "crm")
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
    parser.add_argument("prefix", help="e.g. erase_contact_v1 (files <prefix>_<kind>.json)")
    args = parser.parse_args()
    if not args.prefix.startswith("erase_contact_") or args.prefix.endswith(".json"):
        raise SystemExit("the prefix is erase_contact_<version>, without .json")
    asyncio.run(main(args.prefix))
