"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import State
from models import llm_config
from models.repo import inbox as inbox_repo
from models.repo import tenants as tenant_repo
from models.repo import usage as usage_repo
from models.tenant import unsigned_webhook_warning
from workers.plugins import known_llm_providers

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


# /ready answers its own body in both cases (not the error shape): what is up and what is not.
READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Ready: database, Temporal, the knowledge backend and every model "
        "chain answer."
    },
    503: {
        "description": "Not ready: `problems` names each part that is down or misconfigured.",
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["status", "problems"],
                    "properties": {
                        "status": {"type": "string", "enum": ["not ready"]},
                        "problems": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                }
            }
        },
    },
}


@router.get("/ready", responses=READY_RESPONSES)
async def ready(state: State) -> JSONResponse:
    """Ready when the database and Temporal answer and every step of the agent has a runnable
    model chain; also shows the chains and the circuit breakers the workers reported."""
    problems: dict[str, str] = {}
    try:
        await asyncio.wait_for(state.db.ping(), timeout=5)
    except Exception as exc:
        problems["database"] = f"unreachable: {exc}"
    try:
        client = await asyncio.wait_for(state.temporal_client(), timeout=5)
        await asyncio.wait_for(client.service_client.check_health(), timeout=5)
    except Exception as exc:
        problems["temporal"] = f"unreachable at {state.settings.temporal_address}: {exc}"
    # The knowledge backend: the database itself, or a configured Weaviate that must answer
    # (never a silent fallback: a reply without the inventory would quote nothing).
    knowledge = state.knowledge.backend
    if knowledge != "database":
        try:
            await asyncio.wait_for(state.knowledge.index.check(), timeout=5)
        except Exception as exc:
            problems["knowledge"] = str(exc) or f"{knowledge} did not answer"
    llm_problems = llm_config.config_problems(state.settings, known_llm_providers())
    if llm_problems:
        problems["llm"] = "; ".join(llm_problems)
    breakers: list[dict[str, object]] = []
    if "database" not in problems:
        try:
            async with state.db.session() as session:
                rows = await usage_repo.provider_health(session)
            breakers = [row.model_dump(mode="json") for row in rows]
        except Exception as exc:  # the table is informative; its absence is not "not ready"
            breakers = [{"error": str(exc)}]
    llm = {"steps": llm_config.describe(state.settings), "breakers": breakers}
    # Acknowledged webhooks Temporal does not have yet (api/inbox.py): informative.
    inbox: dict[str, object] = {}
    if "database" not in problems:
        try:
            async with state.db.session() as session:
                waiting, oldest = await inbox_repo.pending(session)
            inbox = {"waiting": waiting, "oldest_seconds": oldest}
        except Exception as exc:
            inbox = {"error": str(exc)}
    # Tenants that accept unsigned webhooks: a warning, not "not ready" (the demo does so).
    warnings: list[str] = []
    if "database" not in problems:
        try:
            warnings = await _unsigned_webhook_warnings(state)
        except Exception as exc:
            warnings = [f"could not check the tenants' webhook settings: {exc}"]
    if problems:
        return JSONResponse(
            status_code=503,
            content={
                "status": "not ready",
                "problems": problems,
                "knowledge": knowledge,
                "llm": llm,
                "inbox": inbox,
                "warnings": warnings,
            },
        )
    return JSONResponse(
        content={
            "status": "ready",
            "database": "ok",
            "temporal": "ok",
            "knowledge": knowledge,
            "llm": llm,
            "inbox": inbox,
            "warnings": warnings,
        }
    )


async def _unsigned_webhook_warnings(state: State) -> list[str]:
    secret_key = state.settings.secret_key.get_secret_value()
    async with state.db.session() as session:
        tenants = await tenant_repo.list_tenants(session)
    warnings: list[str] = []
    for tenant in tenants:
        try:
            settings = tenant_repo.tenant_settings(tenant, secret_key=secret_key)
        except Exception as exc:  # one unreadable tenant must not hide the others
            warnings.append(f"tenant {tenant.id}: settings unreadable ({type(exc).__name__})")
            continue
        warning = unsigned_webhook_warning(settings)
        if warning:
            warnings.append(f"tenant {tenant.id} {warning}")
    return warnings
