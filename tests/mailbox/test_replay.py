"""Recorded MailboxReaderWorkflow histories (tests/mailbox/histories/, recorded with
`python -m tests.mailbox.record_history mailbox_<version>`, never overwritten) replay against
the current code in every sandbox mode workers may run: a non-deterministic change fails here
before it breaks readers in flight."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workers.worker import SandboxMode, workflow_runner
from workflows.mailbox import MailboxReaderWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("mailbox_*.json"))


def test_histories_are_present() -> None:
    assert HISTORIES, "record one: python -m tests.mailbox.record_history mailbox_v1"


@pytest.mark.parametrize("mode", ["strict", "passthrough", "off"])
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path, mode: SandboxMode) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    kinds = {e.event_type for e in history.events}
    # A meaningful recording: activities, timers, signals, cancellations.
    assert {
        EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED,
        EventType.EVENT_TYPE_TIMER_STARTED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED,
        EventType.EVENT_TYPE_ACTIVITY_TASK_CANCEL_REQUESTED,
    } <= kinds
    replayer = Replayer(
        workflows=[MailboxReaderWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(mode),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
