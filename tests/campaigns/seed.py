"""Test data for campaigns: an enrichment job with done rows carrying a personalised e-mail,
and the leads those rows became (as `lead_from_enriched_row` leaves them), written directly."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from temporalio.client import Client
from temporalio.worker import Worker

from activities.campaign import CampaignActivities
from models.campaign_service import TASK_QUEUE
from models.conversation import lead_id_for
from models.db import Database
from models.enrichment_tables import EnrichmentJob, EnrichmentRecord
from models.settings import Settings
from models.tables import Lead
from workers.worker import workflow_runner
from workflows.campaign import CampaignWorkflow


@dataclass(frozen=True)
class Person:
    name: str
    email: str | None
    phone: str | None = None
    company: str = "Acme"
    do_not_contact: bool = False


async def seed_job(db: Database, tenant_id: str, people: Sequence[Person]) -> tuple[str, list[str]]:
    """A finished job whose rows are `people`, and their leads; returns (job id, lead ids)."""
    job_id = uuid.uuid4().hex[:12]
    lead_ids: list[str] = []
    async with db.session() as session:
        session.add(
            EnrichmentJob(
                id=job_id, tenant_id=tenant_id, filename="leads.csv", status="completed",
                total=len(people), columns=["name", "email", "company", "phone"],
            )
        )  # fmt: skip
        await session.flush()
        for n, person in enumerate(people, start=1):
            data: dict[str, Any] = {"name": person.name, "company": person.company}
            if person.email:
                data["email"] = person.email
            if person.phone:
                data["phone"] = person.phone
            session.add(
                EnrichmentRecord(
                    job_id=job_id, tenant_id=tenant_id, row_number=n, data=data, status="done",
                    website=f"https://{person.company.lower()}{n}.example",
                    email_subject=f"An idea for {person.company}",
                    email_body=f"Dear {person.name}, we wrote this for {person.company}.",
                )
            )  # fmt: skip
            if person.email:
                channel, address = "email", person.email
            else:
                channel, address = "waha", f"{(person.phone or '').lstrip('+')}@c.us"
            # keyed like a conversation's lead, as leads from jobs are (lead_from_enriched_row)
            lead_id = lead_id_for(tenant_id, channel, address)
            session.add(
                Lead(
                    id=lead_id, tenant_id=tenant_id, channel=channel, address=address,
                    name=person.name, email=person.email, phone=person.phone,
                    fields={"company": person.company}, source_job_id=job_id,
                    do_not_contact=person.do_not_contact,
                    company_domain=f"{person.company.lower()}{n}.example",
                )
            )  # fmt: skip
            lead_ids.append(lead_id)
        await session.commit()
    return job_id, lead_ids


@asynccontextmanager
async def campaign_worker(
    client: Client, db: Database, settings: Settings
) -> AsyncIterator[Worker]:
    """CampaignWorkflow and its real activities on their task queue, as the coordinator will
    register them in the worker process."""
    activities = CampaignActivities(db, settings)
    worker = Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[CampaignWorkflow],
        activities=[activities.send_campaign_step, activities.set_campaign_status],
        workflow_runner=workflow_runner(settings.workflow_sandbox),
    )
    async with worker:
        yield worker
