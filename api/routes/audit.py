"""The tenant's audit log: who did what, when, from which key, and how it ended (written by
`api/audit_middleware.py` for API requests and by the CLI's commands; see `models.audit`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from api.deps import CurrentTenant, Session
from api.routes.usage import _parse_bound, _problem
from models import audit
from models.audit_tables import AuditEvent

router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

# The forms `since` and `until` take, declared so the API's document says what is accepted
# (a date that does not exist, 2026-02-31, still gets its 422 from the parser).
ISO_DATE_OR_TIME = r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})?)?$"


class AuditEntryView(BaseModel):
    id: int
    at: datetime
    actor_kind: str = Field(description="api_key | cli | user (a person signed in)")
    actor: str = Field(description="The key's label (or prefix), or the operator's name.")
    api_key_id: int | None
    action: str = Field(examples=["key.revoke", "conversation.handoff", "settings.update"])
    resource_id: str | None
    outcome: str = Field(description="ok | refused (4xx) | error (5xx)")
    status: int | None = Field(description="The HTTP status of an API request.")
    request_id: str | None
    method: str | None
    route: str | None
    detail: dict[str, Any]

    @classmethod
    def of(cls, row: AuditEvent) -> AuditEntryView:
        return cls.model_validate(row, from_attributes=True)


class AuditPage(BaseModel):
    entries: list[AuditEntryView]
    next_before: int | None = Field(
        description="Pass as `before` for the next (older) page; null on the last page."
    )


@router.get("")
async def list_audit(
    tenant: CurrentTenant,
    session: Session,
    action: Annotated[
        str | None,
        Query(max_length=100, description="An action (`key.revoke`) or a prefix (`key.*`)."),
    ] = None,
    since: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=ISO_DATE_OR_TIME,
            description="ISO date or datetime, inclusive (UTC).",
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            max_length=64,
            pattern=ISO_DATE_OR_TIME,
            description="ISO date or datetime, exclusive (UTC).",
        ),
    ] = None,
    before: Annotated[
        int,
        Query(
            ge=0, le=audit.MAX_EVENT_ID, description="Entries older than this id; 0: the newest."
        ),
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = audit.DEFAULT_PAGE,
) -> AuditPage:
    """Newest first, one page at a time (`next_before`)."""
    start = _parse_bound("since", since, end=False) if since is not None else None
    end = _parse_bound("until", until, end=False) if until is not None else None
    if start is not None and end is not None and end <= start:
        raise _problem("until", "`until` is not after `since`", until)
    rows = await audit.list_events(
        session,
        tenant_id=tenant.id,
        action=action,
        since=start,
        until=end,
        before=before or None,
        limit=limit,
    )
    last = rows[-1].id if len(rows) == limit else None
    return AuditPage(entries=[AuditEntryView.of(r) for r in rows], next_before=last)
