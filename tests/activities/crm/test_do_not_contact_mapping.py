"""Do-not-contact in each CRM's default mapping, and Pipedrive's marketing status over real HTTP
against the fake (pipedrive.md: no_consent | unsubscribed | subscribed | archived)."""

from __future__ import annotations

import httpx
import pytest

from activities.crm.base import Connection, mapped_values
from activities.crm.pipedrive import PipedriveAdapter
from models.crm import (
    DEFAULT_FIELD_MAPPINGS,
    CrmConnectionView,
    CrmKind,
    LeadSnapshot,
    validate_field_mapping,
)
from tests.fakes.crm import PipedriveFake

LEAD = LeadSnapshot(
    tenant_id="t",
    lead_id="lead-1",
    version=4,
    channel="waha",
    address="31612345678@c.us",
    name="Ana Lima",
    email="ana@example.com",
    phone="+31612345678",
    do_not_contact=True,
)


@pytest.mark.parametrize("kind", [k for k in CrmKind if k is not CrmKind.BUILTIN])
def test_every_crm_maps_do_not_contact_by_default_with_a_valid_target(kind: CrmKind) -> None:
    mapping = DEFAULT_FIELD_MAPPINGS[kind]
    assert "do_not_contact" in mapping
    assert validate_field_mapping(kind, mapping) == []
    # A lifted flag is a value too (False is sent, not left out as unknown).
    lifted = LEAD.model_copy(update={"do_not_contact": False})
    assert mapped_values(lifted, mapping)[mapping["do_not_contact"]] is False


def test_pipedrive_takes_the_marketing_status_but_no_other_standard_key() -> None:
    assert validate_field_mapping(CrmKind.PIPEDRIVE, {"do_not_contact": "marketing_status"}) == []
    (problem,) = validate_field_mapping(CrmKind.PIPEDRIVE, {"do_not_contact": "opt_out"})
    assert problem.field == "do_not_contact"


async def test_pipedrive_unsubscribes_never_resubscribes_and_restores() -> None:
    with PipedriveFake(api_token="pd") as pd:
        person_id = pd.add_person("Ana Lima", "ana@example.com")
        pd.persons[person_id]["marketing_status"] = "subscribed"
        view = CrmConnectionView(
            integration_id="pd-1",
            tenant_id="t",
            kind=CrmKind.PIPEDRIVE,
            name="pd",
            base_url=pd.url,
        )
        conn = Connection(view=view, credentials={"api_token": "pd"})
        async with httpx.AsyncClient() as http:
            adapter = PipedriveAdapter(http)
            before = await adapter.read(conn, LEAD, None)
            assert before is not None and before.values["marketing_status"] == "subscribed"

            await adapter.upsert(conn, LEAD, before.remote_id, mapped_values(LEAD, conn.mapping))
            assert pd.persons[person_id]["marketing_status"] == "unsubscribed"
            # The compensation of that write puts the status it read back.
            await adapter.restore(conn, LEAD, before.remote_id, before.values, before.extra)
            assert pd.persons[person_id]["marketing_status"] == "subscribed"

            await adapter.upsert(conn, LEAD, before.remote_id, mapped_values(LEAD, conn.mapping))
            lifted = LEAD.model_copy(update={"do_not_contact": False, "version": 5})
            await adapter.upsert(
                conn, lifted, before.remote_id, mapped_values(lifted, conn.mapping)
            )
            # A lifted opt-out is not consent to marketing: the status stays.
            assert pd.persons[person_id]["marketing_status"] == "unsubscribed"
            patches = pd.calls("PATCH", rf"/api/v2/persons/{person_id}$")
            assert "marketing_status" not in patches[-1].body

            # A new person who opted out is created unsubscribed.
            created = await adapter.upsert(
                conn,
                LEAD.model_copy(update={"email": "bo@example.com", "phone": None}),
                None,
                mapped_values(LEAD.model_copy(update={"email": "bo@example.com"}), conn.mapping),
            )
            assert created.created
            assert pd.persons[int(created.remote_id)]["marketing_status"] == "unsubscribed"
