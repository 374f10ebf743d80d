"""Webhook test harness: the real app (lifespan and all) over ASGI, a migrated SQLite database,
and the session's real Temporal dev server as the app's Temporal client."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.app import create_app
from models.db import Database
from models.settings import Settings
from models.tenant import TenantSettings
from tests.conftest import make_tenant

PAYLOADS = Path(__file__).parent / "payloads"


def payload(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def payload_json(name: str) -> Any:
    return json.loads(payload(name))


def waha_sign(secret: str, body: bytes) -> dict[str, str]:
    return {
        "X-Webhook-Hmac": hmac.new(secret.encode(), body, hashlib.sha512).hexdigest(),
        "X-Webhook-Hmac-Algorithm": "sha512",
    }


def meta_sign(secret: str, body: bytes) -> dict[str, str]:
    digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": f"sha256={digest}"}


def chatwoot_sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"X-Chatwoot-Signature": f"sha256={digest}", "X-Chatwoot-Timestamp": ts}


@dataclass
class Harness:
    app: FastAPI
    http: httpx.AsyncClient
    db: Database
    temporal: Client

    async def tenant(self, settings: TenantSettings | None = None) -> tuple[str, str]:
        return await make_tenant(self.db, settings=settings)

    async def signals(self, workflow_id: str) -> list[tuple[str, list[Any]]]:
        """(signal name, decoded JSON args) of every signal in the workflow's history."""
        history = await self.temporal.get_workflow_handle(workflow_id).fetch_history()
        found: list[tuple[str, list[Any]]] = []
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED:
                attrs = event.workflow_execution_signaled_event_attributes
                # Payloads are encrypted: decoded by the client's converter (its codec).
                args = await self.temporal.data_converter.decode(attrs.input.payloads)
                found.append((attrs.signal_name, args))
        return found

    async def started_input(self, workflow_id: str) -> Any:
        history = await self.temporal.get_workflow_handle(workflow_id).fetch_history()
        first = history.events[0]
        assert first.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED
        attrs = first.workflow_execution_started_event_attributes
        assert attrs.workflow_type.name == "ConversationWorkflow"
        assert attrs.task_queue.name == "leadflow-conversations"
        return (await self.temporal.data_converter.decode(attrs.input.payloads[:1]))[0]

    async def assert_not_started(self, workflow_id: str) -> None:
        with pytest.raises(RPCError) as info:
            await self.temporal.get_workflow_handle(workflow_id).describe()
        assert info.value.status == RPCStatusCode.NOT_FOUND

    async def assert_no_conversation(self, tenant_id: str) -> None:
        """No workflow at all was started for this (unique) tenant."""
        query = f'WorkflowId STARTS_WITH "conv:{tenant_id}:"'
        ids = [wf.id async for wf in self.temporal.list_workflows(query)]
        assert ids == []


HarnessFactory = Callable[..., Any]


@pytest.fixture
async def harness(
    sqlite_db: Database,
    sqlite_url: str,
    settings_factory: Callable[..., Settings],
    temporal_client: Client,
) -> AsyncIterator[Harness]:
    settings = settings_factory(sqlite_url, max_webhook_bytes=64_000)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        app.state.leadflow.temporal = temporal_client
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://leadflow.test") as http:
            yield Harness(app=app, http=http, db=sqlite_db, temporal=temporal_client)
