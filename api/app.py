"""The FastAPI app factory: webhooks in, API for operators and scripts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from api.audit_middleware import AuditMiddleware
from api.deps import AppState
from api.errors import install_error_handlers
from api.metrics_middleware import WebhookMetricsMiddleware
from api.rate_limits import RateLimitMiddleware, RateLimits
from api.responses import document_api
from api.routes import ROUTERS
from api.webhooks import WEBHOOK_ROUTERS
from models.db import Database
from models.repo.deployment_keys import load_at_start as load_conversation_ids
from models.settings import Settings, get_settings
from workers.telemetry import instrument_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = Database(settings.resolved_database_url)
        await load_conversation_ids(db)  # id key, open legacy conversations (not fatal)
        state = AppState(settings=settings, db=db)
        app.state.leadflow = state
        state.inbox.start()  # delivers what an earlier run acknowledged but did not deliver
        try:
            yield
        finally:
            await state.inbox.stop()
            if state._knowledge is not None:
                await state._knowledge.index.close()  # Weaviate's client and gRPC channel
            await db.dispose()

    # /docs and /redoc with their assets served by leadflow (/static-offline-docs), no CDN.
    app = FastAPIOffline(
        title="leadflow",
        description="Durable back office for AI sales teams: webhooks in, workflows on Temporal.",
        version="0.1.0",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(AuditMiddleware)  # request ids; the audit log of API actions
    # Outermost: a request over a rate limit is answered before anything reads it.
    app.add_middleware(RateLimitMiddleware, limits=RateLimits.from_settings(settings))
    # Around the rate limiter: its 429s are webhook answers too (leadflow_webhook_acks).
    app.add_middleware(WebhookMetricsMiddleware)
    # Webhooks first: routes are matched in order, and they are most of the requests
    # (their paths, under /webhooks/, overlap with no other route).
    for router in WEBHOOK_ROUTERS:
        app.include_router(router)
    for router in ROUTERS:
        app.include_router(router)
    document_api(app)  # every status, the error schema and the bearer scheme in OpenAPI
    instrument_app(app, settings)  # LEADFLOW_OTEL_ENABLED: a server span per request (root)
    return app
