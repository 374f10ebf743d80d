"""The real `ModelClient`s (Anthropic, OpenAI, OpenAI-compatible) and the factory that builds one
from a provider's settings.

    client = build_client("anthropic", api_key=key, base_url=None)
    response = await client.complete(request)   # raises ModelCallError on any failure
"""

from __future__ import annotations

import hashlib
from typing import Literal, cast

import httpx2

from activities.llm.clients.anthropic import DEFAULT_BASE_URL as ANTHROPIC_BASE_URL
from activities.llm.clients.anthropic import AnthropicClient
from activities.llm.clients.openai_chat import DEFAULT_BASE_URL as OPENAI_BASE_URL
from activities.llm.clients.openai_chat import (
    STRUCTURED_MODES,
    OpenAIChatClient,
    StructuredMode,
)
from activities.llm.model_client import ModelClient

__all__ = [
    "PROVIDERS",
    "STRUCTURED_MODES",
    "AnthropicClient",
    "OpenAIChatClient",
    "StructuredMode",
    "build_client",
    "credential_fingerprint",
]

PROVIDERS = ("anthropic", "openai", "openai_compatible")
# Local servers (Ollama, vLLM) usually want no key, but the SDK insists on one.
NO_KEY = "not-needed"


def build_client(
    provider: str,
    *,
    api_key: str | None,
    base_url: str | None,
    structured_mode: str = "json_schema",
    http_client: httpx2.AsyncClient | None = None,
) -> ModelClient:
    """A client for `provider`. Raises ValueError for an unknown provider or structured mode, a
    missing key (anthropic, openai) or a missing base URL (openai_compatible).

    `http_client` (openai, openai_compatible): the httpx2 client the SDK sends through, e.g.
    `models.netguard_httpx2.guarded_client_httpx2(...)` for a tenant-supplied endpoint."""
    if structured_mode not in STRUCTURED_MODES:
        raise ValueError(
            f"unknown structured_mode {structured_mode!r}: expected one of "
            f"{', '.join(STRUCTURED_MODES)}"
        )
    mode = cast(StructuredMode, structured_mode)
    key = api_key or None  # an empty string from a form or an env file is no key
    url = base_url.strip().rstrip("/") if base_url and base_url.strip() else None
    if provider == "anthropic":
        if http_client is not None:
            # Refused rather than ignored: a caller asking for a guard must not get none.
            raise ValueError("provider 'anthropic' takes no http_client")
        key = _required_key(provider, key)
        url = url or ANTHROPIC_BASE_URL
        return AnthropicClient(
            api_key=key, base_url=url, credential_id=credential_fingerprint(provider, url, key)
        )
    if provider in ("openai", "openai_compatible"):
        name = cast(Literal["openai", "openai_compatible"], provider)
        if name == "openai":
            key = _required_key(provider, key)
            url = url or OPENAI_BASE_URL
        elif url is None:
            raise ValueError(
                "provider 'openai_compatible' needs a base_url (e.g. http://localhost:11434/v1)"
            )
        key = key or NO_KEY
        return OpenAIChatClient(
            api_key=key,
            base_url=url,
            credential_id=credential_fingerprint(provider, url, key),
            provider=name,
            structured_mode=mode,
            http_client=http_client,
        )
    raise ValueError(f"unknown model provider {provider!r}: expected one of {', '.join(PROVIDERS)}")


def credential_fingerprint(provider: str, base_url: str | None, api_key: str | None) -> str:
    """A stable, non-secret id of endpoint + key (for per-credential circuit breakers and logs):
    a sha256 prefix, from which the key cannot be recovered."""
    url = (base_url or "").strip().rstrip("/")
    digest = hashlib.sha256(f"{provider}\n{url}\n{api_key or ''}".encode()).hexdigest()
    return digest[:12]


def _required_key(provider: str, key: str | None) -> str:
    if not key:
        raise ValueError(f"provider {provider!r} needs an api_key")
    return key
