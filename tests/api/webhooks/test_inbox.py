"""The webhook inbox: a message is stored before the webhook is answered, so an answer that
cannot wait for Temporal (budget spent, Temporal refusing or down, the API restarted) still
loses nothing (api/inbox.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.exc import OperationalError
from sqlmodel import select
from temporalio.client import Client

from api import inbox as api_inbox
from api.app import create_app
from api.inbox import InboxForwarder
from models.common import Channel
from models.conversation import conversation_workflow_id
from models.db import Database
from models.inbox_tables import InboxMessage
from models.messages import InboundMessage
from models.repo import inbox as inbox_repo
from models.settings import Settings
from models.tables import utcnow
from tests.api.webhooks.conftest import Harness, payload, payload_json
from tests.conftest import make_tenant

LEAD = "11111111111@c.us"


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


async def inbox_rows(db: Database) -> list[InboxMessage]:
    async with db.session() as session:
        return list((await session.exec(select(InboxMessage))).all())


async def make_due(db: Database) -> None:
    """Skip the retry backoff: every row may be swept now."""
    async with db.session() as session:
        await session.exec(update(InboxMessage).values(lease_until=utcnow()))
        await session.commit()


async def refusing_client(temporal: Client) -> Client:
    return await Client.connect(
        temporal.service_client.config.target_host,
        namespace="no-such-namespace",
        data_converter=temporal.data_converter,
    )


async def test_an_answer_that_cannot_wait_is_202_queued_and_delivered_after(
    harness: Harness,
) -> None:
    tenant, _ = await harness.tenant()
    harness.app.state.leadflow.settings = harness.app.state.leadflow.settings.model_copy(
        update={"webhook_ack_budget_seconds": 0.0}
    )
    harness.app.state.leadflow.inbox.settings = harness.app.state.leadflow.settings
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=payload("waha_message.json"))
    assert resp.status_code == 202, resp.text
    wid = conversation_workflow_id(tenant, "waha", LEAD)
    assert resp.json()["status"] == "queued"
    assert resp.json()["delivered"][0]["workflow_id"] == wid

    async def signalled() -> bool:
        try:
            return len(await harness.signals(wid)) == 1
        except Exception:
            return False

    await eventually(signalled, "the queued message in Temporal")
    await eventually(lambda: _empty(harness.db), "the inbox emptied")


async def _empty(db: Database) -> bool:
    return not await inbox_rows(db)


async def test_temporal_refusing_keeps_the_message_until_it_takes_it(harness: Harness) -> None:
    tenant, _ = await harness.tenant()
    state = harness.app.state.leadflow
    state.temporal = await refusing_client(harness.temporal)
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=payload("waha_message.json"))
    assert resp.status_code == 503  # within the budget: the provider retries too
    [row] = await inbox_rows(harness.db)
    assert row.attempts == 1 and row.last_error and "no-such-namespace" in row.last_error
    assert row.lease_until > utcnow(), "backing off before the next attempt"
    await harness.assert_not_started(conversation_workflow_id(tenant, "waha", LEAD))
    waiting = (await harness.http.get("/ready")).json()["inbox"]
    assert waiting["waiting"] == 1 and waiting["oldest_seconds"] >= 0

    state.temporal = harness.temporal  # Temporal takes deliveries again
    await make_due(harness.db)
    assert await state.inbox.sweep_once() == 1
    await eventually(lambda: _empty(harness.db), "the delivered row deleted")
    assert (await harness.http.get("/ready")).json()["inbox"]["waiting"] == 0
    ((name, (msg,)),) = await harness.signals(conversation_workflow_id(tenant, "waha", LEAD))
    assert name == "inbound" and msg["text"] == "Yes!"


async def test_messages_an_api_acknowledged_before_it_died_are_delivered_on_start(
    sqlite_db: Database,
    sqlite_url: str,
    settings_factory: Callable[..., Settings],
    temporal_client: Client,
) -> None:
    tenant, _ = await make_tenant(sqlite_db)
    messages = [
        InboundMessage(
            tenant_id=tenant,
            channel=Channel.WAHA,
            contact=LEAD,
            provider_message_id=f"m{i}",
            text=f"message {i}",
            sent_at=utcnow(),
        )
        for i in range(3)
    ]
    async with sqlite_db.session() as session:
        # As the dead API left them: stored and acknowledged, its lease over, not delivered.
        await inbox_repo.put(session, messages, lease=timedelta(seconds=-1))
    app = create_app(settings_factory(sqlite_url))
    async with app.router.lifespan_context(app):
        app.state.leadflow.temporal = temporal_client
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as http:
            started = Harness(app=app, http=http, db=sqlite_db, temporal=temporal_client)
            wid = conversation_workflow_id(tenant, "waha", LEAD)

            async def all_three() -> bool:
                try:
                    return len(await started.signals(wid)) == 3
                except Exception:
                    return False

            await eventually(all_three, "the sweeper delivering what the dead API stored")
            texts = [args[0]["text"] for _, args in await started.signals(wid)]
            assert texts == ["message 0", "message 1", "message 2"], "in their order"
            await eventually(lambda: _empty(sqlite_db), "the inbox emptied")


async def test_a_message_that_cannot_be_stored_is_503_and_starts_nothing(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant, _ = await harness.tenant()

    def broken_write(*_: object, **__: object) -> None:
        raise OperationalError("INSERT INTO inbox", {}, Exception("disk I/O error"))

    monkeypatch.setattr(inbox_repo, "write", broken_write)
    resp = await harness.http.post(f"/webhooks/waha/{tenant}", content=payload("waha_message.json"))
    assert resp.status_code == 503
    assert resp.json()["error"] == "could not store the message; retry later"
    await harness.assert_not_started(conversation_workflow_id(tenant, "waha", LEAD))


async def test_delivered_rows_are_deleted_in_the_next_webhooks_transaction(
    db: Database,
    database_url: str,
    settings_factory: Callable[..., Settings],
    temporal_client: Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One transaction per write, on SQLite (a thread hop) and PostgreSQL (run_sync): a
    webhook's rows go in together with the DELETE of what was delivered meanwhile, so a steady
    stream of webhooks costs one commit each; what is left is deleted on stop."""
    tenant, _ = await make_tenant(db)
    writes: list[tuple[list[str], list[int]]] = []
    stored: list[Any] = []
    original = inbox_repo.write

    def recording(connection: Any, rows: Any, delivered: Any, keys: Any) -> list[Any]:
        texts = [InboundMessage.model_validate_json(r["message"]).text for r in rows]
        writes.append((texts, list(delivered)))
        ids = original(connection, rows, delivered, keys)
        stored.extend(ids)
        return ids

    monkeypatch.setattr(inbox_repo, "write", recording)

    async def client() -> Client:
        return temporal_client

    inbox = InboxForwarder(settings_factory(database_url), db, client)

    def message(i: int) -> InboundMessage:
        return InboundMessage(
            tenant_id=tenant,
            channel=Channel.WAHA,
            contact=LEAD,
            provider_message_id=f"m{i}",
            text=f"message {i}",
            sent_at=utcnow(),
        )

    in_time, [first], no_duplicates = await inbox.accept([message(0)])
    assert in_time and first.signal == "inbound" and no_duplicates == []
    [row] = await inbox_rows(db)  # delivered; its DELETE waits for company (or half a second)
    in_time, _, _ = await inbox.accept([message(1)])
    assert in_time
    await inbox.stop()
    assert stored[0] == row.id
    assert writes == [(["message 0"], []), (["message 1"], [row.id]), ([], [stored[1]])]
    assert await inbox_rows(db) == []
    texts = [args[0]["text"] for _, args in await _signals(temporal_client, first.workflow_id)]
    assert texts == ["message 0", "message 1"]


async def _signals(temporal: Client, workflow_id: str) -> list[tuple[str, list[Any]]]:
    harness = Harness(app=None, http=None, db=None, temporal=temporal)  # type: ignore[arg-type]
    return await harness.signals(workflow_id)


async def test_while_temporal_is_slower_than_the_budget_answers_do_not_wait_for_it(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst: once deliveries take longer than the budget, every webhook would wait the whole
    budget for nothing (the message is stored). It is answered at once until Temporal is quick
    again, and then waited for again."""
    tenant, _ = await harness.tenant()
    state = harness.app.state.leadflow
    state.settings = state.settings.model_copy(update={"webhook_ack_budget_seconds": 0.5})
    state.inbox.settings = state.settings
    real = api_inbox.deliver_inbound
    calls = 0

    async def first_one_slow(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(2.0)  # four times the budget
        return await real(*args, **kwargs)

    monkeypatch.setattr(api_inbox, "deliver_inbound", first_one_slow)

    async def post(n: int) -> str:
        body = payload_json("waha_message.json")
        body["payload"]["id"] = f"true_{LEAD}_SLOW{n:04d}"
        resp = await harness.http.post(f"/webhooks/waha/{tenant}", json=body)
        assert resp.status_code == 202, resp.text
        status: str = resp.json()["status"]
        return status

    assert await post(0) == "queued"  # waited the budget, Temporal was slower
    await eventually(lambda: _empty(harness.db), "the slow delivery done")
    # Temporal is quick again, but the last deliveries were slow: no waiting for a while...
    assert await post(1) == "queued"
    await eventually(lambda: _empty(harness.db), "the second delivery done")
    # ...until the quick deliveries bring the smoothed time under the budget.
    statuses = []
    for n in range(2, 14):
        statuses.append(await post(n))
        await eventually(lambda: _empty(harness.db), f"delivery {n} done")
    assert statuses[0] == "queued" and statuses[-1] == "accepted", statuses
    wid = conversation_workflow_id(tenant, "waha", LEAD)
    assert len(await harness.signals(wid)) == 14, "every message delivered once"
