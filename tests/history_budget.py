"""Structural budgets of a workflow history: payload bytes, events, workflow tasks and activities.

Temporal's cost is per event and per byte of payload, on the server and in the worker, so a
turn's budget is counted here from a recorded history (tests assert it; `python -m
tests.history_budget FILE.json` prints it for a history exported as JSON)."""

from __future__ import annotations

import base64
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class HistoryBudget:
    events: int = 0
    payload_bytes: int = 0
    workflow_tasks: int = 0
    activities: int = 0
    local_activities: int = 0
    bytes_by_kind: Counter[str] = field(default_factory=Counter)


def _payload_bytes(node: Any) -> int:
    if isinstance(node, dict):
        if "data" in node and "metadata" in node and isinstance(node["data"], str):
            try:
                return len(base64.b64decode(node["data"]))
            except ValueError:
                return len(node["data"])
        return sum(_payload_bytes(v) for v in node.values())
    if isinstance(node, list):
        return sum(_payload_bytes(v) for v in node)
    return 0


def budget_of(history: dict[str, Any]) -> HistoryBudget:
    """`history` in JSON form (`WorkflowHistory.to_json()`, `temporal workflow show -o json`)."""
    budget = HistoryBudget()
    for event in history.get("events", []):
        kind = str(event.get("eventType", ""))
        budget.events += 1
        size = _payload_bytes(event)
        budget.payload_bytes += size
        name = ""
        scheduled = event.get("activityTaskScheduledEventAttributes")
        if scheduled:
            budget.activities += 1
            name = scheduled["activityType"]["name"]
        marker = event.get("markerRecordedEventAttributes")
        if marker and marker.get("markerName") == "core_local_activity":
            budget.local_activities += 1
            name = "local_activity"
        if kind in ("EVENT_TYPE_WORKFLOW_TASK_COMPLETED", "WorkflowTaskCompleted"):
            budget.workflow_tasks += 1
        budget.bytes_by_kind[f"{kind.removeprefix('EVENT_TYPE_').lower()} {name}".strip()] += size
    return budget


if __name__ == "__main__":
    for path in sys.argv[1:]:
        with open(path) as handle:
            b = budget_of(json.load(handle))
        print(
            f"{path}: {b.events} events, {b.payload_bytes} payload bytes, "
            f"{b.workflow_tasks} workflow tasks, {b.activities} activities, "
            f"{b.local_activities} local activities"
        )
        for kind, size in b.bytes_by_kind.most_common(8):
            print(f"  {size:>8}  {kind}")
