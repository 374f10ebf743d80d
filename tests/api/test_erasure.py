"""Erasing a contact through the API, on the real stack: a running WhatsApp conversation (real
worker, real dev server, the WAHA fake) and its lead synced to HubSpot (the wire-level fake).
After `DELETE /api/v1/leads/{id}?crm=true` the workflows are gone, the rows are gone, the usage
counts are kept and HubSpot saw the delete; a second erasure, another tenant's key and unknown
ids are answered as they should. The rules themselves, repeated and half-done, on both
databases."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlmodel import col, func, select
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.routes import leads as leads_route
from models.audit_tables import AuditEvent
from models.campaign_tables import WhatsAppOptIn
from models.common import Channel, Role, Stage
from models.conversation import RecordTurnInput, lead_id_for
from models.crm import (
    CRM_SYNC_WORKFLOW,
    SYNC_SIGNAL,
    CrmSyncInput,
    SyncRequest,
    crm_sync_workflow_id,
    legacy_crm_sync_workflow_id,
)
from models.crm_tables import CrmLink
from models.db import Database
from models.email_tables import EmailThread
from models.erasure import (
    ERASE_WORKFLOW,
    EraseContactInput,
    contact_scope,
    erase_contact_rows,
    erase_workflow_id,
    legacy_erase_workflow_id,
)
from models.identity_tables import WahaLid
from models.llm_tables import LlmCall
from models.messages import TranscriptEntry
from models.repo import conversations as conversation_repo
from models.repo import leads as lead_repo
from models.settings import Settings
from models.tables import (
    Conversation,
    Escalation,
    Lead,
    LeadScoreRecord,
    Message,
    OutboxMessage,
)
from models.task_queues import CONVERSATIONS, CRM
from models.tenant import TenantSettings
from tests.conftest import make_tenant
from tests.fakes.crm import ChatwootCrmFake, HubSpotFake, PipedriveFake, SalesforceFake
from tests.fakes.waha import FakeWaha
from tests.stack import LiveStack, live_stack

pytestmark = pytest.mark.timeout(180)

LEAD = "31612345678@c.us"
EMAIL = "jan.erase@example.com"


async def _post_waha(stack: LiveStack, fake: FakeWaha, text: str) -> None:
    raw, headers = fake.message_webhook(from_=LEAD, body=text)
    response = await stack.http.post(
        f"/webhooks/waha/{stack.tenant_id}",
        content=raw,
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code in (200, 202), response.text


async def _gone(client: Client, workflow_id: str) -> bool:
    """Deletion is asynchronous on the server: true once describe no longer finds the run."""
    try:
        await client.get_workflow_handle(workflow_id).describe()
    except RPCError as exc:
        assert exc.status == RPCStatusCode.NOT_FOUND, exc
        return True
    return False


async def _count(db: Database, model: Any, *where: Any) -> int:
    async with db.session() as session:
        return int(
            (await session.exec(select(func.count()).select_from(model).where(*where))).one()
        )


async def test_erase_a_contact_with_a_running_conversation_and_a_crm_record(
    temporal_client: Client, settings_factory: Any, sqlite_url: str, fake_waha: FakeWaha
) -> None:
    settings: Settings = settings_factory(sqlite_url, debounce_seconds=0.3)
    with HubSpotFake(token="pat-erase") as hubspot:
        async with live_stack(
            temporal_client,
            settings,
            tenant_settings=TenantSettings(playbook="car_dealership", waha=fake_waha.settings()),
        ) as stack:
            connected = await stack.http.post(
                "/api/v1/integrations",
                headers=stack.auth,
                json={
                    "kind": "hubspot",
                    "name": "hs",
                    "base_url": hubspot.url,
                    "credentials": {"access_token": "pat-erase"},
                },
            )
            assert connected.status_code == 201, connected.text
            await _post_waha(stack, fake_waha, f"Hi, I'm Jan, {EMAIL}, looking for a Skoda Octavia")
            await stack.wait_for(lambda: fake_waha.sent, what="the reply")
            await stack.wait_for(lambda: hubspot.by_email(EMAIL), what="the lead in HubSpot")

            async with stack.db.session() as session:
                (conversation,) = (
                    await session.exec(
                        select(Conversation).where(Conversation.tenant_id == stack.tenant_id)
                    )
                ).all()
            conv_id, lead_id = conversation.id, conversation.lead_id
            assert lead_id is not None
            # The conversation runs (waiting for the lead's next message); so does its CRM sync.
            described = await temporal_client.get_workflow_handle(conv_id).describe()
            assert described.status is not None and described.status.name == "RUNNING"
            crm_sync_id = crm_sync_workflow_id(stack.tenant_id, lead_id)
            await temporal_client.get_workflow_handle(crm_sync_id).describe()
            await stack.wait_for(
                lambda: _count(stack.db, Message, Message.conversation_id == conv_id),
                what="the transcript",
            )
            calls_before = await stack.wait_for(
                lambda: _count(stack.db, LlmCall, LlmCall.conversation_id == conv_id),
                what="the usage rows",
            )
            async with stack.db.session() as session:
                tokens_before = (
                    await session.exec(
                        select(func.sum(LlmCall.input_tokens)).where(
                            LlmCall.tenant_id == stack.tenant_id
                        )
                    )
                ).one()

            # Export first: everything held, the lead's own words included.
            exported = await stack.http.get(f"/api/v1/leads/{lead_id}/export", headers=stack.auth)
            assert exported.status_code == 200, exported.text
            assert "attachment" in exported.headers["content-disposition"]
            document = exported.json()
            assert document["lead"]["id"] == lead_id and document["lead"]["address"] == LEAD
            (conv_doc,) = document["conversations"]
            texts = [m["text"] for m in conv_doc["messages"]]
            assert any("Skoda Octavia" in t for t in texts) and len(texts) >= 2
            assert conv_doc["usage"]["calls"] == calls_before
            assert [link["integration_id"] for link in document["crm_links"]] == [
                connected.json()["id"]
            ]
            assert document["outbox"] and document["scores"]

            # Another tenant's key: the lead does not exist for it (nothing erased, nothing told).
            _, other_key = await make_tenant(stack.db)
            other = {"Authorization": f"Bearer {other_key}"}
            for method, url in (
                ("DELETE", f"/api/v1/leads/{lead_id}?crm=true"),
                ("GET", f"/api/v1/leads/{lead_id}/export"),
                ("GET", f"/api/v1/leads/{lead_id}/erasure"),
            ):
                foreign = await stack.http.request(method, url, headers=other)
                assert foreign.status_code == 404, (method, url, foreign.text)
                assert set(foreign.json()) == {"error", "detail"}
            assert await _count(stack.db, Lead, Lead.id == lead_id) == 1
            assert hubspot.by_email(EMAIL) is not None
            # A value that is no boolean.
            bad = await stack.http.delete(f"/api/v1/leads/{lead_id}?crm=maybe", headers=stack.auth)
            assert bad.status_code == 422, bad.text
            assert await _count(stack.db, Lead, Lead.id == lead_id) == 1

            erased = await stack.http.delete(
                f"/api/v1/leads/{lead_id}?crm=true", headers=stack.auth
            )
            assert erased.status_code == 200, erased.text
            body = erased.json()
            assert body["status"] == "completed"
            assert body["status_url"] == f"/api/v1/leads/{lead_id}/erasure"
            report = body["report"]
            assert report["lead_found"] is True and report["crm_requested"] is True
            assert report["workflows"]["terminated"] >= 1 and report["workflows"]["deleted"] >= 2
            (crm,) = report["crm"]
            assert (crm["kind"], crm["outcome"]) == ("hubspot", "deleted"), crm
            assert report["rows"]["messages"] >= 2 and report["rows"]["leads"] == 1
            assert report["rows"]["llm_calls_anonymised"] == calls_before
            # The erasure's own history names no contact detail.
            history = await temporal_client.get_workflow_handle(
                erase_workflow_id(stack.tenant_id, lead_id)
            ).fetch_history()
            raw = history.to_json()
            assert LEAD.split("@")[0] not in raw and EMAIL not in raw and "Jan" not in raw

            # In the audit log (api/audit_middleware.py): the erasure, by lead id only.
            async def audited() -> list[AuditEvent]:
                async with stack.db.session() as session:
                    rows = await session.exec(
                        select(AuditEvent).where(
                            AuditEvent.tenant_id == stack.tenant_id,
                            AuditEvent.action == "lead.erase",
                            AuditEvent.outcome == "ok",  # the 422 above is there as refused
                        )
                    )
                    return list(rows.all())

            (entry,) = await stack.wait_for(audited, what="the audit entry")
            assert entry.resource_id == lead_id and entry.detail.get("crm") is True

            # HubSpot saw the delete; the record is gone there.
            assert hubspot.calls("DELETE", "/crm/v3/objects/contacts/")
            assert hubspot.by_email(EMAIL) is None
            # The workflows: terminated, their histories deleted.
            # The conversation was running: deleting it terminates it and it is gone at once.
            await stack.wait_for(lambda: _gone(temporal_client, conv_id), what="conv deleted")
            # The rows.
            for model, where in (
                (Lead, Lead.id == lead_id),
                (Conversation, Conversation.id == conv_id),
                (Message, Message.conversation_id == conv_id),
                (LeadScoreRecord, LeadScoreRecord.lead_id == lead_id),
                (Escalation, Escalation.conversation_id == conv_id),
                (OutboxMessage, OutboxMessage.tenant_id == stack.tenant_id),
                (CrmLink, CrmLink.lead_id == lead_id),
                (LlmCall, LlmCall.conversation_id == conv_id),
            ):
                assert await _count(stack.db, model, where) == 0, model
            # Usage keeps its counts: the calls are there, tokens and all, tied to no one.
            async with stack.db.session() as session:
                calls = (
                    await session.exec(select(LlmCall).where(LlmCall.tenant_id == stack.tenant_id))
                ).all()
            assert len(calls) == calls_before
            assert all(c.conversation_id is None and c.output is None for c in calls)
            assert sum(c.input_tokens for c in calls) == tokens_before > 0

            gone = await stack.http.get(f"/api/v1/leads/{lead_id}", headers=stack.auth)
            assert gone.status_code == 404
            assert (
                await stack.http.get(f"/api/v1/leads/{lead_id}/export", headers=stack.auth)
            ).status_code == 404

            # Twice is fine: the last erasure's report, nothing run again.
            again = await stack.http.delete(f"/api/v1/leads/{lead_id}", headers=stack.auth)
            assert again.status_code == 200, again.text
            assert again.json()["report"] == report
            status = await stack.http.get(f"/api/v1/leads/{lead_id}/erasure", headers=stack.auth)
            assert (status.status_code, status.json()["status"]) == (200, "completed")
            assert len(hubspot.calls("DELETE", "/crm/v3/objects/contacts/")) == 1

            # Unknown ids.
            for method, url in (
                ("DELETE", "/api/v1/leads/nope"),
                ("GET", "/api/v1/leads/nope/export"),
                ("GET", "/api/v1/leads/nope/erasure"),
            ):
                unknown = await stack.http.request(method, url, headers=stack.auth)
                assert unknown.status_code == 404, (method, unknown.text)
            assert (await stack.http.delete(f"/api/v1/leads/{lead_id}")).status_code == 401

            # The CRM sync may have finished before the erasure: the dev server deletes a closed
            # run only once its queues' ack level passes the close (measured: up to ~35 s).
            await stack.wait_for(
                lambda: _gone(temporal_client, crm_sync_id), timeout=90, what="sync deleted"
            )


# ---- the rules, on SQLite and PostgreSQL ------------------------------------------------------

T0 = TranscriptEntry(
    role=Role.LEAD,
    text="Hi, I'm Ana",
    at=datetime(2025, 3, 1, tzinfo=UTC),
    provider_message_id="w-1",
)


async def _recorded_lead(db: Database, tenant_id: str, contact: str = LEAD) -> tuple[str, str]:
    conversation_id = f"conv:{tenant_id}:waha:test-{contact[:4]}"
    record = RecordTurnInput(
        conversation_id=conversation_id,
        tenant_id=tenant_id,
        channel=Channel.WAHA,
        contact=contact,
        contact_name="Ana Lima",
        turn_key="turn-1",
        entries=(T0,),
        stage=Stage.QUALIFYING,
        lead_id=lead_id_for(tenant_id, Channel.WAHA, contact),
        fields={"email": "ana@example.com"},
        turns=1,
    )
    async with db.session() as session:
        assert await conversation_repo.record_turn(session, record=record) is True
        session.add(WahaLid(tenant_id=tenant_id, lid=f"{contact[:11]}0@lid", phone=contact))
        session.add(WhatsAppOptIn(tenant_id=tenant_id, lead_id=record.lead_id, source="form"))
        # Mail we sent them: in this conversation, and to their e-mail from another one.
        for message_id, conversation, to in (
            (f"<a.{contact}@dealer.example>", conversation_id, contact),
            (f"<b.{contact}@dealer.example>", None, "ana@example.com"),
        ):
            session.add(
                EmailThread(
                    tenant_id=tenant_id,
                    message_id=message_id,
                    conversation_id=conversation,
                    contact=to,
                )
            )
        await session.commit()
    return record.lead_id, conversation_id


async def test_erasing_rows_is_repeatable_and_touches_no_one_else(db: Database) -> None:
    tid, _ = await make_tenant(db)
    other, _ = await make_tenant(db)
    lead_id, conv_id = await _recorded_lead(db, tid)
    other_lead, other_conv = await _recorded_lead(db, other)

    async with db.session() as session:
        first = await erase_contact_rows(session, tenant_id=tid, lead_id=lead_id)
    assert first.lead_found is True
    assert first.counts["leads"] == 1 and first.counts["messages"] == 1
    assert first.counts["waha_lids"] == 1
    assert first.counts["email_threads"] == 2 and first.counts["whatsapp_opt_ins"] == 1
    # A crash after the commit, then the retry: nothing left, nothing more deleted.
    async with db.session() as session:
        second = await erase_contact_rows(session, tenant_id=tid, lead_id=lead_id)
        assert await contact_scope(session, tenant_id=tid, lead_id=lead_id) is None
    assert second.lead_found is False and second.counts == {}
    # Another tenant's id erases nothing, and the other tenant's contact is untouched.
    async with db.session() as session:
        foreign = await erase_contact_rows(session, tenant_id=tid, lead_id=other_lead)
    assert foreign.lead_found is False
    assert await _count(db, Lead, Lead.id == other_lead) == 1
    assert await _count(db, Message, Message.conversation_id == other_conv) == 1
    assert await _count(db, WahaLid, col(WahaLid.tenant_id) == other) == 1
    assert await _count(db, EmailThread, col(EmailThread.tenant_id) == other) == 2
    assert await _count(db, WhatsAppOptIn, col(WhatsAppOptIn.tenant_id) == other) == 1
    assert await _count(db, Message, Message.conversation_id == conv_id) == 0


async def test_erasure_in_every_crm_finishes_after_a_first_attempt_was_lost(
    temporal_client: Client,
    settings_factory: Any,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The four CRM adapters' deletes, a CRM that refuses (reported with its record's id, the
    local erasure done anyway), a CRM whose record is already gone (a first attempt got that
    far), the 202 answer and its status URL, and an erasure lost halfway that a second request
    finishes."""
    monkeypatch.setattr(leads_route, "ERASE_WAIT_SECONDS", 1.0)
    settings: Settings = settings_factory(sqlite_url)
    with (
        HubSpotFake(token="pat") as hs,
        SalesforceFake() as sf,
        PipedriveFake(api_token="pd") as pd,
        ChatwootCrmFake(api_token="cw", account_id=1) as cw,
    ):
        async with live_stack(temporal_client, settings) as stack:
            for kind, base, credentials in (
                ("hubspot", hs.url, {"access_token": "pat"}),
                (
                    "salesforce",
                    sf.url,
                    {"client_id": "client-key", "client_secret": "client-secret"},
                ),
                ("pipedrive", pd.url, {"api_token": "pd", "create": "deal"}),
                ("chatwoot", cw.url, {"api_token": "cw", "account_id": 1}),
            ):
                created = await stack.http.post(
                    "/api/v1/integrations",
                    headers=stack.auth,
                    json={"kind": kind, "name": kind, "base_url": base, "credentials": credentials},
                )
                assert created.status_code == 201, created.text
            lead_id, _ = await _recorded_lead(stack.db, stack.tenant_id)
            synced = await stack.http.post(f"/api/v1/leads/{lead_id}/sync", headers=stack.auth)
            result: Any = await temporal_client.get_workflow_handle(
                synced.json()["workflow_id"]
            ).result()
            assert result["status"] == "succeeded", result
            assert len(hs.contacts) == len(sf.leads) == len(pd.persons) == len(cw.contacts) == 1
            assert len(pd.deals) == 1
            (person_id,) = pd.persons

            # A first attempt that no worker runs, then is lost (terminated, as a crash or an
            # operator could leave it): 202 with where to look, then "failed".
            await stack.stop_worker()
            first = await stack.http.delete(f"/api/v1/leads/{lead_id}?crm=true", headers=stack.auth)
            assert first.status_code == 202, first.text
            status_url = first.json()["status_url"]
            assert first.headers["location"] == status_url and first.json()["status"] == "running"
            polled = await stack.http.get(status_url, headers=stack.auth)
            assert (polled.status_code, polled.json()["status"]) == (202, "running")
            await temporal_client.get_workflow_handle(
                erase_workflow_id(stack.tenant_id, lead_id)
            ).terminate("lost")
            lost = await stack.http.get(status_url, headers=stack.auth)
            assert (lost.status_code, lost.json()["status"]) == (200, "failed"), lost.text
            assert "erase again" in lost.json()["detail"]
            assert await _count(stack.db, Lead, Lead.id == lead_id) == 1

            # Since then: HubSpot's record is gone, and Pipedrive refuses to delete people.
            hs.contacts.clear()
            pd.fail("DELETE", r"/api/v2/persons/", 403, {"success": False, "error": "forbidden"})
            await stack.start_worker()
            again = await stack.http.delete(f"/api/v1/leads/{lead_id}?crm=true", headers=stack.auth)
            assert again.status_code in (200, 202), again.text

            async def finished() -> dict[str, Any] | None:
                answer = await stack.http.get(status_url, headers=stack.auth)
                body: dict[str, Any] = answer.json()
                return body if body["status"] == "completed" else None

            done = await stack.wait_for(finished, what="the erasure")
            outcomes = {c["kind"]: c for c in done["report"]["crm"]}
            assert {k: c["outcome"] for k, c in outcomes.items()} == {
                "hubspot": "not_found",
                "salesforce": "deleted",
                "pipedrive": "failed",
                "chatwoot": "deleted",
            }
            assert outcomes["pipedrive"]["remote_id"] == str(person_id)
            assert "403" in outcomes["pipedrive"]["detail"]
            assert not sf.leads and not cw.contacts and not pd.deals
            assert list(pd.persons) == [person_id]  # refused: left for the operator
            # The local erasure went on regardless.
            assert await _count(stack.db, Lead, Lead.id == lead_id) == 0
            assert await _count(stack.db, CrmLink, CrmLink.lead_id == lead_id) == 0


async def test_an_erasure_started_before_hashed_ids_is_joined_and_purges_the_legacy_sync(
    temporal_client: Client, settings_factory: Any, sqlite_url: str
) -> None:
    """Upgrading with an erasure running under the legacy id `erase:{tenant}:{lead}`: a DELETE
    joins it (two erasures of one lead at once would race on its rows), its status is found
    under that id, and the lead's legacy CRM sync `crm:{tenant}:{lead}` is purged like the
    hashed one."""
    settings: Settings = settings_factory(sqlite_url)
    async with live_stack(temporal_client, settings, start_worker=False) as stack:
        async with stack.db.session() as session:
            lead = await lead_repo.create_lead(
                session, tenant_id=stack.tenant_id, channel="waha", address=LEAD, name="Jan"
            )
            lead_id = lead.id
        legacy_sync = legacy_crm_sync_workflow_id(stack.tenant_id, lead_id)
        await temporal_client.start_workflow(
            CRM_SYNC_WORKFLOW,
            CrmSyncInput(tenant_id=stack.tenant_id, lead_id=lead_id, coalesce_seconds=60),
            id=legacy_sync,
            task_queue=CRM,
            start_signal=SYNC_SIGNAL,
            start_signal_args=[SyncRequest(reason="before the upgrade")],
        )
        legacy_erase = legacy_erase_workflow_id(stack.tenant_id, lead_id)
        assert legacy_erase == f"erase:{stack.tenant_id}:{lead_id}"
        await temporal_client.start_workflow(
            ERASE_WORKFLOW,
            EraseContactInput(tenant_id=stack.tenant_id, lead_id=lead_id),
            id=legacy_erase,
            task_queue=CONVERSATIONS,
        )
        stack.started.append(legacy_erase)

        joined = await stack.http.delete(f"/api/v1/leads/{lead_id}", headers=stack.auth)
        assert joined.status_code == 202, joined.text
        assert joined.json()["status"] == "running"
        assert await _gone(temporal_client, erase_workflow_id(stack.tenant_id, lead_id))
        polled = await stack.http.get(joined.json()["status_url"], headers=stack.auth)
        assert (polled.status_code, polled.json()["status"]) == (202, "running")

        await stack.start_worker()

        async def finished() -> dict[str, Any] | None:
            answer = await stack.http.get(joined.json()["status_url"], headers=stack.auth)
            body: dict[str, Any] = answer.json()
            return body if body["status"] == "completed" else None

        done = await stack.wait_for(finished, what="the legacy erasure")
        assert done["report"]["lead_found"] is True
        assert await _count(stack.db, Lead, Lead.id == lead_id) == 0
        await stack.wait_for(lambda: _gone(temporal_client, legacy_sync), what="the legacy sync")
        # Erased: a repeat answers the legacy erasure's report, and no new erasure was started.
        again = await stack.http.delete(f"/api/v1/leads/{lead_id}", headers=stack.auth)
        assert (again.status_code, again.json()["status"]) == (200, "completed"), again.text
        assert await _gone(temporal_client, erase_workflow_id(stack.tenant_id, lead_id))
