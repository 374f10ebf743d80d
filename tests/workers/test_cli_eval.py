"""`leadflow eval` through the real path: webhooks into the real API, the real worker on the
Temporal dev server, the outcome read back through the API.

The command runs in process with typer's CliRunner in a thread (the stack's event loop keeps
serving), with the stack's database settings in its environment, as an operator would run it
next to `leadflow up`."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from temporalio.client import Client
from temporalio.service import RPCError
from typer.testing import CliRunner, Result

from models.settings import Settings
from models.task_queues import CONVERSATIONS
from tests.conftest import TEST_SECRET
from tests.fakes.llm import FakeOpenAI
from tests.live_stack import free_port
from tests.stack import live_stack
from workers import cli_eval
from workers.eval_metrics import DEFAULT_DEV_SET, load_cases

CI_THRESHOLDS = ("--min-intent", "0.9", "--min-escalation-recall", "1.0", "--min-field-f1", "0.9")


def cli() -> typer.Typer:
    app = typer.Typer()
    cli_eval.register(app)

    @app.callback()
    def _root() -> None:  # keeps `eval` a subcommand, as in the real CLI
        pass

    return app


def env_of(settings: Settings) -> dict[str, str | None]:
    """The environment of an operator running the command next to the stack."""
    return {
        "LEADFLOW_DATABASE_URL": settings.resolved_database_url,
        "LEADFLOW_DATA_DIR": str(settings.data_dir),
        "LEADFLOW_SECRET_KEY": TEST_SECRET,
        "LEADFLOW_LLM_MODEL": settings.llm_model,
        "LEADFLOW_OPENAI_COMPATIBLE_BASE_URL": settings.openai_compatible_base_url,
        "LEADFLOW_API_URL": None,
    }


def invoke(env: dict[str, str | None], *args: str) -> Result:
    return CliRunner().invoke(cli(), ["eval", *args], env=env, catch_exceptions=False)


async def terminate_eval_workflows(client: Client) -> None:
    """The eval leaves one conversation per case running (waiting for follow-up timers): end
    them all at once rather than one by one in the shared teardown."""
    query = (
        'ExecutionStatus="Running" AND (WorkflowId STARTS_WITH "conv:eval-" '
        'OR WorkflowId STARTS_WITH "crm:eval-")'
    )
    limiter = asyncio.Semaphore(32)

    async def end(workflow_id: str) -> None:
        async with limiter:
            with contextlib.suppress(RPCError):
                await client.get_workflow_handle(workflow_id).terminate("eval test over")

    ids = [wf.id async for wf in client.list_workflows(query)]
    await asyncio.gather(*(end(i) for i in ids))


async def run_cli(env: dict[str, str | None], *args: str) -> Result:
    result = await asyncio.to_thread(invoke, env, *args)
    print(result.output)
    return result


async def test_the_dev_set_through_the_stack_meets_the_ci_thresholds(
    temporal_client: Client, settings_factory: Any, sqlite_url: str, tmp_path: Path
) -> None:
    """The regression check CI runs: every case of evals/dev.jsonl, offline provider."""
    settings: Settings = settings_factory(sqlite_url, debounce_seconds=0.3)
    cases = load_cases(DEFAULT_DEV_SET)
    report = tmp_path / "report.json"
    # Only the conversations' worker: the CRM syncs the turns request are not what is measured.
    async with live_stack(temporal_client, settings, queues=[CONVERSATIONS]) as stack:
        try:
            result = await run_cli(
                env_of(settings),
                str(DEFAULT_DEV_SET),
                "--api-url",
                stack.api_url,
                "--json",
                str(report),
                "--concurrency",
                "8",
                *CI_THRESHOLDS,
            )
        finally:
            await terminate_eval_workflows(temporal_client)
    data = json.loads(report.read_text())
    assert data["cases"] == len(cases)
    assert data["turns"] == sum(len(c.turns) for c in cases)
    assert data["timed_out_turns"] == []
    assert data["escalation_expected"] == sum(t.escalate for c in cases for t in c.turns)
    assert data["field_expected"] == sum(len(t.fields) for c in cases for t in c.turns)
    assert {m["provider"] for m in data["models"]} == {"offline"}
    assert data["cost_usd"] == 0.0
    assert data["tenants"] == {
        "b2b_outreach": "eval-b2b-outreach",
        "car_dealership": "eval-car-dealership",
    }
    assert "intent accuracy" in result.output and "models used: " in result.output
    assert result.exit_code == 0, data["failed_thresholds"]
    assert data["failed_thresholds"] == []


def perception_for(text: str) -> dict[str, Any]:
    lowered = text.lower()
    if "manager" in lowered:
        return {"intent": "human_request", "confidence": 0.95, "language": "en", "fields": {}}
    if "golf" in lowered:
        return {
            "intent": "product_inquiry",
            "confidence": 0.9,
            "language": "en",
            "fields": {"make": "Volkswagen", "model": "Golf"},
        }
    return {"intent": "greeting", "confidence": 0.9, "language": "en", "fields": {}}


def brain(request: dict[str, Any]) -> dict[str, Any] | str:
    response_format = request.get("response_format") or {}
    schema = response_format.get("json_schema") or {}
    if schema.get("name") == "report_perception":
        # Only the lead's new messages: the rest of the prompt names cars of the playbook.
        prompt = str(request["messages"][-1]["content"])
        return perception_for(prompt.rpartition("NEW messages from the lead:")[2])
    return "Thanks for your message! When would you like to come by?"


SMALL_SET = [
    {
        "id": "s-1",
        "playbook": "car_dealership",
        "language": "en",
        "turns": [
            {"text": "Hello there", "intent": "greeting"},
            {
                "text": "Do you have a VW Golf?",
                "intent": "product_inquiry",
                "fields": {"make": "Volkswagen", "model": "Golf"},
            },
        ],
    },
    {
        "id": "s-2",
        "playbook": "car_dealership",
        "language": "en",
        "turns": [
            {
                "text": "Let me talk to your manager please",
                "intent": "human_request",
                "escalate": True,
                "rule": "human_request",
            }
        ],
    },
    {
        "id": "s-3",
        "playbook": "car_dealership",
        "language": "en",
        "turns": [{"text": "Good morning", "intent": "greeting"}],
    },
]


async def test_a_hosted_provider_is_measured_from_the_ledger(
    temporal_client: Client,
    settings_factory: Any,
    sqlite_url: str,
    tmp_path: Path,
    fake_openai: FakeOpenAI,
) -> None:
    fake_openai.brain = brain
    settings: Settings = settings_factory(
        sqlite_url,
        debounce_seconds=0.3,
        openai_compatible_base_url=fake_openai.base_url,
        openai_compatible_api_key=fake_openai.api_key,
        llm_model="fake-model",
    )
    path = tmp_path / "small.jsonl"
    path.write_text("".join(json.dumps(case) + "\n" for case in SMALL_SET))
    report = tmp_path / "report.json"
    async with live_stack(temporal_client, settings, queues=[CONVERSATIONS]) as stack:
        try:
            result = await run_cli(
                env_of(settings),
                str(path),
                "--api-url",
                stack.api_url,
                "--provider",
                "openai_compatible",
                "--json",
                str(report),
            )
        finally:
            await terminate_eval_workflows(temporal_client)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    assert data["turns"] == 4
    assert {(m["provider"], m["model"]) for m in data["models"]} == {
        ("openai_compatible", "fake-model")
    }
    # Perceive and draft per turn; the escalated turn's draft is discarded and the lead gets
    # an escalation notice instead: one call more.
    escalated = data["escalation_observed"]
    assert data["model_calls"] == 2 * data["turns"] + escalated
    assert data["input_tokens"] > 0 and data["output_tokens"] > 0
    assert data["intent_correct"] == 4
    assert data["escalation_true_positive"] == 1 and data["escalation_observed"] == 1
    assert data["field_correct"] == 2
    assert "openai_compatible:fake-model" in result.output
    assert len(fake_openai.requests) == 9


async def test_bad_input_is_exit_2_with_a_clear_message(tmp_path: Path) -> None:
    env: dict[str, str | None] = {
        "LEADFLOW_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
        "LEADFLOW_API_URL": None,
    }
    good = json.dumps(SMALL_SET[2])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(f"{good}\n\n{{'id': 'x'\n")
    result = await run_cli(env, str(bad), "--api-url", "http://127.0.0.1:9")
    assert result.exit_code == 2
    assert "bad.jsonl:3" in result.output and "not JSON" in result.output
    assert "Traceback" not in result.output

    invalid = tmp_path / "invalid.jsonl"
    invalid.write_text(good + "\n" + json.dumps({**SMALL_SET[2], "id": "y", "turns": []}) + "\n")
    result = await run_cli(env, str(invalid))
    assert result.exit_code == 2
    assert "invalid.jsonl:2" in result.output and "turns" in result.output

    result = await run_cli(env, str(tmp_path / "missing.jsonl"))
    assert result.exit_code == 2
    assert "cannot read" in result.output

    ok = tmp_path / "ok.jsonl"
    ok.write_text(good + "\n")
    url = f"http://127.0.0.1:{free_port()}"
    result = await run_cli(env, str(ok), "--api-url", url)
    assert result.exit_code == 2
    assert f"cannot reach the leadflow API at {url}" in result.output
    assert "leadflow up" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "unused.db").exists()  # nothing was created before the API answered


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--api-key", "lf_x", "--provider", "openai"), "with --api-key the tenant is evaluated"),
        (("--tenant", "acme"), "--tenant and --webhook-secret go with --api-key"),
    ],
)
def test_conflicting_options_are_refused(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(SMALL_SET[2]) + "\n")
    result = invoke({"LEADFLOW_API_URL": None}, str(path), *args)
    assert result.exit_code == 2
    assert message in result.output


# -- when a turn is done and what was observed, on the API's shapes -------------------------


def call(step: str, output: dict[str, Any] | None, **kw: Any) -> dict[str, Any]:
    return {
        "step": step,
        "provider": "offline",
        "model": "rules-v2",
        "input_tokens": 10,
        "output_tokens": 5,
        "cached_tokens": 0,
        "cost_usd": 0.0,
        "outcome": "ok",
        "output": output,
        **kw,
    }


def detail(stage: str, transcript: list[str], calls: list[dict[str, Any]], rules: list[str]) -> Any:
    return {
        "stage": stage,
        "turns": sum(1 for c in calls if c["step"] == "analysis" and c["output"]),
        "transcript": [{"role": role, "text": "…"} for role in transcript],
        "escalations": [{"rule": rule} for rule in rules],
        "agent_calls": calls,
    }


LABEL = load_cases(DEFAULT_DEV_SET)[0].turns[0]
ANALYSIS = {"intent": "pricing", "secondary": ["greeting"], "fields": {"budget": 20000}, "turn": 1}


def test_a_turn_is_done_when_answered_or_handed_over() -> None:
    start = cli_eval.Snapshot.of(None)
    assert not cli_eval.turn_done(None, start)
    analysed = [call("analysis", ANALYSIS)]
    assert not cli_eval.turn_done(detail("qualifying", [], analysed, []), start)
    assert not cli_eval.turn_done(detail("qualifying", ["lead"], analysed, []), start)
    answered = detail("qualifying", ["lead", "ai"], [*analysed, call("reply", {"turn": 1})], [])
    assert cli_eval.turn_done(answered, start)
    escalated = detail("human_handoff", ["lead", "ai"], analysed, ["complaint"])
    assert cli_eval.turn_done(escalated, start)
    # The AI failed for good: no analysis output, a handoff with its own rule.
    failed = detail(
        "human_handoff", ["lead", "system"], [call("analysis", None)], ["ai_unavailable"]
    )
    assert cli_eval.turn_done(failed, start)
    seen = cli_eval.observe("c", 1, LABEL, failed, start, latency_ms=5.0)
    assert not seen.perceived and seen.observation.escalated
    assert seen.observation.rule == "ai_unavailable" and seen.observation.model_calls == 1


def test_what_a_turn_observes() -> None:
    start = cli_eval.Snapshot.of(None)
    guarded = call("reply", {"guard": {"ok": False, "rule": "amount"}, "turn": 1})
    after = detail("qualifying", ["lead", "ai"], [call("analysis", ANALYSIS), guarded], [])
    seen = cli_eval.observe("c", 1, LABEL, after, start, latency_ms=12.5)
    obs = seen.observation
    assert seen.perceived and obs.intent.value == "pricing"
    assert [i.value for i in obs.secondary] == ["greeting"]
    assert dict(obs.fields) == {"budget": 20000} and obs.guard_blocked
    assert (obs.model_calls, obs.input_tokens, obs.output_tokens) == (2, 20, 10)
    assert not obs.escalated and obs.latency_ms == 12.5

    # Sent while a human has the conversation: recorded, not perceived, counted as escalated.
    with_human = detail(
        "human_handoff", ["lead", "ai"], [call("analysis", ANALYSIS)], ["complaint"]
    )
    before = cli_eval.Snapshot.of(with_human)
    assert not cli_eval.turn_done(with_human, before)
    later = {**with_human, "transcript": [*with_human["transcript"], {"role": "lead"}]}
    assert cli_eval.turn_done(later, before)
    seen = cli_eval.observe("c", 2, LABEL, later, before, latency_ms=1.0)
    assert not seen.perceived and seen.observation.escalated
    assert seen.observation.rule == "complaint" and seen.observation.model_calls == 0
