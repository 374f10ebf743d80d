"""Recorded histories replay against the current workflow code: a non-deterministic change to
ConversationWorkflow fails here before it breaks runs in flight. Re-record with
`uv run python -m tests.histories.record` only for a deliberate, versioned change."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workers.worker import SandboxMode, workflow_runner
from workflows.conversation import ConversationWorkflow

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("conversation_*.json"))


@pytest.mark.parametrize("mode", ["strict", "passthrough", "off"])
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_conversation_replays(path: Path, mode: SandboxMode) -> None:
    """Strict catches a workflow module that imports something non-deterministic; the others
    are what workers may run (LEADFLOW_WORKFLOW_SANDBOX)."""
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    assert len(history.events) > 50, "a meaningful recording has many events"
    replayer = Replayer(
        workflows=[ConversationWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(mode),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_histories_are_present() -> None:
    assert HISTORIES, "tests/histories/ must hold at least one recorded conversation"
