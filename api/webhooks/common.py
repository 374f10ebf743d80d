"""Shared webhook plumbing: the size-limited raw body, signature checks, and turning a parsed
payload into Temporal deliveries and the JSON acknowledgement."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError
from temporalio.service import RPCError

from api.conversations_gateway import signal_conversation
from api.deps import AppState
from api.errors import ApiError
from api.inbox import Dropped
from api.responses import errors
from api.webhooks.body import JSON_TYPE
from models.conversation import ReleaseRequest, conversation_workflow_id
from models.repo import deployment_keys
from models.tables import Tenant
from models.tenant import TenantSettings
from models.webhooks import Delivered, ParsedWebhook, WebhookAck, WebhookPayloadError
from workers.client import TemporalUnavailable

# Chatwoot asks receivers to refuse signatures older than about five minutes (PR chatwoot#13573):
# a captured request replayed later is then useless.
MAX_SIGNATURE_AGE_SECONDS = 300

UNSIGNED_REFUSED = (
    "unsigned webhooks are not allowed for this tenant: "
    "set a webhook secret or allow_unsigned_webhooks"
)

# Documented answers of every message webhook POST (the 2xx body is a WebhookAck); 415, 422,
# 429 and 500 are added for every webhook by api.responses.document_api.
WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": WebhookAck, "description": "Nothing for a conversation: every event ignored."},
    202: {"model": WebhookAck, "description": "Delivered to the conversation workflow(s)."},
    **errors(
        401,
        404,
        413,
        422,
        503,
        _401="Missing or invalid signature (or unsigned, and the tenant does not allow it).",
        _404="Unknown tenant.",
        _413="Body larger than max_webhook_bytes.",
        _422="Not the provider's payload (or not JSON, or nested too deeply): the detail says "
        "what is wrong.",
        _503="Temporal or the database unavailable: nothing accepted, the provider should retry.",
    ),
}

# CRM webhooks (HubSpot, Pipedrive): the 200 body is the inbound report (crm_inbound.py).
CRM_WEBHOOK_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Applied to the tenant's leads: counts of what changed and what was ignored."
    },
    **errors(
        401,
        404,
        413,
        422,
        503,
        _401="Missing or invalid signature or credentials.",
        _404="Unknown tenant, or the tenant has no integration of this CRM.",
        _413="Body larger than max_webhook_bytes.",
        _422="Not the CRM's payload (or not JSON): the detail says what is wrong.",
        _503="Temporal unavailable: the CRM should deliver it again.",
    ),
}

# Meta's GET subscription handshake (the 200 body is hub.challenge as plain text).
VERIFY_RESPONSES: dict[int | str, dict[str, Any]] = errors(
    400,
    403,
    404,
    _400="hub.challenge is missing.",
    _403="Verification failed: hub.mode is not subscribe, or the verify token does not match.",
    _404="Unknown tenant.",
)


def webhook_body(description: str, *, array: bool = False) -> dict[str, Any]:
    """`openapi_extra` for a webhook: it reads its raw body itself (signatures are over the exact
    bytes), so FastAPI does not know it takes JSON. The provider's shape is in docs/webhooks.md;
    anything else is a 422."""
    schema: dict[str, Any] = (
        {"type": "array", "items": {"type": "object"}} if array else {"type": "object"}
    )
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {JSON_TYPE: {"schema": schema}},
        }
    }


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body (signatures are over the exact bytes), refused with 413 beyond `limit`.

    The declared Content-Length is checked first; the stream is still capped because a chunked
    upload declares none."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload too large", f"the body is {declared} bytes; max {limit}")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload too large", f"the body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def tenant_and_settings(state: AppState, tenant_id: str) -> tuple[Tenant, TenantSettings]:
    """The path's tenant (404 when unknown) and its decrypted settings.

    Cached for a few seconds (AppState.webhook_tenant): webhooks come in bursts."""
    return await state.webhook_tenant(tenant_id)


def _refuse_unsigned_unless_allowed(allow_unsigned: bool, what: str) -> None:
    """A channel without a secret: unsigned webhooks pass only when the tenant allows them."""
    if not allow_unsigned:
        raise ApiError(401, UNSIGNED_REFUSED, f"this tenant has no {what} configured")


def _hex_equal(expected: str, given: str) -> bool:
    # compare_digest on ASCII bytes: constant time, and no TypeError on non-ASCII input.
    return hmac.compare_digest(
        expected.lower().encode(), given.strip().lower().encode("utf-8", "replace")
    )


def verify_waha(
    secret: SecretStr | None,
    body: bytes,
    signature: str | None,
    algorithm: str | None,
    *,
    allow_unsigned: bool,
) -> None:
    """WAHA: `X-Webhook-Hmac` = hex HMAC-SHA512(key, raw body); algorithm header `sha512`."""
    if secret is None:
        _refuse_unsigned_unless_allowed(allow_unsigned, "waha.webhook_secret")
        return
    if not signature:
        raise ApiError(401, "missing signature", "the X-Webhook-Hmac header is required")
    if algorithm is not None and algorithm.strip().lower() != "sha512":
        raise ApiError(
            401,
            "unsupported signature algorithm",
            f"X-Webhook-Hmac-Algorithm {algorithm!r}; expected sha512",
        )
    expected = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha512).hexdigest()
    if not _hex_equal(expected, signature):
        raise ApiError(401, "invalid signature", "X-Webhook-Hmac does not match the body")


def verify_meta(
    secret: SecretStr | None,
    body: bytes,
    header: str | None,
    *,
    allow_unsigned: bool,
) -> None:
    """Meta: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`."""
    if secret is None:
        _refuse_unsigned_unless_allowed(allow_unsigned, "app_secret")
        return
    if not header:
        raise ApiError(401, "missing signature", "the X-Hub-Signature-256 header is required")
    scheme, _, given = header.partition("=")
    if scheme.strip().lower() != "sha256" or not given:
        raise ApiError(401, "invalid signature", "X-Hub-Signature-256 must be `sha256=<hex>`")
    expected = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    if not _hex_equal(expected, given):
        raise ApiError(401, "invalid signature", "X-Hub-Signature-256 does not match the body")


def verify_chatwoot(
    secret: SecretStr | None,
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    *,
    now: Callable[[], float] = time.time,
    allow_unsigned: bool,
) -> None:
    """Chatwoot: `X-Chatwoot-Signature: sha256=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`
    with `X-Chatwoot-Timestamp` in unix seconds, refused when older than five minutes."""
    if secret is None:
        _refuse_unsigned_unless_allowed(allow_unsigned, "chatwoot.webhook_secret")
        return
    if not signature:
        raise ApiError(401, "missing signature", "the X-Chatwoot-Signature header is required")
    if not timestamp:
        raise ApiError(
            401, "missing signature timestamp", "the X-Chatwoot-Timestamp header is required"
        )
    try:
        sent = int(timestamp.strip())
    except ValueError:
        raise ApiError(
            401, "invalid signature timestamp", "X-Chatwoot-Timestamp must be unix seconds"
        ) from None
    if abs(now() - sent) > MAX_SIGNATURE_AGE_SECONDS:
        raise ApiError(
            401,
            "stale signature",
            f"X-Chatwoot-Timestamp is more than {MAX_SIGNATURE_AGE_SECONDS} s from now",
        )
    scheme, _, given = signature.partition("=")
    if scheme.strip().lower() != "sha256" or not given:
        raise ApiError(401, "invalid signature", "X-Chatwoot-Signature must be `sha256=<hex>`")
    signed = timestamp.strip().encode() + b"." + body
    expected = hmac.new(secret.get_secret_value().encode(), signed, hashlib.sha256).hexdigest()
    if not _hex_equal(expected, given):
        raise ApiError(
            401, "invalid signature", "X-Chatwoot-Signature does not match timestamp and body"
        )


def parse_or_422(parse: Callable[[], ParsedWebhook]) -> ParsedWebhook:
    try:
        return parse()
    except WebhookPayloadError as exc:
        # detail is always the list of problems (the message when the parser named none)
        raise ApiError(422, exc.message, exc.problems or [exc.message]) from exc


async def dispatch(
    state: AppState,
    parsed: ParsedWebhook,
    *,
    on_duplicate: Callable[[Sequence[Dropped]], Awaitable[None]] | None = None,
) -> JSONResponse:
    """Deliver what the parser found, then acknowledge: 202 when something went to Temporal,
    200 when every event was ignored. Temporal errors are 503 so the provider redelivers.

    A copy of a message received before is acknowledged as ignored ("duplicate of …");
    `on_duplicate` may learn from such copies (the WAHA webhook learns @lid -> phone)."""
    if not parsed.messages and not parsed.releases:
        ack = WebhookAck(status="ignored", ignored=parsed.ignored)
        return JSONResponse(status_code=200, content=ack.model_dump(mode="json"))

    delivered: list[Delivered] = []
    ignored = list(parsed.ignored)
    in_time = True
    try:
        if parsed.messages:
            # Stored first: from here on nothing acknowledged can be lost (api/inbox.py).
            in_time, delivered, duplicates = await state.inbox.accept(parsed.messages)
            ignored.extend(copy.reason() for copy in duplicates)
            if duplicates and on_duplicate is not None:
                await on_duplicate(duplicates)
        if parsed.releases:
            await deployment_keys.ensure_loaded(state.db)  # their ids (one check once loaded)
            client = await state.temporal_client()
        for release in parsed.releases:
            workflow_id = conversation_workflow_id(
                release.tenant_id, release.channel, release.contact
            )
            if await signal_conversation(
                client, workflow_id, "release", ReleaseRequest(by=release.by)
            ):
                delivered.append(Delivered(workflow_id=workflow_id, signal="release"))
            else:
                ignored.append(f"no running conversation {workflow_id} to release")
    except SQLAlchemyError as exc:
        # Not stored, so not accepted: the provider must deliver it again.
        raise ApiError(503, "could not store the message; retry later", type(exc).__name__) from exc
    except TemporalUnavailable as exc:
        raise ApiError(503, "Temporal is unavailable", str(exc)) from exc
    except RPCError as exc:
        # The messages stay in the inbox and are delivered once Temporal takes them; the
        # provider's redelivery is safe too (deterministic request ids, message-id dedupe).
        raise ApiError(503, "Temporal refused the delivery; retry later", exc.message) from exc

    ack = WebhookAck(
        status=("accepted" if in_time else "queued") if delivered else "ignored",
        delivered=tuple(delivered),
        ignored=tuple(ignored),
    )
    return JSONResponse(status_code=202 if delivered else 200, content=ack.model_dump(mode="json"))
