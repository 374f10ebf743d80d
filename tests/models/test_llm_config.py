"""Which model runs which step for a tenant: one rule (models/llm_config.py) for the agent,
/ready, the settings API and the CLI."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from models.llm_config import (
    ChainLink,
    LlmConfigError,
    chain_for,
    config_problems,
    describe,
    parse_chain,
    resolve_chain,
)
from models.settings import Settings
from models.tenant import TenantLlmSettings

KNOWN = {"offline", "anthropic", "openai", "openai_compatible"}


def settings(**values: object) -> Settings:
    return Settings(**values)  # type: ignore[arg-type]


def test_a_chain_is_providers_with_optional_models_in_order() -> None:
    assert parse_chain(" Anthropic:claude-haiku-4-5 , openai:gpt-4.1-mini,offline ") == (
        ChainLink("anthropic", "claude-haiku-4-5"),
        ChainLink("openai", "gpt-4.1-mini"),
        ChainLink("offline"),
    )
    with pytest.raises(LlmConfigError):
        parse_chain(" , ")
    with pytest.raises(LlmConfigError):
        parse_chain(":model-without-provider")


def test_precedence_tenant_step_then_tenant_provider_then_process_step_then_process() -> None:
    process = settings(llm_provider="openai", llm_reply="anthropic:claude-sonnet-4-5")
    assert chain_for("analysis", process, None) == (ChainLink("openai", None),)
    assert chain_for("reply", process, None) == (ChainLink("anthropic", "claude-sonnet-4-5"),)
    assert chain_for("email", process, None) == (ChainLink("anthropic", "claude-sonnet-4-5"),)
    tenant = TenantLlmSettings(provider="offline", reply="openai:gpt-4.1")
    assert chain_for("analysis", process, tenant) == (ChainLink("offline", None),)
    assert chain_for("reply", process, tenant) == (ChainLink("openai", "gpt-4.1"),)
    # The tenant's own reply chain also writes its e-mails unless it names an e-mail chain.
    assert chain_for("email", process, tenant) == (ChainLink("openai", "gpt-4.1"),)


def test_the_process_model_goes_with_the_process_provider() -> None:
    process = settings(
        llm_provider="openai",
        llm_model="gpt-4o-mini",
        openai_api_key=SecretStr("k"),
        openai_compatible_base_url="http://127.0.0.1:11434/v1",
    )

    def model(tenant: TenantLlmSettings) -> str:
        links, problems = resolve_chain("reply", process, tenant, KNOWN)
        assert problems == []
        return links[0].model

    assert model(TenantLlmSettings(provider="openai")) == "gpt-4o-mini"
    assert model(TenantLlmSettings(provider="openai", model="gpt-4.1")) == "gpt-4.1"
    # A self-hosted server has no default: LEADFLOW_LLM_MODEL names what it serves.
    assert model(TenantLlmSettings(provider="openai_compatible")) == "gpt-4o-mini"
    assert model(TenantLlmSettings(provider="anthropic", anthropic_api_key=SecretStr("a"))) == (
        "claude-sonnet-4-5"
    )


def test_keys_come_from_the_tenant_first_and_defaults_per_step() -> None:
    process = settings(llm_provider="anthropic", anthropic_api_key=SecretStr("process-key"))
    links, problems = resolve_chain("analysis", process, None, KNOWN)
    assert problems == [] and links[0].model == "claude-haiku-4-5"
    assert links[0].api_key == "process-key" and links[0].source == "process"
    tenant = TenantLlmSettings(anthropic_api_key=SecretStr("tenant-key"))
    links, _ = resolve_chain("reply", process, tenant, KNOWN)
    assert links[0].model == "claude-sonnet-4-5"
    assert links[0].api_key == "tenant-key" and links[0].source == "tenant"
    assert "tenant-key" not in repr(links[0])  # keys never show in logs


def test_problems_name_what_is_missing_and_runnable_links_survive() -> None:
    process = settings(llm_analysis="gpt9,anthropic,openai_compatible:llama3,offline")
    links, problems = resolve_chain("analysis", process, None, KNOWN)
    assert [str(link) for link in links] == ["offline:rules-v2"]
    assert problems == [
        "analysis: LLM provider 'gpt9' is not registered; available: anthropic, offline, "
        "openai, openai_compatible",
        "analysis: anthropic needs an API key (LEADFLOW_ANTHROPIC_API_KEY)",
        "analysis: openai_compatible needs a base URL (LEADFLOW_OPENAI_COMPATIBLE_BASE_URL)",
    ]
    assert config_problems(settings(), KNOWN) == []
    assert describe(process)["analysis"].startswith("gpt9 -> anthropic:claude-haiku-4-5")


def test_a_chain_that_does_not_parse_is_a_problem_not_a_crash() -> None:
    broken = settings(llm_analysis=" , ")
    links, problems = resolve_chain("analysis", broken, None, KNOWN)
    assert links == [] and problems == ["analysis: the chain ' , ' names no provider"]
    assert config_problems(broken, KNOWN) == problems
