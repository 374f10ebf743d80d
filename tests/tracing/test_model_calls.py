"""Every model call is counted (models/metrics.py) and, with tracing on, has a span under the
current one, from the one place every call passes: the agent's ledger. The real SDK clients
against the fake Anthropic and OpenAI servers on loopback, failover and a spent budget included."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY
from temporalio.exceptions import ApplicationError

from activities.llm.agent import Agent
from activities.llm.base import BackendFactory
from activities.llm.model_backend import hosted_backend
from activities.llm.offline import offline_backend
from models.agent import AnalyseInput
from models.conversation import conversation_workflow_id
from models.db import Database
from models.policy import PlaybookRef
from models.repo import usage as usage_repo
from models.settings import Settings
from models.tenant import TenantLlmSettings, TenantSettings
from models.usage import LlmCallRecord
from tests.conftest import TEST_SECRET, make_tenant
from tests.fakes.llm import FakeAnthropic, FakeOpenAI

FACTORIES: dict[str, BackendFactory] = {
    "offline": offline_backend,
    "anthropic": hosted_backend,
    "openai": hosted_backend,
}
PERCEIVED: dict[str, Any] = {
    "intent": "meeting",
    "confidence": 0.9,
    "language": "en",
    "sentiment": 0.2,
    "fields": {"make": "Audi"},
    "summary": "Wants a test drive.",
}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


HAIKU, MINI = "claude-haiku-4-5", "gpt-4.1-mini"  # the analysis step's defaults


def counts(provider: str, model_name: str, step: str = "analysis") -> dict[str, float]:
    model = {"provider": provider, "model": model_name, "step": step}
    return {
        "ok": sample("leadflow_model_calls_total", **model, outcome="ok"),
        "error": sample("leadflow_model_calls_total", **model, outcome="error"),
        "input": sample("leadflow_model_tokens_total", **model, direction="input"),
        "output": sample("leadflow_model_tokens_total", **model, direction="output"),
        "cost": sample("leadflow_model_cost_usd_total", **model),
        "seconds": sample("leadflow_model_call_seconds_count", provider=provider, step=step),
    }


async def agent_for(
    db: Database, tmp_path: Path, anthropic: FakeAnthropic, openai: FakeOpenAI, **settings: Any
) -> tuple[Agent, str]:
    values: dict[str, Any] = {
        "data_dir": tmp_path,
        "database_url": "sqlite://",
        "secret_key": TEST_SECRET,
        "anthropic_api_key": anthropic.api_key,
        "anthropic_base_url": anthropic.url,
        "openai_api_key": openai.api_key,
        "openai_base_url": openai.base_url,
        "llm_timeout_seconds": 2.0,
        **settings,
    }
    tenant, _ = await make_tenant(
        db,
        settings=TenantSettings(
            playbook="car_dealership",
            llm=TenantLlmSettings(analysis="anthropic,openai", daily_budget_usd=0.05),
        ),
    )
    return Agent(settings=Settings(**values), db=db, factories=FACTORIES), tenant


def analyse(tenant: str) -> AnalyseInput:
    return AnalyseInput(
        tenant_id=tenant,
        playbook=PlaybookRef(tenant_id=tenant),
        conversation_id=conversation_workflow_id(tenant, "waha", "x"),
        new_messages=("Can I test drive the Audi A3?",),
        turn=1,
    )


async def ledger(db: Database, tenant: str) -> list[LlmCallRecord]:
    async with db.session() as session:
        return await usage_repo.calls_for_conversation(
            session, conversation_id=conversation_workflow_id(tenant, "waha", "x")
        )


async def test_failover_is_two_counted_calls_each_with_its_span(
    spans: InMemorySpanExporter,
    sqlite_db: Database,
    tmp_path: Path,
    fake_anthropic: FakeAnthropic,
    fake_openai: FakeOpenAI,
) -> None:
    agent, tenant = await agent_for(
        sqlite_db, tmp_path, fake_anthropic, fake_openai, otel_enabled=True
    )
    fake_anthropic.error(529, "overloaded_error", "Overloaded")
    fake_openai.ok_structured(PERCEIVED, input_tokens=700, output_tokens=80)
    before_failed, before_answered = counts("anthropic", HAIKU), counts("openai", MINI)
    with trace.get_tracer("test").start_as_current_span("RunActivity:stand-in") as activity:
        result = await agent.perceive(analyse(tenant))
    assert result.usage.provider == "openai"
    failed, answered = await ledger(sqlite_db, tenant)
    assert (failed.provider, failed.outcome) == ("anthropic", "error")
    assert (answered.provider, answered.outcome) == ("openai", "ok") and answered.cost_usd > 0

    calls = [s for s in spans.get_finished_spans() if s.name == "ModelCall:analysis"]
    assert [(s.attributes or {}).get("gen_ai.provider.name") for s in calls] == [
        "anthropic",
        "openai",
    ]
    parent = activity.get_span_context()
    for span in calls:
        assert span.kind == SpanKind.CLIENT
        assert span.parent is not None and span.parent.span_id == parent.span_id
        assert span.start_time is not None and span.end_time is not None
        assert span.end_time >= span.start_time
    bad, good = calls
    assert bad.status.status_code == StatusCode.ERROR and "529" in (bad.status.description or "")
    assert (bad.attributes or {})["leadflow.llm.outcome"] == "error"
    attrs = good.attributes or {}
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (700, 80)
    assert attrs["leadflow.llm.cost_usd"] == answered.cost_usd
    assert attrs["gen_ai.response.model"] == answered.model
    # No prompt or answer text on a span.
    assert not any("Audi" in str(v) for s in calls for v in (s.attributes or {}).values())

    assert (failed.model, answered.model) == (HAIKU, MINI)  # the labels counted below
    after_failed, after_answered = counts("anthropic", HAIKU), counts("openai", MINI)
    assert after_failed["error"] == before_failed["error"] + 1
    assert after_failed["ok"] == before_failed["ok"]
    assert after_failed["seconds"] == before_failed["seconds"] + 1
    assert after_answered["ok"] == before_answered["ok"] + 1
    assert after_answered["input"] == before_answered["input"] + 700
    assert after_answered["output"] == before_answered["output"] + 80
    assert after_answered["cost"] == before_answered["cost"] + answered.cost_usd


async def test_a_spent_budget_is_counted_refused_without_a_span_and_tracing_off_adds_none(
    spans: InMemorySpanExporter,
    sqlite_db: Database,
    tmp_path: Path,
    fake_anthropic: FakeAnthropic,
    fake_openai: FakeOpenAI,
) -> None:
    agent, tenant = await agent_for(sqlite_db, tmp_path, fake_anthropic, fake_openai)
    fake_anthropic.ok_structured(PERCEIVED, input_tokens=90_000, output_tokens=9_000)
    refused = {"provider": "-", "model": "-", "step": "analysis", "outcome": "refused"}
    before = sample("leadflow_model_calls_total", **refused)
    ok_before = counts("anthropic", HAIKU)["ok"]
    with trace.get_tracer("test").start_as_current_span("RunActivity:stand-in"):
        await agent.perceive(analyse(tenant))  # spends more than the day's budget
        with pytest.raises(ApplicationError) as refusal:
            await agent.perceive(analyse(tenant))
    assert refusal.value.type == "LlmBudgetExhausted"
    assert sample("leadflow_model_calls_total", **refused) == before + 1
    assert counts("anthropic", HAIKU)["ok"] == ok_before + 1, "counted with tracing off"
    assert [s for s in spans.get_finished_spans() if s.name.startswith("ModelCall:")] == []
