"""The gauges the API reads from the database at scrape time: lead quality (one GROUP BY, at most
every 30 s) and the inbox backlog (at most every 5 s), on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import uuid

import pytest
from prometheus_client import REGISTRY

from api.routes.metrics import (
    BACKLOG_EVERY_SECONDS,
    QUALITY_EVERY_SECONDS,
    DatabaseGauges,
    set_lead_quality,
)
from models.db import Database
from models.inbox_tables import InboxMessage
from models.metrics import LEAD_QUALITIES
from models.tables import Lead
from tests.conftest import make_tenant


def quality(label: str) -> float | None:
    return REGISTRY.get_sample_value("leadflow_leads_by_quality", {"quality": label})


def backlog() -> float | None:
    return REGISTRY.get_sample_value("leadflow_inbox_backlog")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def add_leads(db: Database, tenant_id: str, *qualities: str) -> None:
    async with db.session() as session:
        for q in qualities:
            session.add(
                Lead(
                    id=uuid.uuid4().hex,
                    tenant_id=tenant_id,
                    channel="waha",
                    address=f"{uuid.uuid4().hex[:12]}@c.us",
                    quality=q,
                )
            )
        await session.commit()


async def test_lead_quality_is_counted_and_cached_for_30_seconds(db: Database) -> None:
    tenant_id, _ = await make_tenant(db)
    await add_leads(db, tenant_id, "HOT", "HOT", "WARM", "COLD", "COLD", "COLD", "weird")
    clock = Clock()
    gauges = DatabaseGauges(db, clock=clock)

    await gauges.refresh()
    assert [quality(q) for q in LEAD_QUALITIES] == [2, 1, 0, 3, 1]  # hot warm lukewarm cold ?

    await add_leads(db, tenant_id, "LUKEWARM")
    clock.now += QUALITY_EVERY_SECONDS - 1
    await gauges.refresh()
    assert quality("lukewarm") == 0  # cached: no query within the interval

    clock.now += 1
    await gauges.refresh()
    assert quality("lukewarm") == 1 and quality("hot") == 2


async def test_inbox_backlog_is_read_every_5_seconds(db: Database) -> None:
    clock = Clock()
    gauges = DatabaseGauges(db, clock=clock)
    await gauges.refresh()
    assert backlog() == 0

    async with db.session() as session:
        for n in range(3):
            session.add(InboxMessage(workflow_id=f"conv:t:waha:{n}", message="{}"))
        await session.commit()
    clock.now += BACKLOG_EVERY_SECONDS - 0.5
    await gauges.refresh()
    assert backlog() == 0
    clock.now += 0.5
    await gauges.refresh()
    assert backlog() == 3


async def test_a_database_that_fails_keeps_the_last_values(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    tenant_id, _ = await make_tenant(db)
    await add_leads(db, tenant_id, "WARM")
    clock = Clock()
    gauges = DatabaseGauges(db, clock=clock)
    await gauges.refresh()
    warm = quality("warm")
    assert warm is not None and warm >= 1

    await db.dispose()
    broken = DatabaseGauges(Database("sqlite+aiosqlite:////nonexistent/dir/leadflow.db"))
    with caplog.at_level(logging.WARNING, logger="leadflow.metrics"):
        await broken.refresh()  # logged, not raised: the scrape still answers
    assert quality("warm") == warm
    assert "could not read the database gauges" in caplog.text


def test_unknown_stored_qualities_count_as_unknown_and_absent_ones_as_zero() -> None:
    set_lead_quality({"HOT": 4, "SCORCHING": 2, "": 1})
    assert [quality(q) for q in LEAD_QUALITIES] == [4, 0, 0, 0, 3]
