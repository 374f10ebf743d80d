"""`POST /webhooks/email/{tenant}`: inbound e-mail in leadflow's own JSON shape
(`models.webhooks.EmailWebhook`, documented in docs/webhooks.md).

E-mail has no provider signature, so the bridge authenticates with the tenant's API key
(`Authorization: Bearer <key>`); a key of another tenant is refused."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import State
from api.errors import ApiError
from api.responses import SECURITY_SCHEME
from api.webhooks.body import require_json_content_type
from api.webhooks.common import (
    WEBHOOK_RESPONSES,
    dispatch,
    parse_or_422,
    read_body,
    tenant_and_settings,
    webhook_body,
)
from api.webhooks.parsers.email import parse_email
from models.repo import tenants as tenant_repo

router = APIRouter(prefix="/webhooks/email", tags=["webhooks"])


async def _check_key(state: State, request: Request, tenant_id: str) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(
            401,
            "missing API key",
            "send `Authorization: Bearer <tenant api key>` with inbound mail",
        )
    async with state.db.session() as session:
        owner = await tenant_repo.tenant_for_key(session, key=token.strip())
    if owner is None or owner.id != tenant_id:
        raise ApiError(401, "invalid API key", f"the key is not a key of tenant {tenant_id!r}")


# E-mail has no provider signature: the bridge sends the tenant's API key (the bearer scheme).
@router.post(
    "/{tenant}",
    responses=WEBHOOK_RESPONSES,
    openapi_extra={
        "security": [{SECURITY_SCHEME: []}],
        **webhook_body("An inbound e-mail in leadflow's shape (docs/webhooks.md)."),
    },
)
async def email_webhook(tenant: str, request: Request, state: State) -> JSONResponse:
    require_json_content_type(request)
    body = await read_body(request, state.settings.max_webhook_bytes)
    row, _ = await tenant_and_settings(state, tenant)
    await _check_key(state, request, row.id)
    received_at = datetime.now(UTC)
    parsed = parse_or_422(lambda: parse_email(body, tenant_id=row.id, received_at=received_at))
    return await dispatch(state, parsed)
