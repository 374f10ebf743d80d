"""Activities of CampaignWorkflow: one send step per recipient, and the campaign's status.

Both are thin: the rules are the campaign service's (models/campaign_service.py). The send step
starts conversations through the worker's own Temporal client (`activity.client()`)."""

from __future__ import annotations

from temporalio import activity
from temporalio.exceptions import ApplicationError

from models import campaign_service
from models.campaigns import (
    TERMINAL_STATUSES,
    CampaignStatusUpdate,
    SendStepInput,
    SendStepResult,
)
from models.db import Database
from models.repo import campaigns as repo
from models.settings import Settings


class CampaignActivities:
    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings

    @activity.defn
    async def send_campaign_step(self, input: SendStepInput) -> SendStepResult:
        """Start the recipient's outreach conversation, or skip it with the reason (recorded on
        the recipient). Safe to retry: it never starts a second conversation for a recipient."""
        async with self._db.session() as session:
            try:
                return await campaign_service.send_step(
                    session,
                    activity.client(),
                    self._settings,
                    tenant_id=input.tenant_id,
                    campaign_id=input.campaign_id,
                    position=input.position,
                )
            except campaign_service.CampaignError as exc:
                # Only "not found" is raised: the campaign (or its rows) was erased.
                raise ApplicationError(
                    f"{exc.error}: {exc.detail}", type="CampaignNotFound", non_retryable=True
                ) from exc

    @activity.defn
    async def set_campaign_status(self, input: CampaignStatusUpdate) -> None:
        async with self._db.session() as session:
            await repo.set_status(
                session,
                tenant_id=input.tenant_id,
                campaign_id=input.campaign_id,
                status=input.status.value,
                finished=input.status in TERMINAL_STATUSES,
            )
