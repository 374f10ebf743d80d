"""Erasure reaches a disabled CRM connection (models/integration_service.py): disabling stops the
syncs, but the records earlier syncs pushed there are still the person's data, so
`erase_crm_records` deletes them there too. On SQLite and PostgreSQL, against two HubSpot fakes
over real HTTP: the sync plan leaves the disabled one out, the erasure deletes in both."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from temporalio.testing import ActivityEnvironment

from activities.crm.activities import CrmActivities
from activities.crm.plugin import crm_plugin
from models import integration_service
from models.crm import CrmKind, LoadSyncPlanInput
from models.db import Database
from models.erasure import ContactRef
from models.repo import crm as crm_repo
from models.repo import leads as lead_repo
from models.settings import Settings
from tests.conftest import TEST_SECRET, make_tenant
from tests.fakes.crm import HubSpotFake


async def test_erasure_deletes_the_record_in_a_disabled_crm_too(
    db: Database, database_url: str, settings_factory: Callable[..., Settings]
) -> None:
    settings = settings_factory(database_url)
    tid, _ = await make_tenant(db)
    with HubSpotFake(token="pat-on") as on, HubSpotFake(token="pat-off") as off:
        on_id = on.add_contact({"email": "eva@example.com"})
        off_id = off.add_contact({"email": "eva@example.com"})
        async with db.session() as s:
            lead = await lead_repo.create_lead(
                s, tenant_id=tid, channel="waha", address="4917@c.us", email="eva@example.com"
            )
            ids: dict[str, str] = {}
            for name, fake, remote in (("on", on, on_id), ("off", off, off_id)):
                integration = await crm_repo.create_integration(
                    s,
                    tenant_id=tid,
                    kind=CrmKind.HUBSPOT,
                    name=name,
                    credentials={"access_token": f"pat-{name}"},
                    field_mapping=None,
                    base_url=fake.url,
                    secret_key=TEST_SECRET,
                )
                ids[name] = integration.id
                await crm_repo.save_link(
                    s,
                    tenant_id=tid,
                    integration_id=integration.id,
                    lead_id=lead.id,
                    remote_id=remote,
                )
            # disabled through the service the API's PATCH and the CLI call
            await integration_service.update_integration(
                s,
                tenant_id=tid,
                integration_id=ids["off"],
                edit=integration_service.IntegrationEdit(enabled=False),
                secret_key=TEST_SECRET,
                allowlist=settings.ssrf_allowlist,
            )
        async with httpx.AsyncClient() as http:
            acts = CrmActivities(
                settings=settings, db=db, http=http, adapters=crm_plugin().crm_adapters
            )
            env = ActivityEnvironment()
            plan = await env.run(
                acts.load_crm_sync_plan, LoadSyncPlanInput(tenant_id=tid, lead_id=lead.id)
            )
            erased = await env.run(
                acts.erase_crm_records, ContactRef(tenant_id=tid, lead_id=lead.id)
            )

    # syncing leaves the disabled connection out ...
    assert [c.integration_id for c in plan.connections] == [ids["on"]]
    # ... erasure does not: the record is deleted in both CRMs
    outcomes = {r.integration_id: (r.outcome, r.remote_id) for r in erased.records}
    assert outcomes == {ids["on"]: ("deleted", on_id), ids["off"]: ("deleted", off_id)}
    assert on.contacts == {} and off.contacts == {}
    assert len(off.calls("DELETE", f"/crm/v3/objects/contacts/{off_id}$")) == 1
