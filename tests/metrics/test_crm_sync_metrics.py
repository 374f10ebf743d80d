"""`leadflow_crm_syncs`: each saga step of a sync, by CRM kind and step outcome, counted when the
sync's outcome is recorded, once (a retried record step counts nothing)."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from prometheus_client import REGISTRY

from activities.crm.activities import CrmActivities
from models.crm import (
    BUILTIN_INTEGRATION_ID,
    CrmKind,
    RecordSyncInput,
    SagaStepOutcome,
    StepStatus,
    SyncOutcome,
    SyncStatus,
)
from models.db import Database
from tests.conftest import make_tenant


def syncs(crm: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value("leadflow_crm_syncs_total", {"crm": crm, "outcome": outcome})
    return value or 0.0


async def test_steps_are_counted_once_per_recorded_sync(
    sqlite_db: Database, settings_factory: Any, sqlite_url: str
) -> None:
    tenant_id, _ = await make_tenant(sqlite_db)
    before = {
        ("builtin", "succeeded"): syncs("builtin", "succeeded"),
        ("hubspot", "compensated"): syncs("hubspot", "compensated"),
        ("pipedrive", "failed"): syncs("pipedrive", "failed"),
    }
    outcome = SyncOutcome(
        tenant_id=tenant_id,
        lead_id=uuid.uuid4().hex,
        version=2,
        status=SyncStatus.ROLLED_BACK,
        steps=(
            SagaStepOutcome(
                integration_id=BUILTIN_INTEGRATION_ID,
                kind=CrmKind.BUILTIN,
                name="built-in",
                status=StepStatus.SUCCEEDED,
            ),
            SagaStepOutcome(
                integration_id=uuid.uuid4().hex,
                kind=CrmKind.HUBSPOT,
                name="hubspot",
                status=StepStatus.COMPENSATED,
                remote_id="101",
            ),
            SagaStepOutcome(
                integration_id=uuid.uuid4().hex,
                kind=CrmKind.PIPEDRIVE,
                name="pipedrive",
                status=StepStatus.FAILED,
                error="HTTP 400",
            ),
        ),
    )
    async with httpx.AsyncClient() as http:
        activities = CrmActivities(
            settings=settings_factory(sqlite_url), db=sqlite_db, http=http, adapters={}
        )
        request = RecordSyncInput(run_key=f"run-{uuid.uuid4().hex}:1", outcome=outcome)
        assert await activities.record_crm_sync(request) is True
        assert await activities.record_crm_sync(request) is False  # a retry: already stored

    assert syncs("builtin", "succeeded") == before[("builtin", "succeeded")] + 1
    assert syncs("hubspot", "compensated") == before[("hubspot", "compensated")] + 1
    assert syncs("pipedrive", "failed") == before[("pipedrive", "failed")] + 1
