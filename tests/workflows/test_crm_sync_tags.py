"""The lead's tags and custom attributes through CrmSyncWorkflow, on the real Temporal dev server,
against the wire-level fakes: Chatwoot conversation labels (chatwoot.md §7, the POST replaces the
list) and contact custom attributes (§9), GoHighLevel contact tags (gohighlevel.md §3, add and
remove), HubSpot properties (hubspot.md: every value a string) and a Pipedrive custom field
(pipedrive.md: custom field keys are 40-hex); a rolled-back saga puts labels and tags back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.client import Client

from models.common import Channel, Role, Stage
from models.conversation import RecordTurnInput
from models.crm import DEFAULT_FIELD_MAPPINGS, CrmKind, StepStatus, SyncStatus
from models.db import Database
from models.messages import TranscriptEntry
from models.repo import conversations as conversation_repo
from models.settings import Settings
from tests.fakes.crm import ChatwootCrmFake, HubSpotFake, PipedriveFake, SalesforceFake
from tests.fakes.gohighlevel import GoHighLevelFake
from tests.workflows.test_crm_sync import SF_MAPPING, Env

pytestmark = pytest.mark.timeout(120)

TAGS = ("budget-20k-30k", "interest-skoda-octavia", "lead-hot", "stage-scheduling", "test-drive")
SPOKE = datetime(2026, 5, 4, 10, 30, tzinfo=UTC)
THREAD = "77"
CW_CREDENTIALS = {"api_token": "cw-token", "account_id": "1"}
SF_CREDENTIALS = {"client_id": "client-key", "client_secret": "client-secret"}
GHL_LOCATION = "ve9EPM428h8vShlRW1KT"
GHL_CREDENTIALS = {"private_integration_token": "pit-1", "location_id": GHL_LOCATION}
PD_TAGS_FIELD = "b" * 40


@pytest.fixture
def settings(settings_factory: Any, sqlite_url: str) -> Settings:
    made: Settings = settings_factory(sqlite_url)
    return made


@pytest.fixture
async def env(
    temporal_client: Client, sqlite_db: Database, settings: Settings, task_queue: str
) -> Env:
    e = Env(temporal_client, sqlite_db, settings, task_queue)
    await e.setup_tenant()
    return e


async def _tagged_lead(env: Env, *, tags: tuple[str, ...] = TAGS, quality_hot: bool = True) -> str:
    """A lead as a Chatwoot conversation's record step leaves it: fields, score, tags, and the
    conversation (thread 77) with the lead's message."""
    lead_id = f"lead-{env.tenant_id}"
    async with env.db.session() as session:
        await conversation_repo.record_turn(
            session,
            record=RecordTurnInput(
                conversation_id=f"conv:{env.tenant_id}:chatwoot:1",
                tenant_id=env.tenant_id,
                channel=Channel.CHATWOOT,
                contact="cw-contact-1",
                contact_name="Ana Lima",
                thread=THREAD,
                turn_key="turn:1",
                entries=(
                    TranscriptEntry(
                        role=Role.LEAD, text="test drive?", at=SPOKE, provider_message_id="cw-1"
                    ),
                ),
                stage=Stage.SCHEDULING,
                lead_id=lead_id,
                fields={
                    "email": "ana@example.com",
                    "make": "Skoda",
                    "model": "Octavia",
                    "budget": 25000,
                },
                tags=tags,
                turns=1,
            ),
        )
    await env.change_lead(
        lead_id, score=88 if quality_hot else 20, quality="HOT" if quality_hot else "COLD"
    )
    return lead_id


async def test_tags_become_chatwoot_labels_and_crm_tags_with_the_attributes(env: Env) -> None:
    with ChatwootCrmFake() as cw, HubSpotFake(token="pat") as hs, PipedriveFake() as pd:
        # Labels a team set by hand stay; leadflow's labels that no longer hold go.
        cw.labels[THREAD] = ["support", "stage-qualifying", "lead-cold"]
        await env.integration(
            CrmKind.CHATWOOT, cw.url, CW_CREDENTIALS, DEFAULT_FIELD_MAPPINGS[CrmKind.CHATWOOT]
        )
        await env.integration(
            CrmKind.HUBSPOT,
            hs.url,
            {"access_token": "pat"},
            DEFAULT_FIELD_MAPPINGS[CrmKind.HUBSPOT],
        )
        # Pipedrive has no default for tags (custom field keys are per company): mapped.
        await env.integration(
            CrmKind.PIPEDRIVE,
            pd.url,
            {"api_token": "pd-token"},
            {"name": "name", "email": "email", "tags": PD_TAGS_FIELD},
        )
        lead_id = await _tagged_lead(env)
        async with env.worker():
            outcome = await (await env.start(lead_id)).result()

        assert outcome.status is SyncStatus.SUCCEEDED, outcome
        assert cw.labels[THREAD] == ["support", *TAGS]
        [contact] = cw.contacts.values()
        custom = contact["custom_attributes"]
        assert custom["lead_score"] == 88 and custom["lead_quality"] == "HOT"
        assert custom["budget_max"] == 25000 and "budget_min" not in custom  # unknown: left out
        assert custom["test_drive_requested"] is True and custom["financing_needed"] is False
        assert custom["urgency"] == "normal" and custom["sentiment"] == "neutral"
        assert custom["source_channel"] == "chatwoot" and custom["total_conversations"] == 1
        assert custom["last_interest_date"] == "2026-05-04"
        assert "tags" not in custom  # tags are labels in Chatwoot

        props = hs.by_email("ana@example.com")
        assert props is not None
        values = props["properties"]
        assert values["leadflow_tags"] == ";".join(TAGS)
        assert values["leadflow_test_drive_requested"] == "true"
        assert values["leadflow_budget_max"] == "25000"
        assert values["leadflow_last_interest_date"] == "2026-05-04"
        assert values["leadflow_total_conversations"] == "1"

        [person] = pd.persons.values()
        assert person["custom_fields"][PD_TAGS_FIELD] == ";".join(TAGS)

        # The stage moves on: the next sync replaces leadflow's stage label, nothing else.
        moved = tuple(sorted({*TAGS, "stage-closed"} - {"stage-scheduling"}))
        async with env.db.session() as session:
            await conversation_repo.record_turn(
                session,
                record=RecordTurnInput(
                    conversation_id=f"conv:{env.tenant_id}:chatwoot:1",
                    tenant_id=env.tenant_id,
                    channel=Channel.CHATWOOT,
                    contact="cw-contact-1",
                    turn_key="close:1",
                    stage=Stage.CLOSED,
                    lead_id=lead_id,
                    tags=moved,
                    turns=1,
                ),
            )
        cw.labels[THREAD].append("billing")  # a hand-set label added meanwhile
        async with env.worker():
            outcome = await (await env.start(lead_id, reason="stage")).result()
        assert outcome.status is SyncStatus.SUCCEEDED, outcome
        assert "stage-scheduling" not in cw.labels[THREAD]
        assert {"support", "billing", "stage-closed"} <= set(cw.labels[THREAD])


async def test_a_rolled_back_saga_puts_the_chatwoot_labels_back(env: Env) -> None:
    with ChatwootCrmFake() as cw, SalesforceFake() as sf:
        before = ["support", "stage-qualifying"]
        cw.labels[THREAD] = list(before)
        cw.add_contact("Ana Lima", "ana@example.com", lead_score=10)
        sf.reject = {"Rating": "HOT"}
        await env.integration(
            CrmKind.CHATWOOT, cw.url, CW_CREDENTIALS, DEFAULT_FIELD_MAPPINGS[CrmKind.CHATWOOT]
        )
        await env.integration(CrmKind.SALESFORCE, sf.url, SF_CREDENTIALS, SF_MAPPING)
        lead_id = await _tagged_lead(env)
        async with env.worker():
            outcome = await (await env.start(lead_id)).result()

        assert outcome.status is SyncStatus.ROLLED_BACK, outcome
        assert [s.status for s in outcome.steps] == [StepStatus.COMPENSATED, StepStatus.FAILED]
        # the labels were replaced by the tags, then set back exactly
        writes = [c.body["labels"] for c in cw.calls("POST", f"/conversations/{THREAD}/labels$")]
        assert writes == [["support", *TAGS], before]
        assert cw.labels[THREAD] == before
        [contact] = cw.contacts.values()
        assert contact["custom_attributes"]["lead_score"] == 10


async def test_gohighlevel_gets_the_tags_and_loses_only_leadflows_stale_ones(env: Env) -> None:
    with GoHighLevelFake(token="pit-1", location_id=GHL_LOCATION) as ghl, SalesforceFake() as sf:
        cid = ghl.add_contact(
            email="ana@example.com",
            firstName="Ana",
            tags=["from-the-showroom", "stage-qualifying", "lead-cold"],
        )
        await env.integration(
            CrmKind.GOHIGHLEVEL,
            ghl.url,
            GHL_CREDENTIALS,
            DEFAULT_FIELD_MAPPINGS[CrmKind.GOHIGHLEVEL],
        )
        lead_id = await _tagged_lead(env)
        async with env.worker():
            outcome = await (await env.start(lead_id)).result()
        assert outcome.status is SyncStatus.SUCCEEDED, outcome
        assert ghl.contacts[cid]["tags"] == ["from-the-showroom", *TAGS]
        [removed] = ghl.calls("DELETE", f"^/contacts/{cid}/tags$")
        assert removed.body == {"tags": ["stage-qualifying", "lead-cold"]}

        # A later CRM refuses: the tags go back to what the contact had before this saga.
        tags_before = list(ghl.contacts[cid]["tags"])
        moved = tuple(sorted({*TAGS, "vip"} - {"test-drive"}))
        async with env.db.session() as session:
            await conversation_repo.record_turn(
                session,
                record=RecordTurnInput(
                    conversation_id=f"conv:{env.tenant_id}:chatwoot:1",
                    tenant_id=env.tenant_id,
                    channel=Channel.CHATWOOT,
                    contact="cw-contact-1",
                    turn_key="turn:2",
                    stage=Stage.SCHEDULING,
                    lead_id=lead_id,
                    tags=moved,
                    turns=2,
                ),
            )
        sf.reject = {"Rating": "HOT"}
        await env.integration(CrmKind.SALESFORCE, sf.url, SF_CREDENTIALS, SF_MAPPING)
        async with env.worker():
            outcome = await (await env.start(lead_id, reason="vip")).result()
        assert outcome.status is SyncStatus.ROLLED_BACK, outcome
        assert sorted(ghl.contacts[cid]["tags"]) == sorted(tags_before)
