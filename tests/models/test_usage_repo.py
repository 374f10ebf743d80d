"""The LLM usage ledger, provider health, prices and the daily budget, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from models.budget import DailyBudget, daily_budget_limit, remaining_usd
from models.db import Database
from models.pricing import (
    DEFAULT_PRICES,
    ModelPrice,
    PriceConfigError,
    PriceTable,
    cost_usd,
    reports_cached_in_input,
)
from models.repo import usage as repo
from models.settings import Settings
from models.usage import BreakerState, CallOutcome, LlmCallRecord

DAY = date(2026, 11, 20)


def at(day: date, hour: int, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=UTC)


def call(tenant_id: str, when: datetime, cost: float, **overrides: Any) -> LlmCallRecord:
    values: dict[str, Any] = {
        "tenant_id": tenant_id,
        "step": "analysis",
        "provider": "anthropic",
        "model": "claude-haiku-4-5",
        "input_tokens": 100,
        "output_tokens": 10,
        "cost_usd": cost,
        "latency_ms": 200,
        "outcome": CallOutcome.OK,
        "at": when,
    }
    values.update(overrides)
    return LlmCallRecord(**values)


async def record(db: Database, *calls: LlmCallRecord) -> None:
    async with db.session() as s:
        for c in calls:
            await repo.record_call(s, call=c)


async def test_spent_on_counts_the_utc_day_only(db: Database) -> None:
    await record(
        db,
        call("t1", at(DAY, 0), 0.25),  # first instant of the day: in
        call("t1", at(DAY, 23, 59, 59, 999_999), 0.5),  # last instant: in
        call("t1", at(DAY, 0) - timedelta(microseconds=1), 4.0),  # the day before
        call("t1", at(DAY, 0) + timedelta(days=1), 8.0),  # the day after
        # 01:30 in UTC+02:00 is 23:30 UTC of the day before: not this day
        call("t1", datetime(2026, 11, 20, 1, 30, tzinfo=timezone(timedelta(hours=2))), 16.0),
        call("t2", at(DAY, 12), 32.0),  # another tenant
    )
    async with db.session() as s:
        assert await repo.spent_on(s, tenant_id="t1", day=DAY) == pytest.approx(0.75)
        assert await repo.spent_on(s, tenant_id="t1", day=DAY - timedelta(days=1)) == (
            pytest.approx(20.0)
        )
        assert await repo.spent_on(s, tenant_id="t2", day=DAY) == pytest.approx(32.0)
        assert await repo.spent_on(s, tenant_id="nobody", day=DAY) == 0.0


async def test_summaries_by_day_model_and_step(db: Database) -> None:
    next_day = DAY + timedelta(days=1)
    await record(
        db,
        call("t1", at(DAY, 9), 0.1, cached_tokens=50, latency_ms=100),
        call(
            "t1",
            at(DAY, 23, 59),
            0.2,
            step="reply",
            provider="openai",
            model="gpt-4.1",
            outcome=CallOutcome.REPAIRED,
            latency_ms=300,
        ),
        call(
            "t1",
            at(next_day, 0, 1),
            0.4,
            step="reply",
            outcome=CallOutcome.ERROR,
            error="boom",
            input_tokens=0,
            output_tokens=0,
        ),
        call("t1", at(next_day, 8), 0.0, outcome=CallOutcome.BUDGET_EXHAUSTED, latency_ms=0),
        call("t2", at(DAY, 9), 9.0),
    )
    start, end = at(DAY, 0), at(DAY, 0) + timedelta(days=2)
    async with db.session() as s:
        by_day = await repo.summarize(s, tenant_id="t1", start=start, end=end, group_by="day")
        assert [(g.key, g.calls, g.errors) for g in by_day] == [
            ("2026-11-20", 2, 0),
            ("2026-11-21", 2, 2),
        ]
        first = by_day[0]
        assert (first.input_tokens, first.output_tokens, first.cached_tokens) == (200, 20, 50)
        assert first.cost_usd == pytest.approx(0.3)
        assert first.avg_latency_ms == pytest.approx(200.0)

        by_model = await repo.summarize(s, tenant_id="t1", start=start, end=end, group_by="model")
        assert [(g.key, g.calls) for g in by_model] == [
            ("anthropic:claude-haiku-4-5", 3),  # 0.5 USD: the most expensive first
            ("openai:gpt-4.1", 1),
        ]
        by_step = await repo.summarize(s, tenant_id="t1", start=start, end=end, group_by="step")
        assert [(g.key, g.calls, round(g.cost_usd, 6)) for g in by_step] == [
            ("reply", 2, 0.6),
            ("analysis", 2, 0.1),
        ]

        totals = await repo.totals(s, tenant_id="t1", start=start, end=end)
        assert (totals.calls, totals.errors, totals.input_tokens) == (4, 2, 300)
        assert totals.cost_usd == pytest.approx(0.7)
        # [start, end): the next day's calls are not in a one-day range
        one_day = await repo.totals(s, tenant_id="t1", start=start, end=next_day_start(DAY))
        assert one_day.calls == 2
        empty = await repo.summarize(
            s, tenant_id="t1", start=end, end=end + timedelta(days=1), group_by="day"
        )
        assert empty == []


def next_day_start(day: date) -> datetime:
    return at(day, 0) + timedelta(days=1)


async def test_conversation_usage_and_its_calls_in_order(db: Database) -> None:
    await record(
        db,
        call(
            "t1",
            at(DAY, 10),
            0.02,
            conversation_id="c1",
            step="reply",
            purpose="reply",
            output={"text_chars": 120},
        ),
        call(
            "t1",
            at(DAY, 9),
            0.01,
            conversation_id="c1",
            output={"intent": "pricing", "fields": {"budget": 20000}},
            cache_write_tokens=1000,
        ),
        call("t1", at(DAY, 9), 0.5, conversation_id="c2"),
        call("t1", at(DAY, 9), 0.5, job_id="j1", step="email"),
    )
    async with db.session() as s:
        usage = await repo.conversation_usage(s, conversation_id="c1")
        assert (usage.calls, usage.input_tokens, usage.cache_write_tokens) == (2, 200, 1000)
        assert usage.cost_usd == pytest.approx(0.03)
        calls = await repo.calls_for_conversation(s, conversation_id="c1")
        assert [c.step for c in calls] == ["analysis", "reply"]
        assert calls[0].output == {"intent": "pricing", "fields": {"budget": 20000}}
        assert calls[0].at == at(DAY, 9) and calls[0].at.tzinfo is not None
        assert calls[1].purpose == "reply"
        assert calls[0].cost_usd == pytest.approx(0.01)
        assert (await repo.conversation_usage(s, conversation_id="none")).calls == 0


def test_call_records_refuse_bad_values() -> None:
    with pytest.raises(ValidationError):
        call("t1", at(DAY, 9), -1.0)
    with pytest.raises(ValidationError):
        call("t1", at(DAY, 9), 0.1, outcome="fine")
    with pytest.raises(ValidationError):
        call("t1", at(DAY, 9), 0.1, step="x" * 65)


async def test_provider_health_is_upserted_per_key_and_worker(db: Database) -> None:
    async with db.session() as s:
        await repo.set_provider_health(
            s, key="anthropic:ab12cd34", worker="h:1", state=BreakerState.CLOSED, last_error=None
        )
        await repo.set_provider_health(
            s, key="anthropic:ab12cd34", worker="h:2", state=BreakerState.CLOSED, last_error=None
        )
        [first, _] = await repo.provider_health(s)
        await repo.set_provider_health(
            s, key="anthropic:ab12cd34", worker="h:1", state=BreakerState.OPEN, last_error="529"
        )
        [opened, other] = await repo.provider_health(s)
        assert (opened.worker, opened.state, opened.last_error) == ("h:1", "open", "529")
        assert opened.changed_at > first.changed_at
        assert (other.worker, other.state) == ("h:2", BreakerState.CLOSED)
        # Same state again: the error is updated, "since when" is not.
        await repo.set_provider_health(
            s, key="anthropic:ab12cd34", worker="h:1", state=BreakerState.OPEN, last_error="500"
        )
        rows = await repo.provider_health(s)
        assert len(rows) == 2
        assert (rows[0].last_error, rows[0].changed_at) == ("500", opened.changed_at)


# Prices


def test_price_lookup_order() -> None:
    table = PriceTable(
        {
            "openai:gpt-4.1": {"input": 1, "output": 2, "cached_input": 0.5, "cache_write": 0},
            "anthropic:claude-*": {"input": 7, "output": 7},
            "acme:*": {"input": 9, "output": 9},
            "acme:big*": {"input": 10, "output": 10},
        }
    )
    assert table.lookup("openai", "gpt-4.1") == ModelPrice(
        input=1, output=2, cached_input=0.5, cache_write=0
    )  # the override wins over the list price
    haiku = DEFAULT_PRICES["anthropic:claude-haiku-4-5"]
    assert table.lookup("anthropic", "claude-haiku-4-5") == haiku  # exact beats a wildcard
    assert table.lookup("anthropic", "claude-haiku-4-5-20251001") == haiku  # dated snapshot
    assert table.lookup("openai", "gpt-4.1-mini") == DEFAULT_PRICES["openai:gpt-4.1-mini"]
    assert table.lookup("openai", "gpt-4.1-2025-04-14") == table.lookup("openai", "gpt-4.1")
    assert table.lookup("anthropic", "claude-3-opus") == ModelPrice(
        input=7, output=7, cached_input=7, cache_write=7
    )  # missing cache prices are billed as input
    assert table.lookup("acme", "bigger").input == 10  # type: ignore[union-attr]
    assert table.lookup("acme", "small").input == 9  # type: ignore[union-attr]
    assert table.lookup("offline", "rules") == ModelPrice(
        input=0, output=0, cached_input=0, cache_write=0
    )
    assert table.lookup("openai_compatible", "llama3.1:8b") is not None
    assert table.lookup("openai", "o9-unknown") is None
    unknown = table.cost(provider="openai", model="o9-unknown", input_tokens=10, output_tokens=1)
    assert (unknown.usd, unknown.price_known) == (0.0, False)


def test_cost_bills_cached_tokens_at_the_cached_price_in_both_conventions() -> None:
    price = ModelPrice(input=3, output=15, cached_input=0.3, cache_write=3.75)
    # Anthropic: input_tokens (1000) exclude the 4000 cache reads and 2000 cache writes.
    anthropic = cost_usd(
        price,
        input_tokens=1000,
        output_tokens=500,
        cached_tokens=4000,
        cache_write_tokens=2000,
        cached_included_in_input=False,
    )
    assert anthropic == pytest.approx((1000 * 3 + 4000 * 0.3 + 2000 * 3.75 + 500 * 15) / 1e6)
    # OpenAI: prompt_tokens (5000) include the 4000 cached ones.
    openai = cost_usd(
        price,
        input_tokens=5000,
        output_tokens=500,
        cached_tokens=4000,
        cached_included_in_input=True,
    )
    assert openai == pytest.approx((1000 * 3 + 4000 * 0.3 + 500 * 15) / 1e6)
    # Nonsense counts (more cached than input) never make a negative cost.
    assert cost_usd(
        price, input_tokens=10, output_tokens=0, cached_tokens=50, cached_included_in_input=True
    ) == pytest.approx(50 * 0.3 / 1e6)
    assert not reports_cached_in_input("anthropic") and reports_cached_in_input("openai")
    table = PriceTable()
    via_table = table.cost(
        provider="anthropic",
        model="claude-sonnet-4-5",
        input_tokens=1000,
        output_tokens=500,
        cached_tokens=4000,
        cache_write_tokens=2000,
    )
    assert via_table.price_known and via_table.usd == pytest.approx(anthropic)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"gpt-4.1": {"input": 1, "output": 1}}, "is not"),
        ({"openai:*gpt": {"input": 1, "output": 1}}, "'*' may only end"),
        ({"openai:gpt-4.1": {"input": -1, "output": 1}}, "input"),
        ({"openai:gpt-4.1": {"input": 1}}, "output"),
        ({"openai:gpt-4.1": {"input": 1, "output": 1, "cachd_input": 1}}, "cachd_input"),
    ],
)
def test_bad_price_overrides_are_refused_by_name(
    overrides: dict[str, dict[str, float]], message: str
) -> None:
    with pytest.raises(PriceConfigError, match=message):
        PriceTable(overrides)


def test_price_overrides_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "LEADFLOW_LLM_PRICES", '{"openai_compatible:*": {"input": 0.1, "output": 0.2}}'
    )
    monkeypatch.setenv("LEADFLOW_LLM_DAILY_BUDGET_USD", "2.5")
    settings = Settings()
    table = PriceTable.from_settings(settings)
    assert table.lookup("openai_compatible", "qwen").output == 0.2  # type: ignore[union-attr]
    assert settings.llm_daily_budget_usd == 2.5


# Budget


def test_daily_budget_limit_prefers_the_tenant() -> None:
    settings = Settings(llm_daily_budget_usd=5.0)
    assert (
        daily_budget_limit(SimpleNamespace(llm=SimpleNamespace(daily_budget_usd=2)), settings) == 2
    )
    assert (
        daily_budget_limit(SimpleNamespace(llm=SimpleNamespace(daily_budget_usd=0)), settings) == 0
    )
    assert daily_budget_limit(SimpleNamespace(llm=None), settings) == 5.0
    assert daily_budget_limit(SimpleNamespace(), settings) == 5.0
    assert daily_budget_limit(SimpleNamespace(), Settings()) is None
    assert remaining_usd(None, 3.0) is None
    assert remaining_usd(1.0, 3.0) == 0.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_daily_budget_caches_adds_local_spend_and_rolls_over(db: Database) -> None:
    clock = FakeClock()
    budget = DailyBudget(refresh_seconds=5, clock=clock)
    await record(db, call("t1", at(DAY, 9), 0.6))

    assert await budget.remaining("t1", None, db=db, today=DAY) is None
    assert await budget.remaining("t1", 1.0, db=db, today=DAY) == pytest.approx(0.4)
    assert not await budget.exhausted("t1", 1.0, db=db, today=DAY)

    # Another process records a call: not seen until the cache is older than 5 s ...
    await record(db, call("t1", at(DAY, 10), 0.3))
    # ... but this process's own spending is seen at once.
    budget.add_spend("t1", 0.1, day=DAY)
    assert await budget.remaining("t1", 1.0, db=db, today=DAY) == pytest.approx(0.3)
    clock.now += 4.9
    assert await budget.remaining("t1", 1.0, db=db, today=DAY) == pytest.approx(0.3)

    clock.now += 0.1  # 5 s: re-read the ledger (0.9; the local 0.1 was never recorded)
    assert await budget.remaining("t1", 1.0, db=db, today=DAY) == pytest.approx(0.1)
    await record(db, call("t1", at(DAY, 11), 0.1))
    budget.add_spend("t1", 0.1, day=DAY)
    assert await budget.exhausted("t1", 1.0, db=db, today=DAY)
    assert await budget.remaining("t1", 1.0, db=db, today=DAY) == 0.0

    # Another tenant has its own budget.
    assert await budget.remaining("t2", 1.0, db=db, today=DAY) == pytest.approx(1.0)

    # A new day starts from that day's ledger, although yesterday's entry is fresh.
    tomorrow = DAY + timedelta(days=1)
    await record(db, call("t1", at(tomorrow, 0, 0, 1), 0.05))
    assert await budget.remaining("t1", 1.0, db=db, today=tomorrow) == pytest.approx(0.95)
    # Spend reported for a day that has no entry is not kept (the ledger has it).
    budget.add_spend("t1", 0.5, day=DAY)
    assert await budget.remaining("t1", 1.0, db=db, today=tomorrow) == pytest.approx(0.95)


async def test_days_are_utc_days_whatever_the_session_time_zone(db: Database) -> None:
    from sqlalchemy import text

    await record(db, call("t1", at(DAY, 23, 30), 0.1), call("t1", at(DAY, 0, 30), 0.2))
    async with db.session() as s:
        if db.dialect == "postgresql":
            # Tokyo is UTC+9: 23:30 UTC is the next day there, 00:30 UTC the same day.
            await s.exec(text("SET TIME ZONE 'Asia/Tokyo'"))  # type: ignore[call-overload]
        groups = await repo.summarize(
            s, tenant_id="t1", start=at(DAY, 0), end=next_day_start(DAY), group_by="day"
        )
        assert [(g.key, g.calls) for g in groups] == [("2026-11-20", 2)]
        assert await repo.spent_on(s, tenant_id="t1", day=DAY) == pytest.approx(0.3)
