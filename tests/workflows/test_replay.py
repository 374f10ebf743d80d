"""Recorded histories replay against the current workflow code: a non-deterministic change to a
workflow fails here before it breaks runs in flight.

Every file under tests/histories/ is replayed with the workflow its name starts with. Record a
new version (never overwrite one) only for a deliberate, versioned change:
    uv run python -m tests.histories.record conversation_<version>.json
    uv run python -m tests.histories.record_enrichment enrichment_<version> [--signals]
    uv run python -m tests.histories.record_crm crm_sync_<version>
    uv run python -m tests.histories.record_erasure erase_contact_<version>
    uv run python -m tests.histories.record_ingestion ingestion_<version>
    uv run python -m tests.histories.record_campaign
    uv run python -m tests.histories.record_mailbox mailbox_<version>
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workers.worker import SandboxMode, workflow_runner
from workflows.campaign import CampaignWorkflow
from workflows.conversation import ConversationWorkflow
from workflows.crm_sync import CrmSyncWorkflow
from workflows.enrichment import EnrichmentJobWorkflow
from workflows.erasure import EraseContactWorkflow
from workflows.ingestion import InventoryIngestionWorkflow
from workflows.mailbox import MailboxReaderWorkflow

HISTORY_DIR = Path(__file__).parent.parent / "histories"

WORKFLOW_BY_PREFIX: dict[str, type] = {
    "conversation_": ConversationWorkflow,
    "enrichment_": EnrichmentJobWorkflow,
    "crm_sync_": CrmSyncWorkflow,
    "erase_contact_": EraseContactWorkflow,
    "ingestion_": InventoryIngestionWorkflow,
    "campaign_": CampaignWorkflow,
    "mailbox_": MailboxReaderWorkflow,
}
"""File-name prefix -> the workflow class its histories replay against."""

MIN_EVENTS = {
    "conversation_": 50,
    "enrichment_": 20,
    "crm_sync_": 20,
    "erase_contact_": 15,
    "ingestion_": 10,
    "campaign_": 25,
    "mailbox_": 40,
}
"""A meaningful recording has many events (an enrichment run that ends in continue-as-new
after three records has about 25; an erasure is three activities, about 17; an ingestion is one
activity, 11, and 17 with its failure path; a campaign of a few sends with a pause, 33 to 47;
the mailbox reader's scripted run, 67)."""

HISTORIES = sorted(HISTORY_DIR.glob("*.json"))


def _prefix(path: Path) -> str:
    for prefix in WORKFLOW_BY_PREFIX:
        if path.name.startswith(prefix):
            return prefix
    raise AssertionError(
        f"{path.name}: a history's name starts with one of {', '.join(WORKFLOW_BY_PREFIX)}"
    )


@pytest.mark.parametrize("mode", ["strict", "passthrough", "off"])
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_recorded_history_replays(path: Path, mode: SandboxMode) -> None:
    """Strict catches a workflow module that imports something non-deterministic; the others
    are what workers may run (LEADFLOW_WORKFLOW_SANDBOX)."""
    prefix = _prefix(path)
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    assert len(history.events) > MIN_EVENTS[prefix], "a meaningful recording has many events"
    replayer = Replayer(
        workflows=[WORKFLOW_BY_PREFIX[prefix]],
        data_converter=pydantic_data_converter,
        workflow_runner=workflow_runner(mode),
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is None, result.replay_failure


def test_histories_are_present() -> None:
    """At least one recording per workflow, and no file that would be silently skipped."""
    by_prefix = {
        prefix: [p.name for p in HISTORIES if p.name.startswith(prefix)]
        for prefix in WORKFLOW_BY_PREFIX
    }
    missing = [prefix for prefix, names in by_prefix.items() if not names]
    assert not missing, f"tests/histories/ holds no recording for {missing}"
    for path in HISTORIES:
        _prefix(path)  # every history is replayed by some workflow
