"""The calling tenant's channel settings: credentials, webhook secrets, specialists, playbook.
Secrets are write-only: responses show them masked."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import ValidationError

from api.deps import CurrentTenant, Session, State, settings_of
from api.errors import ApiError
from models import llm_config
from models.repo import tenants as tenant_repo
from models.repo.playbooks import PlaybookError, playbook_for
from models.settings import Settings
from models.tenant import TenantSettings, dump_settings
from workers.plugins import known_llm_providers

router = APIRouter(prefix="/api/v1/settings", tags=["settings"])


def _masked(settings: TenantSettings) -> dict[str, Any]:
    return settings.model_dump(mode="json", exclude_none=True)


MASK = "**********"


def _keep_masked(new: Any, current: Any) -> Any:
    """A client that GETs the settings and sends them back must not store the mask as a secret:
    a masked value means "keep what is stored"."""
    if isinstance(new, dict):
        old = current if isinstance(current, dict) else {}
        return {key: _keep_masked(value, old.get(key)) for key, value in new.items()}
    if isinstance(new, list):
        old_list = current if isinstance(current, list) else []
        return [
            _keep_masked(value, old_list[i] if i < len(old_list) else None)
            for i, value in enumerate(new)
        ]
    if new == MASK:
        return current
    return new


def _validated(raw: dict[str, Any], settings: Settings) -> TenantSettings:
    try:
        new = TenantSettings.model_validate(raw)
    except ValidationError as exc:
        raise ApiError(
            422,
            "invalid settings",
            [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()],
        ) from exc
    try:
        playbook_for(new)
    except PlaybookError as exc:
        raise ApiError(422, "invalid playbook", list(exc.errors) or [str(exc)]) from exc
    if new.llm is not None:
        problems = llm_config.config_problems(settings, known_llm_providers(), new.llm)
        if problems:
            raise ApiError(422, "invalid llm settings", problems)
    return new


@router.get("")
async def get_settings(tenant: CurrentTenant, state: State) -> dict[str, Any]:
    return _masked(settings_of(state, tenant))


@router.patch("")
async def patch_settings(
    patch: dict[str, Any], tenant: CurrentTenant, state: State, session: Session
) -> dict[str, Any]:
    """Merge top-level keys (e.g. {"waha": {...}, "specialists": [...]}) into the settings."""
    current = dump_settings(settings_of(state, tenant))
    new = _validated(_keep_masked({**current, **patch}, current), state.settings)
    await tenant_repo.save_tenant_settings(
        session,
        tenant=tenant,
        settings=new,
        secret_key=state.settings.secret_key.get_secret_value(),
    )
    return _masked(new)


@router.put("")
async def put_settings(
    body: dict[str, Any], tenant: CurrentTenant, state: State, session: Session
) -> dict[str, Any]:
    new = _validated(_keep_masked(body, dump_settings(settings_of(state, tenant))), state.settings)
    await tenant_repo.save_tenant_settings(
        session,
        tenant=tenant,
        settings=new,
        secret_key=state.settings.secret_key.get_secret_value(),
    )
    return _masked(new)
