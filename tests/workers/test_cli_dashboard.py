"""`leadflow dashboard` on a SQLite file: the same numbers as the API (its JSON), a table for
people, and the exit codes of an unknown tenant (1) and a bad period (2)."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from models.common import Channel, Role, Stage
from models.conversation import EscalationRecord, RecordTurnInput, conversation_workflow_id
from models.db import Database, migrate
from models.messages import TranscriptEntry
from models.repo import conversations as conversation_repo
from models.repo import tenants as tenant_repo
from models.tenant import TenantSettings
from tests.conftest import TEST_SECRET
from workers.cli import app

# Yesterday at noon UTC: the same day in Amsterdam (UTC+1 in winter, +2 in summer).
YESTERDAY_NOON = (datetime.now(UTC) - timedelta(days=1)).replace(
    hour=12, minute=0, second=0, microsecond=0
)


@pytest.fixture
def db_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("LEADFLOW_DATABASE_URL", url)
    monkeypatch.setenv("LEADFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LEADFLOW_SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("COLUMNS", "240")
    migrate(url)

    async def seed() -> None:
        db = Database(url)
        try:
            async with db.session() as session:
                await tenant_repo.create_tenant(
                    session,
                    tenant_id="acme",
                    name="Acme",
                    secret_key=TEST_SECRET,
                    settings=TenantSettings(timezone="Europe/Amsterdam"),
                )
                at = YESTERDAY_NOON
                await conversation_repo.record_turn(
                    session,
                    record=RecordTurnInput(
                        conversation_id=conversation_workflow_id("acme", "waha", "31611111111"),
                        tenant_id="acme",
                        channel=Channel.WAHA,
                        contact="31611111111",
                        turn_key="turn-1",
                        entries=(
                            TranscriptEntry(
                                role=Role.LEAD, text="hi", at=at, provider_message_id="w-1"
                            ),
                            TranscriptEntry(role=Role.AI, text="hey", at=at + timedelta(seconds=8)),
                        ),
                        stage=Stage.HUMAN_HANDOFF,
                        lead_id="lead-1",
                        escalation=EscalationRecord(rule="human_request", reason="asked"),
                        turns=1,
                    ),
                )
        finally:
            await db.dispose()

    asyncio.run(seed())
    return url


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_numbers_as_json_and_as_tables(db_url: str) -> None:
    as_json = run("dashboard", "--tenant", "acme", "--days", "3", "--json")
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert (body["period"]["days"], body["period"]["timezone"]) == (3, "Europe/Amsterdam")
    yesterday = YESTERDAY_NOON.date().isoformat()
    per_day = {d["day"]: (d["in"], d["out"]) for d in body["messages_per_day"]}
    assert per_day[yesterday] == (1, 1)
    assert sum(n for n, _ in per_day.values()) == 1
    assert body["first_reply_seconds"]["median"] == 8.0
    assert body["escalations"] == {
        "rate": 1.0,
        "by_rule": {"human_request": 1},
        "count": 1,
        "conversations": 1,
    }

    table = run("dashboard", "--tenant", "acme", "--days", "3")
    assert table.exit_code == 0, table.output
    text = re.sub(r"\s+", " ", table.output)
    assert f"{yesterday} │ 1 │ 1 │ 1 │ 0 │" in text
    assert "8 s / 8 s over 1 conversations" in text
    assert "escalation rate │ 100.0% (1 of 1 conversations)" in text
    assert "human_handoff 1" in text


def test_unknown_tenant_and_bad_periods(db_url: str) -> None:
    unknown = run("dashboard", "--tenant", "nope")
    assert unknown.exit_code == 1
    assert "no tenant 'nope'" in unknown.output
    too_long = run("dashboard", "--tenant", "acme", "--days", "400")
    assert too_long.exit_code == 2
    assert "--days: must be between 1 and 366" in too_long.output
    backwards = run(
        "dashboard", "--tenant", "acme", "--since", "2026-11-02", "--until", "2026-11-01"
    )
    assert backwards.exit_code == 2
    assert "since (2026-11-02) is after until (2026-11-01)" in re.sub(r"\s+", " ", backwards.output)
