"""The campaigns domain's rules, in one place: the API (api/routes/campaigns.py), the CLI
(through the API) and the campaign's activities (activities/campaign.py) call these.

- **Creation** (`create_campaign`): the leads of an enrichment job, or of a lead filter (the
  filters of `GET /api/v1/leads`), are frozen as recipients — references to the lead and to the
  enrichment row whose personalised e-mail it gets, never copies. A lead without an address on
  the channel (e-mail; WhatsApp: a phone), without a recorded WhatsApp opt-in (WhatsApp), or
  without a personalised e-mail (when no text is given) is not frozen; the answer counts them
  by reason. Bad input starts nothing: an unknown job is 404, an empty selection 422.
- **The send window** defaults to the complement of the tenant playbook's quiet hours (when the
  playbook sets none: 21:00-08:00 in the tenant's time zone), paced by
  `workflows.campaign_pacing` with the follow-ups' quiet-hours rule.
- **A send step** (`send_step`, run by the workflow's activity, idempotent): at send time a
  recipient is skipped when its lead is do-not-contact (also as the same person on another
  channel: an earlier opt-out or unsubscribe), its e-mail hard-bounced, its WhatsApp opt-in was
  withdrawn, it was erased, or it already has a running conversation this campaign did not
  start; otherwise its outreach conversation is started through `models.outreach` (the code
  behind `POST /api/v1/conversations`) with the campaign's id and subject.
- **WhatsApp opt-in** is recorded per lead (`whatsapp_opt_ins`, `record_whatsapp_opt_in`):
  a WhatsApp campaign writes only to leads with one.
- **Numbers**: `models.campaigns.campaign_numbers` over the recipients joined with their
  conversations and leads."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from models import search_attributes, task_queues
from models.campaign_tables import Campaign, CampaignRecipient, WhatsAppOptIn
from models.campaigns import (
    CAMPAIGN_CONTROL_REFUSED,
    MAX_RECIPIENTS,
    UPDATE_APPROVE,
    UPDATE_CANCEL,
    UPDATE_PAUSE,
    UPDATE_RESUME,
    WORKFLOW_NAME,
    CampaignAction,
    CampaignControl,
    CampaignControlResult,
    CampaignInput,
    CampaignSpec,
    CampaignStatus,
    CampaignView,
    RecipientStatus,
    SendStepResult,
    SendWindow,
    SkipReason,
    campaign_numbers,
    campaign_workflow_id,
    control_refusal,
)
from models.common import Channel
from models.conversation import conversation_workflow_id
from models.enrichment_tables import EnrichmentRecord
from models.identity import ContactIdError, normalise_contact, phone_e164
from models.lead_service import company_domain
from models.outreach import (
    ConversationRunning,
    OutreachRefused,
    start_outreach,
    started_by_campaign,
)
from models.playbook import Playbook, QuietHours
from models.repo import campaigns as repo
from models.repo import enrichment as enrichment_repo
from models.repo import leads as lead_repo
from models.settings import Settings
from models.tables import Lead, utcnow
from models.tenant import TenantSettings

TASK_QUEUE = task_queues.ENRICHMENT
"""CampaignWorkflow and its activities run with the batch work (enrichment, ingestion), away
from the conversations' latency; the conversations it starts run on their own queue."""

CONTROL_WAIT = timedelta(seconds=20)
OPT_IN_ROUTE = "POST /api/v1/campaigns/whatsapp-opt-ins"
PLACEHOLDERS = re.compile(r"\{(name|first_name|company)\}")


class CampaignError(Exception):
    """A refusal the caller can act on: `status` is its HTTP status."""

    def __init__(self, status: int, error: str, detail: str | None = None) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.detail = detail


# ---- creation ---------------------------------------------------------------------------------


def default_window(playbook: Playbook, settings: TenantSettings) -> SendWindow:
    """Outside the playbook's quiet hours; a playbook without them gets the default quiet
    hours (21:00-08:00) in the tenant's time zone."""
    quiet = playbook.quiet_hours or QuietHours(timezone=settings.timezone)
    return SendWindow.of_quiet_hours(quiet)


def render(template: str, lead: Lead) -> str:
    """`{name}`, `{first_name}` and `{company}` filled from the lead (empty when unknown);
    other braces are left as they are."""
    name = (lead.name or "").strip()
    values = {
        "name": name,
        "first_name": name.split()[0] if name else "",
        "company": str((lead.fields or {}).get("company") or ""),
    }
    return PLACEHOLDERS.sub(lambda m: values[m.group(1)], template)


def contact_of(lead: Lead, channel: Channel) -> str | None:
    """The lead's contact id on the campaign's channel (normalised), or None."""
    raw: str | None
    if channel == Channel.EMAIL:
        raw = lead.email or (lead.address if lead.channel == Channel.EMAIL.value else None)
    else:
        raw = lead.phone
        if not raw and lead.channel in (Channel.WHATSAPP.value, Channel.WAHA.value):
            raw = lead.address.removesuffix("@c.us")
        raw = raw.removeprefix("+") if raw else None
    if not raw:
        return None
    try:
        return normalise_contact(channel, raw)
    except (ContactIdError, ValueError):
        return None


class _RowIndex:
    """Which enrichment row belongs to a lead: the row whose e-mail, phone or company domain
    is the lead's (the keys `lead_from_enriched_row` merged it by)."""

    def __init__(self, records: Iterable[EnrichmentRecord]) -> None:
        self.by_email: dict[str, EnrichmentRecord] = {}
        self.by_phone: dict[str, EnrichmentRecord] = {}
        self.by_domain: dict[str, EnrichmentRecord] = {}
        for record in records:
            values = [str(v) for v in (record.data or {}).values() if v]
            for value in [*values, *record.emails]:
                if "@" in value:
                    self.by_email.setdefault(value.strip().lower(), record)
            for value in [*values, *record.phones]:
                phone = phone_e164(value) if any(c.isdigit() for c in value) else None
                if phone:
                    self.by_phone.setdefault(phone, record)
            domain = company_domain(record.website)
            if domain:
                self.by_domain.setdefault(domain, record)

    def find(self, lead: Lead) -> EnrichmentRecord | None:
        if lead.email and lead.email.lower() in self.by_email:
            return self.by_email[lead.email.lower()]
        if lead.phone and lead.phone in self.by_phone:
            return self.by_phone[lead.phone]
        if lead.company_domain:
            return self.by_domain.get(lead.company_domain)
        return None


async def _selected_leads(session: AsyncSession, tenant_id: str, spec: CampaignSpec) -> list[Lead]:
    if spec.job_id is not None:
        job = await enrichment_repo.get_job(session, tenant_id=tenant_id, job_id=spec.job_id)
        if job is None:
            raise CampaignError(404, "unknown job", f"no enrichment job {spec.job_id!r}")
        filters: dict[str, Any] = {"source_job_id": spec.job_id}
    else:
        assert spec.leads is not None
        filters = spec.leads.model_dump(exclude_none=True, mode="json")
        if "search" in filters:
            filters["search"] = filters["search"].strip() or None
    leads = await lead_repo.list_leads(
        session, tenant_id=tenant_id, limit=MAX_RECIPIENTS + 1, **filters
    )
    if len(leads) > MAX_RECIPIENTS:
        raise CampaignError(
            422,
            "too many leads",
            f"the selection holds more than {MAX_RECIPIENTS} leads; narrow it (one campaign "
            "per segment)",
        )
    leads.reverse()  # oldest first: the order the job made them in
    return leads


async def create_campaign(
    session: AsyncSession,
    client: Client,
    *,
    tenant_id: str,
    tenant_settings: TenantSettings,
    playbook: Playbook,
    spec: CampaignSpec,
) -> CampaignView:
    """Freeze the recipients, store the campaign and start its workflow. Raises CampaignError
    (404 unknown job, 422 nothing to send to, 503 Temporal down: nothing kept)."""
    leads = await _selected_leads(session, tenant_id, spec)
    if not leads:
        what = f"job {spec.job_id} made no leads" if spec.job_id else "no lead matches the filter"
        raise CampaignError(422, "empty selection", what)
    channel = spec.channel
    excluded: dict[str, int] = {}

    def exclude(reason: str) -> None:
        excluded[reason] = excluded.get(reason, 0) + 1

    opted_in: set[str] = set()
    if channel != Channel.EMAIL:
        opted_in = await repo.opted_in_lead_ids(
            session, tenant_id=tenant_id, lead_ids=[lead.id for lead in leads]
        )
    indexes: dict[str, _RowIndex] = {}
    personalised = spec.message.text is None
    chosen: list[tuple[Lead, int | None]] = []
    for lead in leads:
        if contact_of(lead, channel) is None:
            exclude("no_email" if channel == Channel.EMAIL else "no_phone")
            continue
        if channel != Channel.EMAIL and lead.id not in opted_in:
            exclude("no_opt_in")
            continue
        record_id: int | None = None
        if personalised:
            job_id = spec.job_id or lead.source_job_id
            if job_id is not None and job_id not in indexes:
                indexes[job_id] = _RowIndex(
                    await repo.done_records_of_job(session, tenant_id=tenant_id, job_id=job_id)
                )
            record = indexes[job_id].find(lead) if job_id is not None else None
            if record is None:
                exclude("no_personalised_email")
                continue
            record_id = record.id
        chosen.append((lead, record_id))
    if not chosen:
        raise CampaignError(422, "no recipients", _nobody(channel, excluded, len(leads)))

    window = spec.send_window or default_window(playbook, tenant_settings)
    campaign_id = uuid.uuid4().hex[:16]
    held = spec.hold_for_approval
    campaign = Campaign(
        id=campaign_id,
        tenant_id=tenant_id,
        name=spec.name,
        status=(CampaignStatus.AWAITING_APPROVAL if held else CampaignStatus.RUNNING).value,
        channel=channel.value,
        source_job_id=spec.job_id,
        selection=spec.leads.model_dump(exclude_none=True, mode="json") if spec.leads else None,
        subject=spec.message.subject,
        text=spec.message.text,
        hold_for_approval=held,
        window_start=window.start,
        window_end=window.end,
        window_timezone=window.timezone,
        rate_per_hour=spec.rate_per_hour,
        total=len(chosen),
    )
    recipients = [
        CampaignRecipient(
            campaign_id=campaign_id,
            tenant_id=tenant_id,
            position=n,
            lead_id=lead.id,
            enrichment_record_id=record_id,
        )
        for n, (lead, record_id) in enumerate(chosen, start=1)
    ]
    await repo.insert_campaign(session, campaign=campaign, recipients=recipients)
    try:
        await client.start_workflow(
            WORKFLOW_NAME,
            CampaignInput(
                tenant_id=tenant_id,
                campaign_id=campaign_id,
                total=len(chosen),
                rate_per_hour=spec.rate_per_hour,
                quiet_hours=window.as_quiet_hours(),
                awaiting_approval=held,
            ),
            id=campaign_workflow_id(tenant_id, campaign_id),
            task_queue=TASK_QUEUE,
            static_summary=f"campaign {spec.name or campaign_id}: {len(chosen)} recipients "
            f"by {channel.value}, {spec.rate_per_hour:g}/hour",
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(search_attributes.TENANT, tenant_id)]
            ),
        )
    except RPCError as exc:
        await repo.delete_campaign(session, tenant_id=tenant_id, campaign_id=campaign_id)
        raise CampaignError(503, "Temporal is unavailable", exc.message) from exc
    view = await campaign_view(session, campaign)
    return view.model_copy(update={"excluded": excluded})


def _nobody(channel: Channel, excluded: dict[str, int], selected: int) -> str:
    reasons = ", ".join(f"{count} {reason}" for reason, count in sorted(excluded.items()))
    text = f"none of the {selected} selected leads can get this campaign ({reasons})"
    if excluded.get("no_opt_in"):
        text += f"; WhatsApp needs a recorded opt-in per lead ({OPT_IN_ROUTE})"
    if excluded.get("no_personalised_email"):
        text += "; give message.text, or choose leads whose enrichment wrote an e-mail"
    del channel
    return text


# ---- views ------------------------------------------------------------------------------------


async def campaign_view(session: AsyncSession, campaign: Campaign) -> CampaignView:
    facts = await repo.recipient_facts(session, campaign_id=campaign.id)
    window = (
        SendWindow(
            start=campaign.window_start,
            end=campaign.window_end,
            timezone=campaign.window_timezone or "UTC",
        )
        if campaign.window_start is not None and campaign.window_end is not None
        else None
    )
    return CampaignView(
        id=campaign.id,
        name=campaign.name,
        status=CampaignStatus(campaign.status),
        channel=Channel(campaign.channel),
        job_id=campaign.source_job_id,
        selection=campaign.selection,
        subject=campaign.subject,
        text=campaign.text,
        personalised=campaign.text is None,
        hold_for_approval=campaign.hold_for_approval,
        approved_at=campaign.approved_at,
        send_window=window,
        rate_per_hour=campaign.rate_per_hour,
        workflow_id=campaign_workflow_id(campaign.tenant_id, campaign.id),
        created_at=campaign.created_at,
        finished_at=campaign.finished_at,
        numbers=campaign_numbers(facts),
    )


async def get_campaign(session: AsyncSession, *, tenant_id: str, campaign_id: str) -> CampaignView:
    campaign = await repo.get_campaign(session, tenant_id=tenant_id, campaign_id=campaign_id)
    if campaign is None:
        raise CampaignError(404, "campaign not found", campaign_id)
    return await campaign_view(session, campaign)


async def list_campaigns(
    session: AsyncSession, *, tenant_id: str, limit: int = 50
) -> list[CampaignView]:
    rows = await repo.list_campaigns(session, tenant_id=tenant_id, limit=limit)
    return [await campaign_view(session, row) for row in rows]


# ---- control ----------------------------------------------------------------------------------

_UPDATES = {
    CampaignAction.PAUSE: UPDATE_PAUSE,
    CampaignAction.RESUME: UPDATE_RESUME,
    CampaignAction.CANCEL: UPDATE_CANCEL,
    CampaignAction.APPROVE: UPDATE_APPROVE,
}


def control_update_id(action: CampaignAction, idempotency_key: str | None) -> str:
    """The update's id: a retry with the same key acts once (also after continue-as-new, where
    the workflow remembers recent ids); the action is part of it, so one key cannot answer the
    wrong action."""
    return f"{action.value}:{idempotency_key.strip() if idempotency_key else uuid.uuid4().hex}"


async def control_campaign(
    session: AsyncSession,
    client: Client,
    *,
    tenant_id: str,
    campaign_id: str,
    action: CampaignAction,
    idempotency_key: str | None = None,
    by: str = "operator",
) -> CampaignView:
    """Pause, resume, cancel or approve through the workflow's Update; the campaign as it left
    it. 404 unknown campaign, 409 refused (the reason), 503 Temporal down or too slow."""
    campaign = await repo.get_campaign(session, tenant_id=tenant_id, campaign_id=campaign_id)
    if campaign is None:
        raise CampaignError(404, "campaign not found", campaign_id)
    await session.commit()  # end the read: the status is read again after the workflow wrote it
    handle = client.get_workflow_handle(campaign_workflow_id(tenant_id, campaign_id))
    try:
        async with asyncio.timeout(CONTROL_WAIT.total_seconds()):
            result = await handle.execute_update(
                _UPDATES[action],
                CampaignControl(by=by),
                id=control_update_id(action, idempotency_key),
                result_type=CampaignControlResult,
            )
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == CAMPAIGN_CONTROL_REFUSED:
            raise CampaignError(409, f"{action.value} refused", cause.message) from exc
        raise CampaignError(503, f"the campaign could not {action.value}", str(cause)) from exc
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
        raise CampaignError(
            503, "the campaign did not answer in time", "retry with the same Idempotency-Key"
        ) from exc
    except RPCError as exc:
        if exc.status != RPCStatusCode.NOT_FOUND:
            raise CampaignError(503, "Temporal is unavailable", exc.message) from exc
        await session.refresh(campaign)
        status = CampaignStatus(campaign.status)
        reason = control_refusal(action, status) or f"campaign is no longer running ({status})"
        raise CampaignError(409, f"{action.value} refused", reason) from exc
    await session.refresh(campaign)
    view = await campaign_view(session, campaign)
    return view.model_copy(update={"status": result.status})


# ---- the send step (the workflow's activity) -----------------------------------------------------


def _skipped(position: int, reason: SkipReason) -> SendStepResult:
    return SendStepResult(position=position, status=RecipientStatus.SKIPPED, reason=reason)


async def send_step(
    session: AsyncSession,
    client: Client,
    settings: Settings,
    *,
    tenant_id: str,
    campaign_id: str,
    position: int,
) -> SendStepResult:
    """Start the outreach of the recipient at `position`, or skip it (recorded with why).
    Idempotent: a recipient already done answers its recorded outcome; one whose start may
    have gone through (`sending`) is sent when its conversation's memo names this campaign.
    Raises CampaignError(404) for an unknown campaign or position."""
    campaign = await repo.get_campaign(session, tenant_id=tenant_id, campaign_id=campaign_id)
    recipient = (
        await repo.get_recipient(session, campaign_id=campaign_id, position=position)
        if campaign is not None
        else None
    )
    if campaign is None or recipient is None:
        raise CampaignError(404, "campaign recipient not found", f"{campaign_id} #{position}")
    if recipient.status == RecipientStatus.SENT:
        return SendStepResult(
            position=position,
            status=RecipientStatus.SENT,
            conversation_id=recipient.conversation_id,
        )
    if recipient.status == RecipientStatus.SKIPPED:
        reason = SkipReason(recipient.skip_reason) if recipient.skip_reason else None
        return SendStepResult(position=position, status=RecipientStatus.SKIPPED, reason=reason)

    async def skip(reason: SkipReason) -> SendStepResult:
        await repo.mark_recipient(
            session, recipient=recipient, status=RecipientStatus.SKIPPED, reason=reason.value
        )
        return _skipped(position, reason)

    async def sent(conversation_id: str) -> SendStepResult:
        await repo.mark_recipient(
            session,
            recipient=recipient,
            status=RecipientStatus.SENT,
            conversation_id=conversation_id,
            sent_at=utcnow(),
        )
        return SendStepResult(
            position=position, status=RecipientStatus.SENT, conversation_id=conversation_id
        )

    channel = Channel(campaign.channel)
    lead = await lead_repo.get_lead(session, tenant_id=tenant_id, lead_id=recipient.lead_id)
    if lead is None:
        return await skip(SkipReason.LEAD_GONE)
    contact = contact_of(lead, channel)
    if contact is None:
        return await skip(SkipReason.NO_ADDRESS)
    if lead.do_not_contact:
        return await skip(SkipReason.DO_NOT_CONTACT)
    if channel == Channel.EMAIL and lead.email_bounced_at is not None:
        return await skip(SkipReason.BOUNCED)
    if channel != Channel.EMAIL and not await repo.opted_in_lead_ids(
        session, tenant_id=tenant_id, lead_ids=[lead.id]
    ):
        return await skip(SkipReason.NO_OPT_IN)

    conversation_id = conversation_workflow_id(tenant_id, channel, contact)
    if recipient.status == RecipientStatus.SENDING and await started_by_campaign(
        client, conversation_id, campaign_id
    ):
        return await sent(conversation_id)
    message = await _first_message(session, campaign, recipient, lead)
    if message is None:
        return await skip(SkipReason.NO_MESSAGE)
    subject, text = message
    await repo.mark_recipient(session, recipient=recipient, status=RecipientStatus.SENDING)
    try:
        started = await start_outreach(
            client,
            session,
            settings,
            tenant_id=tenant_id,
            channel=channel,
            contact=contact,
            contact_name=lead.name,
            text=text,
            subject=subject if channel == Channel.EMAIL else None,
            campaign_id=campaign_id,
        )
    except OutreachRefused:
        return await skip(SkipReason.DO_NOT_CONTACT)
    except ConversationRunning as exc:
        if await started_by_campaign(client, exc.workflow_id, campaign_id):
            return await sent(exc.workflow_id)
        return await skip(SkipReason.IN_CONVERSATION)
    return await sent(started)


async def _first_message(
    session: AsyncSession, campaign: Campaign, recipient: CampaignRecipient, lead: Lead
) -> tuple[str | None, str] | None:
    """(subject, text) for this lead: the campaign's text filled for the lead, else the
    personalised e-mail of the lead's enrichment row (its subject unless the campaign gives
    one); None when that row is gone (erased since the campaign was created)."""
    subject = render(campaign.subject, lead) if campaign.subject else None
    if campaign.text is not None:
        return subject, render(campaign.text, lead)
    record = (
        await repo.get_record(
            session, tenant_id=campaign.tenant_id, record_id=recipient.enrichment_record_id
        )
        if recipient.enrichment_record_id is not None
        else None
    )
    if record is None or not record.email_body:
        return None
    return subject or record.email_subject, record.email_body


# ---- WhatsApp opt-ins -------------------------------------------------------------------------


async def record_whatsapp_opt_in(
    session: AsyncSession, *, tenant_id: str, lead_id: str, source: str, by: str
) -> WhatsAppOptIn:
    """Record that the lead agreed to be written to first on WhatsApp (where, who recorded
    it); 404 for an unknown lead. Recording it again keeps the first record."""
    if await lead_repo.get_lead(session, tenant_id=tenant_id, lead_id=lead_id) is None:
        raise CampaignError(404, "lead not found", lead_id)
    return await repo.record_opt_in(
        session, tenant_id=tenant_id, lead_id=lead_id, source=source, recorded_by=by
    )


async def withdraw_whatsapp_opt_in(session: AsyncSession, *, tenant_id: str, lead_id: str) -> bool:
    return await repo.withdraw_opt_in(session, tenant_id=tenant_id, lead_id=lead_id)
