"""Adapters and error mapping over real HTTP against the fakes; rate-limit hints; breakers."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.crm.activities import BREAKER_FAIL_MAX, CrmActivities
from activities.crm.base import Connection, raise_for_response, rate_limit_delay
from activities.crm.chatwoot import ChatwootAdapter
from activities.crm.plugin import crm_plugin
from activities.crm.salesforce import SalesforceAdapter
from models.crm import CrmConnectionView, CrmKind, CrmReadInput, LeadSnapshot
from models.db import Database
from models.repo import crm as crm_repo
from models.settings import Settings
from tests.conftest import TEST_SECRET, make_tenant
from tests.fakes.crm import ChatwootCrmFake, HubSpotFake, SalesforceFake, hubspot_rate_limit_body

LEAD = LeadSnapshot(
    tenant_id="t",
    lead_id="lead-1",
    version=3,
    channel="chatwoot",
    address="x",
    name="Ana Lima",
    email="ana@example.com",
    score=80,
    quality="HOT",
    interests=("SUV", "financing"),
    chatwoot_conversation_ids=("42",),
)


def conn(
    kind: CrmKind, url: str, credentials: dict[str, object], mapping: dict[str, str]
) -> Connection:
    view = CrmConnectionView(
        integration_id=f"{kind.value}-1",
        tenant_id="t",
        kind=kind,
        name="x",
        base_url=url,
        field_mapping=mapping,
    )
    return Connection(view=view, credentials=credentials)


def response(
    status: int, *, json: object = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    return httpx.Response(
        status, json=json, headers=headers, request=httpx.Request("GET", "http://x")
    )


def test_rate_limit_hints_of_every_vendor() -> None:
    assert rate_limit_delay(response(429, json=hubspot_rate_limit_body())) == timedelta(seconds=1)
    assert rate_limit_delay(response(429, headers={"Retry-After": "7"})) == timedelta(seconds=7)
    assert rate_limit_delay(
        response(
            429,
            json={"success": False},
            headers={"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "2"},
        )
    ) == timedelta(seconds=2)
    assert rate_limit_delay(
        response(
            403,
            json=[{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "limit"}],
            headers={"Sforce-Limit-Info": "api-usage=5000/5000"},
        )
    ) == timedelta(hours=1)


def test_errors_are_typed() -> None:
    c = conn(CrmKind.HUBSPOT, "http://x", {}, {})
    with pytest.raises(ApplicationError) as limited:
        raise_for_response(response(429, json=hubspot_rate_limit_body()), c, "upsert")
    assert limited.value.type == "CrmRateLimited" and not limited.value.non_retryable
    assert limited.value.next_retry_delay == timedelta(seconds=1)
    with pytest.raises(ApplicationError) as invalid:
        raise_for_response(
            response(
                400,
                json={
                    "status": "error",
                    "message": "Property values were not valid",
                    "errors": [{"message": "bad", "in": "leadflow_score"}],
                    "category": "VALIDATION_ERROR",
                },
            ),
            c,
            "upsert",
        )
    assert invalid.value.non_retryable and invalid.value.type == "CrmValidationError"
    assert "leadflow_score: bad" in str(invalid.value)
    with pytest.raises(ApplicationError) as down:
        raise_for_response(response(502, json=None), c, "upsert")
    assert not down.value.non_retryable


async def test_salesforce_token_is_cached_and_refreshed_on_invalid_session() -> None:
    with SalesforceFake() as sf:
        sf.add_lead(
            {"LastName": "Lima", "Company": "X", "Leadflow_Id__c": "lead-1", "Rating": "Cold"}
        )
        c = conn(
            CrmKind.SALESFORCE,
            sf.url,
            {"client_id": "client-key", "client_secret": "client-secret"},
            {"quality": "Rating"},
        )
        async with httpx.AsyncClient() as http:
            adapter = SalesforceAdapter(http)
            first = await adapter.read(c, LEAD, None)
            await adapter.read(c, LEAD, None)
            assert sf.tokens_issued == 1  # cached
            sf.expire_tokens()
            again = await adapter.read(c, LEAD, None)
            assert sf.tokens_issued == 2  # refreshed once on 401 INVALID_SESSION_ID
            assert first is not None and again is not None and again.values == {"Rating": "Cold"}
            bad = conn(
                CrmKind.SALESFORCE, sf.url, {"client_id": "client-key", "client_secret": "no"}, {}
            )
            with pytest.raises(ApplicationError) as refused:
                await SalesforceAdapter(http).read(bad, LEAD, None)
            assert refused.value.type == "CrmAuthFailed"


async def test_chatwoot_labels_are_merged_and_restored() -> None:
    with ChatwootCrmFake(api_token="cw") as cw:
        contact = cw.add_contact("Ana", "ana@example.com", plan="gold", lead_score=10)
        cw.labels["42"] = ["vip"]
        c = conn(
            CrmKind.CHATWOOT,
            cw.url,
            {"api_token": "cw", "account_id": 1},
            {"score": "lead_score", "quality": "lead_quality", "interests": "interests"},
        )
        async with httpx.AsyncClient() as http:
            adapter = ChatwootAdapter(http)
            before = await adapter.read(c, LEAD, None)
            assert before is not None and before.extra == {"labels": {"42": ["vip"]}}
            await adapter.upsert(
                c,
                LEAD,
                before.remote_id,
                {"lead_score": 80, "lead_quality": "HOT", "interests": "SUV;financing"},
            )
            assert cw.labels["42"] == ["vip", "lead-hot", "interest-suv", "interest-financing"]
            assert cw.contacts[contact]["custom_attributes"] == {
                "plan": "gold",
                "lead_score": 80,
                "lead_quality": "HOT",
                "interests": "SUV;financing",
            }
            await adapter.restore(c, LEAD, before.remote_id, before.values, before.extra)
            assert cw.labels["42"] == ["vip"]
            assert cw.contacts[contact]["custom_attributes"]["lead_score"] == 10


async def test_circuit_opens_after_repeated_failures(
    sqlite_db: Database, settings_factory: object, sqlite_url: str
) -> None:
    settings: Settings = settings_factory(sqlite_url)  # type: ignore[operator]
    tid, _ = await make_tenant(sqlite_db)
    with HubSpotFake(token="pat") as hs:
        hs.fail("GET", "/contacts/", 503, {"status": "error", "message": "down"}, times=100)
        async with sqlite_db.session() as s:
            row = await crm_repo.create_integration(
                s,
                tenant_id=tid,
                kind=CrmKind.HUBSPOT,
                name="hs",
                base_url=hs.url,
                credentials={"access_token": "pat"},
                secret_key=TEST_SECRET,
            )
            view = crm_repo.integration_view(row)
        async with httpx.AsyncClient() as http:
            acts = CrmActivities(
                settings=settings, db=sqlite_db, http=http, adapters=crm_plugin().crm_adapters
            )
            lead = LEAD.model_copy(update={"tenant_id": tid})
            errors = []
            for _ in range(BREAKER_FAIL_MAX + 2):
                with pytest.raises(ApplicationError) as err:
                    await ActivityEnvironment().run(
                        acts.read_crm_record, CrmReadInput(connection=view, lead=lead)
                    )
                errors.append(err.value.type)
        calls = len(hs.calls("GET", "/contacts/"))
    assert errors[0] == "CrmUnavailable"
    assert errors[-1] == "CrmCircuitOpen"
    assert calls == BREAKER_FAIL_MAX  # once open, the CRM is not called at all
