"""The tenant's API keys: list, issue with a label, revoke, rotate (`models.api_keys` holds the
rules). A secret appears in the answer that issues it and nowhere else. Another tenant's key id
is a 404, the same as an id that does not exist."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from api.deps import CurrentTenant, Session
from api.errors import ApiError
from models import api_keys
from models.api_keys import LABEL_MAX, MAX_GRACE, MAX_KEY_ID, KeyInfo

router = APIRouter(prefix="/api/v1/keys", tags=["keys"])

KeyId = Annotated[int, Path(ge=1, le=MAX_KEY_ID, description="The key's id (from the list).")]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such key in this tenant."}}
REFUSED: dict[int | str, dict[str, Any]] = {
    409: {"description": "The change is not allowed; `detail` says why."}
}


class KeyView(BaseModel):
    id: int
    label: str
    prefix: str = Field(description="The secret's first characters, to recognise it.")
    created_at: datetime
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")
    revoked_at: datetime | None = Field(
        description="Refused from then on; in the future while a rotation's grace period runs."
    )
    active: bool
    current: bool = Field(description="This request is authenticated with this key.")

    @classmethod
    def of(cls, key: KeyInfo, request: Request) -> KeyView:
        return cls(
            id=key.id,
            label=key.label,
            prefix=key.prefix,
            created_at=key.created_at,
            last_used_at=key.last_used_at,
            revoked_at=key.revoked_at,
            active=key.active(),
            current=key.id == getattr(request.state, "api_key_id", None),
        )


class KeyList(BaseModel):
    keys: list[KeyView]


class NewKey(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str = Field(min_length=1, max_length=LABEL_MAX, examples=["ci"])

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        try:
            return api_keys.check_label(value)
        except api_keys.KeyRefused as exc:
            raise ValueError(str(exc)) from None


class IssuedKeyView(BaseModel):
    key: KeyView
    secret: str = Field(description="The key itself: shown this once, stored only hashed.")


class RotateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    grace_seconds: StrictInt = Field(
        default=0,
        ge=0,
        le=int(MAX_GRACE.total_seconds()),
        description="How long the old key keeps working; 0: refused at once.",
    )


class RotatedView(BaseModel):
    key: KeyView = Field(description="The new key.")
    secret: str = Field(description="The new key's secret: shown this once.")
    replaced: KeyView = Field(description="The old key, revoked now or at the grace's end.")


def _refused(exc: api_keys.KeyRefused) -> ApiError:
    return ApiError(409, "refused", str(exc))


def _not_found(key_id: int) -> ApiError:
    # The same words for another tenant's key as for one that does not exist.
    return ApiError(404, "no such key", f"no key {key_id} in this tenant")


@router.get("")
async def list_keys(
    request: Request,
    tenant: CurrentTenant,
    session: Session,
    include_revoked: bool = True,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> KeyList:
    """The tenant's keys, newest first; never their secrets."""
    keys = await api_keys.list_keys(
        session, tenant_id=tenant.id, include_revoked=include_revoked, limit=limit
    )
    return KeyList(keys=[KeyView.of(k, request) for k in keys])


@router.post("", status_code=status.HTTP_201_CREATED, responses=REFUSED)
async def create_key(
    body: NewKey, request: Request, tenant: CurrentTenant, session: Session
) -> IssuedKeyView:
    """Issue a key with a label. Its secret is in this answer only."""
    try:
        issued = await api_keys.create(session, tenant_id=tenant.id, label=body.label)
    except api_keys.KeyRefused as exc:
        raise _refused(exc) from exc
    request.state.audit_resource_id = str(issued.info.id)
    request.state.audit_detail = {"label": issued.info.label}
    return IssuedKeyView(key=KeyView.of(issued.info, request), secret=issued.secret)


@router.delete(
    "/{key_id}",
    responses={**NOT_FOUND, **REFUSED},
    openapi_extra={"x-audit-action": "key.revoke"},  # the audit log's name for it
)
async def revoke_key(
    key_id: KeyId, request: Request, tenant: CurrentTenant, session: Session
) -> KeyView:
    """Revoke a key: refused from this moment on. Revoking a revoked key changes nothing. The
    key this request uses cannot be revoked with itself (409): rotate it instead, or revoke it
    with another key or `leadflow key revoke`."""
    try:
        key = await api_keys.revoke(
            session,
            tenant_id=tenant.id,
            key_id=key_id,
            current_key_id=getattr(request.state, "api_key_id", None),
        )
    except api_keys.KeyNotFound as exc:
        raise _not_found(key_id) from exc
    except api_keys.KeyRefused as exc:
        raise _refused(exc) from exc
    request.state.audit_detail = {"label": key.label}
    return KeyView.of(key, request)


@router.post(
    "/{key_id}/rotate", status_code=status.HTTP_201_CREATED, responses={**NOT_FOUND, **REFUSED}
)
async def rotate_key(
    key_id: KeyId,
    request: Request,
    tenant: CurrentTenant,
    session: Session,
    body: RotateRequest | None = None,
) -> RotatedView:
    """Issue a new key with the same label and revoke this one, at once or after
    `grace_seconds` (both work until then). A key may rotate itself. 409 for a key that is
    revoked or already rotated."""
    grace = timedelta(seconds=body.grace_seconds if body is not None else 0)
    try:
        rotated = await api_keys.rotate(session, tenant_id=tenant.id, key_id=key_id, grace=grace)
    except api_keys.KeyNotFound as exc:
        raise _not_found(key_id) from exc
    except api_keys.KeyRefused as exc:
        raise _refused(exc) from exc
    request.state.audit_detail = {
        "label": rotated.old.label,
        "new_key_id": rotated.new.info.id,
        "grace_seconds": int(grace.total_seconds()),
    }
    return RotatedView(
        key=KeyView.of(rotated.new.info, request),
        secret=rotated.new.secret,
        replaced=KeyView.of(rotated.old, request),
    )
