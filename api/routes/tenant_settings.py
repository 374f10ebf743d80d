"""The calling tenant's channel settings: credentials, webhook secrets, specialists, playbook.
Secrets are write-only: responses show them masked."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter
from sqlmodel.ext.asyncio.session import AsyncSession

from api.deps import AppState, CurrentTenant, Session, State, Temporal, settings_of
from api.errors import ApiError
from api.responses import errors
from models import llm_config
from models.mailbox import ensure_mailbox_reader, mailbox_status
from models.repo import tenants as tenant_repo
from models.repo.playbooks import PlaybookError, playbook_for
from models.tables import Tenant
from models.tenant import TenantSettings, settings_report
from models.tenant_settings_merge import SettingsRejected, merge_settings
from workers.plugins import known_llm_providers

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])
log = logging.getLogger("leadflow.settings")


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
    old = settings_of(state, tenant)
    await tenant_repo.save_tenant_settings(
        session,
        tenant=tenant,
        settings=new,
        secret_key=state.settings.secret_key.get_secret_value(),
    )
    await _mailbox_follows(state, tenant.id, old, new)


async def _mailbox_follows(
    state: AppState, tenant_id: str, old: TenantSettings, new: TenantSettings
) -> None:
    """The tenant's mailbox reader follows the saved settings (models/mailbox.py): started,
    told about a changed `imap` block, or stopped. A change Temporal could not take is a 503
    that says the settings are saved (saving again, or the next worker start, starts the
    reader); with the `imap` block unchanged a missing reader is started if Temporal answers."""
    changed = old.imap != new.imap
    if not changed and new.imap is None:
        return
    try:
        client = await state.temporal_client()
        await ensure_mailbox_reader(client, tenant_id=tenant_id, imap=new.imap, changed=changed)
    except Exception as exc:
        if not changed:
            log.warning("mailbox reader of %s not checked: %s", tenant_id, exc)
            return
        raise ApiError(
            503,
            "Temporal is unavailable",
            f"the settings are saved, but the mailbox reader could not follow them: {exc}; "
            "save them again, or it follows when a worker starts",
        ) from exc


@router.get("")
async def get_settings(tenant: CurrentTenant, state: State) -> dict[str, Any]:
    return _masked(settings_of(state, tenant))


@router.get("/status")
async def settings_status(tenant: CurrentTenant, state: State) -> dict[str, Any]:
    """Which channels are configured (and which required fields the others lack), and the
    channels whose webhooks are accepted unsigned."""
    return settings_report(settings_of(state, tenant))


@router.get("/mailbox", responses=errors(503))
async def get_mailbox_status(tenant: CurrentTenant, temporal: Temporal) -> dict[str, Any]:
    """The mailbox reader of the tenant's `imap` settings: connected, its state (reading,
    polling, login refused, unreachable, ...), cursor, counts and last error; `running` false
    when no reader runs."""
    status = await mailbox_status(temporal, tenant.id)
    if status is None:
        return {"running": False}
    return {"running": True, **status.model_dump(mode="json")}


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
