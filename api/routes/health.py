"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import State

router = APIRouter(tags=["health"])


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def ready(state: State) -> JSONResponse:
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
    if problems:
        return JSONResponse(status_code=503, content={"status": "not ready", "problems": problems})
    return JSONResponse(content={"status": "ready", "database": "ok", "temporal": "ok"})
