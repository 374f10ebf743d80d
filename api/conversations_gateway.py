"""The API's one way into ConversationWorkflow: signal-with-start an inbound message, signal a
running conversation, or send it an operator command (an Update) and wait for its answer.
Webhooks and the conversation routes all go through here.

The workflow is addressed by type NAME ("ConversationWorkflow"): `api` must not import
`workflows` (see DESIGN.md, dependency direction)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import temporalio.converter
from temporalio.api.enums.v1 import WorkflowIdConflictPolicy, WorkflowIdReusePolicy
from temporalio.api.workflowservice.v1 import SignalWithStartWorkflowExecutionRequest
from temporalio.client import (
    Client,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from models import search_attributes, task_queues
from models.common import Stage
from models.conversation import (
    COMMAND_REFUSED,
    CommandResult,
    ConversationInput,
    conversation_workflow_id,
)
from models.messages import InboundMessage
from models.settings import Settings
from models.webhooks import Delivered
from workers.telemetry import client_tracing, traced_start

CONVERSATION_WORKFLOW = "ConversationWorkflow"
INBOUND_SIGNAL = "inbound"

# Namespace for the deterministic request ids below; any fixed UUID works, it must never change.
_REQUEST_ID_NAMESPACE = uuid.UUID("6f0c1f55-2f0e-4c51-9d0e-6c6561646677")


def inbound_request_id(workflow_id: str, provider_message_id: str) -> str:
    """The same provider message always produces the same request id.

    Temporal records the request id of every signal on the run and drops a second
    signal-with-start carrying the same id, so a webhook redelivered while the conversation
    runs adds nothing to its history (the workflow's own dedupe by provider_message_id covers
    the rest, e.g. after continue-as-new)."""
    return str(uuid.uuid5(_REQUEST_ID_NAMESPACE, f"{workflow_id}\n{provider_message_id}"))


def conversation_input(settings: Settings, msg: InboundMessage) -> ConversationInput:
    return ConversationInput.new(
        tenant_id=msg.tenant_id,
        channel=msg.channel,
        contact=msg.contact,
        contact_name=msg.contact_name,
        thread=msg.thread,
        debounce_seconds=settings.debounce_seconds,
        history_limit=settings.conversation_history_limit,
    )


def conversation_search_attributes(msg: InboundMessage) -> TypedSearchAttributes:
    # Only applied when this call starts the run; a running conversation keeps its own stage.
    return TypedSearchAttributes(
        [
            SearchAttributePair(search_attributes.TENANT, msg.tenant_id),
            SearchAttributePair(search_attributes.CHANNEL, msg.channel.value),
            SearchAttributePair(search_attributes.STAGE, Stage.AWAITING_RESPONSE.value),
        ]
    )


async def deliver_inbound(client: Client, settings: Settings, msg: InboundMessage) -> Delivered:
    """Signal-with-start the lead's ConversationWorkflow with `msg` (signal "inbound").

    This is the SDK's `client.start_workflow(..., start_signal="inbound")` sent as the raw
    SignalWithStartWorkflowExecution RPC, because the SDK always uses a random request id and
    we need a deterministic one (see `inbound_request_id`). Client interceptors are therefore
    not applied to this call; when the client is traced, the trace context goes into the
    request's header and the client span is made as the SDK's TracingInterceptor would
    (`workers.telemetry.traced_start`), so the workflow continues the webhook's trace. Raises
    `temporalio.service.RPCError` when Temporal refuses or is unreachable: the caller must then
    answer 5xx so the provider retries."""
    workflow_id = conversation_workflow_id(msg.tenant_id, msg.channel, msg.contact)
    converter = client.data_converter
    req = SignalWithStartWorkflowExecutionRequest(
        namespace=client.namespace,
        workflow_id=workflow_id,
        signal_name=INBOUND_SIGNAL,
        identity=client.identity,
        request_id=inbound_request_id(workflow_id, msg.provider_message_id),
        # A closed conversation (closed stage, or a failed run) starts afresh on a new message.
        workflow_id_reuse_policy=WorkflowIdReusePolicy.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
        workflow_id_conflict_policy=WorkflowIdConflictPolicy.WORKFLOW_ID_CONFLICT_POLICY_USE_EXISTING,
    )
    req.workflow_type.name = CONVERSATION_WORKFLOW
    req.task_queue.name = task_queues.CONVERSATIONS
    req.input.payloads.extend(await converter.encode([conversation_input(settings, msg)]))
    req.signal_input.payloads.extend(await converter.encode([msg]))
    temporalio.converter.encode_search_attributes(
        conversation_search_attributes(msg), req.search_attributes
    )
    tracing = client_tracing(client)
    if tracing is None:
        resp = await client.workflow_service.signal_with_start_workflow_execution(req, retry=True)
    else:
        resp = await traced_start(
            client,
            tracing,
            workflow=CONVERSATION_WORKFLOW,
            workflow_id=workflow_id,
            start_signal=True,
            header=req.header,
            send=lambda: client.workflow_service.signal_with_start_workflow_execution(
                req, retry=True
            ),
        )
    return Delivered(
        workflow_id=workflow_id,
        provider_message_id=msg.provider_message_id,
        signal=INBOUND_SIGNAL,
        run_id=resp.run_id or None,
        started=resp.started,
    )


async def signal_conversation(
    client: Client, workflow_id: str, signal_name: str, arg: object
) -> bool:
    """Signal a running conversation. False when no such workflow is running (nothing to do
    for a webhook; a 404 for an API route)."""
    handle = client.get_workflow_handle(workflow_id)
    try:
        await handle.signal(signal_name, arg)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            return False
        raise
    return True


# How long an API call waits for a command's answer. Handoff, release and close answer within a
# workflow task (close after a running turn stops); an operator message once it is sent, which
# a slow channel may stretch: past this the caller hears "pending" and may retry with its key.
COMMAND_WAIT = timedelta(seconds=20)


class ConversationNotRunning(Exception):
    """No run of the conversation is open (never started, closed, or failed)."""


class CommandRefused(Exception):
    """The workflow's validator refused the command; nothing was done. `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class CommandPending(Exception):
    """The command was not answered within the wait: it may still act (once: its update id)."""

    def __init__(self, accepted: bool) -> None:
        super().__init__("accepted, still running" if accepted else "not answered yet")
        self.accepted = accepted


def command_update_id(command: str, idempotency_key: str | None) -> str:
    """The Update's id: Temporal runs one Update per id and answers a repeat with the first
    outcome (also after the run closed), so a client's key makes its retries act once. The
    command is part of it, so one key reused for two commands cannot answer the wrong one."""
    return f"{command}:{idempotency_key or uuid.uuid4().hex}"


async def command_conversation(
    client: Client,
    workflow_id: str,
    update: str,
    arg: object,
    *,
    update_id: str,
    wait: timedelta = COMMAND_WAIT,
) -> CommandResult:
    """Send an operator command (an Update of ConversationWorkflow) and wait for its result.

    Raises ConversationNotRunning, CommandRefused (the validator's reason), CommandPending
    (not answered within `wait`), or `RPCError` when Temporal fails otherwise."""
    handle = client.get_workflow_handle(workflow_id)
    accepted = False
    try:
        async with asyncio.timeout(wait.total_seconds()):
            started = await handle.start_update(
                update,
                arg,
                id=update_id,
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=CommandResult,
                rpc_timeout=wait,
            )
            accepted = True
            result: CommandResult = await started.result(rpc_timeout=wait)
            return result
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError) and cause.type == COMMAND_REFUSED:
            raise CommandRefused(cause.message) from exc
        raise CommandRefused(f"the conversation could not carry it out: {cause}") from exc
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as exc:
        raise CommandPending(accepted) from exc
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise ConversationNotRunning(exc.message) from exc
        raise
