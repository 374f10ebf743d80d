"""Start an outreach conversation: we write first. The one implementation behind
`POST /api/v1/conversations` and a campaign's send step (activities/campaign.py), so both refuse
a do-not-contact contact the same way and start the same workflow, with the same id, input and
search attributes.

The conversation workflow is started by name (`WORKFLOW_NAME`): the API must not import
workflow code, and this module is imported by both."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from models import search_attributes, task_queues
from models.common import Channel, Stage
from models.conversation import (
    WORKFLOW_NAME,
    ConversationInput,
    OutreachRequest,
    conversation_workflow_id,
)
from models.lead_service import do_not_contact_reason
from models.settings import Settings

MEMO_CAMPAIGN = "campaign_id"
"""Memo key naming the campaign that started a conversation: a retried send step asks it."""


class OutreachRefused(Exception):
    """The contact is do-not-contact (`reason` says who and how to lift it)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConversationRunning(Exception):
    """The contact's conversation is running: an outreach would interrupt it."""

    def __init__(self, workflow_id: str) -> None:
        super().__init__(workflow_id)
        self.workflow_id = workflow_id


async def start_outreach(
    client: Client,
    session: AsyncSession,
    settings: Settings,
    *,
    tenant_id: str,
    channel: Channel,
    contact: str,
    contact_name: str | None = None,
    thread: str | None = None,
    text: str | None = None,
    instruction: str | None = None,
    subject: str | None = None,
    campaign_id: str | None = None,
) -> str:
    """Start the contact's conversation with a first message; returns its workflow id.

    `contact` is already normalised for the channel (`models.identity.normalise_contact`).
    Raises `OutreachRefused` for a do-not-contact contact (checked before anything starts; the
    workflow refuses too, as a backstop), `ConversationRunning` when its conversation runs,
    `models.identity.ContactIdError` for a contact that is no address on the channel."""
    workflow_id = conversation_workflow_id(tenant_id, channel, contact)
    refusal = await do_not_contact_reason(
        session, tenant_id=tenant_id, channel=channel, contact=contact
    )
    if refusal is not None:
        raise OutreachRefused(refusal)
    memo: dict[str, Any] | None = {MEMO_CAMPAIGN: campaign_id} if campaign_id else None
    try:
        await client.start_workflow(
            WORKFLOW_NAME,
            ConversationInput.new(
                tenant_id=tenant_id,
                channel=channel,
                contact=contact,
                contact_name=contact_name,
                thread=thread,
                outreach=OutreachRequest(text=text, instruction=instruction),
                subject=subject,
                campaign_id=campaign_id,
                debounce_seconds=settings.debounce_seconds,
                history_limit=settings.conversation_history_limit,
            ),
            id=workflow_id,
            task_queue=task_queues.CONVERSATIONS,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            memo=memo,
            search_attributes=TypedSearchAttributes(
                [
                    SearchAttributePair(search_attributes.TENANT, tenant_id),
                    SearchAttributePair(search_attributes.CHANNEL, channel.value),
                    SearchAttributePair(search_attributes.STAGE, Stage.INITIAL_OUTREACH.value),
                ]
            ),
        )
    except WorkflowAlreadyStartedError as exc:
        raise ConversationRunning(workflow_id) from exc
    return workflow_id


async def started_by_campaign(client: Client, workflow_id: str, campaign_id: str) -> bool:
    """Whether the latest run of `workflow_id` is a conversation this campaign started (its
    memo says so): a send step retried after its start went through counts it as sent."""
    from temporalio.service import RPCError, RPCStatusCode

    try:
        description = await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    memo = await description.memo()
    return memo.get(MEMO_CAMPAIGN) == campaign_id
