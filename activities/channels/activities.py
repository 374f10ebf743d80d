"""Temporal activities that make a message leave leadflow: replies to leads and specialist alerts.

Both are idempotent through the outbox table: the row for the idempotency key is claimed before
the provider is called, and a key whose row is already "sent" or "stored" returns the recorded
result without calling the provider again.

The duplicate-send window: a crash (or timeout) between the provider's answer and the row update
leaves the row "pending", and the retry finds it claimed by the earlier attempt. Where the
provider can tell (an adapter with `already_sent`: WAHA, Chatwoot), the retry asks it first and
records a message it finds instead of sending again. Elsewhere (Meta, SMTP), or when the check
finds nothing or fails, the retry sends: at-least-once (docs/architecture.md has the table)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import turn_steps
from activities.channels.base import SENT_CHECK_MARGIN, ChannelAdapter, SentCheck
from activities.channels.chatwoot import ChatwootChannel
from activities.channels.meta import MessengerChannel, MetaWhatsAppChannel
from activities.channels.outbox import OutboxChannel
from activities.channels.smtp import SmtpChannel
from activities.channels.waha import WahaChannel
from models.common import Channel, Role
from models.conversation import (
    NotifyResult,
    NotifySpecialistInput,
    SendAndRecordInput,
    SendAndRecordResult,
)
from models.db import Database
from models.email_in.service import record_sent as record_sent_email
from models.messages import OutboundMessage, SendResult, TranscriptEntry
from models.metrics import OUTBOX_SENDS
from models.playbook_service import PlaybookResolver, UnknownTenantError
from models.repo import outbox as outbox_repo
from models.settings import Settings
from models.tables import OutboxMessage
from models.tenant import TenantSettings

TENANT_NOT_FOUND = "TenantNotFound"
NOTIFY_VIAS = ("whatsapp", "email", "chatwoot")
NOTIFY_SUBJECT = "A lead needs you"


def builtin_channel_adapters(http: httpx.AsyncClient) -> dict[str, ChannelAdapter]:
    """Channel name (models.common.Channel) -> adapter, for the built-in plugin to register."""
    return {
        Channel.WAHA.value: WahaChannel(http),
        Channel.WHATSAPP.value: MetaWhatsAppChannel(http),
        Channel.MESSENGER.value: MessengerChannel(http),
        Channel.CHATWOOT.value: ChatwootChannel(http),
        Channel.EMAIL.value: SmtpChannel(),
    }


def _result_of(row: OutboxMessage, *, duplicate: bool) -> SendResult:
    # duplicate: this call did not reach the provider because the message had already gone out
    # (a finished row, or one the duplicate-send check found at the provider).
    return SendResult(
        provider_message_id=row.provider_message_id,
        delivered_via=row.delivered_via or "outbox",
        duplicate=duplicate,
    )


def _count_send(message: OutboundMessage, outcome: str) -> None:
    OUTBOX_SENDS.labels(channel=message.channel.value, outcome=outcome).inc()


class ChannelActivities:
    """Built once per worker with its clients; `adapters` usually comes from the plugin registry."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        http: httpx.AsyncClient,
        adapters: dict[str, ChannelAdapter],
        resolver: PlaybookResolver | None = None,
    ) -> None:
        self.db = db
        self.settings = settings
        # Shared with the agent and the store activities: one cache of tenant settings a worker.
        self.resolver = resolver or PlaybookResolver(db, settings.secret_key.get_secret_value())
        self.http = http
        self.adapters = adapters
        self.outbox = OutboxChannel()
        registered = adapters.get(Channel.CHATWOOT.value)
        # Specialist alerts need Chatwoot's assign/private-note calls, not just `send`.
        self.chatwoot = (
            registered if isinstance(registered, ChatwootChannel) else ChatwootChannel(http)
        )

    async def _tenant_settings(self, tenant_id: str) -> TenantSettings:
        try:
            return await self.resolver.settings(tenant_id)
        except UnknownTenantError as exc:
            raise ApplicationError(str(exc), type=TENANT_NOT_FOUND, non_retryable=True) from exc

    async def _claim(self, message: OutboundMessage) -> outbox_repo.Claim:
        async with self.db.session() as session:
            try:
                return await outbox_repo.claim_send(session, message=message)
            except outbox_repo.OutboxKeyConflict as exc:
                raise ApplicationError(
                    str(exc), type="IdempotencyKeyConflict", non_retryable=True
                ) from exc

    async def _found_at_provider(
        self,
        message: OutboundMessage,
        adapter: ChannelAdapter,
        settings: TenantSettings,
        *,
        claimed_at: datetime,
    ) -> OutboxMessage | None:
        """The duplicate-send check: the row marked sent with the provider's id when the provider
        already has the message, else None (the caller sends). Never raises for the check
        itself: a check that cannot answer must not stop the reply, only risk a duplicate."""
        key = message.idempotency_key
        if claimed_at.tzinfo is None:  # stored as UTC; a driver may hand it back naive
            claimed_at = claimed_at.replace(tzinfo=UTC)
        if not isinstance(adapter, SentCheck):
            activity.logger.info(
                "send %s: claimed by an earlier attempt that did not finish; %s cannot tell "
                "whether it went out, sending again (at-least-once)",
                key,
                adapter.name,
            )
            return None
        since = claimed_at - SENT_CHECK_MARGIN
        try:
            found = await adapter.already_sent(message, settings, since=since)
            async with self.db.session() as session:
                others = await outbox_repo.same_text_since(
                    session, message=message, since=since - SENT_CHECK_MARGIN
                )
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            activity.logger.warning(
                "send %s: claimed by an earlier attempt that did not finish; asking %s whether "
                "it went out failed (%s: %s), sending again (at-least-once)",
                key,
                adapter.name,
                type(exc).__name__,
                exc,
            )
            return None
        # Our other sends of this text may account for what the provider shows. Counting (not
        # only comparing ids, whose form differs between some engines' send and list answers)
        # keeps the check from taking another row's message as ours and losing this reply.
        if len(found) <= len(others):
            activity.logger.info(
                "send %s: claimed by an earlier attempt that did not finish; %s has no such "
                "message since %s that is not another send's, sending it",
                key,
                adapter.name,
                claimed_at.isoformat(),
            )
            return None
        recorded = {ident for ident in others if ident is not None}
        provider_id = next((ident for ident in found if ident not in recorded), found[-1])
        activity.logger.info(
            "send %s: the earlier attempt's message reached %s as %s; recorded, not sent again",
            key,
            adapter.name,
            provider_id,
        )
        async with self.db.session() as session:
            return await outbox_repo.mark_sent(
                session,
                idempotency_key=key,
                delivered_via=adapter.name,
                provider_message_id=provider_id,
            )

    async def _deliver(
        self,
        message: OutboundMessage,
        adapter: ChannelAdapter,
        settings: TenantSettings,
        *,
        claim: outbox_repo.Claim,
    ) -> tuple[OutboxMessage, bool]:
        """Send through `adapter` (or store when it is the outbox) and record the outcome; the
        row, and whether the provider already had the message (then nothing was sent).

        Only a row an earlier attempt left pending costs a check: a first send (the hot path)
        goes straight to the provider."""
        if (
            adapter is not self.outbox
            and not claim.fresh
            and claim.row.status == outbox_repo.PENDING
        ):
            found = await self._found_at_provider(
                message, adapter, settings, claimed_at=claim.row.created_at
            )
            if found is not None:
                _count_send(message, "already_sent")
                return found, True
        try:
            provider_id = await adapter.send(message, settings)
        except ApplicationError as exc:
            _count_send(message, "failed" if exc.non_retryable else "retrying")
            if exc.non_retryable:
                async with self.db.session() as session:
                    await outbox_repo.mark_failed(
                        session, idempotency_key=message.idempotency_key, delivered_via=adapter.name
                    )
            raise
        except Exception:
            _count_send(message, "retrying")
            raise
        _count_send(message, "stored" if adapter is self.outbox else "sent")
        async with self.db.session() as session:
            if adapter is self.outbox:
                row = await outbox_repo.mark_stored(
                    session, idempotency_key=message.idempotency_key
                )
            else:
                row = await outbox_repo.mark_sent(
                    session,
                    idempotency_key=message.idempotency_key,
                    delivered_via=adapter.name,
                    provider_message_id=provider_id,
                )
        return row, False

    @activity.defn
    async def send_message(self, message: OutboundMessage) -> SendResult:
        """Send a reply to a lead on its channel; with no settings for it, store it in the outbox.

        A configured channel that fails raises (retryable or not): it never silently falls back
        to the outbox."""
        # Tenant first: an unknown tenant must not leave a pending outbox row behind.
        settings = await self._tenant_settings(message.tenant_id)
        claim = await self._claim(message)
        if claim.row.status in outbox_repo.FINAL_STATUSES:
            activity.logger.info(
                "send %s is a duplicate (%s)", message.idempotency_key, claim.row.status
            )
            _count_send(message, "already_sent")
            # The retry of a send whose record (below) failed records it now.
            await self._remember_email(message, claim.row, settings)
            return _result_of(claim.row, duplicate=True)
        adapter = self.adapters.get(str(message.channel))
        if adapter is None or not adapter.configured(settings):
            adapter = self.outbox
        row, found = await self._deliver(message, adapter, settings, claim=claim)
        await self._remember_email(message, row, settings)
        return _result_of(row, duplicate=found)

    async def _remember_email(
        self, message: OutboundMessage, row: OutboxMessage, settings: TenantSettings
    ) -> None:
        """An e-mail that went out through SMTP: its Message-ID (the adapter's provider id) is
        kept, so the lead's reply naming it threads into this conversation from any address
        (models/email_in/service.py). Idempotent; a failure raises, and the activity's retry
        finds the send done and records it then."""
        if (
            message.channel != Channel.EMAIL
            or row.status != outbox_repo.SENT
            or row.delivered_via != Channel.EMAIL.value
            or not row.provider_message_id
        ):
            return
        async with self.db.session() as session:
            await record_sent_email(
                session,
                tenant_id=message.tenant_id,
                message_id=row.provider_message_id,
                to=message.to,
                from_address=settings.smtp.from_address if settings.smtp else "",
                conversation_id=message.conversation_id,
                campaign_id=message.campaign_id,
                sent_at=row.sent_at or datetime.now(UTC),
            )

    @activity.defn
    async def send_and_record(self, request: SendAndRecordInput) -> SendAndRecordResult:
        """Send a reply (as `send_message`), then record the turn with the reply's entry.

        A retry after the send went out finds the outbox row sent, so the lead gets the reply
        once. One activity where runs before version 2 took this one and a local activity.

        A record that fails after the send does not fail the activity: its retries (bounded,
        for the channel) are the send's, and the send is done. The result says so, and the
        workflow records the turn on its own, with the record step's unbounded retries."""
        sent = await self.send_message(request.message)
        if not sent.duplicate:  # this attempt sent it: the turn is replied (once)
            turn_steps.count_replied_turn(request.record)
        entry = TranscriptEntry(
            role=Role.AI,
            text=request.message.text,
            at=request.at,
            provider_message_id=sent.provider_message_id,
            knowledge_ids=request.knowledge_ids,
        )
        record = request.record.model_copy(update={"entries": (*request.record.entries, entry)})
        try:
            changed = await turn_steps.record_turn(self.db, record)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            activity.logger.warning(
                "recording %s failed after the send; the workflow records it: %s",
                record.turn_key,
                exc,
            )
            return SendAndRecordResult(sent=sent, lead_changed=False, recorded=False)
        return SendAndRecordResult(sent=sent, lead_changed=changed)

    @activity.defn
    async def notify_specialist(self, request: NotifySpecialistInput) -> NotifyResult:
        """Alert a specialist via WhatsApp (WAHA, else Meta), e-mail, or Chatwoot (assign the
        conversation to them and leave a private note).

        Returns ok=False with the reason when the specialist cannot be reached that way (no
        address, the provider refused for good), so a parallel fan-out of alerts is not failed
        by one of them; transient failures raise so Temporal retries them."""
        specialist = request.specialist

        def result(ok: bool, detail: str) -> NotifyResult:
            return NotifyResult(specialist=specialist.name, via=request.via, ok=ok, detail=detail)

        if request.via not in NOTIFY_VIAS:
            return result(False, f"unknown notification channel {request.via!r}")
        settings = await self._tenant_settings(request.tenant_id)

        message: OutboundMessage
        adapter: ChannelAdapter
        if request.via == "whatsapp":
            if not specialist.whatsapp:
                return result(False, "specialist has no WhatsApp number")
            channel = Channel.WAHA if settings.waha is not None else Channel.WHATSAPP
            message = self._notification(request, channel=channel, to=specialist.whatsapp)
            adapter = self.adapters.get(channel.value) or self.outbox
        elif request.via == "email":
            if not specialist.email:
                return result(False, "specialist has no e-mail address")
            message = self._notification(request, channel=Channel.EMAIL, to=specialist.email)
            adapter = self.adapters.get(Channel.EMAIL.value) or self.outbox
        else:
            if specialist.chatwoot_agent_id is None:
                return result(False, "specialist has no Chatwoot agent id")
            if not request.chatwoot_conversation_id:
                return result(False, "conversation has no Chatwoot conversation id")
            message = self._notification(
                request,
                channel=Channel.CHATWOOT,
                to=str(specialist.chatwoot_agent_id),
                thread=request.chatwoot_conversation_id,
            )
            adapter = self.chatwoot
        if not adapter.configured(settings):
            adapter = self.outbox

        claim = await self._claim(message)
        if claim.row.status in outbox_repo.FINAL_STATUSES:
            _count_send(message, "already_sent")
            return self._notify_result(result, claim.row, duplicate=True)
        found = False
        try:
            if adapter is self.chatwoot:
                # Assign + private note: not checked (see chatwoot.py), at-least-once.
                row = await self._chatwoot_alert(message, specialist.chatwoot_agent_id, settings)
            else:
                row, found = await self._deliver(message, adapter, settings, claim=claim)
        except ApplicationError as exc:
            if not exc.non_retryable:
                raise
            return result(False, str(exc))
        return self._notify_result(result, row, duplicate=found)

    async def _chatwoot_alert(
        self, message: OutboundMessage, agent_id: int | None, settings: TenantSettings
    ) -> OutboxMessage:
        assert agent_id is not None and message.thread is not None
        chatwoot = self.chatwoot
        try:
            # Assign first: the note is what the agent reads once the conversation is theirs.
            # Re-assigning the same agent on a retry is harmless.
            await chatwoot.assign(message.thread, agent_id, settings=settings)
            note_id = await chatwoot.private_note(message.thread, message.text, settings=settings)
        except ApplicationError as exc:
            _count_send(message, "failed" if exc.non_retryable else "retrying")
            if exc.non_retryable:
                async with self.db.session() as session:
                    await outbox_repo.mark_failed(
                        session,
                        idempotency_key=message.idempotency_key,
                        delivered_via=chatwoot.name,
                    )
            raise
        except Exception:
            _count_send(message, "retrying")
            raise
        _count_send(message, "sent")
        async with self.db.session() as session:
            row = await outbox_repo.mark_sent(
                session,
                idempotency_key=message.idempotency_key,
                delivered_via=chatwoot.name,
                provider_message_id=note_id,
            )
        return row

    @staticmethod
    def _notification(
        request: NotifySpecialistInput, *, channel: Channel, to: str, thread: str | None = None
    ) -> OutboundMessage:
        return OutboundMessage(
            tenant_id=request.tenant_id,
            channel=channel,
            to=to,
            text=request.text,
            idempotency_key=request.idempotency_key,
            thread=thread,
            subject=f"{NOTIFY_SUBJECT}: {request.conversation_id}",
            conversation_id=request.conversation_id,
        )

    @staticmethod
    def _notify_result(
        result: Callable[[bool, str], NotifyResult], row: OutboxMessage, *, duplicate: bool
    ) -> NotifyResult:
        suffix = " (already done)" if duplicate else ""
        if row.status == outbox_repo.STORED:
            # Reached nobody: the channel is not set up, the alert only sits in the outbox.
            return result(False, f"no channel configured; stored in the outbox{suffix}")
        detail = f"sent via {row.delivered_via}"
        if row.provider_message_id:
            detail += f" as {row.provider_message_id}"
        return result(True, detail + suffix)
