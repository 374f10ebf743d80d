"""CRM repository functions on SQLite and PostgreSQL."""

from __future__ import annotations

from models.crm import CrmKind, SagaStepOutcome, StepStatus, SyncOutcome, SyncStatus
from models.crm_tables import Integration
from models.db import Database
from models.repo import crm as crm_repo
from models.repo import leads as lead_repo
from tests.conftest import TEST_SECRET, make_tenant


async def test_integration_credentials_are_encrypted_and_ordered(db: Database) -> None:
    tid, _ = await make_tenant(db)
    async with db.session() as s:
        a = await crm_repo.create_integration(
            s,
            tenant_id=tid,
            kind=CrmKind.HUBSPOT,
            name="hs",
            credentials={"access_token": "pat-secret"},
            secret_key=TEST_SECRET,
        )
        b = await crm_repo.create_integration(
            s,
            tenant_id=tid,
            kind=CrmKind.PIPEDRIVE,
            name="pd",
            credentials={"api_token": "x"},
            secret_key=TEST_SECRET,
        )
        assert "pat-secret" not in a.credentials_encrypted
        assert a.base_url == "https://api.hubapi.com"
        assert (a.position, b.position) == (0, 1)
        assert crm_repo.integration_credentials(a, secret_key=TEST_SECRET) == {
            "access_token": "pat-secret"
        }
        listed = await crm_repo.list_integrations(s, tenant_id=tid)
        assert [i.name for i in listed] == ["hs", "pd"]
        other, _ = await make_tenant(db)
        assert await crm_repo.get_integration(s, tenant_id=other, integration_id=a.id) is None


async def test_idempotency_echo_markers_and_sync_runs(db: Database) -> None:
    tid, _ = await make_tenant(db)
    async with db.session() as s:
        lead = await lead_repo.create_lead(s, tenant_id=tid, channel="waha", address="123@c.us")
        # a sync run records links only to connections that exist (a deleted one gets none)
        s.add(Integration(id="i", tenant_id=tid, kind="hubspot", name="i", base_url=""))
        await s.commit()
        first = await crm_repo.save_idempotent_result(
            s, key="k1", tenant_id=tid, integration_id="i", result={"remote_id": "1"}
        )
        second = await crm_repo.save_idempotent_result(
            s, key="k1", tenant_id=tid, integration_id="i", result={"remote_id": "2"}
        )
        assert first == second == {"remote_id": "1"}
        await crm_repo.delete_idempotent_result(s, key="k1")
        assert await crm_repo.get_idempotent_result(s, key="k1") is None

        await crm_repo.add_write_markers(
            s, tenant_id=tid, integration_id="i", remote_id="9", values={"score": 42, "dnc": True}
        )
        assert await crm_repo.is_echo(
            s, integration_id="i", remote_id="9", prop="score", value="42"
        )
        assert await crm_repo.is_echo(
            s, integration_id="i", remote_id="9", prop="dnc", value="true"
        )
        assert not await crm_repo.is_echo(
            s, integration_id="i", remote_id="9", prop="score", value="43"
        )

        outcome = SyncOutcome(
            tenant_id=tid,
            lead_id=lead.id,
            version=1,
            status=SyncStatus.SUCCEEDED,
            steps=(
                SagaStepOutcome(
                    integration_id="i",
                    kind=CrmKind.HUBSPOT,
                    name="hs",
                    status=StepStatus.SUCCEEDED,
                    remote_id="9",
                ),
            ),
        )
        assert await crm_repo.record_sync_run(s, run_key="r1", outcome=outcome)
        assert not await crm_repo.record_sync_run(s, run_key="r1", outcome=outcome)
        links = await crm_repo.links_of_lead(s, tenant_id=tid, lead_id=lead.id)
        assert [(link.remote_id, link.outcome, link.last_version) for link in links] == [
            ("9", "succeeded", 1)
        ]
        found = await crm_repo.find_link_by_remote_id(s, integration_id="i", remote_id="9")
        assert found is not None and found.lead_id == lead.id

        changed = await lead_repo.update_lead(
            s, lead=lead, changes={"do_not_contact": True, "score": 99}, only_inbound=True
        )
        assert changed == {"do_not_contact": True}
        assert lead.version == 2 and lead.score == 0
