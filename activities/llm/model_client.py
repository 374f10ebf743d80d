"""The transport boundary to a hosted or self-hosted model: one request in, one response out.

A `ModelClient` knows one vendor's wire protocol (Anthropic Messages, OpenAI Chat Completions,
an OpenAI-compatible server) and nothing about leads, playbooks or conversations: prompts are
built by the agent (activities/llm/agent.py), which also owns failover, circuit breakers,
validation, repair, the usage ledger and the budget. A client makes exactly one HTTP attempt
(SDK retries are 0: Temporal owns retries) and turns every failure into a `ModelCallError` whose
`retryable` flag and `retry_after` tell the agent and Temporal what to do next.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True)


class ModelMessage(_Frozen):
    role: Literal["user", "assistant"]
    content: str


class ModelRequest(_Frozen):
    model: str
    system: str = Field(
        description="The stable prefix (instructions + persona): identical across the tenant's "
        "calls, so the vendor can cache it (Anthropic: a cache_control breakpoint after it)."
    )
    system_dynamic: str = Field(
        default="", description="System text that changes per call; placed after the cached prefix."
    )
    messages: tuple[ModelMessage, ...]
    output_schema: dict[str, Any] | None = Field(
        default=None,
        description="JSON schema of a structured answer (Anthropic: a forced tool; OpenAI: "
        "response_format json_schema). None: a plain text answer.",
    )
    schema_name: str = Field(default="result", pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    schema_description: str = ""
    max_tokens: int = 1024
    temperature: float | None = 0.2
    timeout_seconds: float = 30.0


class ModelResponse(_Frozen):
    provider: str
    model: str = Field(description="The model that answered, as the vendor reports it.")
    text: str = Field(default="", description="The text answer (empty for a structured answer).")
    data: dict[str, Any] | None = Field(
        default=None, description="The structured answer, parsed from JSON; not yet validated."
    )
    raw_structured: str | None = Field(
        default=None,
        description="The structured answer as the vendor sent it (for a repair prompt when it "
        "is not valid JSON or does not validate).",
    )
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = Field(default=0, description="Input tokens read from the prompt cache.")
    cache_write_tokens: int = Field(
        default=0, description="Input tokens written to the prompt cache (Anthropic)."
    )
    stop_reason: str | None = None
    request_id: str | None = None


class ModelCallError(Exception):
    """One failed model call, classified.

    - `retryable=False` (400/401/403/404/413/422, a spend limit, an exhausted quota): the same
      request will fail again; Temporal must not retry it.
    - `retryable=True` (408/409/429/5xx/529, timeouts, connection errors): another attempt later
      may succeed; `retry_after` (seconds) is the vendor's hint (`retry-after-ms`/`retry-after`).
    """

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
        kind: str = "error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.kind = (
            kind  # e.g. rate_limited, overloaded, timeout, connection, auth, invalid_request
        )


class ModelClient(Protocol):
    provider: str
    """anthropic | openai | openai_compatible (or a plugin's own name)."""
    credential_id: str
    """A stable, non-secret fingerprint of the endpoint + key: circuit breakers are per
    provider and credential."""

    async def complete(self, request: ModelRequest) -> ModelResponse: ...
