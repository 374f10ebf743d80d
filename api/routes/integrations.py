"""CRM connections of a tenant: add (credentials stored encrypted, never returned or logged),
list, read, edit, disable, delete and test them. A field mapping is validated when saved: 422
lists every bad field. Edits and deletes follow models/integration_service.py."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Annotated, Any

import httpcore
from fastapi import APIRouter, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator
from pydantic.json_schema import SkipJsonSchema
from temporalio.client import WorkflowFailureError

from api.deps import CurrentTenant, Session, State, Temporal
from api.errors import ApiError
from api.responses import errors
from models.crm import (
    CRM_CONNECTION_TEST_WORKFLOW,
    DEFAULT_FIELD_MAPPINGS,
    ConnectionCheckInput,
    ConnectionCheckResult,
    CrmKind,
    SyncMode,
)
from models.crm_rules import integration_problems
from models.crm_tables import Integration
from models.integration_service import (
    IntegrationEdit,
    IntegrationExists,
    IntegrationNotFound,
    IntegrationRejected,
    delete_integration,
    update_integration,
)
from models.netguard import UrlGuard, UrlRefused
from models.repo import crm as crm_repo
from models.task_queues import CRM

router = APIRouter(prefix="/api/v1/integrations", tags=["integrations"])

CONNECTION_TEST_TIMEOUT = timedelta(seconds=30)


def _http_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("base_url must start with http:// or https://")
    return value


class IntegrationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    kind: CrmKind
    name: str = Field(min_length=1, max_length=128)
    base_url: str | None = Field(
        default=None, description="Defaults to the vendor's (sandboxes, EU data centres, tests)."
    )
    # strict: a float or a boolean is not silently turned into a number or text of a secret
    credentials: dict[str, StrictStr | StrictInt] = Field(default_factory=dict, repr=False)
    field_mapping: dict[str, str] | None = Field(
        default=None, description="leadflow field -> CRM property; defaults per CRM kind."
    )
    mode: SyncMode = SyncMode.SAGA

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        return _http_url(value)


class IntegrationPatch(BaseModel):
    """Only the keys sent change. `credentials` sets the names given (null removes one) and
    keeps the others; `base_url: null` goes back to the vendor's URL."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    # Optional, never null: null is refused (422) except for base_url, so the schema says so
    # (SkipJsonSchema keeps `null` out of the document; the body may still carry it).
    name: Annotated[str, Field(min_length=1, max_length=128)] | SkipJsonSchema[None] = None
    base_url: Annotated[str, Field(pattern=r"^https?://")] | None = Field(
        default=None, description="null: back to the vendor's URL."
    )
    field_mapping: dict[str, str] | SkipJsonSchema[None] = None
    enabled: bool | SkipJsonSchema[None] = None
    credentials: dict[str, StrictStr | StrictInt | None] | SkipJsonSchema[None] = Field(
        default=None, repr=False, description="name -> value sets it; name -> null removes it."
    )

    def edit(self) -> IntegrationEdit:
        sent = self.model_fields_set
        for key in ("name", "field_mapping", "enabled", "credentials"):
            if key in sent and getattr(self, key) is None:
                raise ApiError(
                    422,
                    "invalid integration",
                    [{"field": key, "problem": "must not be null (leave it out to keep it)"}],
                )
        return IntegrationEdit(
            name=self.name,
            base_url=self.base_url,
            reset_base_url="base_url" in sent and self.base_url is None,
            field_mapping=self.field_mapping,
            enabled=self.enabled,
            credentials=self.credentials,
        )


class IntegrationOut(BaseModel):
    id: str
    kind: CrmKind
    name: str
    base_url: str
    order: int
    mode: SyncMode
    field_mapping: dict[str, str]
    enabled: bool
    credentials_set: list[str] = Field(description="Names of the stored credentials, not values.")
    created_at: datetime


class ConnectionTestOut(BaseModel):
    ok: bool
    detail: str


def _out(row: Integration, credential_names: list[str]) -> IntegrationOut:
    view = crm_repo.integration_view(row)
    return IntegrationOut(
        id=row.id,
        kind=view.kind,
        name=row.name,
        base_url=row.base_url,
        order=row.position,
        mode=view.mode,
        field_mapping=view.field_mapping,
        enabled=row.enabled,
        credentials_set=sorted(credential_names),
        created_at=view.created_at or row.created_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=errors(409, _409="An integration of this kind and name exists."),
)
async def add_integration(
    body: IntegrationCreate, tenant: CurrentTenant, session: Session, state: State
) -> IntegrationOut:
    mapping = (
        body.field_mapping if body.field_mapping is not None else DEFAULT_FIELD_MAPPINGS[body.kind]
    )
    problems: list[dict[str, Any]] = [
        p.model_dump()
        for p in integration_problems(
            body.kind,
            mapping=mapping,
            credentials=body.credentials,
            base_url=body.base_url,
            allowlist=state.settings.ssrf_allowlist,
        )
    ]
    if problems:
        raise ApiError(422, "invalid integration", problems)
    try:
        row = await crm_repo.create_integration(
            session,
            tenant_id=tenant.id,
            kind=body.kind,
            name=body.name,
            base_url=body.base_url,
            credentials=dict(body.credentials),
            field_mapping=mapping,
            mode=body.mode,
            secret_key=state.settings.secret_key.get_secret_value(),
        )
    except crm_repo.IntegrationExists as exc:
        raise ApiError(409, "integration exists", str(exc)) from exc
    return _out(row, list(body.credentials))


@router.get("")
async def list_integrations(
    tenant: CurrentTenant, session: Session, state: State
) -> list[IntegrationOut]:
    rows = await crm_repo.list_integrations(session, tenant_id=tenant.id)
    secret = state.settings.secret_key.get_secret_value()
    return [_out(r, list(crm_repo.integration_credentials(r, secret_key=secret))) for r in rows]


@router.post(
    "/{integration_id}/test",
    responses=errors(
        404,
        422,
        504,
        _422="The base_url is refused (private address, unsupported scheme): the detail says why.",
    ),
)
async def test_integration(
    integration_id: str, tenant: CurrentTenant, session: Session, temporal: Temporal, state: State
) -> ConnectionTestOut:
    row = await crm_repo.get_integration(
        session, tenant_id=tenant.id, integration_id=integration_id
    )
    if row is None:
        raise ApiError(404, "unknown integration", integration_id)
    if row.base_url:
        # Refused here with the reason, not probed: a probe's "connection refused" versus
        # "HTTP 404" would map internal ports for the tenant. The worker's client refuses the
        # same addresses at connect time (this check is the early, explainable answer).
        try:
            await UrlGuard(state.settings.ssrf_allowlist).check(row.base_url)
        except UrlRefused as exc:
            raise ApiError(422, "integration base_url refused", exc.reason) from exc
        except httpcore.ConnectError:
            pass  # a name that does not resolve: the probe reports it like any unreachable URL
    # the check runs on a CRM worker, where the adapters live (the API imports no activities)
    try:
        result = await temporal.execute_workflow(
            CRM_CONNECTION_TEST_WORKFLOW,
            ConnectionCheckInput(tenant_id=tenant.id, integration_id=integration_id),
            id=f"crm-test:{tenant.id}:{integration_id}:{uuid.uuid4().hex[:8]}",
            task_queue=CRM,
            result_type=ConnectionCheckResult,
            execution_timeout=CONNECTION_TEST_TIMEOUT,
        )
    except WorkflowFailureError as exc:
        raise ApiError(504, "connection test did not finish", str(exc.cause or exc)) from exc
    return ConnectionTestOut(ok=result.ok, detail=result.detail)


def _problems(problems: list[Any]) -> list[dict[str, Any]]:
    return [p.model_dump() for p in problems]


@router.get("/{integration_id}", responses=errors(404))
async def get_integration(
    integration_id: str, tenant: CurrentTenant, session: Session, state: State
) -> IntegrationOut:
    """One connection: which credentials are set (names only), its mapping and state."""
    row = await crm_repo.get_integration(
        session, tenant_id=tenant.id, integration_id=integration_id
    )
    if row is None:
        raise ApiError(404, "unknown integration", integration_id)
    secret = state.settings.secret_key.get_secret_value()
    return _out(row, list(crm_repo.integration_credentials(row, secret_key=secret)))


@router.patch(
    "/{integration_id}",
    responses=errors(
        404,
        409,
        422,
        _409="Another integration of the tenant has this name.",
        _422="Bad mapping, missing credentials or a refused base_url: every problem listed.",
    ),
)
async def patch_integration(
    integration_id: str,
    body: IntegrationPatch,
    tenant: CurrentTenant,
    session: Session,
    state: State,
    request: Request,
) -> IntegrationOut:
    """Rename, repoint, remap, enable or disable a connection, or set some of its credentials.
    Disabled, it is left out of every sync from the next one on (links stay) and its inbound
    webhooks are acknowledged and ignored; erasure still reaches it
    (models/integration_service.py)."""
    edit = body.edit()
    request.state.audit_detail = {"changed": edit.changed()}
    try:
        row = await update_integration(
            session,
            tenant_id=tenant.id,
            integration_id=integration_id,
            edit=edit,
            secret_key=state.settings.secret_key.get_secret_value(),
            allowlist=state.settings.ssrf_allowlist,
        )
    except IntegrationNotFound as exc:
        raise ApiError(404, "unknown integration", integration_id) from exc
    except IntegrationRejected as exc:
        raise ApiError(422, "invalid integration", _problems(exc.problems)) from exc
    except IntegrationExists as exc:
        raise ApiError(409, "integration exists", str(exc)) from exc
    secret = state.settings.secret_key.get_secret_value()
    return _out(row, list(crm_repo.integration_credentials(row, secret_key=secret)))


@router.delete("/{integration_id}", status_code=status.HTTP_204_NO_CONTENT, responses=errors(404))
async def remove_integration(
    integration_id: str, tenant: CurrentTenant, session: Session
) -> Response:
    """Delete the connection with its per-lead links (the CRM's records are not touched). A
    sync already under way fails its step for this CRM and is rolled back in saga mode; the
    lead's next change syncs to the CRMs that remain (models/integration_service.py)."""
    try:
        await delete_integration(session, tenant_id=tenant.id, integration_id=integration_id)
    except IntegrationNotFound as exc:
        raise ApiError(404, "unknown integration", integration_id) from exc
    return Response(status_code=status.HTTP_204_NO_CONTENT)
