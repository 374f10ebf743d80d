"""Record a MailboxReaderWorkflow history for the replay test (tests/workflows/test_replay.py):

    uv run python -m tests.histories.record_mailbox mailbox_<version>

One run on the time-skipping server with a scripted stub activity: a resync, mails read, an
IDLE that ends with nothing, a refused login woken by new settings, an unreachable server
backed off, a look interrupted by new settings, continue-as-new, and the reader stopped by
settings without a mailbox. Never overwrite a recorded file: record a new version."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.mailbox import ERROR_LOGIN_REFUSED, ERROR_UNAVAILABLE
from models.mailbox import (
    QUERY_STATUS,
    SIGNAL_SETTINGS_CHANGED,
    MailboxReaderInput,
    MailboxStatus,
    ReaderState,
    ReadMailboxResult,
    SettingsChanged,
    mailbox_workflow_id,
)
from tests.mailbox.test_reader_workflow import GONE, T0, Stub, cursor, fail, looked
from workflows.mailbox import MailboxReaderWorkflow

HERE = Path(__file__).parent  # tests/histories/, replayed by tests/workflows/test_replay.py


async def record(name: str) -> Path:
    target = HERE / f"{name}.json"
    if target.exists():
        raise SystemExit(f"{target} exists: record a new version instead")
    down = fail(ERROR_UNAVAILABLE, "cannot connect to imap.example:993", retryable=True)
    stub = Stub(
        ReadMailboxResult(configured=True, cursor=cursor(10), idle_supported=True, resynced=True),
        looked(12, read=2, routed=1, ignored=1),
        fail(ERROR_LOGIN_REFUSED, "login refused: NO [AUTHENTICATIONFAILED]", retryable=False),
        down,
        down,
        down,
        "block",
        looked(13, read=1, routed=1),
        looked(13),
        GONE,
    )
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    try:
        queue = f"tq-{uuid.uuid4().hex[:8]}"
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[MailboxReaderWorkflow],
            activities=[stub.activity()],
        ):
            handle = await env.client.start_workflow(
                MailboxReaderWorkflow.run,
                MailboxReaderInput(tenant_id="t-record", since=T0, looks_per_run=20),
                id=mailbox_workflow_id("t-record"),
                task_queue=queue,
            )
            for _ in range(300):
                status = await handle.query(QUERY_STATUS, result_type=MailboxStatus)
                if status.state == ReaderState.LOGIN_REFUSED:
                    break
                await asyncio.sleep(0.1)
            await handle.signal(SIGNAL_SETTINGS_CHANGED, SettingsChanged())
            await env.sleep(60)  # the unreachable server's backoff, skipped
            for _ in range(600):
                if len(stub.calls) >= 7:
                    break
                await asyncio.sleep(0.1)
            await handle.signal(SIGNAL_SETTINGS_CHANGED, SettingsChanged())  # ends the block
            await handle.result()
            history = await handle.fetch_history()
    finally:
        await env.shutdown()
    HERE.mkdir(exist_ok=True)
    target.write_text(history.to_json())
    return target


if __name__ == "__main__":
    print(asyncio.run(record(sys.argv[1])))
