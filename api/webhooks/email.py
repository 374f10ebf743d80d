"""`POST /webhooks/email/{tenant}`: inbound e-mail in leadflow's own JSON shape
(`models.webhooks.EmailWebhook`, documented in docs/webhooks.md), and what every inbound-mail
webhook shares (the Mailgun, SendGrid and Postmark routes beside this one): the form reader,
HTTP basic auth, and `deliver_email`, which routes the mail through `models.email_in` (threading,
reply stripping, bounces, automatic replies) and delivers the result.

E-mail has no provider signature, so the bridge authenticates with the tenant's API key
(`Authorization: Bearer <key>`); a key of another tenant is refused."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import AsyncGenerator, Callable
from datetime import UTC, datetime
from email.message import Message
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser

from api.deps import AppState, State
from api.errors import ApiError
from api.responses import SECURITY_SCHEME
from api.webhooks.body import require_json_content_type
from api.webhooks.common import (
    UNSIGNED_REFUSED,
    WEBHOOK_RESPONSES,
    dispatch,
    read_body,
    tenant_and_settings,
    webhook_body,
)
from api.webhooks.parsers.email import parse_email
from models.email_in.message import InboundEmail
from models.email_in.service import route_email
from models.repo import tenants as tenant_repo
from models.webhooks import ParsedWebhook, WebhookPayloadError

router = APIRouter(prefix="/webhooks/email", tags=["webhooks"])

FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_FORM_FIELDS = 200  # a mail's header fields (Mailgun posts each) and a few attachments


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


def parse_or_status(parse: Callable[[], InboundEmail], status: int) -> InboundEmail:
    """`parse()`, with a payload error answered by `status`: each provider has its own code
    for "do not send this again" (Mailgun 406, Postmark 403; 422 elsewhere)."""
    try:
        return parse()
    except WebhookPayloadError as exc:
        raise ApiError(status, exc.message, exc.problems or [exc.message]) from exc


async def deliver_email(
    state: AppState, *, tenant_id: str, email: InboundEmail, source: str
) -> JSONResponse:
    """Route the mail (models.email_in.service.route_email: threads, strips, classifies, marks
    a hard bounce) and deliver what it amounts to, as every message webhook does."""
    received_at = datetime.now(UTC)
    try:
        async with state.db.session() as session:
            parsed: ParsedWebhook = await route_email(
                session, tenant_id=tenant_id, email=email, received_at=received_at, source=source
            )
    except SQLAlchemyError as exc:
        raise ApiError(
            503, "could not read the mail's thread; retry later", type(exc).__name__
        ) from exc
    return await dispatch(state, parsed)


def require_form_content_type(request: Request) -> str:
    """The form's media type; 415 for anything else (inbound-parse webhooks post forms)."""
    header = Message()
    header["content-type"] = request.headers.get("content-type", "")
    media_type = header.get_content_type()
    if media_type not in FORM_TYPES:
        raise ApiError(
            415,
            "unsupported media type",
            f"Content-Type is {request.headers.get('content-type')!r}; expected "
            + " or ".join(FORM_TYPES),
        )
    return media_type


async def read_form(request: Request, body: bytes, *, what: str, status: int) -> dict[str, str]:
    """The text fields of a form body already read (and size-checked) by `read_body`. Files
    (attachments) are skipped; a field given twice keeps its last value. A body that is no form
    of its declared type, or an empty one, is answered with `status` (the provider's code for
    a payload it must not send again)."""

    async def stream() -> AsyncGenerator[bytes, None]:
        yield body

    def refuse(problem: str) -> ApiError:
        return ApiError(status, f"malformed {what}: {problem}", [problem])

    headers = Headers(raw=[(b"content-type", request.headers.get("content-type", "").encode())])
    limits = {"max_fields": MAX_FORM_FIELDS, "max_part_size": len(body) + 1}
    parser: FormParser | MultiPartParser
    if require_form_content_type(request) == "multipart/form-data":
        boundary = _boundary(request.headers.get("content-type", ""))
        if boundary and f"--{boundary}--".encode() not in body:
            # python-multipart returns the parts it finished: a cut body must not pass as a
            # mail with fewer fields.
            raise refuse("the multipart body is cut short (no closing boundary)")
        parser = MultiPartParser(headers, stream(), **limits)
    else:
        parser = FormParser(headers, stream(), **limits)
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise refuse(exc.message) from exc
    fields: dict[str, str] = {}
    try:
        for name, value in form.multi_items():
            if not isinstance(value, UploadFile):
                fields[name] = value
    finally:
        await form.close()
    if not fields:
        raise refuse("the form has no fields")
    return fields


def _boundary(content_type: str) -> str | None:
    header = Message()
    header["content-type"] = content_type
    value = header.get_param("boundary")
    return value if isinstance(value, str) and value else None


def _basic_password(header: str | None) -> str | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        _, _, password = base64.b64decode(header[6:].strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return password


def verify_basic_auth(
    request: Request, secret: SecretStr | None, *, allow_unsigned: bool, provider: str
) -> None:
    """SendGrid and Postmark sign nothing: their webhook URL carries HTTP basic auth
    (`https://any:<password>@host/webhooks/…`) whose password is
    `inbound_email.basic_auth_password`. Without one, only a tenant that allows unsigned
    webhooks takes the post."""
    if secret is None or not secret.get_secret_value():
        if not allow_unsigned:
            raise ApiError(
                401, UNSIGNED_REFUSED, "this tenant has no inbound_email.basic_auth_password"
            )
        return
    given = _basic_password(request.headers.get("authorization"))
    if given is None:
        raise ApiError(
            401,
            "missing credentials",
            f"put HTTP basic auth in the {provider} webhook URL (https://user:password@…)",
        )
    if not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
        raise ApiError(401, "invalid credentials", "the basic auth password does not match")


FORM_BODY: dict[str, Any] = {
    "type": "object",
    "additionalProperties": {"type": "string"},
}


def form_webhook_body(description: str, *, media_types: tuple[str, ...]) -> dict[str, Any]:
    """`openapi_extra` of a webhook that posts a form (read from the raw body by the route)."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {media: {"schema": FORM_BODY} for media in media_types},
        }
    }


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
    email = parse_or_status(lambda: parse_email(body), 422)
    return await deliver_email(state, tenant_id=row.id, email=email, source="email")
