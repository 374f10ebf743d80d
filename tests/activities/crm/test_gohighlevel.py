"""The GoHighLevel adapter over real HTTP against the wire-level fake: upsert, tags, notes,
restore, delete, errors and rate-limit hints; the connection rules of the kind."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from temporalio.exceptions import ApplicationError

from activities.crm.base import Connection
from activities.crm.gohighlevel import GoHighLevelAdapter, gohighlevel_rate_limit_delay
from activities.crm.plugin import crm_plugin
from models.crm import (
    DEFAULT_BASE_URLS,
    DEFAULT_FIELD_MAPPINGS,
    CrmConnectionView,
    CrmKind,
    LeadSnapshot,
    validate_field_mapping,
)
from models.crm_rules import integration_problems
from tests.fakes.gohighlevel import (
    GoHighLevelFake,
    rate_limit_headers,
)

LOCATION = "ve9EPM428h8vShlRW1KT"
SCORE_FIELD = "6dvNaf7VhkQ9snc5vnjJ"
MAPPING = {
    **DEFAULT_FIELD_MAPPINGS[CrmKind.GOHIGHLEVEL],
    "score": f"customField.{SCORE_FIELD}",
}
LEAD = LeadSnapshot(
    tenant_id="t",
    lead_id="lead-1",
    version=2,
    channel="waha",
    address="4915100000@c.us",
    name="Rosan Deo",
    email="Rosan@Deos.com",
    phone="+18888888888",
    score=80,
    quality="HOT",
    interests=("SUV",),
)


def ghl_conn(
    url: str, *, token: str = "pit-1", mapping: dict[str, str] | None = None
) -> Connection:
    view = CrmConnectionView(
        integration_id="ghl-1",
        tenant_id="t",
        kind=CrmKind.GOHIGHLEVEL,
        name="ghl",
        base_url=url,
        field_mapping=MAPPING if mapping is None else mapping,
    )
    return Connection(
        view=view, credentials={"private_integration_token": token, "location_id": LOCATION}
    )


def values(lead: LeadSnapshot = LEAD) -> dict[str, object]:
    return {
        "email": lead.email,
        "phone": lead.phone,
        "firstName": lead.first_name,
        "lastName": lead.last_name,
        "dnd": lead.do_not_contact,
        f"customField.{SCORE_FIELD}": lead.score,
    }


async def test_upsert_creates_then_updates_with_tags_once() -> None:
    with GoHighLevelFake(token="pit-1", location_id=LOCATION) as ghl:
        c = ghl_conn(ghl.url)
        async with httpx.AsyncClient() as http:
            adapter = GoHighLevelAdapter(http)
            assert await adapter.read(c, LEAD, None) is None
            first = await adapter.upsert(c, LEAD, None, values())
            again = await adapter.upsert(
                c, LEAD, None, values(LEAD.model_copy(update={"score": 90}))
            )
            by_id = await adapter.upsert(c, LEAD, first.remote_id, values())

        assert first.created and not again.created and not by_id.created
        assert first.remote_id == again.remote_id == by_id.remote_id
        assert list(ghl.contacts) == [first.remote_id]
        contact = ghl.contacts[first.remote_id]
        assert (contact["firstName"], contact["lastName"]) == ("Rosan", "Deo")
        assert contact["email"] == "Rosan@Deos.com" and contact["phone"] == "+18888888888"
        assert ghl.custom(first.remote_id, SCORE_FIELD) == 80
        assert contact["tags"] == ["lead-hot", "interest-suv"]
        # the wire: token and Version on every call; upsert with the location and no tags
        # (its `tags` would replace the contact's), custom fields by id as `field_value`
        assert all(r.headers["version"] == "2021-07-28" for r in ghl.requests)
        assert all(r.headers["authorization"] == "Bearer pit-1" for r in ghl.requests)
        upserts = ghl.calls("POST", "^/contacts/upsert$")
        assert len(upserts) == 2
        assert upserts[0].body["locationId"] == LOCATION and "tags" not in upserts[0].body
        assert upserts[0].body["customFields"] == [{"id": SCORE_FIELD, "field_value": 80}]
        # do_not_contact false is not written: lifting an opt-out is not consent
        assert "dnd" not in upserts[0].body
        # a known id is updated in place (PUT), without the location
        [put] = ghl.calls("PUT", f"^/contacts/{first.remote_id}$")
        assert "locationId" not in put.body
        # tags were added once: the later writes found them on the contact
        assert [r.body for r in ghl.calls("POST", "/tags$")] == [
            {"tags": ["lead-hot", "interest-suv"]}
        ]
        assert first.extra == {"tags": ["lead-hot", "interest-suv"]} and by_id.extra == {"tags": []}


async def test_a_stale_id_falls_back_to_the_upsert() -> None:
    with GoHighLevelFake(location_id=LOCATION) as ghl:
        async with httpx.AsyncClient() as http:
            result = await GoHighLevelAdapter(http).upsert(
                ghl_conn(ghl.url, token="pit-test"), LEAD, "goneGoneGone", values()
            )
        assert result.created and list(ghl.contacts) == [result.remote_id]
        assert len(ghl.calls("PUT", "^/contacts/goneGoneGone$")) == 1


async def test_read_finds_by_email_then_phone_and_restore_puts_everything_back() -> None:
    with GoHighLevelFake(location_id=LOCATION) as ghl:
        cid = ghl.add_contact(
            phone="+18888888888",
            firstName="Ro",
            tags=["vip", "lead-hot"],
            custom={SCORE_FIELD: 15},
        )
        c = ghl_conn(ghl.url, token="pit-test")
        lead = LEAD.model_copy(update={"do_not_contact": True})
        async with httpx.AsyncClient() as http:
            adapter = GoHighLevelAdapter(http)
            before = await adapter.read(c, lead, None)
            assert before is not None and before.remote_id == cid
            assert before.values == {
                "dnd": False,
                "email": None,
                "firstName": "Ro",
                "lastName": None,
                "phone": "+18888888888",
                f"customField.{SCORE_FIELD}": 15,
            }
            assert before.extra == {"tags": ["vip", "lead-hot"]}
            written = await adapter.upsert(c, lead, before.remote_id, values(lead))
            assert not written.created and written.extra == {"tags": ["interest-suv"]}
            contact = ghl.contacts[cid]
            assert contact["dnd"] is True and contact["email"] == "Rosan@Deos.com"
            assert contact["tags"] == ["vip", "lead-hot", "interest-suv"]
            await adapter.restore(c, lead, cid, before.values, before.extra)

        contact = ghl.contacts[cid]
        assert contact["dnd"] is False and contact["email"] is None
        assert (contact["firstName"], contact["lastName"]) == ("Ro", None)
        assert ghl.custom(cid, SCORE_FIELD) == 15
        # only the tag leadflow added goes; "lead-hot" was there before the sync
        assert contact["tags"] == ["vip", "lead-hot"]
        # the lookups: e-mail first, then the phone, both URL-encoded
        lookups = ghl.calls("GET", "^/contacts/search/duplicate$")
        assert [r.query for r in lookups[:2]] == [
            {"locationId": LOCATION, "email": "Rosan@Deos.com"},
            {"locationId": LOCATION, "number": "+18888888888"},
        ]


async def test_note_delete_and_connection_test() -> None:
    with GoHighLevelFake(location_id=LOCATION) as ghl:
        cid = ghl.add_contact(email="rosan@deos.com")
        c = ghl_conn(ghl.url, token="pit-test")
        async with httpx.AsyncClient() as http:
            adapter = GoHighLevelAdapter(http)
            note_id = await adapter.add_note(c, LEAD, cid, "Wants a test drive on Saturday.")
            assert note_id is not None
            assert ghl.notes[note_id]["body"] == "Wants a test drive on Saturday."
            assert ghl.notes[note_id]["contactId"] == cid
            detail = await adapter.test_connection(c)
            assert LOCATION in detail and "1 contact custom fields" in detail
            # erasure without a link: found by e-mail (case-insensitive), then deleted
            assert await adapter.delete(c, LEAD, None, {}) is True
            assert ghl.contacts == {}
            # gone is done: nothing to find, a stale id answers 404
            assert await adapter.delete(c, LEAD, None, {}) is False
            assert await adapter.delete(c, LEAD, cid, {}) is False


async def test_errors_are_typed() -> None:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    with GoHighLevelFake(token="pit-1", location_id=LOCATION) as ghl:
        async with httpx.AsyncClient() as http:
            adapter = GoHighLevelAdapter(http, sleep=sleep)
            with pytest.raises(ApplicationError) as denied:
                await adapter.upsert(ghl_conn(ghl.url, token="wrong"), LEAD, None, values())
            assert denied.value.type == "CrmAuthFailed" and denied.value.non_retryable
            assert "Invalid token: access token is invalid" in str(denied.value)

            ghl.reject = {"phone": "+18888888888"}
            with pytest.raises(ApplicationError) as invalid:
                await adapter.upsert(ghl_conn(ghl.url), LEAD, None, values())
            assert invalid.value.type == "CrmValidationError" and invalid.value.non_retryable
            # 422's `message` is a list: every entry is named
            assert "phone is invalid; phone must be a valid value" in str(invalid.value)
            assert ghl.contacts == {}

            ghl.reject = {}
            ghl.fail(
                "POST",
                "^/contacts/upsert$",
                429,
                None,
                headers=rate_limit_headers(interval_ms=1500),
            )
            with pytest.raises(ApplicationError) as limited:
                await adapter.upsert(ghl_conn(ghl.url), LEAD, None, values())
            assert limited.value.type == "CrmRateLimited" and not limited.value.non_retryable
            assert limited.value.next_retry_delay == timedelta(milliseconds=1500)
            # the retry waits out what is left of the window, then goes through
            assert (await adapter.upsert(ghl_conn(ghl.url), LEAD, None, values())).created
            [waited] = sleeps
            assert 0 < waited <= 1.5

            ghl.fail(
                "GET",
                "^/contacts/search/duplicate$",
                502,
                {"statusCode": 502, "message": "Bad Gateway"},
            )
            with pytest.raises(ApplicationError) as down:
                await adapter.read(ghl_conn(ghl.url), LEAD, None)
            assert down.value.type == "CrmUnavailable" and not down.value.non_retryable


async def test_an_answer_that_spends_the_burst_window_holds_the_next_call() -> None:
    with GoHighLevelFake(token="pit-1", location_id=LOCATION) as ghl:
        # a successful answer whose headers say the window is spent (§2)
        ghl.fail(
            "GET",
            "^/contacts/search/duplicate$",
            200,
            {"contact": None},
            headers=rate_limit_headers(interval_ms=10000),
        )
        async with httpx.AsyncClient() as http:
            adapter = GoHighLevelAdapter(http)
            lead = LEAD.model_copy(update={"phone": None})
            assert await adapter.read(ghl_conn(ghl.url), lead, None) is None
            calls = len(ghl.requests)
            # longer than worth waiting in the call: retried by Temporal after the window
            with pytest.raises(ApplicationError) as held:
                await adapter.upsert(ghl_conn(ghl.url), lead, None, values(lead))
            assert held.value.type == "CrmRateLimited"
            delay = held.value.next_retry_delay
            assert delay is not None and timedelta(0) < delay <= timedelta(seconds=10)
            assert len(ghl.requests) == calls  # GoHighLevel was not called
            # another connection (another location) is not held
            other = Connection(
                view=ghl_conn(ghl.url).view.model_copy(update={"integration_id": "ghl-2"}),
                credentials={"private_integration_token": "pit-1", "location_id": LOCATION},
            )
            assert (await adapter.upsert(other, lead, None, values(lead))).created


def _response(status: int, headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=httpx.Request("POST", "http://x"))


def test_rate_limit_delay_from_the_documented_headers() -> None:
    assert gohighlevel_rate_limit_delay(_response(429, rate_limit_headers())) == timedelta(
        seconds=10
    )
    # a spent daily allowance waits an hour, whatever the burst window says
    assert gohighlevel_rate_limit_delay(
        _response(429, rate_limit_headers(daily_remaining=0))
    ) == timedelta(hours=1)
    assert gohighlevel_rate_limit_delay(
        _response(429, {**rate_limit_headers(), "Retry-After": "3"})
    ) == timedelta(seconds=3)
    assert gohighlevel_rate_limit_delay(_response(429, {})) == timedelta(seconds=10)


def test_connection_rules_of_the_kind() -> None:
    assert CrmKind("gohighlevel") is CrmKind.GOHIGHLEVEL
    assert DEFAULT_BASE_URLS[CrmKind.GOHIGHLEVEL] == "https://services.leadconnectorhq.com"
    assert CrmKind.GOHIGHLEVEL.value in crm_plugin().crm_adapters
    assert validate_field_mapping(CrmKind.GOHIGHLEVEL, MAPPING) == []
    problems = validate_field_mapping(
        CrmKind.GOHIGHLEVEL,
        {"score": "customField.bad id", "quality": "lead_quality", "email": "email"},
    )
    assert [(p.field, "not a valid gohighlevel property" in p.problem) for p in problems] == [
        ("score", True),
        ("quality", True),
    ]

    def problems_of(credentials: dict[str, str]) -> list[str]:
        return [
            p.field
            for p in integration_problems(
                CrmKind.GOHIGHLEVEL,
                mapping=dict(DEFAULT_FIELD_MAPPINGS[CrmKind.GOHIGHLEVEL]),
                credentials=credentials,
                base_url=None,
                allowlist=(),
            )
        ]

    assert problems_of({"private_integration_token": "pit", "location_id": "loc"}) == []
    assert problems_of({"access_token": "tok", "location_id": "loc"}) == []
    assert problems_of({"private_integration_token": "pit"}) == ["credentials.location_id"]
    assert problems_of({}) == [
        "credentials.private_integration_token",
        "credentials.location_id",
    ]
