"""Record CrmSyncWorkflow histories for the replay tests:
`uv run python -m tests.histories.record_crm crm_sync_<version>`.

Runs real sagas on a throwaway dev server with the real CRM worker (every plugin loaded, as
`leadflow worker` builds it) against the fake CRMs of tests/fakes/crm.py on loopback, and writes
two histories next to this file:

    <prefix>_success.json       HubSpot (an existing contact, updated) then Salesforce (a lead,
                                created), each followed by its conversation-summary note
    <prefix>_compensation.json  HubSpot written, then Salesforce refuses the lead with a
                                validation error: HubSpot is restored to what it held before

Existing files are never overwritten: one file per recorded version, so old shapes stay covered."""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import uuid
from pathlib import Path
from typing import Any

from temporalio.client import Client, WorkflowHandle
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from models import search_attributes
from models.crm import (
    CRM_SYNC_WORKFLOW,
    SYNC_SIGNAL,
    CrmKind,
    CrmSyncInput,
    SyncMode,
    SyncOutcome,
    SyncRequest,
    SyncStatus,
    crm_sync_workflow_id,
)
from models.db import Database, migrate
from models.repo import crm as crm_repo
from models.repo import leads as lead_repo
from models.settings import Settings
from models.task_queues import CRM
from tests.conftest import TEST_SECRET, make_tenant, temporal_cli_path
from tests.fakes.crm import HubSpotFake, SalesforceFake
from workers.devserver import SINGLE_PARTITION
from workers.worker import WorkerProcess

HERE = Path(__file__).parent

HS_MAPPING = {
    "email": "email",
    "first_name": "firstname",
    "last_name": "lastname",
    "score": "leadflow_score",
    "quality": "leadflow_quality",
}
SF_MAPPING = {"email": "Email", "last_name": "LastName", "score": "Score__c", "quality": "Rating"}
SF_CREDENTIALS = {"client_id": "client-key", "client_secret": "client-secret"}


class Recorder:
    def __init__(self, client: Client, db: Database) -> None:
        self.client = client
        self.db = db

    async def integration(
        self, tenant_id: str, kind: CrmKind, url: str, credentials: dict[str, Any], mapping: Any
    ) -> None:
        async with self.db.session() as session:
            await crm_repo.create_integration(
                session,
                tenant_id=tenant_id,
                kind=kind,
                name=f"{kind.value}-recorder",
                base_url=url,
                credentials=credentials,
                field_mapping=mapping,
                mode=SyncMode.SAGA,
                secret_key=TEST_SECRET,
            )

    async def lead(self, tenant_id: str, **values: Any) -> str:
        async with self.db.session() as session:
            lead = await lead_repo.create_lead(
                session,
                tenant_id=tenant_id,
                channel="waha",
                address=f"49151{uuid.uuid4().int % 10**7:07d}@c.us",
                **values,
            )
            return lead.id

    async def sync(self, tenant_id: str, lead_id: str) -> WorkflowHandle[Any, SyncOutcome]:
        handle = await self.client.start_workflow(
            CRM_SYNC_WORKFLOW,
            CrmSyncInput(tenant_id=tenant_id, lead_id=lead_id, coalesce_seconds=0.2),
            id=crm_sync_workflow_id(tenant_id, lead_id),
            task_queue=CRM,
            start_signal=SYNC_SIGNAL,
            start_signal_args=[SyncRequest(reason="recording")],
            result_type=SyncOutcome,
        )
        await handle.result()
        return handle

    async def success(self) -> WorkflowHandle[Any, SyncOutcome]:
        tenant_id, _ = await make_tenant(self.db)
        with HubSpotFake(token="pat") as hs, SalesforceFake() as sf:
            hs.add_contact({"email": "ana@example.com", "firstname": "Ana"})
            await self.integration(
                tenant_id, CrmKind.HUBSPOT, hs.url, {"access_token": "pat"}, HS_MAPPING
            )
            await self.integration(
                tenant_id, CrmKind.SALESFORCE, sf.url, SF_CREDENTIALS, SF_MAPPING
            )
            lead_id = await self.lead(
                tenant_id,
                name="Ana Lima",
                email="ana@example.com",
                score=72,
                quality="HOT",
                fields={"summary": "Wants a test drive of the SUV on Saturday."},
            )
            handle = await self.sync(tenant_id, lead_id)
            outcome = await handle.result()
        if outcome.status is not SyncStatus.SUCCEEDED:
            raise RuntimeError(f"expected a successful sync, got {outcome}")
        return handle

    async def compensation(self) -> WorkflowHandle[Any, SyncOutcome]:
        tenant_id, _ = await make_tenant(self.db)
        with HubSpotFake(token="pat") as hs, SalesforceFake() as sf:
            hs.add_contact(
                {"email": "dan@example.com", "firstname": "Daniel", "leadflow_score": "15"}
            )
            sf.reject = {"Rating": "HOT"}  # a validation rule refuses the second write
            await self.integration(
                tenant_id, CrmKind.HUBSPOT, hs.url, {"access_token": "pat"}, HS_MAPPING
            )
            await self.integration(
                tenant_id, CrmKind.SALESFORCE, sf.url, SF_CREDENTIALS, SF_MAPPING
            )
            lead_id = await self.lead(
                tenant_id, name="Dan Brown", email="dan@example.com", score=90, quality="HOT"
            )
            handle = await self.sync(tenant_id, lead_id)
            outcome = await handle.result()
        if outcome.status is not SyncStatus.ROLLED_BACK:
            raise RuntimeError(f"expected a rolled-back sync, got {outcome}")
        return handle


async def main(prefix: str) -> None:
    targets = {kind: HERE / f"{prefix}_{kind}.json" for kind in ("success", "compensation")}
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
            worker = WorkerProcess(settings, queues=[CRM], client=env.client)
            await worker.start()
            task = asyncio.create_task(worker.run())
            try:
                recorder = Recorder(env.client, db)
                for kind, record in (
                    ("success", recorder.success),
                    ("compensation", recorder.compensation),
                ):
                    handle = await record()
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
    parser.add_argument("prefix", help="e.g. crm_sync_v2 (files <prefix>_<kind>.json)")
    args = parser.parse_args()
    if not args.prefix.startswith("crm_sync_") or args.prefix.endswith(".json"):
        raise SystemExit("the prefix is crm_sync_<version>, without .json")
    asyncio.run(main(args.prefix))
