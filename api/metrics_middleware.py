"""Every webhook answer counted by provider and status, and timed (models/metrics.py
WEBHOOK_ACKS, WEBHOOK_ACK_SECONDS).

A middleware, because an answer leaves through several doors: the handler's acknowledgement,
the error handler's 4xx/5xx, the rate limiter's 429. Pure ASGI: it reads no body and costs a
clock read and a counter increment per webhook."""

from __future__ import annotations

import time
from collections.abc import Iterable

from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.webhooks import WEBHOOK_ROUTERS
from models.metrics import WEBHOOK_ACK_SECONDS, WEBHOOK_ACKS

WEBHOOK_PREFIX = "/webhooks/"
OTHER = "other"  # a path under /webhooks/ that no provider serves: its text is not a label


def webhook_providers() -> frozenset[str]:
    """The providers the webhook routers serve: the first segment after /webhooks/ of their
    routes' paths (`/webhooks/whatsapp/{tenant}` -> whatsapp)."""
    return frozenset(
        route.path[len(WEBHOOK_PREFIX) :].partition("/")[0]
        for router in WEBHOOK_ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute) and route.path.startswith(WEBHOOK_PREFIX)
    )


class WebhookMetricsMiddleware:
    def __init__(self, app: ASGIApp, *, providers: Iterable[str] | None = None) -> None:
        self.app = app
        self.providers = frozenset(webhook_providers() if providers is None else providers)

    def provider_of(self, path: str) -> str:
        provider = path[len(WEBHOOK_PREFIX) :].partition("/")[0]
        return provider if provider in self.providers else OTHER

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(WEBHOOK_PREFIX):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers when the app raises before it starts a response

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            provider = self.provider_of(scope["path"])
            WEBHOOK_ACKS.labels(provider=provider, status=str(status)).inc()
            WEBHOOK_ACK_SECONDS.labels(provider=provider).observe(time.perf_counter() - started)
