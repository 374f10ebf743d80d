"""Recorded CampaignWorkflow histories (histories/, written by record_history.py) replay
against the current code in every sandbox mode workers may run: a change that would break
running campaigns fails here. One file per recorded version, never overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workers.worker import SandboxMode, workflow_runner
from workflows.campaign import CampaignWorkflow

HISTORIES = sorted((Path(__file__).parent / "histories").glob("campaign_*.json"))


def test_the_recordings_are_there() -> None:
    names = {path.stem for path in HISTORIES}
    assert {
        "campaign_v1_pause_resume_continue_as_new",
        "campaign_v1_completed",
        "campaign_v1_approve_cancel",
    } <= names


@pytest.mark.parametrize("mode", ["strict", "passthrough", "off"])
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path, mode: SandboxMode) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    assert len(history.events) > 25, "a meaningful recording has many events"
    replayer = Replayer(
        workflows=[CampaignWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(mode),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure
