"""CRM sync and erasure workflow ids without the lead id (models/workflow_ids.py): a lead id is
uuid5 of tenant, channel and contact with no key, so it could be recomputed from a guessed phone
number; the ids hold a keyed hash of it instead."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from models import workflow_ids
from models.common import Channel
from models.conversation import lead_id_for
from models.crm import crm_sync_workflow_id, legacy_crm_sync_workflow_id
from models.erasure import erase_workflow_id, legacy_erase_workflow_id

KEY_A = bytes(range(32))
KEY_B = bytes(range(1, 33))
PHONE = "31612345678@c.us"


@pytest.fixture
def key_a() -> Iterator[None]:
    """KEY_A held for the test, this process's key restored after (other tests share it)."""
    held = workflow_ids.held_key()
    workflow_ids.set_key(KEY_A)
    try:
        yield
    finally:
        workflow_ids._key = held


def test_the_ids_are_keyed_stable_and_hold_no_lead_id_nor_contact(key_a: None) -> None:
    lead_id = lead_id_for("acme", Channel.WAHA, PHONE)
    crm = crm_sync_workflow_id("acme", lead_id)
    erase = erase_workflow_id("acme", lead_id)
    assert re.fullmatch(r"crm:acme:[a-p]{24}", crm), crm
    assert re.fullmatch(r"erase:acme:[a-p]{24}", erase), erase
    assert crm == crm_sync_workflow_id("acme", lead_id)  # stable: one workflow per lead
    for workflow_id in (crm, erase):
        assert not any(char.isdigit() for char in workflow_id)  # no digit of the phone
        assert all(part not in workflow_id for part in lead_id.split("-"))
        assert workflow_ids.is_hashed_lead_workflow_id(
            workflow_id, workflow_id.split(":")[0], "acme"
        )
    # The digest is the key's: the same lead under another key is another id.
    assert workflow_ids.lead_digest("acme", lead_id, KEY_B) != crm.removeprefix("crm:acme:")
    assert workflow_ids.lead_digest("acme", lead_id, KEY_A) == crm.removeprefix("crm:acme:")


def test_tenant_and_lead_both_count(key_a: None) -> None:
    lead_id = lead_id_for("acme", Channel.WAHA, PHONE)
    other_lead = lead_id_for("acme", Channel.WAHA, "31612345679@c.us")
    assert crm_sync_workflow_id("acme", lead_id) != crm_sync_workflow_id("acme", other_lead)
    # Another tenant's id for the same lead id differs beyond its prefix.
    assert workflow_ids.lead_digest("acme", lead_id) != workflow_ids.lead_digest("acme2", lead_id)
    # A lead digest is never a conversation digest of the same strings.
    conversation = workflow_ids.hashed_conversation_id("acme", Channel.WAHA, PHONE, KEY_A)
    assert conversation.rsplit(":", 1)[1] != workflow_ids.lead_digest("acme", lead_id)


def test_without_a_loaded_key_no_lead_id_is_made() -> None:
    held = workflow_ids.held_key()
    workflow_ids._key = None
    try:
        with pytest.raises(workflow_ids.WorkflowIdKeyMissing):
            crm_sync_workflow_id("acme", "lead-1")
        with pytest.raises(workflow_ids.WorkflowIdKeyMissing):
            erase_workflow_id("acme", "lead-1")
    finally:
        workflow_ids._key = held


def test_the_legacy_ids_name_the_lead_and_are_not_taken_for_hashed(key_a: None) -> None:
    lead_id = lead_id_for("acme", Channel.WAHA, PHONE)
    assert legacy_crm_sync_workflow_id("acme", lead_id) == f"crm:acme:{lead_id}"
    assert legacy_erase_workflow_id("acme", lead_id) == f"erase:acme:{lead_id}"
    assert not workflow_ids.is_hashed_lead_workflow_id(f"crm:acme:{lead_id}", "crm", "acme")
    # Both forms share the tenant prefix operators and tenant deletion filter by.
    prefix = workflow_ids.lead_workflow_prefix(workflow_ids.CRM_SYNC_PREFIX, "acme")
    assert legacy_crm_sync_workflow_id("acme", lead_id).startswith(prefix)
    assert crm_sync_workflow_id("acme", lead_id).startswith(prefix)
    # Another tenant's id is not this tenant's.
    assert not workflow_ids.is_hashed_lead_workflow_id(
        crm_sync_workflow_id("acme2", lead_id), "crm", "acme"
    )
