"""Which model runs which step of the agent, for a tenant: one rule, used by the agent, `/ready`
and the CLI alike.

A step (analysis, reply, email) runs a failover chain of `provider[:model]` links, tried in
order. The chain comes from, first match wins: the tenant's chain for the step, the tenant's
provider (+ model), the process's chain for the step (`LEADFLOW_LLM_ANALYSIS` ...), the process's
provider (`LEADFLOW_LLM_PROVIDER` + `LEADFLOW_LLM_MODEL`). Keys: the tenant's, else the process's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from models.settings import Settings
from models.tenant import TenantLlmSettings

Step = Literal["analysis", "reply", "email"]
STEPS: tuple[Step, ...] = ("analysis", "reply", "email")

HOSTED = ("anthropic", "openai", "openai_compatible")

# A fast, cheap model reads; a stronger one writes. Overridable everywhere.
DEFAULT_MODELS: dict[str, dict[Step, str]] = {
    "anthropic": {
        "analysis": "claude-haiku-4-5",
        "reply": "claude-sonnet-4-5",
        "email": "claude-sonnet-4-5",
    },
    "openai": {"analysis": "gpt-4.1-mini", "reply": "gpt-4.1", "email": "gpt-4.1"},
    "offline": {"analysis": "rules-v2", "reply": "rules-v2", "email": "rules-v2"},
}


class LlmConfigError(ValueError):
    """A chain that cannot run: an unknown provider, a missing key or model."""


@dataclass(frozen=True)
class ChainLink:
    provider: str
    model: str | None = None

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}" if self.model else self.provider


@dataclass(frozen=True)
class ResolvedLink:
    provider: str
    model: str
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None
    source: str = "process"  # tenant | process: where the key came from

    def __str__(self) -> str:
        return f"{self.provider}:{self.model}"


def parse_chain(text: str) -> tuple[ChainLink, ...]:
    """'anthropic:claude-haiku-4-5, openai:gpt-4.1-mini, offline' -> links, in order."""
    links: list[ChainLink] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        provider, _, model = part.partition(":")
        provider = provider.strip().lower()
        if not provider:
            raise LlmConfigError(f"empty provider in chain {text!r}")
        links.append(ChainLink(provider=provider, model=model.strip() or None))
    if not links:
        raise LlmConfigError(f"the chain {text!r} names no provider")
    return tuple(links)


def chain_for(
    step: Step, settings: Settings, tenant: TenantLlmSettings | None
) -> tuple[ChainLink, ...]:
    if tenant is not None:
        own = {"analysis": tenant.analysis, "reply": tenant.reply, "email": tenant.email}[step]
        if step == "email" and own is None:
            own = tenant.reply
        if own:
            return parse_chain(own)
        if tenant.provider:
            return (ChainLink(tenant.provider.lower(), tenant.model),)
    process = {
        "analysis": settings.llm_analysis,
        "reply": settings.llm_reply,
        "email": settings.llm_email,
    }[step]
    if step == "email" and process is None:
        process = settings.llm_reply
    if process:
        return parse_chain(process)
    return (ChainLink(settings.llm_provider.lower(), settings.llm_model),)


def _secret(value: object) -> str | None:
    getter = getattr(value, "get_secret_value", None)
    return getter() if callable(getter) else None


def resolve_link(
    link: ChainLink, step: Step, settings: Settings, tenant: TenantLlmSettings | None
) -> ResolvedLink:
    """Model and credentials of one link; `LlmConfigError` says what is missing."""
    provider = link.provider
    model = link.model
    if model is None and provider == settings.llm_provider.lower():
        model = settings.llm_model  # the process's model goes with the process's provider
    if model is None and provider == "openai_compatible":
        model = settings.llm_model  # a self-hosted server has no default model of ours
    model = model or DEFAULT_MODELS.get(provider, {}).get(step)
    if provider == "offline":
        return ResolvedLink(provider=provider, model=model or "rules-v2")
    if provider not in HOSTED:
        # A plugin's provider: it gets the model named in the chain and nothing else.
        return ResolvedLink(provider=provider, model=model or "default")
    tenant_key = _secret(getattr(tenant, f"{provider}_api_key", None)) if tenant else None
    process_key = _secret(getattr(settings, f"{provider}_api_key", None))
    key = tenant_key or process_key
    source = "tenant" if tenant_key else "process"
    if provider == "anthropic":
        if not key:
            raise LlmConfigError("anthropic needs an API key (LEADFLOW_ANTHROPIC_API_KEY)")
        return ResolvedLink(provider, model or "", key, settings.anthropic_base_url, source)
    if provider == "openai":
        if not key:
            raise LlmConfigError("openai needs an API key (LEADFLOW_OPENAI_API_KEY)")
        return ResolvedLink(provider, model or "", key, settings.openai_base_url, source)
    base_url = (tenant.openai_compatible_base_url if tenant else None) or (
        settings.openai_compatible_base_url
    )
    if not base_url:
        raise LlmConfigError(
            "openai_compatible needs a base URL (LEADFLOW_OPENAI_COMPATIBLE_BASE_URL)"
        )
    if not model:
        raise LlmConfigError(
            "openai_compatible needs a model (LEADFLOW_LLM_MODEL or 'openai_compatible:MODEL')"
        )
    return ResolvedLink(provider, model, key, base_url, source)


def resolve_chain(
    step: Step,
    settings: Settings,
    tenant: TenantLlmSettings | None,
    known_providers: frozenset[str] | set[str],
) -> tuple[list[ResolvedLink], list[str]]:
    """The runnable links of the step's chain, and a problem line for each link that is not."""
    links: list[ResolvedLink] = []
    problems: list[str] = []
    try:
        chain = chain_for(step, settings, tenant)
    except LlmConfigError as exc:  # a chain that does not parse runs nothing
        return [], [f"{step}: {exc}"]
    for link in chain:
        if link.provider not in known_providers:
            available = ", ".join(sorted(known_providers)) or "none"
            problems.append(
                f"{step}: LLM provider {link.provider!r} is not registered; available: {available}"
            )
            continue
        try:
            links.append(resolve_link(link, step, settings, tenant))
        except LlmConfigError as exc:
            problems.append(f"{step}: {exc}")
    return links, problems


def config_problems(
    settings: Settings,
    known_providers: frozenset[str] | set[str],
    tenant: TenantLlmSettings | None = None,
) -> list[str]:
    """Every problem of the configured chains; empty when every step can run."""
    problems: list[str] = []
    for step in STEPS:
        problems.extend(resolve_chain(step, settings, tenant, known_providers)[1])
    return problems


def describe(settings: Settings, tenant: TenantLlmSettings | None = None) -> dict[str, str]:
    """Step -> 'provider:model -> provider:model' for /ready and `leadflow plugins`."""
    out: dict[str, str] = {}
    for step in STEPS:
        try:
            chain = chain_for(step, settings, tenant)
        except LlmConfigError as exc:
            out[step] = f"invalid: {exc}"
            continue
        out[step] = " -> ".join(
            str(
                ChainLink(
                    link.provider, link.model or DEFAULT_MODELS.get(link.provider, {}).get(step)
                )
            )
            for link in chain
        )
    return out
