"""`leadflow simulate` against the real stack: webhooks into the real API, the real worker on the
Temporal dev server, replies through the tenant's WAHA channel to the simulator's fake WAHA.

The command runs in process with typer's CliRunner in a thread (the stack's event loop keeps
serving), with the stack's database settings in its environment, as an operator would run it
next to `leadflow up`. The counting rules (duplicates, lost) are also checked against a scripted
leadflow, where a duplicate can be made to happen."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from typer.testing import CliRunner, Result

from activities.channels.waha import WahaChannel
from models.common import Channel
from models.messages import OutboundMessage
from models.repo import tenants as tenant_repo
from models.settings import Settings
from models.task_queues import CONVERSATIONS
from models.tenant import TenantSettings, WahaSettings
from tests.conftest import TEST_SECRET, make_tenant
from tests.live_stack import free_port
from tests.stack import live_stack
from workers import cli_simulate
from workers.fake_waha import FakeWaha, SentText
from workers.simulator import Dialogue, LeadflowApi, Simulation, Target

TWO_TURNS = {
    "name": "golf",
    "turns": ["Hi, do you have a VW Golf in stock?", "Can I come by for a test drive on Saturday?"],
}
ANGRY = {
    "name": "angry",
    "turns": [
        "Hello",
        "The engine light is on again and nobody called me back. This is unacceptable!",
        "Hello?? Anyone?",
    ],
}


def cli() -> typer.Typer:
    app = typer.Typer()
    cli_simulate.register(app)

    @app.callback()
    def _root() -> None:  # keeps `simulate` a subcommand, as in the real CLI
        pass

    return app


def env_of(settings: Settings) -> dict[str, str | None]:
    return {
        "LEADFLOW_DATABASE_URL": settings.resolved_database_url,
        "LEADFLOW_DATA_DIR": str(settings.data_dir),
        "LEADFLOW_SECRET_KEY": TEST_SECRET,
        "LEADFLOW_API_URL": None,
    }


def invoke(env: dict[str, str | None], *args: str) -> Result:
    return CliRunner().invoke(cli(), ["simulate", *args], env=env, catch_exceptions=False)


async def run_cli(env: dict[str, str | None], *args: str) -> Result:
    result = await asyncio.to_thread(invoke, env, *args)
    print(result.output)
    return result


def test_help_documents_the_options_and_the_dialogue_format() -> None:
    result = invoke({}, "--help")
    assert result.exit_code == 0
    for option in (
        "--leads",
        "--rate",
        "--dialogue",
        "--api-url",
        "--tenant",
        "--think-time",
        "--timeout",
        "--json",
    ):
        assert option in result.output
    assert "dialogues:" in result.output and "JSON lines" in result.output
    assert "angry-lead" in result.output  # the built-in dialogues are named


async def test_leadflow_not_running_is_one_clear_line(tmp_path: Path) -> None:
    env: dict[str, str | None] = {
        "LEADFLOW_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
        "LEADFLOW_API_URL": None,
    }
    url = f"http://127.0.0.1:{free_port()}"
    result = await run_cli(env, "--api-url", url, "--leads", "1")
    assert result.exit_code == 2
    assert f"leadflow is not running at {url}" in result.output
    assert "leadflow up" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "unused.db").exists()  # nothing touched before leadflow answered


def test_a_bad_dialogue_file_is_exit_2(tmp_path: Path) -> None:
    env: dict[str, str | None] = {"LEADFLOW_API_URL": None}
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(json.dumps(TWO_TURNS) + "\n\n{'name': 'x'\n")
    result = invoke(env, "--dialogue", str(bad_json))
    assert result.exit_code == 2
    assert "bad.jsonl:3: not JSON" in result.output and "Traceback" not in result.output

    no_turns = tmp_path / "no-turns.yaml"
    no_turns.write_text("dialogues:\n  - name: empty\n    turns: []\n")
    result = invoke(env, "--dialogue", str(no_turns))
    assert result.exit_code == 2
    assert "no-turns.yaml: dialogue 1: turns" in result.output

    broken = tmp_path / "broken.yml"
    broken.write_text("dialogues: [unclosed\n")
    result = invoke(env, "--dialogue", str(broken))
    assert result.exit_code == 2 and "not valid YAML" in result.output

    result = invoke(env, "--dialogue", str(tmp_path / "missing.yaml"))
    assert result.exit_code == 2 and "cannot read" in result.output


async def conversation(stack: Any, api_key: str, conversation_id: str) -> dict[str, Any]:
    response = await stack.http.get(
        f"/api/v1/conversations/{conversation_id}", headers={"Authorization": f"Bearer {api_key}"}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_leads_through_the_stack(
    temporal_client: Client,
    settings_factory: Any,
    sqlite_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The worker reads a tenant's WAHA settings per send: no cache to wait out here.
    monkeypatch.setattr(cli_simulate, "SETTINGS_CACHE_SECONDS", 0.0)
    settings: Settings = settings_factory(sqlite_url, debounce_seconds=0.2)
    golf = tmp_path / "golf.jsonl"
    golf.write_text(json.dumps(TWO_TURNS) + "\n")
    angry = tmp_path / "angry.yaml"
    angry.write_text(json.dumps({"dialogues": [ANGRY]}))  # JSON is YAML
    elsewhere = TenantSettings(
        playbook="car_dealership",
        waha=WahaSettings(base_url="http://waha.example:3000", api_key="real-key"),
    )
    common = ("--think-time", "0", "--settle", "0", "--timeout", "20")
    async with live_stack(
        temporal_client, settings, tenant_settings=elsewhere, queues=[CONVERSATIONS]
    ) as stack:
        env = env_of(settings)
        port = str(free_port())
        first = tmp_path / "first.json"
        result = await run_cli(
            env,
            *("--api-url", stack.api_url, "--waha-port", port, "--json", str(first)),
            *("--leads", "3", "--rate", "20", "--dialogue", str(golf), *common),
        )
        assert result.exit_code == 0, result.output
        data = json.loads(first.read_text())
        assert data["tenant"] == "simulate"
        assert (data["leads"], data["messages_sent"], data["answered"]) == (3, 6, 3 * 2)
        assert (data["lost"], data["duplicates"], data["escalations"]) == (0, 0, 0)
        assert data["leads_completed"] == 3 and data["webhook_errors"] == 0
        ttr = data["time_to_reply_ms"]
        assert 0 < ttr["p50"] <= ttr["p99"] <= ttr["max"]
        assert "answered" in result.output and "time to reply p50 / p99" in result.output
        leads = data["leads_detail"]
        assert len({lead["contact"] for lead in leads}) == 3
        # What the fake WAHA got is what the conversations recorded: one AI reply per message.
        async with stack.db.session() as session:
            api_key = await tenant_repo.create_api_key(session, tenant_id="simulate")
        for lead in leads:
            detail = await conversation(stack, api_key, lead["conversation_id"])
            roles = [entry["role"] for entry in detail["transcript"]]
            assert roles == ["lead", "ai", "lead", "ai"]
            replies = [r for m in lead["messages"] for r in m["replies"]]
            assert replies == [e["text"] for e in detail["transcript"] if e["role"] == "ai"]

        # The escalating dialogue, on the same tenant (reused, the same fake WAHA port).
        second = tmp_path / "second.json"
        result = await run_cli(
            env,
            *("--api-url", stack.api_url, "--waha-port", port, "--json", str(second)),
            *("--leads", "1", "--dialogue", str(angry), *common),
        )
        assert result.exit_code == 0, result.output
        data = json.loads(second.read_text())
        assert data["escalations"] == 1 and data["escalation_rules"] == {"complaint": 1}
        # The lead stops at the escalation: its third message is never sent.
        assert (data["messages_sent"], data["answered"], data["lost"]) == (2, 2, 0)
        assert data["leads_detail"][0]["escalated"] is True
        assert "reused" in result.output

        # A tenant without WAHA is lent a channel for the run and gets none back after it.
        lent, _ = await make_tenant(stack.db, settings=TenantSettings(playbook="car_dealership"))
        result = await run_cli(
            env,
            *("--api-url", stack.api_url, "--waha-port", "0", "--tenant", lent),
            *("--leads", "1", "--dialogue", str(golf), *common),
        )
        assert result.exit_code == 0, result.output
        assert f"tenant {lent}: its WAHA channel removed again" in result.output
        async with stack.db.session() as session:
            row = await tenant_repo.get_tenant(session, tenant_id=lent)
            assert row is not None
            assert tenant_repo.tenant_settings(row, secret_key=TEST_SECRET).waha is None

        # A tenant whose WAHA is a real one is not taken over.
        result = await run_cli(
            env, "--api-url", stack.api_url, "--waha-port", "0", "--tenant", stack.tenant_id
        )
        assert result.exit_code == 2
        assert "http://waha.example:3000" in result.output and "refusing" in result.output


# -- the counting rules, against a scripted leadflow ------------------------------------------


async def test_duplicates_and_lost_messages_are_counted() -> None:
    """A scripted leadflow: contact ...0 is answered twice per message, ...1 never, ...2 once."""
    waha = FakeWaha(api_key="k")
    waha.bind()
    await waha.start()
    transcripts: dict[str, list[dict[str, str]]] = {}

    async def webhook(request: Request) -> JSONResponse:
        event = await request.json()
        contact = event["payload"]["from"]
        conv = f"conv:sim:waha:{contact}"
        transcripts.setdefault(conv, []).append({"role": "lead", "text": "…"})
        answers = {"0": 2, "1": 0, "2": 1}[contact.split("@")[0][-1]]
        async with httpx.AsyncClient() as http:
            for _ in range(answers):
                sent = {"session": "default", "chatId": contact, "text": "Hi!"}
                await http.post(f"{waha.url}/api/sendText", json=sent, headers={"X-Api-Key": "k"})
                transcripts[conv].append({"role": "ai", "text": "Hi!"})
        return JSONResponse({"status": "accepted", "delivered": [{"workflow_id": conv}]}, 202)

    async def detail(request: Request) -> JSONResponse:
        conv = request.path_params["cid"]
        body = {"stage": "qualifying", "transcript": transcripts[conv], "escalations": []}
        return JSONResponse(body)

    app = Starlette(
        routes=[
            Route("/webhooks/waha/sim", webhook, methods=["POST"]),
            Route("/api/v1/conversations/{cid}", detail),
        ]
    )
    api = LeadflowApi("http://leadflow", transport=httpx.ASGITransport(app=app))
    sim = Simulation(
        api=api,
        target=Target("sim", "lf_key", None),
        dialogues=[Dialogue(name="two", turns=("one", "two"))],
        leads=3,
        rate=100,
        think_time=0,
        timeout=0.5,
    )
    waha.on_send = sim.on_send
    try:
        await sim.run()
    finally:
        await waha.stop()
        await api.aclose()
    summary = sim.summary()
    assert summary["messages_sent"] == 2 + 1 + 2
    assert summary["answered"] == 4 and summary["lost"] == 1
    assert summary["duplicates"] == 2
    assert summary["leads_completed"] == 2  # played to the end (duplicates or not)
    assert cli_simulate.exit_code(summary) == 1
    assert waha.refused == 0
    cli_simulate.print_summary(summary)  # renders every figure, the bad ones included


async def test_the_fake_waha_answers_leadflows_waha_channel_as_waha_does() -> None:
    got: list[SentText] = []
    waha = FakeWaha(api_key="k", session="sales", id_style="webjs", on_send=got.append)
    url = waha.bind()
    await waha.start()

    def message(to: str) -> OutboundMessage:
        return OutboundMessage(
            tenant_id="t", channel=Channel.WAHA, to=to, text="Hello!", idempotency_key=to
        )

    try:
        async with httpx.AsyncClient() as http:
            channel = WahaChannel(http)
            ours = TenantSettings(waha=WahaSettings(base_url=url, api_key="k", session="sales"))
            provider_id = await channel.send(message("31612345678"), ours)
            assert provider_id is not None and provider_id.startswith("true_31612345678@c.us_")
            for wrong, status in (({"api_key": "x"}, "401"), ({"session": "default"}, "422")):
                values = {"base_url": url, "api_key": "k", "session": "sales", **wrong}
                settings = TenantSettings(waha=WahaSettings.model_validate(values))
                with pytest.raises(ApplicationError, match=status):
                    await channel.send(message("31600000000"), settings)
            answer = await http.post(
                f"{url}/api/sendText", json={"session": "sales"}, headers={"X-Api-Key": "k"}
            )
            assert answer.status_code == 400 and "chatId must be a string" in answer.text
    finally:
        await waha.stop()
    assert [(s.chat_id, s.text) for s in got] == [("31612345678@c.us", "Hello!")]
    assert waha.refused == 3
