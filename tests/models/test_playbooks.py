"""The shipped playbooks load, and a broken playbook is refused with readable messages."""

from __future__ import annotations

from datetime import time, timedelta

import pytest

from models.common import Intent
from models.repo.playbooks import (
    PlaybookError,
    builtin_names,
    parse_playbook,
    playbook_for,
    validate_playbook_yaml,
)
from models.tenant import TenantSettings


def test_both_shipped_playbooks_load() -> None:
    assert {"car_dealership", "b2b_outreach"} <= set(builtin_names())
    dealer = playbook_for(TenantSettings(playbook="car_dealership"))
    assert dealer.languages == ("nl", "en")
    assert dealer.quiet_hours is not None
    assert dealer.quiet_hours.timezone == "Europe/Amsterdam"
    assert (dealer.quiet_hours.start, dealer.quiet_hours.end) == (time(21), time(8))
    assert dealer.follow_up.cadence[0] == timedelta(hours=4)
    covered = {rule.intent for rule in dealer.intents}
    assert covered == set(Intent) - {Intent.OTHER}
    for rule in dealer.intents:
        assert rule.description, rule.intent  # the model reads what each intent means
    roles = {role for rule in dealer.escalation for role in rule.notify}
    assert {"sales", "finance", "manager"} <= roles
    # The persona for the model prompts, the guard's promises, the no-model fallback texts.
    assert dealer.products and dealer.rules and dealer.forbidden_promises
    assert set(dealer.fallback.holding) >= {"nl", "en"}
    # The offline provider's keywords and templates are its own pack, not the playbook's.
    assert dealer.offline == {}
    b2b = playbook_for(TenantSettings(playbook="b2b_outreach"))
    assert b2b.languages == ("en",)


def test_a_tenant_without_a_playbook_gets_a_neutral_persona_under_its_own_name() -> None:
    playbook = playbook_for(TenantSettings(), tenant_name="Fietsen Jansen")
    assert playbook.business_name == "Fietsen Jansen"
    assert playbook.assistant_name is None
    assert "Autohuis" not in playbook.model_dump_json()
    assert {rule.name for rule in playbook.escalation} >= {"complaint", "human_request"}


def test_a_legacy_playbook_with_inline_offline_texts_still_loads() -> None:
    legacy = (
        "name: old\nbusiness_name: Old BV\nbusiness_description: x\n"
        "intents:\n  - intent: greeting\n    keywords: {en: [hiya]}\n"
        "fields:\n  - name: budget\n    type: int\n    question: {en: 'Budget?'}\n"
        "templates:\n  greeting: {en: Hiya!}\n"
    )
    playbook = playbook_for(TenantSettings(playbook_yaml=legacy))
    assert playbook.offline["templates"] == {"greeting": {"en": "Hiya!"}}
    assert playbook.offline["keywords"] == {"greeting": {"en": ["hiya"]}}
    assert playbook.offline["questions"] == {"budget": {"en": "Budget?"}}


def test_custom_yaml_overrides_the_named_playbook() -> None:
    custom = "name: mine\nbusiness_name: Mine BV\nbusiness_description: We sell bikes.\n"
    playbook = playbook_for(TenantSettings(playbook="car_dealership", playbook_yaml=custom))
    assert playbook.business_name == "Mine BV"


def test_unknown_builtin_name_lists_the_builtins() -> None:
    with pytest.raises(PlaybookError) as err:
        playbook_for(TenantSettings(playbook="bakery"))
    assert "bakery" in str(err.value)
    assert "car_dealership" in str(err.value) and "b2b_outreach" in str(err.value)
    assert isinstance(err.value, ValueError)


def test_yaml_syntax_error_names_the_line() -> None:
    errors = validate_playbook_yaml("name: x\nbusiness_name: [unclosed\nother: 1\n")
    assert len(errors) == 1
    assert "not valid YAML" in errors[0] and "line" in errors[0]


def test_invalid_fields_are_listed_with_their_path() -> None:
    text = "name: x\nbusiness_name: X\nintents:\n  - intent: teleport\nscoring:\n  hot_at: lots\n"
    errors = validate_playbook_yaml(text)
    assert any(e.startswith("business_description:") for e in errors)
    assert any(e.startswith("intents.0.intent:") for e in errors)
    assert any(e.startswith("scoring.hot_at:") for e in errors)
    with pytest.raises(PlaybookError) as err:
        parse_playbook(text)
    assert err.value.errors == tuple(errors)


def test_non_mapping_yaml_is_refused() -> None:
    assert validate_playbook_yaml("- just\n- a list\n") == [
        "the playbook must be a YAML mapping (name:, business_name:, ...), not list"
    ]


def test_valid_yaml_has_no_errors() -> None:
    assert validate_playbook_yaml("name: x\nbusiness_name: X\nbusiness_description: Y\n") == []
