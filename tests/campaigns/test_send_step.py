"""The campaign's send step (`campaign_service.send_step`, the activity's body) against the real
dev server and database: a retry never starts a second conversation, a conversation the
campaign did not start is never interrupted, a lead that became do-not-contact after the
campaign was created is skipped at send time."""

from __future__ import annotations

from collections.abc import Callable

from sqlmodel import select
from temporalio.client import Client

from models import campaign_service
from models.campaign_service import send_step
from models.campaign_tables import CampaignRecipient
from models.campaigns import CampaignSpec, RecipientStatus, SkipReason
from models.common import Channel
from models.db import Database
from models.lead_service import set_do_not_contact
from models.outreach import start_outreach
from models.repo import campaigns as repo
from models.repo.playbooks import playbook_for
from models.settings import Settings
from models.tenant import TenantSettings
from tests.campaigns.seed import Person, seed_job
from tests.conftest import make_tenant

ALWAYS = {"start": "00:00", "end": "00:00", "timezone": "UTC"}


async def _run_id(client: Client, workflow_id: str) -> str:
    """The latest run of the workflow: unchanged means nothing started it again."""
    return (await client.get_workflow_handle(workflow_id).describe()).run_id


async def test_a_retried_step_never_starts_a_second_conversation_and_skips_are_decided_late(
    sqlite_db: Database,
    temporal_client: Client,
    settings_factory: Callable[..., Settings],
    sqlite_url: str,
) -> None:
    settings = settings_factory(sqlite_url)
    db = sqlite_db
    tenant, _ = await make_tenant(db)
    job_id, (ann, bob, cid) = await seed_job(
        db,
        tenant,
        [
            Person("Ann Ames", "ann@acme.test"),
            Person("Bob Bell", "bob@bell.test"),
            Person("Cid Cole", "cid@cole.test"),
        ],
    )
    async with db.session() as session:
        # Cid is already talking to us (an operator's outreach): the campaign leaves him be.
        running = await start_outreach(
            temporal_client,
            session,
            settings,
            tenant_id=tenant,
            channel=Channel.EMAIL,
            contact="cid@cole.test",
            text="Hello Cid",
        )
        view = await campaign_service.create_campaign(
            session,
            temporal_client,
            tenant_id=tenant,
            tenant_settings=TenantSettings(),
            playbook=playbook_for(TenantSettings(), tenant_name=tenant),
            spec=CampaignSpec.model_validate(
                {"job_id": job_id, "hold_for_approval": True, "send_window": ALWAYS}
            ),
        )
        # Bob opts out after the campaign froze him.
        change = await set_do_not_contact(
            session, tenant_id=tenant, lead_id=bob, do_not_contact=True, by="test", reason="no"
        )
        assert change is not None and change.changed

    async def step(position: int) -> tuple[RecipientStatus, SkipReason | None, str | None]:
        async with db.session() as session:
            result = await send_step(
                session,
                temporal_client,
                settings,
                tenant_id=tenant,
                campaign_id=view.id,
                position=position,
            )
        return result.status, result.reason, result.conversation_id

    cid_run = await _run_id(temporal_client, running)
    status, _, conversation_id = await step(1)
    assert status == RecipientStatus.SENT and conversation_id is not None
    ann_run = await _run_id(temporal_client, conversation_id)
    assert await step(1) == (RecipientStatus.SENT, None, conversation_id)  # answered, not redone
    # The activity died after starting the conversation, before recording it: its retry finds
    # the conversation (its memo names the campaign) and records it, starting nothing.
    async with db.session() as session:
        recipient = await repo.get_recipient(session, campaign_id=view.id, position=1)
        assert recipient is not None and recipient.lead_id == ann
        await repo.mark_recipient(session, recipient=recipient, status=RecipientStatus.SENDING)
    assert await step(1) == (RecipientStatus.SENT, None, conversation_id)
    assert await _run_id(temporal_client, conversation_id) == ann_run

    assert await step(2) == (RecipientStatus.SKIPPED, SkipReason.DO_NOT_CONTACT, None)
    assert await step(3) == (RecipientStatus.SKIPPED, SkipReason.IN_CONVERSATION, None)
    assert await _run_id(temporal_client, running) == cid_run

    async with db.session() as session:
        rows = await repo.recipient_facts(session, campaign_id=view.id)
        recipients = (
            await session.exec(
                select(CampaignRecipient).where(CampaignRecipient.campaign_id == view.id)
            )
        ).all()
        by_position = {r.position: r for r in recipients}
    assert sorted((r.status, r.skip_reason) for r in rows) == [
        ("sent", None),
        ("skipped", "do_not_contact"),
        ("skipped", "in_conversation"),
    ]
    assert by_position[3].lead_id == cid
