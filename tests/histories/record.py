"""Record workflow histories for the replay tests:
`uv run python -m tests.histories.record conversation_<version>.json`.

Runs real conversations on a throwaway dev server (offline provider, outbox channel) and writes
their histories as JSON next to this file. Re-record only when a change is *meant* to be
incompatible (and then version the workflow instead, if runs are in flight in production)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from models import search_attributes
from models.common import Channel, Role
from models.conversation import (
    ConversationInput,
    HandoffRequest,
    OperatorMessage,
    ReleaseRequest,
    conversation_workflow_id,
)
from models.db import Database, migrate
from models.messages import InboundMessage
from models.settings import Settings
from models.task_queues import CONVERSATIONS
from models.tenant import TenantSettings
from tests.conftest import make_tenant, temporal_cli_path
from workers.worker import WorkerProcess

HERE = Path(__file__).parent


def _msg(tenant: str, n: int, text: str, role: Role = Role.LEAD) -> InboundMessage:
    return InboundMessage(
        tenant_id=tenant,
        channel=Channel.WAHA,
        contact="31612345678@c.us",
        provider_message_id=f"rec-{n}",
        text=text,
        sent_at=datetime.now(UTC),
        role=role,
    )


async def _settle(client: Client, workflow_id: str, turns: int) -> None:
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(300):
        state = await handle.query("state")
        if state["turns"] >= turns and state["pending_messages"] == 0:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("conversation did not settle")


async def main(name: str) -> None:
    target = HERE / name
    if target.exists():
        # One file per recorded version, never overwritten: old shapes stay covered.
        raise SystemExit(f"{target} exists; record a new version under a new name")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=pydantic_data_converter,
        search_attributes=search_attributes.ALL,
    )
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/db.sqlite"
        migrate(url)
        db = Database(url)
        tenant, _ = await make_tenant(
            db, tenant_id="recorder", settings=TenantSettings(playbook="car_dealership")
        )
        settings = Settings(
            database_url=url,
            data_dir=Path(tmp),
            secret_key="test-secret-key",  # type: ignore[arg-type]
        )
        worker = WorkerProcess(settings, queues=[CONVERSATIONS], client=env.client)
        await worker.start()
        task = asyncio.create_task(worker.run())
        client = env.client
        wid = conversation_workflow_id(tenant, Channel.WAHA, "31612345678@c.us")
        await client.start_workflow(
            "ConversationWorkflow",
            ConversationInput.new(
                tenant_id=tenant,
                channel=Channel.WAHA,
                contact="31612345678@c.us",
                debounce_seconds=0.2,
            ),
            id=wid,
            task_queue=CONVERSATIONS,
            start_signal="inbound",
            start_signal_args=[_msg(tenant, 1, "Hoi, ik zoek een Volkswagen Golf, budget 25k")],
        )
        handle = client.get_workflow_handle(wid)
        await _settle(client, wid, 1)
        await handle.signal("inbound", _msg(tenant, 2, "Kan ik zaterdag een proefrit maken?"))
        await handle.signal("inbound", _msg(tenant, 2, "Kan ik zaterdag een proefrit maken?"))
        await _settle(client, wid, 2)
        await handle.signal("handoff", HandoffRequest(reason="recording"))
        await handle.signal(
            "operator_message", OperatorMessage(text="Mark hier!", request_id="op-1")
        )
        await handle.signal("inbound", _msg(tenant, 3, "Top, dank je"))
        await asyncio.sleep(1.5)
        await handle.signal("release", ReleaseRequest())
        await handle.signal("inbound", _msg(tenant, 4, "Ik wil een mens spreken over financiering"))
        await _settle(client, wid, 3)
        await asyncio.sleep(1.0)
        history = await handle.fetch_history()
        target.write_text(history.to_json())
        await handle.terminate("recorded")
        worker.stop()
        await task
        await db.dispose()
    await env.shutdown()


if __name__ == "__main__":
    if len(sys.argv) != 2 or not sys.argv[1].startswith("conversation_"):
        raise SystemExit("usage: python -m tests.histories.record conversation_<version>.json")
    asyncio.run(main(sys.argv[1]))
