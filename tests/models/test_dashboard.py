"""The dashboard's numbers (models/dashboard.py) on SQLite and PostgreSQL, from rows written by
the real repositories (a turn's record step, the usage ledger, enrichment records, CRM sync
runs): each figure with its number, days in the tenant's time zone (Asia/Kolkata, UTC+05:30:
its midnight is 18:30 UTC, so a UTC day would be wrong), days without anything present with
zeros, an empty tenant, tenant isolation; and the period's rules (bad periods, DST days)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from models.agent import LeadScore
from models.common import Channel, LeadQuality, Role, Stage
from models.conversation import EscalationRecord, RecordTurnInput, conversation_workflow_id
from models.crm import SyncOutcome, SyncStatus
from models.dashboard import (
    DayBuckets,
    Period,
    PeriodError,
    dashboard,
    failure_reason,
    percentile,
    resolve_period,
)
from models.db import Database
from models.enrichment import RecordStatus
from models.messages import TranscriptEntry
from models.repo import conversations as conversation_repo
from models.repo import crm as crm_repo
from models.repo import enrichment as enrichment_repo
from models.repo import usage as usage_repo
from models.repo.dashboard import SLOT_SECONDS
from models.tenant import TenantSettings
from models.usage import CallOutcome, LlmCallRecord
from tests.conftest import make_tenant

KOLKATA = ZoneInfo("Asia/Kolkata")
NOW = datetime.now(UTC)
TODAY = NOW.astimezone(KOLKATA).date()
D0 = TODAY - timedelta(days=2)  # the period's first day
D1 = TODAY - timedelta(days=1)
BEFORE = D0 - timedelta(days=1)  # the day before the period


def local(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A wall-clock time in Kolkata, as the UTC instant the repositories store."""
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=KOLKATA).astimezone(
        UTC
    )


def period(since: date = D0, days: int = 4) -> Period:
    # Ends tomorrow: the CRM runs are written at the real now, which is today (or, if the test
    # crosses Kolkata's midnight, tomorrow).
    until = since + timedelta(days=days - 1)
    return resolve_period(timezone="Asia/Kolkata", now=NOW, since=since, until=until)


_numbers = itertools.count(1)


class Clock:
    """The repositories' `utcnow` where a test needs a row written at a chosen instant (an
    escalation's or a finished record's time is when it was written)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.at = NOW
        for module in ("models.repo.conversations", "models.repo.enrichment"):
            monkeypatch.setattr(f"{module}.utcnow", lambda: self.at)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    yield Clock(monkeypatch)


async def turn(
    db: Database,
    clock: Clock,
    tenant_id: str,
    contact: str,
    entries: list[tuple[Role, datetime]],
    *,
    stage: Stage,
    quality: LeadQuality | None = None,
    escalation: str | None = None,
    tags: tuple[str, ...] | None = None,
    fields: dict[str, Any] | None = None,
) -> None:
    """One turn through the record step; an escalation is written at the turn's last entry."""
    clock.at = entries[-1][1]
    record = RecordTurnInput(
        conversation_id=conversation_workflow_id(tenant_id, "waha", contact),
        tenant_id=tenant_id,
        channel=Channel.WAHA,
        contact=contact,
        turn_key=f"turn-{next(_numbers)}",
        entries=tuple(
            TranscriptEntry(
                role=role,
                text=f"{role.value} says hi",
                at=at,
                provider_message_id=f"wamid-{next(_numbers)}" if role == Role.LEAD else None,
            )
            for role, at in entries
        ),
        stage=stage,
        lead_id=f"lead-{tenant_id}-{contact}",
        score=LeadScore(total=50, quality=quality) if quality else None,
        escalation=EscalationRecord(rule=escalation, reason="rule fired") if escalation else None,
        tags=tags,
        fields=fields or {},
        turns=1,
    )
    async with db.session() as session:
        await conversation_repo.record_turn(session, record=record)


async def llm_call(
    db: Database,
    tenant_id: str,
    at: datetime,
    usd: float,
    *,
    conversation: str | None = None,
    provider: str = "anthropic",
    model: str = "claude-haiku-4-5",
) -> None:
    async with db.session() as session:
        await usage_repo.record_call(
            session,
            call=LlmCallRecord(
                tenant_id=tenant_id,
                conversation_id=conversation_workflow_id(tenant_id, "waha", conversation)
                if conversation
                else None,
                job_id=None if conversation else "job-1",
                step="reply" if conversation else "email",
                provider=provider,
                model=model,
                cost_usd=usd,
                outcome=CallOutcome.OK,
                at=at,
            ),
        )


async def enrichment(
    db: Database, clock: Clock, tenant_id: str, finished: list[tuple[datetime, str | None]]
) -> None:
    """A job whose rows finish at the given instants: done (no error) or failed (an error)."""
    job_id = f"job-{tenant_id}-{next(_numbers)}"
    async with db.session() as session:
        await enrichment_repo.create_job(
            session,
            job_id=job_id,
            tenant_id=tenant_id,
            filename="leads.csv",
            columns=["company"],
            total=len(finished) + 1,
            source="company\n",
            delimiter=",",
            concurrency=1,
            steps=["website"],
            playbook=None,
        )
        rows = [{"company": f"c{n}"} for n in range(len(finished) + 1)]
        await enrichment_repo.store_records(session, tenant_id=tenant_id, job_id=job_id, rows=rows)
        for row, (at, error) in enumerate(finished, start=1):
            clock.at = at
            await enrichment_repo.finish_record(
                session,
                job_id=job_id,
                row_number=row,
                status=RecordStatus.FAILED if error else RecordStatus.DONE,
                error=error,
            )
        # the last row stays pending: never counted


async def crm_runs(db: Database, tenant_id: str, statuses: list[SyncStatus]) -> None:
    async with db.session() as session:
        for status in statuses:
            await crm_repo.record_sync_run(
                session,
                run_key=f"run-{next(_numbers)}",
                outcome=SyncOutcome(
                    tenant_id=tenant_id, lead_id="lead-x", version=1, status=status
                ),
            )


async def kolkata_tenant(db: Database) -> str:
    tenant_id, _key = await make_tenant(db, settings=TenantSettings(timezone="Asia/Kolkata"))
    return tenant_id


async def seed(db: Database, clock: Clock, t: str) -> None:
    """Conversations A-F (see the test's numbers)."""
    await turn(
        db,
        clock,
        t,
        "91000000001",  # A: answered after 30 s; asked for a test drive (tag)
        [(Role.LEAD, local(D0, 10)), (Role.AI, local(D0, 10, 0, 30))],
        stage=Stage.QUALIFYING,
        quality=LeadQuality.WARM,
        tags=("test-drive",),
    )
    await turn(
        db,
        clock,
        t,
        "91000000001",  # A's second turn: scheduling (a meeting booked)
        [(Role.LEAD, local(D1, 9)), (Role.AI, local(D1, 9, 0, 10))],
        stage=Stage.SCHEDULING,
    )
    await turn(
        db,
        clock,
        t,
        "91000000002",  # B: 23:59 is still D0; a person answers 2 minutes later, on D1
        [(Role.LEAD, local(D0, 23, 59))],
        stage=Stage.HUMAN_HANDOFF,
        quality=LeadQuality.HOT,
        escalation="human_request",
        tags=("financing",),
    )
    await turn(
        db,
        clock,
        t,
        "91000000002",
        [(Role.HUMAN, local(D1, 0, 1))],
        stage=Stage.HUMAN_HANDOFF,
    )
    await turn(
        db,
        clock,
        t,
        "91000000003",  # C: midnight is D1 (18:30 UTC on D0); never answered
        [(Role.LEAD, local(D1, 0, 0))],
        stage=Stage.AWAITING_RESPONSE,
        escalation="complaint",
    )
    await turn(
        db,
        clock,
        t,
        "91000000004",  # D: its first lead message is before the period; test drive (field)
        [(Role.LEAD, local(BEFORE, 23, 59)), (Role.AI, local(D0, 0, 0, 30))],
        stage=Stage.QUALIFYING,
        quality=LeadQuality.HOT,
        fields={"test_drive": True},
    )
    await turn(
        db,
        clock,
        t,
        "91000000004",
        [(Role.LEAD, local(D1, 12)), (Role.AI, local(D1, 12, 1))],
        stage=Stage.SCHEDULING,
        escalation="human_request",
    )
    await turn(
        db,
        clock,
        t,
        "91000000005",  # E: an outreach nobody answered yet
        [(Role.AI, local(D1, 15))],
        stage=Stage.INITIAL_OUTREACH,
    )
    await turn(
        db,
        clock,
        t,
        "91000000006",  # F: before the period only
        [(Role.LEAD, local(BEFORE, 12))],
        stage=Stage.CLOSED,
        quality=LeadQuality.LUKEWARM,
        escalation="complaint",
        tags=("test-drive",),
    )

    await llm_call(db, t, local(D0, 10, 0, 10), 0.002, conversation="91000000001")
    await llm_call(db, t, local(D1, 9, 0, 5), 0.003, conversation="91000000001")
    await llm_call(
        db,
        t,
        local(D0, 23, 59, 30),
        0.01,
        conversation="91000000002",
        provider="openai",
        model="gpt-4.1",
    )
    await llm_call(db, t, local(D1, 0, 10), 0.5)  # an enrichment e-mail (no conversation)
    await llm_call(db, t, local(BEFORE, 12), 7.0, conversation="91000000006")

    await enrichment(
        db,
        clock,
        t,
        [
            (local(D0, 11), None),
            (local(D1, 0, 5), None),
            (local(D1, 1), "fetching https://a.example/: HTTP 404"),
            (local(D1, 2), "fetching https://b.example/about: HTTP 404"),
            (local(BEFORE, 1), "web search found no website for 'Acme'"),
        ],
    )
    await enrichment(db, clock, t, [(local(D1, 3), "web search found no website for 'Foo BV'")])
    await crm_runs(
        db,
        t,
        [SyncStatus.SUCCEEDED, SyncStatus.SUCCEEDED, SyncStatus.ROLLED_BACK, SyncStatus.SKIPPED],
    )


async def test_every_figure_of_a_period(db: Database, clock: Clock) -> None:
    t = await kolkata_tenant(db)
    other = await kolkata_tenant(db)
    await seed(db, clock, t)
    # Another tenant, busy in the same period: none of it is t's.
    await turn(
        db,
        clock,
        other,
        "91000000001",
        [(Role.LEAD, local(D0, 10)), (Role.AI, local(D0, 10, 0, 5))],
        stage=Stage.SCHEDULING,
        quality=LeadQuality.HOT,
        escalation="vip",
        tags=("test-drive",),
    )
    await llm_call(db, other, local(D0, 10), 3.0, conversation="91000000001")
    await enrichment(db, clock, other, [(local(D0, 9), "HTTP 500")])
    await crm_runs(db, other, [SyncStatus.FAILED])

    async with db.session() as session:
        numbers = await dashboard(session, tenant_id=t, period=period())

    p = numbers.period
    assert (p.since, p.until, p.days, p.timezone) == (D0, D0 + timedelta(days=3), 4, "Asia/Kolkata")
    assert p.start == local(D0, 0) and p.start.utcoffset() == timedelta(0)
    assert p.end == local(D0 + timedelta(days=4), 0)

    days = [D0 + timedelta(days=n) for n in range(4)]
    assert [(d.day, d.in_, d.out, d.ai, d.person) for d in numbers.messages_per_day] == [
        (days[0], 2, 2, 2, 0),  # A in+out, B in at 23:59, D's reply at 00:00:30
        (days[1], 3, 4, 3, 1),  # C at midnight, A, D in; B's person, A, D, E out
        (days[2], 0, 0, 0, 0),
        (days[3], 0, 0, 0, 0),
    ]

    reply = numbers.first_reply_seconds
    # A 30 s, B 120 s; C unanswered; D's first lead message is before the period.
    assert (reply.count, reply.unanswered, reply.median, reply.p90) == (2, 1, 75.0, 111.0)

    esc = numbers.escalations
    assert esc.by_rule == {"human_request": 2, "complaint": 1}
    assert (esc.count, esc.conversations, esc.rate) == (3, 4, 0.75)

    assert [(s.stage, s.count) for s in numbers.funnel] == [
        ("initial_outreach", 1),
        ("awaiting_response", 1),
        ("qualifying", 0),
        ("objection_handling", 0),
        ("scheduling", 2),
        ("nurture", 0),
        ("human_handoff", 1),
        ("closed", 0),
    ]
    assert numbers.meetings_booked == 2  # A and D, in scheduling
    assert numbers.lead_quality == {"HOT": 2, "WARM": 1, "LUKEWARM": 0, "COLD": 2}
    assert numbers.test_drives_booked == 2  # A's tag, D's field (F is outside the period)

    cost = numbers.model_cost
    assert [(d.day, d.by_model, d.total_usd) for d in cost.per_day] == [
        (days[0], {"anthropic:claude-haiku-4-5": 0.002, "openai:gpt-4.1": 0.01}, 0.012),
        (days[1], {"anthropic:claude-haiku-4-5": 0.503}, 0.503),
        (days[2], {}, 0.0),
        (days[3], {}, 0.0),
    ]
    assert cost.total_usd == pytest.approx(0.515)
    assert cost.conversation_usd == pytest.approx(0.015)
    assert cost.messages == 11
    assert cost.per_message_usd == pytest.approx(0.00136364)

    enriched = numbers.enrichment
    assert [(d.day, d.done, d.failed) for d in enriched.per_day] == [
        (days[0], 1, 0),
        (days[1], 1, 3),
        (days[2], 0, 0),
        (days[3], 0, 0),
    ]
    assert (enriched.done, enriched.failed) == (2, 3)
    assert enriched.failure_reasons == {
        "fetching <url>: HTTP 404": 2,
        "web search found no website for <name>": 1,
    }

    crm = numbers.crm_sync
    assert (crm.runs, crm.succeeded, crm.failed, crm.skipped) == (3, 2, 1, 1)
    assert crm.success_rate == 0.6667

    # The other tenant sees only its own.
    async with db.session() as session:
        theirs = await dashboard(session, tenant_id=other, period=period())
    assert [(d.in_, d.out) for d in theirs.messages_per_day] == [(1, 1), (0, 0), (0, 0), (0, 0)]
    assert theirs.escalations.by_rule == {"vip": 1}
    assert (theirs.meetings_booked, theirs.test_drives_booked) == (1, 1)
    assert theirs.lead_quality["HOT"] == 1 and theirs.model_cost.total_usd == 3.0
    assert theirs.enrichment.failure_reasons == {"HTTP 500": 1}
    assert (theirs.crm_sync.runs, theirs.crm_sync.failed, theirs.crm_sync.success_rate) == (
        1,
        1,
        0.0,
    )


async def test_a_day_later_the_boundaries_move(db: Database, clock: Clock) -> None:
    """The period D1..D1: D0's messages (B at 23:59) are out, C's midnight message is in; B's
    first reply is not counted (its first message is before the period)."""
    t = await kolkata_tenant(db)
    await seed(db, clock, t)
    async with db.session() as session:
        numbers = await dashboard(session, tenant_id=t, period=period(since=D1, days=1))
    assert [(d.day, d.in_, d.out) for d in numbers.messages_per_day] == [(D1, 3, 4)]
    reply = numbers.first_reply_seconds
    assert (reply.count, reply.unanswered, reply.median, reply.p90) == (0, 1, None, None)
    # A, B (its person's reply), C, D and E wrote or were written to on D1.
    assert sum(s.count for s in numbers.funnel) == 5
    assert numbers.escalations.by_rule == {"complaint": 1, "human_request": 1}
    assert numbers.escalations.conversations == 3  # A, C, D wrote on D1
    assert [(d.done, d.failed) for d in numbers.enrichment.per_day] == [(1, 3)]


async def test_an_empty_tenant_is_all_zeros(db: Database) -> None:
    t = await kolkata_tenant(db)
    async with db.session() as session:
        numbers = await dashboard(session, tenant_id=t, period=period(days=7))
    assert len(numbers.messages_per_day) == 7
    assert all((d.in_, d.out) == (0, 0) for d in numbers.messages_per_day)
    assert numbers.first_reply_seconds.model_dump() == {
        "median": None,
        "p90": None,
        "count": 0,
        "unanswered": 0,
    }
    assert numbers.escalations.model_dump() == {
        "rate": 0.0,
        "by_rule": {},
        "count": 0,
        "conversations": 0,
    }
    assert numbers.lead_quality == {"HOT": 0, "WARM": 0, "LUKEWARM": 0, "COLD": 0}
    assert [s.count for s in numbers.funnel] == [0] * 8
    assert (numbers.meetings_booked, numbers.test_drives_booked) == (0, 0)
    assert numbers.model_cost.per_message_usd == 0.0
    assert all(d.by_model == {} for d in numbers.model_cost.per_day)
    assert len(numbers.enrichment.per_day) == 7 and numbers.enrichment.failure_reasons == {}
    assert numbers.crm_sync.model_dump() == {
        "success_rate": 0.0,
        "runs": 0,
        "succeeded": 0,
        "failed": 0,
        "skipped": 0,
    }


# ---- the period's rules (no database) ---------------------------------------------------------

NOON = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def resolve(**kwargs: Any) -> Period:
    return resolve_period(timezone=kwargs.pop("timezone", "UTC"), now=NOON, **kwargs)


def test_periods() -> None:
    default = resolve()
    assert (default.since, default.until, default.days) == (
        date(2026, 10, 31),
        date(2026, 11, 29),
        30,
    )
    week = resolve(days=7)
    assert (week.since, week.until, week.days) == (date(2026, 11, 23), date(2026, 11, 29), 7)
    assert week.end == datetime(2026, 11, 30, tzinfo=UTC)
    one = resolve(since="2026-11-01", until="2026-11-01")
    assert one.days == 1 and one.day_list() == [date(2026, 11, 1)]
    since_only = resolve(since="2026-11-20")
    assert (since_only.until, since_only.days) == (date(2026, 11, 29), 10)
    until_only = resolve(until="2026-02-28")
    assert (until_only.since, until_only.days) == (date(2026, 1, 30), 30)
    assert resolve(since="2025-11-29", until="2026-11-29").days == 366
    # "today" is the tenant's: at 12:00 UTC it is already the 30th in Auckland (UTC+13).
    assert resolve(days=1, timezone="Pacific/Auckland").since == date(2026, 11, 30)
    # A zone that is no zone (settings older than their validation) counts as UTC, visibly.
    assert resolve(days=1, timezone="Mars/Olympus").timezone == "UTC"


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"days": 0}, "days", "between 1 and 366"),
        ({"days": 367}, "days", "between 1 and 366"),
        ({"days": 7, "since": "2026-11-01"}, "days", "not both"),
        ({"since": "2026-13-01"}, "since", "YYYY-MM-DD"),
        ({"since": "20261101"}, "since", "YYYY-MM-DD"),
        ({"until": "yesterday"}, "until", "YYYY-MM-DD"),
        ({"since": "1999-12-31"}, "since", "between 2000-01-01 and 2099-12-31"),
        ({"until": "2100-01-01"}, "until", "between 2000-01-01 and 2099-12-31"),
        ({"since": "2026-11-02", "until": "2026-11-01"}, "since", "is after until"),
        ({"since": "2026-12-01"}, "since", "is after until"),  # until defaults to today
        ({"since": "2025-11-28", "until": "2026-11-29"}, "until", "367 days, more than 366"),
    ],
)
def test_bad_periods_say_what_is_wrong(kwargs: dict[str, Any], field: str, message: str) -> None:
    with pytest.raises(PeriodError) as caught:
        resolve(**kwargs)
    assert caught.value.field == field
    assert message in caught.value.message


def slot(instant: datetime) -> int:
    return int(instant.timestamp()) // SLOT_SECONDS


def test_days_in_zones_with_dst_and_quarter_hours() -> None:
    # Amsterdam leaves summer time on 2026-10-25: that day has 25 hours.
    amsterdam = resolve(since="2026-10-25", until="2026-10-26", timezone="Europe/Amsterdam")
    assert amsterdam.start == datetime(2026, 10, 24, 22, 0, tzinfo=UTC)  # 00:00 CEST
    assert amsterdam.end == datetime(2026, 10, 26, 23, 0, tzinfo=UTC)  # 00:00 CET on the 27th
    days = DayBuckets(amsterdam)
    assert days.day(slot(datetime(2026, 10, 24, 22, 0, tzinfo=UTC))) == date(2026, 10, 25)
    assert days.day(slot(datetime(2026, 10, 25, 22, 59, tzinfo=UTC))) == date(2026, 10, 25)
    assert days.day(slot(datetime(2026, 10, 25, 23, 0, tzinfo=UTC))) == date(2026, 10, 26)
    assert days.day(slot(datetime(2026, 10, 24, 21, 59, tzinfo=UTC))) is None  # before
    assert days.day(slot(datetime(2026, 10, 26, 23, 0, tzinfo=UTC))) is None  # after
    # Kathmandu is UTC+05:45: its midnight is 18:15 UTC.
    kathmandu = DayBuckets(
        resolve(since="2026-11-01", until="2026-11-02", timezone="Asia/Kathmandu")
    )
    assert kathmandu.day(slot(datetime(2026, 11, 1, 18, 14, tzinfo=UTC))) == date(2026, 11, 1)
    assert kathmandu.day(slot(datetime(2026, 11, 1, 18, 15, tzinfo=UTC))) == date(2026, 11, 2)


def test_percentile_and_failure_reasons() -> None:
    assert percentile([5.0], 0.9) == 5.0
    assert percentile([30.0, 120.0], 0.5) == 75.0
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 0.9) == pytest.approx(
        9.1
    )
    with pytest.raises(ValueError):
        percentile([], 0.5)
    reasons: dict[str | None, str] = {
        "fetching https://a.example/x?q=1: HTTP 404": "fetching <url>: HTTP 404",
        "fetching http://b.example: timed out after 10s": "fetching <url>: timed out after 10s",
        "web search found no website for 'Foo BV'": "web search found no website for <name>",
        "page is 12345678 bytes (limit 2000000)": "page is <n> bytes (limit <n>)",
        "no website (gave up after 5 attempts)": "no website (gave up after 5 attempts)",
        None: "unknown",
        "   ": "unknown",
    }
    for error, reason in reasons.items():
        assert failure_reason(error) == reason
