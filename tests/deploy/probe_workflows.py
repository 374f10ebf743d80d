"""Workflows of test_temporal_series.py, in a module of their own: the workflow sandbox
re-imports it and must find nothing but Temporal here."""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow
from temporalio.common import VersioningBehavior


@activity.defn
async def probe_activity() -> str:
    return "done"


@workflow.defn(name="DeployProbe")
class ProbeWorkflow:
    @workflow.run
    async def run(self) -> str:
        return await workflow.execute_activity(
            probe_activity, start_to_close_timeout=timedelta(seconds=30)
        )


# One conversation-like workflow in two builds: it waits for the lead's next message, then
# answers with the build that ran it.
@workflow.defn(name="DeployChat", versioning_behavior=VersioningBehavior.PINNED)
class ChatBuild1:
    def __init__(self) -> None:
        self.messages = 0

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.messages > 0)
        return "build 1"

    @workflow.signal
    def message(self) -> None:
        self.messages += 1


@workflow.defn(name="DeployChat", versioning_behavior=VersioningBehavior.PINNED)
class ChatBuild2:
    def __init__(self) -> None:
        self.messages = 0

    @workflow.run
    async def run(self) -> str:
        await workflow.wait_condition(lambda: self.messages > 0)
        return "build 2"

    @workflow.signal
    def message(self) -> None:
        self.messages += 1
