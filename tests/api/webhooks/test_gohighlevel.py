"""GoHighLevel contact webhooks in: Ed25519 and RSA signatures over the raw body, replay and
duplicate protection, do-not-contact closing the conversation (a real signal on the dev
server), the echo of leadflow's own write ignored, deletion forgetting the link, bad input 4xx."""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from temporalio.testing import ActivityEnvironment

from activities.crm.activities import CrmActivities
from activities.crm.plugin import crm_plugin
from models.crm import DEFAULT_FIELD_MAPPINGS, CrmKind, CrmWriteInput, idempotency_key
from models.repo import crm as crm_repo
from models.repo import leads as lead_repo
from tests.api.webhooks.conftest import Harness
from tests.api.webhooks.test_crm_webhooks import lead_of, running_conversation, setup
from tests.fakes.gohighlevel import GoHighLevelFake

LOCATION = "ve9EPM428h8vShlRW1KT"
MAPPING = {**DEFAULT_FIELD_MAPPINGS[CrmKind.GOHIGHLEVEL], "name": "name"}
ED_KEY = Ed25519PrivateKey.generate()
ED_PUBLIC_PEM = (
    ED_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_PUBLIC_PEM = (
    RSA_KEY.public_key()
    .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    .decode()
)
CREDENTIALS = {
    "private_integration_token": "pit-1",
    "location_id": LOCATION,
    "webhook_public_key": ED_PUBLIC_PEM,
    "webhook_rsa_public_key": RSA_PUBLIC_PEM,
}


def event(kind: str, contact_id: str = "777", **changes: Any) -> dict[str, Any]:
    """The documented ContactCreate example (§5) as `kind`, about `contact_id`, with the
    signed-body fields `timestamp` and `webhookId` of the authentication doc; e-mail, name and
    phone are those of the test's lead (no phone)."""
    body: dict[str, Any] = {
        "type": kind,
        "locationId": LOCATION,
        "id": contact_id,
        "address1": "3535 1st St N",
        "city": "ruDolomitebika",
        "state": "AL",
        "companyName": "Loram ipsum",
        "country": "DE",
        "source": "xyz form",
        "dateAdded": "2021-11-26T12:41:02.193Z",
        "dateOfBirth": "2000-01-05T00:00:00.000Z",
        "dnd": False,
        "email": "lia@example.com",
        "name": "Lia",
        "firstName": "Lia",
        "lastName": "Deo",
        "phone": None,
        "postalCode": "452001",
        "tags": ["id magna sed Lorem", "Duis dolor commodo aliqua"],
        "website": "https://www.google.com/",
        "attachments": [],
        "assignedTo": "nmFmQEsNgz6AVpgLVUJ0",
        "customFields": [{"id": "BcdmQEsNgz6AVpgLVUJ0", "value": "XYZ Corp"}],
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "webhookId": secrets.token_hex(8),
    }
    body.update(changes)
    return body


def ed_signed(body: bytes) -> dict[str, str]:
    return {
        "x-ghl-signature": base64.b64encode(ED_KEY.sign(body)).decode(),
        "Content-Type": "application/json",
    }


def rsa_signed(body: bytes, key: rsa.RSAPrivateKey = RSA_KEY) -> dict[str, str]:
    signature = key.sign(body, padding.PKCS1v15(), hashes.SHA256())
    return {
        "x-wh-signature": base64.b64encode(signature).decode(),
        "Content-Type": "application/json",
    }


async def post(h: Harness, tid: str, payload: dict[str, Any], scheme: str = "ed") -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = ed_signed(body) if scheme == "ed" else rsa_signed(body)
    return await h.http.post(f"/webhooks/gohighlevel/{tid}", content=body, headers=headers)


async def test_dnd_update_sets_do_not_contact_and_closes_the_conversation(
    harness: Harness,
) -> None:
    tid, _, lead_id, conv_id = await setup(harness, CrmKind.GOHIGHLEVEL, CREDENTIALS, MAPPING)
    handle = await running_conversation(harness, tid, conv_id)
    try:
        # a contact update that still shows dnd false lifts nothing and sets nothing
        plain = await post(harness, tid, event("ContactUpdate"), scheme="rsa")
        assert plain.status_code == 200, plain.text
        assert (await lead_of(harness, tid, lead_id)).version == 1
        response = await post(harness, tid, event("ContactDndUpdate", dnd=True), scheme="rsa")
        assert response.status_code == 200, response.text
        report = response.json()
        assert report["conversations_closed"] == 1 and report["leads_updated"] == [lead_id]
        lead = await lead_of(harness, tid, lead_id)
        assert lead.do_not_contact is True and lead.version == 2
        signals = await harness.signals(conv_id)
        assert signals == [("close", [{"reason": "do not contact set in gohighlevel 'crm'"}])]
        # a contact update showing dnd false does not undo the opt-out ...
        await post(harness, tid, event("ContactUpdate", dnd=False))
        assert (await lead_of(harness, tid, lead_id)).do_not_contact is True
        # ... the DND event itself does
        await post(harness, tid, event("ContactDndUpdate", dnd=False))
        assert (await lead_of(harness, tid, lead_id)).do_not_contact is False
    finally:
        await handle.terminate()


async def test_signatures_replays_and_bad_input(harness: Harness) -> None:
    tid, _, lead_id, _ = await setup(harness, CrmKind.GOHIGHLEVEL, CREDENTIALS, MAPPING)
    path = f"/webhooks/gohighlevel/{tid}"
    body = json.dumps(event("ContactDndUpdate", dnd=True)).encode()
    other_key = Ed25519PrivateKey.generate()
    forged = {
        "x-ghl-signature": base64.b64encode(other_key.sign(body)).decode(),
        "Content-Type": "application/json",
    }
    wrong = await harness.http.post(path, content=body, headers=forged)
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid signature"
    forged_rsa = rsa_signed(body, rsa.generate_private_key(public_exponent=65537, key_size=2048))
    assert (await harness.http.post(path, content=body, headers=forged_rsa)).status_code == 401
    tampered = body.replace(b'"dnd": true', b'"dnd": false')
    assert tampered != body
    changed = await harness.http.post(path, content=tampered, headers=ed_signed(body))
    assert changed.status_code == 401
    missing = await harness.http.post(
        path, content=body, headers={"Content-Type": "application/json"}
    )
    assert missing.status_code == 401 and missing.json()["error"] == "missing signature"
    garbage = await harness.http.post(
        path, content=body, headers={"x-ghl-signature": "%%%", "Content-Type": "application/json"}
    )
    assert garbage.status_code == 401
    old = (datetime.now(UTC) - timedelta(minutes=6)).isoformat()
    expired = await post(harness, tid, event("ContactDndUpdate", dnd=True, timestamp=old))
    assert expired.status_code == 401 and expired.json()["error"] == "expired timestamp"
    assert (await lead_of(harness, tid, lead_id)).do_not_contact is False

    unknown = await harness.http.post(
        "/webhooks/gohighlevel/no-such-tenant", content=body, headers=ed_signed(body)
    )
    assert unknown.status_code == 404
    for bad in (b"[1, 2]", b'{"no": "type"}', b"{not json"):
        malformed = await harness.http.post(path, content=bad, headers=ed_signed(bad))
        assert malformed.status_code == 422, bad
    no_id = await post(harness, tid, event("ContactUpdate", id=None))
    assert no_id.status_code == 422
    # events that are not about a contact, or about a location not connected: acknowledged
    message = {
        "type": "InboundMessage",
        "locationId": LOCATION,
        "body": "This is a test message",
        "contactId": "777",
        "messageType": "SMS",
    }
    ignored = await post(harness, tid, message)
    assert ignored.status_code == 200 and ignored.json()["ignored"] == 1
    elsewhere = await post(harness, tid, event("ContactDndUpdate", dnd=True, locationId="other"))
    assert elsewhere.status_code == 200 and elsewhere.json()["ignored"] == 1
    assert (await lead_of(harness, tid, lead_id)).do_not_contact is False

    # the same webhookId twice: applied once
    once = event("ContactDndUpdate", dnd=True)
    first = await post(harness, tid, once)
    second = await post(harness, tid, once)
    assert first.json()["leads_updated"] == [lead_id]
    assert second.json().get("duplicate") is True and second.json()["applied"] == 0
    lead = await lead_of(harness, tid, lead_id)
    assert lead.do_not_contact is True and lead.version == 2


async def test_the_published_key_checks_rsa_signatures_by_default(harness: Harness) -> None:
    credentials = {"private_integration_token": "pit-1", "location_id": LOCATION}
    tid, _, lead_id, _ = await setup(harness, CrmKind.GOHIGHLEVEL, credentials, MAPPING)
    # signed with a key that is not GoHighLevel's: the published key refuses it
    refused = await post(harness, tid, event("ContactDndUpdate", dnd=True), scheme="rsa")
    assert refused.status_code == 401
    # without the app's Ed25519 key configured, an x-ghl-signature alone is not enough
    refused_ed = await post(harness, tid, event("ContactDndUpdate", dnd=True))
    assert refused_ed.status_code == 401
    assert (await lead_of(harness, tid, lead_id)).do_not_contact is False


async def test_echo_of_our_own_write_is_ignored_and_a_real_edit_applied(
    harness: Harness,
) -> None:
    with GoHighLevelFake(token="pit-1", location_id=LOCATION) as ghl:
        tid, integration_id, lead_id, _ = await setup(
            harness, CrmKind.GOHIGHLEVEL, CREDENTIALS, MAPPING, base_url=ghl.url
        )
        async with harness.db.session() as s:
            # no link yet: the write creates the contact, as a first sync does
            await crm_repo.save_link(
                s, tenant_id=tid, integration_id=integration_id, lead_id=lead_id, remote_id=None
            )
            snapshot = await lead_repo.lead_snapshot(s, tenant_id=tid, lead_id=lead_id)
            integration = await crm_repo.get_integration(
                s, tenant_id=tid, integration_id=integration_id
            )
        assert snapshot is not None and integration is not None
        async with httpx.AsyncClient() as http:
            acts = CrmActivities(
                settings=harness.app.state.leadflow.settings,
                db=harness.db,
                http=http,
                adapters=crm_plugin().crm_adapters,
            )
            written = await ActivityEnvironment().run(
                acts.write_crm_record,
                CrmWriteInput(
                    connection=crm_repo.integration_view(integration),
                    lead=snapshot,
                    idempotency_key=idempotency_key(tid, lead_id, 1, integration_id),
                ),
            )
        contact = ghl.contacts[written.remote_id]
        assert contact["name"] == "Lia" and contact["email"] == "lia@example.com"
        # GoHighLevel then reports the contact leadflow just wrote: our own write coming back
        echo = event(
            "ContactCreate", written.remote_id, **{k: contact[k] for k in ("email", "name")}
        )
        response = await post(harness, tid, echo)
        assert response.status_code == 200, response.text
        assert response.json()["echoes"] == 2 and response.json()["applied"] == 0
        assert (await lead_of(harness, tid, lead_id)).version == 1
        # a person renames the contact in GoHighLevel: applied
        edit = event("ContactUpdate", written.remote_id, email="lia@example.com", name="Liana")
        response = await post(harness, tid, edit)
        assert response.json()["applied"] == 1 and response.json()["echoes"] == 1
        lead = await lead_of(harness, tid, lead_id)
        assert lead.name == "Liana" and lead.version == 2

        # the contact deleted in GoHighLevel: the link is forgotten
        deleted = await post(harness, tid, event("ContactDelete", written.remote_id))
        assert deleted.status_code == 200 and deleted.json()["applied"] == 1
        async with harness.db.session() as s:
            links = await crm_repo.links_of_lead(s, tenant_id=tid, lead_id=lead_id)
        assert [link.remote_id for link in links] == [None]
