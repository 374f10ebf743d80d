"""A turn's structural budget, counted from the real history of a real conversation (real worker,
offline provider, dev server): payload bytes, workflow tasks, activities and SQL statements per
turn (issue 8: at most 4 workflow tasks and 3 activities for a turn without escalation or CRM).

The playbook goes to activities by reference (tenant + hash) and knowledge by id, so a turn adds
little to the history whatever the size of the playbook; this test keeps it that way."""

from __future__ import annotations

import json
import re
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from temporalio.client import Client

from models.conversation import conversation_workflow_id
from models.settings import Settings
from models.tenant import TenantSettings
from tests.fakes.waha import FakeWaha
from tests.history_budget import budget_of
from tests.stack import live_stack

LEAD = "31655500011@c.us"
# Bytes a turn may add to the history (issue: the agent, for real). Since version 2 the turn's
# record (fields, score with its components, the lead's entries) is the input of its send, so
# it is in the history; as a local activity's input it was not. That costs ~1.5 KB a turn and
# saves two marker events and two worker activations (issue 8).
TURN_PAYLOAD_BUDGET = 5120
# SQL statements a turn may cost, all processes: the inbox row in and out (2); the context and
# the agent's reading (lead, knowledge, transcript, fields: 4); the ledger, once for both model
# steps (1); the outbox claim and mark (2); the record (6). Each is CPU in SQLAlchemy and the
# driver, the worker's largest cost after Temporal's own (issue 8). A turn about a car also asks
# whether the tenant keeps an inventory (1, once per 30 s per worker; this tenant keeps none, so
# its wish is not searched: activities/llm/agent.py `_has_stock`).
TURN_STATEMENT_BUDGET = 16
TENANT_READ = re.compile(r"\bFROM (tenants|integrations)\b", re.IGNORECASE)

MESSAGES = [
    "Hoi, ik zoek een Volkswagen Golf, budget rond de €25.000",
    "Is die er ook als hybride? En wat is de kilometerstand?",
    "Kan ik deze week een proefrit maken, zaterdag om 11 uur?",
]


async def test_a_turn_stays_within_its_budget_of_tasks_activities_bytes_and_statements(
    temporal_client: Client, settings_factory: Any, sqlite_url: str, fake_waha: FakeWaha
) -> None:
    settings: Settings = settings_factory(sqlite_url, debounce_seconds=0.3)
    async with live_stack(
        temporal_client,
        settings,
        tenant_settings=TenantSettings(playbook="car_dealership", waha=fake_waha.settings()),
    ) as stack:
        workflow_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
        handle = temporal_client.get_workflow_handle(workflow_id)
        sizes: list[int] = []
        activities: list[int] = []
        tasks: list[int] = []
        previous = budget_of({})
        # Every SQL statement of this process (the API and the worker run in it): each one is
        # CPU in SQLAlchemy and the driver, a turn's largest cost in the worker (issue 8).
        statements: list[str] = []

        ours = make_url(sqlite_url).database

        def count(conn: Any, _cursor: Any, sql: str, *_args: Any) -> None:
            if conn.engine.url.database != ours:  # another test's engine, still winding down
                return
            flat = " ".join(sql.split())
            # Not the turn's: the inbox's sweeper, and the tenant's settings, which the API and
            # the worker read once per TTL (the first turn reads them, a slow run may again).
            if not flat.upper().startswith("SELECT INBOX.ID") and not TENANT_READ.search(flat):
                statements.append(flat[:100])

        per_turn: list[list[str]] = []
        event.listen(Engine, "before_cursor_execute", count)
        for n, text in enumerate(MESSAGES, start=1):
            raw, headers = fake_waha.message_webhook(from_=LEAD, body=text)
            response = await stack.http.post(
                f"/webhooks/waha/{stack.tenant_id}",
                content=raw,
                headers={**headers, "content-type": "application/json"},
            )
            assert response.status_code in (200, 202), response.text
            await stack.wait_for(
                lambda n=n: len([b for b in fake_waha.sent if b.get("chatId") == LEAD]) >= n,
                what=f"reply {n}",
            )

            # `turns` counts a turn when it starts, and the reply reaches the fake WAHA before
            # the same activity records it: the turn is over when its reply is in the
            # transcript, which the workflow appends once send-and-record has completed.
            async def settled(n: int = n) -> bool:
                state = await handle.query("state")
                replies = [e for e in state["transcript"] if e["role"] == "ai"]
                return bool(len(replies) >= n and state["pending_messages"] == 0)

            await stack.wait_for(settled, what=f"turn {n} recorded")
            now = budget_of(json.loads((await handle.fetch_history()).to_json()))
            sizes.append(now.payload_bytes - previous.payload_bytes)
            activities.append(now.activities - previous.activities)
            tasks.append(now.workflow_tasks - previous.workflow_tasks)
            previous = now
            per_turn.append(list(statements))
            statements.clear()
        event.remove(Engine, "before_cursor_execute", count)
        budget = budget_of(json.loads((await handle.fetch_history()).to_json()))
        print(
            f"\nper turn: payload bytes {sizes}, activities {activities}, workflow tasks "
            f"{tasks}; whole history: {budget.events} events, "
            f"{budget.payload_bytes} bytes, {budget.workflow_tasks} workflow tasks, "
            f"{budget.activities} activities, {budget.local_activities} local activities"
        )
        for kind, size in budget.bytes_by_kind.most_common(6):
            print(f"  {size:>7}  {kind}")
        print(f"SQL statements per turn: {[len(turn) for turn in per_turn]}")
        for n, turn in enumerate(per_turn, start=1):
            print(f" turn {n}:")
            for sql in turn:
                print(f"  {sql}")
        assert all(len(turn) <= TURN_STATEMENT_BUDGET for turn in per_turn), [
            (len(turn), turn) for turn in per_turn
        ]
        # The first turn also carries the start (input, policy): it is measured, not budgeted.
        assert all(size <= TURN_PAYLOAD_BUDGET for size in sizes[1:]), sizes
        assert sizes[0] <= TURN_PAYLOAD_BUDGET + 4096, sizes
        # No CRM connected, no escalation: perceive and draft, send; no CrmSyncWorkflow request.
        assert activities == [2, 2, 2], activities
        # The inbound signal, the debounce timer, the draft's and the send's completions. Counted
        # over the whole history: a turn's last task (recording after the send) may fall on
        # either side of the moment the test looks, so per-turn counts are not stable.
        assert budget.workflow_tasks <= 4 * len(MESSAGES), tasks
        # Context, perception and draft in one activity, send and record in another (v2).
        assert budget.local_activities == 0, budget
