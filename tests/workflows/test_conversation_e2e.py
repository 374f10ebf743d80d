"""End to end on loopback: webhooks in through the real API, the real worker on the real Temporal
dev server, replies out to fake providers speaking the wire formats in ../shared/wire."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client
from temporalio.service import RPCError

from models.conversation import conversation_workflow_id
from models.crm import crm_sync_workflow_id
from models.repo.playbooks import builtin_playbook
from models.settings import Settings
from models.task_queues import CONVERSATIONS
from models.tenant import Specialist, TenantSettings
from tests.fakes.chatwoot import FakeChatwoot
from tests.fakes.crm import HubSpotFake
from tests.fakes.llm import FakeOpenAI
from tests.fakes.llm_brain import rules_brain
from tests.fakes.smtp import SmtpServer
from tests.fakes.waha import FakeWaha
from tests.stack import LiveStack, live_stack

LEAD = "31612345678@c.us"


def _waha_settings(fake: FakeWaha) -> TenantSettings:
    return TenantSettings(playbook="car_dealership", waha=fake.settings())


@pytest.fixture(params=["offline", "openai_compatible"])
def model_settings(request: pytest.FixtureRequest) -> Iterator[dict[str, Any]]:
    """The suite's main paths run with the offline rules and with the openai_compatible
    provider (the real OpenAI SDK) pointed at a fake model server on loopback."""
    if request.param == "offline":
        yield {}
        return
    with FakeOpenAI(api_key=None, brain=rules_brain) as fake:
        yield {
            "llm_provider": "openai_compatible",
            "openai_compatible_base_url": fake.base_url,
            "llm_model": "fake-model",
        }


async def _post_waha(stack: LiveStack, fake: FakeWaha, text: str, **kw: Any) -> float:
    raw, headers = fake.message_webhook(from_=kw.pop("from_", LEAD), body=text, **kw)
    started = time.perf_counter()
    response = await stack.http.post(
        f"/webhooks/waha/{stack.tenant_id}",
        content=raw,
        headers={**headers, "content-type": "application/json"},
    )
    elapsed = time.perf_counter() - started
    assert response.status_code in (200, 202), response.text
    return elapsed


def _replies_to(fake: FakeWaha, chat_id: str = LEAD) -> list[dict[str, Any]]:
    return [body for body in fake.sent if body.get("chatId") == chat_id]


@pytest.fixture
def e2e_settings(settings_factory: Any, sqlite_url: str) -> Settings:
    settings: Settings = settings_factory(sqlite_url, debounce_seconds=0.5)
    return settings


async def test_waha_message_is_answered_through_waha(
    temporal_client: Client,
    settings_factory: Any,
    database_url: str,
    fake_waha: FakeWaha,
    model_settings: dict[str, Any],
) -> None:
    """The whole path, on SQLite and on a real PostgreSQL, with the offline rules and with a
    hosted provider."""
    e2e_settings: Settings = settings_factory(database_url, debounce_seconds=0.5, **model_settings)
    async with live_stack(
        temporal_client,
        e2e_settings,
        tenant_settings=_waha_settings(fake_waha),
    ) as stack:
        webhook_times, turn_times = [], []
        for n, text in enumerate(
            [
                "Hi, I'm looking for a Volkswagen Golf, budget around €25.000",
                "Is it available as a hybrid?",
                "Could I come for a test drive this week?",
            ],
            start=1,
        ):
            started = time.perf_counter()
            webhook_times.append(await _post_waha(stack, fake_waha, text))
            await stack.wait_for(lambda n=n: len(_replies_to(fake_waha)) >= n, what=f"reply {n}")
            turn_times.append(time.perf_counter() - started - e2e_settings.debounce_seconds)

        replies = _replies_to(fake_waha)
        assert len(replies) == 3
        request = fake_waha.requests[-1]
        assert request.headers.get("x-api-key") == "waha-test-key"
        assert replies[0]["session"] == "default" and replies[0]["text"].strip()
        print(
            f"\nwebhook answer median {statistics.median(webhook_times) * 1000:.1f} ms; "
            f"turn (after debounce) median {statistics.median(turn_times) * 1000:.0f} ms"
        )

        conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
        detail = await stack.wait_for(
            lambda: _conversation(stack, conv_id, min_messages=6), what="transcript"
        )
        roles = [m["role"] for m in detail["transcript"]]
        assert roles == ["lead", "ai", "lead", "ai", "lead", "ai"]
        assert detail["score"] > 0 and detail["score_detail"]["components"]
        assert detail["stage"] in ("qualifying", "scheduling", "objection_handling")
        # Two model calls a turn (perceive, write), each in the ledger with its provider.
        provider = model_settings.get("llm_provider", "offline")
        calls = detail["agent_calls"]
        assert [c["step"] for c in calls] == ["analysis", "reply"] * 3
        assert {c["provider"] for c in calls} == {provider}
        assert all(c["outcome"] == "ok" and c["input_tokens"] > 0 for c in calls)
        assert detail["usage"]["calls"] == 6

        # The Temporal side: the query and the search attributes operators use.
        state = await temporal_client.get_workflow_handle(conv_id).query("state")
        assert state["turns"] == 3
        found = [
            wf.id
            async for wf in temporal_client.list_workflows(
                f'LeadflowTenant="{stack.tenant_id}" AND LeadflowChannel="waha"'
            )
        ]
        assert conv_id in found

        # No CRM connected: the turn's record step wrote the built-in lead table, and no
        # CrmSyncWorkflow was started for it (one workflow per message, not two).
        lead = (
            await stack.http.get(f"/api/v1/leads/{detail['lead_id']}", headers=stack.auth)
        ).json()
        assert lead["fields"].get("make") == "Volkswagen"
        assert lead["recent_syncs"] == []
        with pytest.raises(RPCError):
            await temporal_client.get_workflow_handle(
                crm_sync_workflow_id(stack.tenant_id, detail["lead_id"])
            ).describe()

        # Tenant isolation: another tenant's key sees nothing of it.
        from tests.conftest import make_tenant

        _, other_key = await make_tenant(stack.db)
        other = await stack.http.get(
            f"/api/v1/conversations/{conv_id}", headers={"Authorization": f"Bearer {other_key}"}
        )
        assert other.status_code == 404


async def _conversation(stack: LiveStack, conv_id: str, *, min_messages: int) -> Any:
    response = await stack.http.get(f"/api/v1/conversations/{conv_id}", headers=stack.auth)
    if response.status_code != 200:
        return None
    body = response.json()
    return body if len(body["transcript"]) >= min_messages else None


async def test_burst_gets_one_answer_and_duplicates_none(
    temporal_client: Client, settings_factory: Any, sqlite_url: str, fake_waha: FakeWaha
) -> None:
    settings = settings_factory(sqlite_url, debounce_seconds=2.0)
    async with live_stack(
        temporal_client, settings, tenant_settings=_waha_settings(fake_waha), queues=[CONVERSATIONS]
    ) as stack:
        for text in ["Hallo", "ik zoek een Toyota Yaris", "budget 18k, benzine"]:
            await _post_waha(stack, fake_waha, text)
            await asyncio.sleep(0.3)
        await stack.wait_for(lambda: _replies_to(fake_waha), timeout=30, what="the answer")
        await asyncio.sleep(3.0)  # a second answer would have come by now
        assert len(_replies_to(fake_waha)) == 1

        # The same provider message delivered twice is processed once.
        await _post_waha(stack, fake_waha, "Heeft u hem op voorraad?", message_id="false_dup_1")
        await _post_waha(stack, fake_waha, "Heeft u hem op voorraad?", message_id="false_dup_1")
        await stack.wait_for(lambda: len(_replies_to(fake_waha)) >= 2, what="second answer")
        await asyncio.sleep(3.0)
        assert len(_replies_to(fake_waha)) == 2
        conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
        detail = await _conversation(stack, conv_id, min_messages=0)
        lead_texts = [m["text"] for m in detail["transcript"] if m["role"] == "lead"]
        assert lead_texts.count("Heeft u hem op voorraad?") == 1
        assert len(lead_texts) == 4


async def test_escalation_notifies_specialists_and_goes_silent(
    temporal_client: Client,
    settings_factory: Any,
    sqlite_url: str,
    fake_waha: FakeWaha,
    fake_chatwoot: FakeChatwoot,
    smtp_server: SmtpServer,
    model_settings: dict[str, Any],
) -> None:
    e2e_settings: Settings = settings_factory(sqlite_url, debounce_seconds=0.5, **model_settings)
    tenant_settings = TenantSettings(
        playbook="car_dealership",
        waha=fake_waha.settings(),
        chatwoot=fake_chatwoot.settings(),
        smtp=smtp_server.settings(),
        specialists=[
            Specialist(
                name="Sanne",
                role="finance",
                whatsapp="31687654321",
                email="sanne@dealer.example",
                chatwoot_agent_id=7,
            ),
            Specialist(
                name="Mark",
                role="sales",
                whatsapp="31600000001",
                email="mark@dealer.example",
                chatwoot_agent_id=8,
            ),
            Specialist(
                name="Eva",
                role="manager",
                whatsapp="31600000002",
                email="eva@dealer.example",
                chatwoot_agent_id=9,
            ),
        ],
    )
    async with live_stack(
        temporal_client, e2e_settings, tenant_settings=tenant_settings, queues=[CONVERSATIONS]
    ) as stack:
        raw, headers = fake_chatwoot.message_created_webhook(
            content="I want to speak to a human about financing with a balloon payment, now please",
            conversation_id=42,
        )
        response = await stack.http.post(
            f"/webhooks/chatwoot/{stack.tenant_id}",
            content=raw,
            headers={**headers, "content-type": "application/json"},
        )
        assert response.status_code in (200, 202), response.text

        await stack.wait_for(lambda: fake_chatwoot.private_notes(42), what="private note")
        await stack.wait_for(lambda: smtp_server.messages, what="e-mail to a specialist")
        await stack.wait_for(
            lambda: [b for b in fake_waha.sent if b["chatId"] != LEAD], what="WhatsApp alert"
        )
        await stack.wait_for(lambda: fake_chatwoot.replies(42), what="notice to the lead")
        assigned = [r for r in fake_chatwoot.requests if r.path.endswith("/assignments")]
        assert assigned, "the Chatwoot conversation was assigned to a specialist"
        note = fake_chatwoot.private_notes(42)[0]
        assert "needs a human" in note["content"]
        assert "private" in note and note["private"] is True
        mail = smtp_server.messages[0]
        assert any(addr.endswith("@dealer.example") for addr in mail.rcpt_tos)

        # In handoff the AI stays silent: a new lead message gets no AI answer.
        replies_before = len(fake_chatwoot.replies(42))
        raw, headers = fake_chatwoot.message_created_webhook(content="Hello?", conversation_id=42)
        await stack.http.post(
            f"/webhooks/chatwoot/{stack.tenant_id}",
            content=raw,
            headers={**headers, "content-type": "application/json"},
        )
        await asyncio.sleep(2.0)
        assert len(fake_chatwoot.replies(42)) == replies_before

        listing = await stack.http.get(
            "/api/v1/conversations", params={"stage": "human_handoff"}, headers=stack.auth
        )
        assert listing.json()["total"] == 1
        conv_id = listing.json()["conversations"][0]["id"]
        detail = await _conversation(stack, conv_id, min_messages=1)
        assert detail["escalations"] and detail["escalations"][0]["notified"]

        # Released through the API, the AI answers again.
        release = await stack.http.post(
            f"/api/v1/conversations/{conv_id}/release", headers=stack.auth
        )
        assert release.status_code == 200, release.text
        raw, headers = fake_chatwoot.message_created_webhook(
            content="Which colours does the Golf come in?", conversation_id=42
        )
        await stack.http.post(
            f"/webhooks/chatwoot/{stack.tenant_id}",
            content=raw,
            headers={**headers, "content-type": "application/json"},
        )
        await stack.wait_for(
            lambda: len(fake_chatwoot.replies(42)) > replies_before, what="AI answers after release"
        )


async def test_outreach_and_operator_message_go_to_the_outbox_without_a_channel(
    temporal_client: Client, e2e_settings: Settings
) -> None:
    async with live_stack(temporal_client, e2e_settings, queues=[CONVERSATIONS]) as stack:
        bad = await stack.http.post(
            "/api/v1/conversations", json={"channel": "pigeon", "contact": "x"}, headers=stack.auth
        )
        assert bad.status_code == 422
        unauth = await stack.http.post(
            "/api/v1/conversations", json={"channel": "waha", "contact": "x"}
        )
        assert unauth.status_code == 401

        response = await stack.http.post(
            "/api/v1/conversations",
            json={
                "channel": "waha",
                "contact": "31611111111@c.us",
                "text": "Hi Jan, your Golf is in!",
            },
            headers=stack.auth,
        )
        assert response.status_code == 202, response.text
        conv_id = response.json()["id"]
        again = await stack.http.post(
            "/api/v1/conversations",
            json={"channel": "waha", "contact": "31611111111@c.us", "text": "again"},
            headers=stack.auth,
        )
        assert again.status_code == 409

        async def outbox() -> list[dict[str, Any]]:
            r = await stack.http.get(
                "/api/v1/outbox", params={"conversation_id": conv_id}, headers=stack.auth
            )
            rows: list[dict[str, Any]] = r.json()
            return rows

        async def settled() -> list[dict[str, Any]] | None:
            # The send claims its row ('pending') before it marks it: wait for the final state
            # (a loaded machine shows the claimed row long enough to be read).
            rows = await outbox()
            return rows if rows and rows[0]["status"] != "pending" else None

        rows = await stack.wait_for(settled, what="outreach in the outbox")
        assert rows[0]["text"] == "Hi Jan, your Golf is in!" and rows[0]["status"] == "stored"

        sent = await stack.http.post(
            f"/api/v1/conversations/{conv_id}/messages",
            json={"text": "Mark here from the showroom."},
            headers=stack.auth,
        )
        assert sent.status_code == 200, sent.text
        rows = await stack.wait_for(
            lambda: _outbox_has(outbox, "Mark here from the showroom."), what="operator message"
        )
        assert rows


async def _outbox_has(outbox: Any, text: str) -> Any:
    rows = await outbox()
    return rows if any(r["text"] == text for r in rows) else None


async def test_worker_killed_mid_turn_loses_nothing_and_sends_no_duplicate(
    temporal_client: Client,
    temporal_address: str,
    settings_factory: Any,
    sqlite_url: str,
    fake_waha: FakeWaha,
    tmp_path: Path,
) -> None:
    settings = settings_factory(sqlite_url, debounce_seconds=3.0)
    async with live_stack(
        temporal_client,
        settings,
        tenant_settings=_waha_settings(fake_waha),
        queues=[CONVERSATIONS],
        start_worker=False,
    ) as stack:
        worker = await _spawn_worker(settings, temporal_address, tmp_path / "w1.log")
        try:
            await _post_waha(stack, fake_waha, "Hi, do you have a Kia Niro EV?")
            await asyncio.sleep(1.0)  # the turn is in its debounce window
        finally:
            worker.kill()  # SIGKILL: no graceful shutdown
            await worker.wait()
        # Messages keep arriving while no worker runs: Temporal holds them.
        await _post_waha(stack, fake_waha, "Budget is 35k")
        worker = await _spawn_worker(settings, temporal_address, tmp_path / "w2.log")
        try:
            await stack.wait_for(lambda: _replies_to(fake_waha), timeout=60, what="the answer")
            await asyncio.sleep(4.0)
            assert len(_replies_to(fake_waha)) == 1
            conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
            detail = await stack.wait_for(
                lambda: _conversation(stack, conv_id, min_messages=3), what="transcript"
            )
            texts = [m["text"] for m in detail["transcript"] if m["role"] == "lead"]
            assert texts == ["Hi, do you have a Kia Niro EV?", "Budget is 35k"]
        finally:
            worker.kill()
            await worker.wait()


async def _spawn_worker(
    settings: Settings, temporal_address: str, log: Path
) -> asyncio.subprocess.Process:
    import os
    import sys

    env = {
        **os.environ,
        "LEADFLOW_TEMPORAL_ADDRESS": temporal_address,
        "LEADFLOW_DATABASE_URL": settings.resolved_database_url,
        "LEADFLOW_SECRET_KEY": settings.secret_key.get_secret_value(),
        "LEADFLOW_DATA_DIR": str(settings.data_dir),
    }
    leadflow = str(Path(sys.executable).parent / "leadflow")
    handle = log.open("wb")
    proc = await asyncio.create_subprocess_exec(
        leadflow, "worker", "--queue", CONVERSATIONS, env=env, stdout=handle, stderr=handle
    )
    # Ready once it polls the queue.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise AssertionError(f"worker exited: {log.read_text()}")
        if "workers running" in log.read_text():
            return proc
        await asyncio.sleep(0.2)
    # Not left polling the dev server's queue, where it would take the next tests' tasks.
    proc.kill()
    await proc.wait()
    raise AssertionError(f"worker did not start: {log.read_text()}")


async def _turn_finished(handle: Any, turns: int) -> bool:
    """The workflow has finished turn `turns` and has nothing pending: it is idle at the top of
    its loop, where it decides to continue as new (that decision is made in the same workflow
    task that finishes the turn, so a query that sees the turn done sees it made)."""
    state = await handle.query("state")
    transcript = state["transcript"]
    return bool(
        state["turns"] >= turns
        and state["pending_messages"] == 0
        and transcript
        and transcript[-1]["role"] == "ai"
    )


async def test_continue_as_new_keeps_the_conversation(
    temporal_client: Client, settings_factory: Any, sqlite_url: str, fake_waha: FakeWaha
) -> None:
    # A tiny history limit forces continue-as-new every couple of turns. The workflow continues
    # as new only when it is idle between turns (never with a message pending), so each message
    # is sent once the previous turn has finished in the workflow, not merely once its reply
    # reached WAHA: the reply goes out before the turn's last workflow task, and a message sent
    # on seeing it lands while the turn is still running. Under load that happened every turn,
    # the run never went idle and never continued as new before the assertions ran.
    settings = settings_factory(sqlite_url, debounce_seconds=0.2, conversation_history_limit=40)
    async with live_stack(
        temporal_client, settings, tenant_settings=_waha_settings(fake_waha), queues=[CONVERSATIONS]
    ) as stack:
        conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
        handle = temporal_client.get_workflow_handle(conv_id)
        texts = [f"Question {n}: is the Golf available in blue?" for n in range(1, 7)]
        for n, text in enumerate(texts, start=1):
            await _post_waha(stack, fake_waha, text, message_id=f"false_can_{n}")
            await stack.wait_for(lambda n=n: len(_replies_to(fake_waha)) >= n, what=f"reply {n}")
            await stack.wait_for(lambda n=n: _turn_finished(handle, n), what=f"turn {n} to finish")
        # Read from the history, not the visibility listing (which lags under load).
        first_event = (await handle.fetch_history()).events[0]
        started = first_event.workflow_execution_started_event_attributes
        assert started.continued_execution_run_id, "the conversation continued as new"
        state = await handle.query("state")
        assert state["turns"] == 6

        # Redelivering a message of an earlier run is still recognised: a new message sent
        # after it is answered alone, and the redelivery is neither recorded nor answered.
        await _post_waha(stack, fake_waha, texts[0], message_id="false_can_1")
        last = "And in red?"
        await _post_waha(stack, fake_waha, last, message_id="false_can_7")
        await stack.wait_for(lambda: len(_replies_to(fake_waha)) >= 7, what="reply 7")
        await stack.wait_for(lambda: _turn_finished(handle, 7), what="turn 7 to finish")
        assert len(_replies_to(fake_waha)) == 7
        assert (await handle.query("state"))["turns"] == 7
        detail = await stack.wait_for(
            lambda: _conversation(stack, conv_id, min_messages=14), what="the recorded turns"
        )
        assert [m["text"] for m in detail["transcript"] if m["role"] == "lead"] == [*texts, last]


async def test_operator_marks_do_not_contact_and_the_conversation_goes_quiet(
    temporal_client: Client, e2e_settings: Settings, fake_waha: FakeWaha
) -> None:
    async with live_stack(
        temporal_client, e2e_settings, tenant_settings=_waha_settings(fake_waha)
    ) as stack:
        await _post_waha(stack, fake_waha, "Hi, I'd like a quote for a Skoda Octavia")
        await stack.wait_for(lambda: _replies_to(fake_waha), what="first reply")
        conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
        detail = await stack.wait_for(
            lambda: _conversation(stack, conv_id, min_messages=2), what="transcript"
        )
        lead_url = f"/api/v1/leads/{detail['lead_id']}"

        for body, status in (
            ({}, 422),
            ({"email": "not-an-email"}, 422),
            ({"colour": "red"}, 422),
        ):
            bad = await stack.http.patch(lead_url, json=body, headers=stack.auth)
            assert bad.status_code == status, bad.text
            assert bad.json()["error"]
        missing = await stack.http.patch(
            "/api/v1/leads/nope", json={"name": "x"}, headers=stack.auth
        )
        assert missing.status_code == 404

        edited = await stack.http.patch(
            lead_url,
            json={"name": "Jan de Vries", "do_not_contact": True, "fields": {"budget": 30000}},
            headers=stack.auth,
        )
        assert edited.status_code == 200, edited.text
        assert edited.json()["conversations_closed"] == 1
        assert edited.json()["changed"] == ["do_not_contact", "fields.budget", "name"]
        assert edited.json()["sync_workflow_id"]

        async def closed() -> Any:
            body = await _conversation(stack, conv_id, min_messages=0)
            return body if body and body["stage"] == "closed" else None

        await stack.wait_for(closed, what="conversation closed")
        # The lead writes again: recorded, never answered.
        await _post_waha(stack, fake_waha, "Hello? Any news on the Octavia?")
        await stack.wait_for(
            lambda: _conversation(stack, conv_id, min_messages=3), what="message recorded"
        )
        await asyncio.sleep(2.0)
        assert len(_replies_to(fake_waha)) == 1

        async def synced() -> Any:
            r = await stack.http.get(lead_url, headers=stack.auth)
            runs = r.json().get("recent_syncs") or []
            version = r.json()["version"]
            return r.json() if any(run["version"] == version for run in runs) else None

        lead = await stack.wait_for(synced, what="the operator's edit synced")
        assert lead["name"] == "Jan de Vries" and lead["do_not_contact"] is True


async def test_message_arriving_mid_turn_is_answered_in_the_next_turn(
    temporal_client: Client, e2e_settings: Settings, fake_waha: FakeWaha
) -> None:
    async with live_stack(
        temporal_client,
        e2e_settings,
        tenant_settings=_waha_settings(fake_waha),
        queues=[CONVERSATIONS],
    ) as stack:
        # WAHA is briefly unavailable: the send is retried after its Retry-After, and the turn
        # is still in flight when the lead writes again.
        fake_waha.fail_next(1, status=503, retry_after=3)
        await _post_waha(stack, fake_waha, "Do you have a Mazda CX-5?")
        await stack.wait_for(lambda: fake_waha.requests, what="the first send attempt")
        await _post_waha(stack, fake_waha, "Preferably in red")
        await stack.wait_for(lambda: len(_replies_to(fake_waha)) >= 2, timeout=40, what="2 replies")
        await asyncio.sleep(2.0)
        assert len(_replies_to(fake_waha)) == 2
        assert fake_waha.requests[0].json["text"] == _replies_to(fake_waha)[0]["text"]
        conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
        detail = await stack.wait_for(
            lambda: _conversation(stack, conv_id, min_messages=4), what="transcript"
        )
        assert [(m["role"], m["text"]) for m in detail["transcript"] if m["role"] == "lead"] == [
            ("lead", "Do you have a Mazda CX-5?"),
            ("lead", "Preferably in red"),
        ]
        assert [m["role"] for m in detail["transcript"]] == ["lead", "ai", "lead", "ai"]


async def test_a_channel_that_refuses_hands_the_conversation_to_a_human(
    temporal_client: Client, e2e_settings: Settings, fake_waha: FakeWaha, smtp_server: SmtpServer
) -> None:
    """WAHA rejects our key: nothing is retried forever, nothing the lead wrote is lost, and a
    specialist hears about it."""
    tenant_settings = TenantSettings(
        playbook="car_dealership",
        waha=fake_waha.settings(api_key="revoked-key"),
        smtp=smtp_server.settings(),
        specialists=[Specialist(name="Sanne", role="sales", email="sanne@dealer.example")],
    )
    async with live_stack(
        temporal_client, e2e_settings, tenant_settings=tenant_settings, queues=[CONVERSATIONS]
    ) as stack:
        await _post_waha(stack, fake_waha, "Hi, is the Peugeot 208 still for sale?")
        conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)

        async def handed_over() -> Any:
            body = await _conversation(stack, conv_id, min_messages=1)
            return body if body and body["stage"] == "human_handoff" else None

        detail = await stack.wait_for(handed_over, what="handoff after the refused send")
        lines = [(m["role"], m["text"]) for m in detail["transcript"]]
        assert lines[0] == ("lead", "Hi, is the Peugeot 208 still for sale?")
        # The operator reads why in the transcript; the refused reply was not recorded as sent.
        assert [role for role, _ in lines] == ["lead", "system"]
        assert "sending the reply failed" in lines[1][1] and "401" in lines[1][1]
        escalation = detail["escalations"][0]
        assert escalation["rule"] == "delivery_failed"
        assert "waha" in escalation["reason"].lower()
        assert escalation["notified"] == ["Sanne:email:ok"]
        await stack.wait_for(lambda: smtp_server.messages, what="the specialist's e-mail")
        assert fake_waha.sent == []  # every attempt was refused, none retried in a loop
        assert len(fake_waha.requests) == 1
        handle = temporal_client.get_workflow_handle(conv_id)
        assert (await handle.describe()).status.name == "RUNNING"


async def test_an_unusable_llm_provider_hands_the_conversation_to_a_human(
    temporal_client: Client, settings_factory: Any, sqlite_url: str, fake_waha: FakeWaha
) -> None:
    settings = settings_factory(sqlite_url, debounce_seconds=0.2, llm_provider="gpt-nope")
    async with live_stack(
        temporal_client, settings, tenant_settings=_waha_settings(fake_waha), queues=[CONVERSATIONS]
    ) as stack:
        await _post_waha(stack, fake_waha, "Hello, what are your opening hours?")
        conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)

        async def handed_over() -> Any:
            body = await _conversation(stack, conv_id, min_messages=1)
            return body if body and body["stage"] == "human_handoff" else None

        detail = await stack.wait_for(handed_over, what="handoff after the LLM failure")
        escalation = detail["escalations"][0]
        assert escalation["rule"] == "ai_unavailable"
        assert "gpt-nope" in escalation["reason"] and "offline" in escalation["reason"]
        # No model could answer: the lead gets the playbook's holding text (no model needed;
        # nothing perceived the language yet, so the playbook's default language).
        holding = builtin_playbook("car_dealership").fallback.holding["nl"]
        await stack.wait_for(lambda: _replies_to(fake_waha), what="the holding text")
        assert [r["text"] for r in _replies_to(fake_waha)] == [holding]
        notes = [m["text"] for m in detail["transcript"] if m["role"] == "system"]
        assert notes and "gpt-nope" in notes[0]
        # An operator can still answer through the API.
        sent = await stack.http.post(
            f"/api/v1/conversations/{conv_id}/messages",
            json={"text": "We are open 9-18, Mon-Sat."},
            headers=stack.auth,
        )
        assert sent.status_code == 200, sent.text
        await stack.wait_for(
            lambda: len(_replies_to(fake_waha)) >= 2, what="the operator's message"
        )
        assert _replies_to(fake_waha)[1]["text"] == "We are open 9-18, Mon-Sat."


async def test_the_reply_uses_the_knowledge_base_and_records_its_hits(
    temporal_client: Client, e2e_settings: Settings, fake_waha: FakeWaha
) -> None:
    async with live_stack(
        temporal_client,
        e2e_settings,
        tenant_settings=_waha_settings(fake_waha),
        queues=[CONVERSATIONS],
    ) as stack:
        doc = await stack.http.post(
            "/api/v1/knowledge",
            json={
                "title": "Warranty",
                "body": "Every used car comes with a 24 month warranty, including the battery.",
            },
            headers=stack.auth,
        )
        assert doc.status_code == 201, doc.text
        await _post_waha(stack, fake_waha, "What warranty do you give on a used car?")
        conv_id = conversation_workflow_id(stack.tenant_id, "waha", LEAD)
        detail = await stack.wait_for(
            lambda: _conversation(stack, conv_id, min_messages=2), what="the reply"
        )
        reply = detail["transcript"][1]
        assert reply["role"] == "ai"
        assert reply["knowledge_ids"] == [doc.json()["id"]], (reply, detail["escalations"])
        assert "24 month" in _replies_to(fake_waha)[0]["text"]


async def test_a_turn_syncs_the_lead_to_the_crm_the_tenant_connected(
    temporal_client: Client, e2e_settings: Settings, fake_waha: FakeWaha
) -> None:
    with HubSpotFake(token="pat-e2e") as hubspot:
        async with live_stack(
            temporal_client, e2e_settings, tenant_settings=_waha_settings(fake_waha)
        ) as stack:
            connected = await stack.http.post(
                "/api/v1/integrations",
                headers=stack.auth,
                json={
                    "kind": "hubspot",
                    "name": "hs",
                    "base_url": hubspot.url,
                    "credentials": {"access_token": "pat-e2e"},
                },
            )
            assert connected.status_code in (200, 201), connected.text
            await _post_waha(
                stack, fake_waha, "Hi, I'm Jan, jan@example.com, looking for a Skoda Octavia"
            )
            await stack.wait_for(lambda: _replies_to(fake_waha), what="the reply")
            await stack.wait_for(
                lambda: hubspot.by_email("jan@example.com"), what="the lead in HubSpot"
            )
