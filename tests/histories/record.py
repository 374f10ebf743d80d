"""Record workflow histories for the replay tests:
`uv run python -m tests.histories.record conversation_<version>.json` (signals, version ≤ 2), or
`uv run python -m tests.histories.record conversation_v6_<name>` (version 3: operator Updates,
a close, and the resumed run after it; writes `<name>_commands.json` and `<name>_resumed.json`).

Runs real conversations on a throwaway dev server (offline provider, outbox channel) and writes
their histories as JSON next to this file. Re-record only when a change is *meant* to be
incompatible (and then version the workflow instead, if runs are in flight in production)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from models import search_attributes
from models.common import Channel, Role
from models.conversation import (
    UPDATE_CLOSE,
    UPDATE_HANDOFF,
    UPDATE_OPERATOR_MESSAGE,
    UPDATE_RELEASE,
    CloseRequest,
    CommandResult,
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
            secret_key="test-secret-key",
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


async def _replied(client: Client, workflow_id: str, replies: int) -> None:
    """Until the AI's `replies`-th message is in the transcript (a turn answered, not begun)."""
    handle = client.get_workflow_handle(workflow_id)
    for _ in range(300):
        state = await handle.query("state")
        if sum(1 for e in state["transcript"] if e["role"] == Role.AI.value) >= replies:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("no reply")


async def record_v6(prefix: str) -> None:
    """Version 3 (CONVERSATION_VERSION) as operators and leads drive it: a run with turns, a
    handoff, an operator message, a release and a close, all as Updates (one refused: it leaves
    nothing in the history); then the lead writes again and a new run resumes from the
    database, answers twice, hears an opt-out and closes. One file per run."""
    stem = prefix.removesuffix(".json")
    targets = [HERE / f"{stem}_commands.json", HERE / f"{stem}_resumed.json"]
    for target in targets:
        if target.exists():
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
            secret_key="test-secret-key",
        )
        worker = WorkerProcess(settings, queues=[CONVERSATIONS], client=env.client)
        await worker.start()
        task = asyncio.create_task(worker.run())
        client = env.client
        wid = conversation_workflow_id(tenant, Channel.WAHA, "31612345678@c.us")

        async def start(first: InboundMessage) -> str:
            handle = await client.start_workflow(
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
                start_signal_args=[first],
            )
            assert handle.result_run_id is not None
            return handle.result_run_id

        async def command(name: str, arg: object, update_id: str) -> CommandResult:
            result: CommandResult = await client.get_workflow_handle(wid).execute_update(
                name, arg, id=update_id, result_type=CommandResult
            )
            return result

        first_run = await start(_msg(tenant, 1, "Hoi, ik zoek een Volkswagen Golf, budget 25k"))
        handle = client.get_workflow_handle(wid)
        await _replied(client, wid, 1)
        await command(UPDATE_HANDOFF, HandoffRequest(reason="recording"), "handoff:rec-1")
        await command(UPDATE_HANDOFF, HandoffRequest(reason="recording"), "handoff:rec-1")
        try:
            await command(UPDATE_HANDOFF, HandoffRequest(reason="again"), "handoff:rec-2")
        except WorkflowUpdateFailedError:
            pass  # refused: nothing in the history
        await handle.signal("inbound", _msg(tenant, 2, "Hallo? Is daar iemand?"))
        await command(
            UPDATE_OPERATOR_MESSAGE,
            OperatorMessage(text="Mark hier!", request_id="message:rec-3"),
            "message:rec-3",
        )
        await command(UPDATE_RELEASE, ReleaseRequest(), "release:rec-4")
        await handle.signal("inbound", _msg(tenant, 3, "Kan ik zaterdag een proefrit maken?"))
        await _settle(client, wid, 2)  # the turn began: the close likely stops it mid-turn
        await command(UPDATE_CLOSE, CloseRequest(reason="recording"), "close:rec-5")
        await client.get_workflow_handle(wid, run_id=first_run).result()
        history = await client.get_workflow_handle(wid, run_id=first_run).fetch_history()
        targets[0].write_text(history.to_json())

        # The lead writes again: a new run resumes from the database.
        second_run = await start(_msg(tenant, 4, "Is de Golf nog beschikbaar?"))
        await _replied(client, wid, 2)
        await handle.signal("inbound", _msg(tenant, 5, "Wat kost hij ongeveer?"))
        await _replied(client, wid, 3)
        await handle.signal("inbound", _msg(tenant, 6, "Stop, stuur me geen berichten meer"))
        second = client.get_workflow_handle(wid, run_id=second_run)
        for _ in range(100):
            if (await second.query("state"))["stage"] == "closed":
                break
            await asyncio.sleep(0.1)
        else:
            await command(UPDATE_CLOSE, CloseRequest(reason="recording"), "close:rec-6")
        await second.result()
        targets[1].write_text((await second.fetch_history()).to_json())
        worker.stop()
        await task
        await db.dispose()
    await env.shutdown()


if __name__ == "__main__":
    if len(sys.argv) == 2 and sys.argv[1].startswith("conversation_v6_"):
        asyncio.run(record_v6(sys.argv[1]))
    elif len(sys.argv) == 2 and sys.argv[1].startswith("conversation_"):
        asyncio.run(main(sys.argv[1]))
    else:
        raise SystemExit("usage: python -m tests.histories.record conversation_<version>.json")
