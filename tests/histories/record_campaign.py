"""Record CampaignWorkflow histories for its replay test:
`uv run python -m tests.histories.record_campaign` writes `tests/histories/campaign_v1_*.json`.

Runs the workflow on a throwaway time-skipping server with the stub activities of the workflow
tests (tests/campaigns/test_campaign_workflow.py): a run with a skip, a pause and a resume that
continues as new, the run after it, and a held campaign approved then cancelled. Re-record only
when a change is meant to be incompatible (then version the workflow instead)."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta
from pathlib import Path

from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from models.campaigns import (
    UPDATE_APPROVE,
    UPDATE_PAUSE,
    UPDATE_RESUME,
    CampaignControl,
    CampaignControlResult,
    CampaignInput,
    SkipReason,
)
from tests.campaigns.test_campaign_workflow import Stubs, _cancel
from workflows.campaign import CampaignWorkflow

HERE = Path(__file__).parent  # tests/histories/, replayed by tests/workflows/test_replay.py


async def _control(handle: object, update: str) -> None:
    await handle.execute_update(  # type: ignore[attr-defined]
        update, CampaignControl(), result_type=CampaignControlResult
    )


async def main() -> None:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(Path(sys.executable).parent / "temporal-test-server"),
        data_converter=pydantic_data_converter,
    )
    stubs = Stubs(skip={2: SkipReason.DO_NOT_CONTACT})
    try:
        async with Worker(
            env.client,
            task_queue="record",
            workflows=[CampaignWorkflow],
            activities=[stubs.send_campaign_step, stubs.set_campaign_status],
        ):
            handle = await env.client.start_workflow(
                CampaignWorkflow.run,
                CampaignInput(
                    tenant_id="t1", campaign_id="rec1", total=5, rate_per_hour=60,
                    recipients_per_run=3,
                ),
                id="campaign:t1:rec1",
                task_queue="record",
            )  # fmt: skip
            await env.sleep(timedelta(seconds=30))
            await _control(handle, UPDATE_PAUSE)
            await env.sleep(timedelta(hours=1))
            await _control(handle, UPDATE_RESUME)
            await handle.result()
            first = env.client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
            histories = {
                "campaign_v1_pause_resume_continue_as_new": await first.fetch_history(),
                "campaign_v1_completed": await env.client.get_workflow_handle(
                    handle.id
                ).fetch_history(),
            }
            held = await env.client.start_workflow(
                CampaignWorkflow.run,
                CampaignInput(
                    tenant_id="t1", campaign_id="rec2", total=3, rate_per_hour=1,
                    awaiting_approval=True,
                ),
                id="campaign:t1:rec2",
                task_queue="record",
            )  # fmt: skip
            await _control(held, UPDATE_APPROVE)
            await env.sleep(timedelta(minutes=90))
            await _cancel(held)
            await held.result()
            histories["campaign_v1_approve_cancel"] = await held.fetch_history()
        HERE.mkdir(exist_ok=True)
        for name, history in histories.items():
            (HERE / f"{name}.json").write_text(history.to_json())
            print(f"{name}: {len(history.events)} events")
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
