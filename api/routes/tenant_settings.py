"""The calling tenant's channel settings: credentials, webhook secrets, specialists, playbook.
Secrets are write-only: responses show them masked."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlmodel.ext.asyncio.session import AsyncSession

from api.deps import AppState, CurrentTenant, Session, State, settings_of
from api.errors import ApiError
from models import llm_config
from models.repo import tenants as tenant_repo
from models.repo.playbooks import PlaybookError, playbook_for
from models.tables import Tenant
from models.tenant import TenantSettings, settings_report
from models.tenant_settings_merge import SettingsRejected, merge_settings
from workers.plugins import known_llm_providers

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])


def _masked(settings: TenantSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json", exclude_none=True)


def _merged(
    state: AppState, tenant: Tenant, update: dict[str, Any], *, replace: bool
) -> TenantSettings:
    """The one merge (models/tenant_settings_merge.py), then the checks that need the process:
    the playbook compiles and every model chain can run."""
    try:
        new = merge_settings(
            settings_of(state, tenant),
            update,
            replace=replace,
            allowlist=state.settings.ssrf_allowlist,
        )
    except SettingsRejected as exc:
        raise ApiError(422, exc.message, exc.problems) from exc
    try:
        playbook_for(new)
    except PlaybookError as exc:
        raise ApiError(422, "invalid playbook", list(exc.errors) or [str(exc)]) from exc
    if new.llm is not None:
        problems = llm_config.config_problems(state.settings, known_llm_providers(), new.llm)
        if problems:
            raise ApiError(422, "invalid llm settings", problems)
    return new


async def _save(
    state: AppState, session: AsyncSession, tenant: Tenant, new: TenantSettings
) -> None:
    await tenant_repo.save_tenant_settings(
        session,
        tenant=tenant,
        settings=new,
        secret_key=state.settings.secret_key.get_secret_value(),
    )


@router.get("")
async def get_settings(tenant: CurrentTenant, state: State) -> dict[str, Any]:
    return _masked(settings_of(state, tenant))


@router.get("/status")
async def settings_status(tenant: CurrentTenant, state: State) -> dict[str, Any]:
    """Which channels are configured (and which required fields the others lack), and the
    channels whose webhooks are accepted unsigned."""
    return settings_report(settings_of(state, tenant))


@router.patch("")
async def patch_settings(
    patch: dict[str, Any], tenant: CurrentTenant, state: State, session: Session
) -> dict[str, Any]:
    """Deep-merge into the settings: `{"waha": {"session": "sales"}}` keeps WAHA's URL and
    secrets; a masked or absent secret keeps the stored one; `null` removes a block or field."""
    new = _merged(state, tenant, patch, replace=False)
    await _save(state, session, tenant, new)
    return _masked(new)


@router.put("")
async def put_settings(
    body: dict[str, Any], tenant: CurrentTenant, state: State, session: Session
) -> dict[str, Any]:
    """Replace the settings; masked secrets (as GET shows them) keep the stored ones."""
    new = _merged(state, tenant, body, replace=True)
    await _save(state, session, tenant, new)
    return _masked(new)
