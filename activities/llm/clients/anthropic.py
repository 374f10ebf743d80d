"""Anthropic Messages API through the `anthropic` SDK (one attempt per call, no SDK retries).

Structured answers use a forced tool: the schema is the tool's `input_schema` and
`tool_choice` names it, so the model must answer with one `tool_use` block whose `input` is the
object. The stable system prefix carries a `cache_control` breakpoint (tools + system are then
read from the prompt cache on the tenant's next call); the per-call system text comes after it.

Usage keeps Anthropic's own counting: `input_tokens` is only the uncached input, the cache reads
(`cached_tokens`) and writes (`cache_write_tokens`) come on top. OpenAI counts differently; the
pricing knows both (`models.pricing.reports_cached_in_input`).
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
from anthropic.types import (
    Message,
    MessageParam,
    TextBlock,
    TextBlockParam,
    ToolParam,
    ToolUseBlock,
)

from activities.llm.clients import errors
from activities.llm.model_client import ModelMessage, ModelRequest, ModelResponse

DEFAULT_BASE_URL = "https://api.anthropic.com"


class AnthropicClient:
    """A `ModelClient` for the Anthropic Messages API (or a server that speaks it)."""

    def __init__(self, *, api_key: str, base_url: str | None, credential_id: str) -> None:
        self.provider: str = "anthropic"
        self.credential_id = credential_id
        self._api_key = api_key
        # One SDK client (one connection pool) per instance. An explicit base URL keeps the
        # SDK from reading ANTHROPIC_BASE_URL: configuration comes from our Settings only.
        self._sdk = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url or DEFAULT_BASE_URL,
            max_retries=0,  # Temporal owns retries.
        )

    async def complete(self, request: ModelRequest) -> ModelResponse:
        structured = request.output_schema is not None
        with errors.classified(self.provider, request.timeout_seconds, anthropic):
            message = await self._sdk.messages.create(
                model=request.model,
                max_tokens=request.max_tokens,
                messages=[_message(m) for m in request.messages],
                system=self._system(request) or anthropic.omit,
                tools=[self._tool(request)] if structured else anthropic.omit,
                tool_choice=(
                    {"type": "tool", "name": request.schema_name} if structured else anthropic.omit
                ),
                # `temperature` is not sent: the installed SDK's `messages.create` has no such
                # parameter any more.
                # A float sets the connect, read, write and pool timeouts alike; the
                # activity's start-to-close timeout bounds the call as a whole.
                timeout=request.timeout_seconds,
                # The installed SDK (2.12) sends an API key as `Authorization: Bearer`, which
                # the Messages API answers with 401 "OAuth authentication is currently not
                # supported"; API keys belong in `X-Api-Key` (wire/llm_apis_anthropic_openai.md).
                extra_headers={"X-Api-Key": self._api_key, "Authorization": anthropic.omit},
            )
        return self._response(message, request)

    async def aclose(self) -> None:
        await self._sdk.close()

    @staticmethod
    def _system(request: ModelRequest) -> list[TextBlockParam]:
        # The breakpoint after the stable prefix caches tools + system; the dynamic part
        # follows it. Anthropic rejects empty text blocks, so an empty part is left out.
        system: list[TextBlockParam] = []
        if request.system:
            system.append(
                {"type": "text", "text": request.system, "cache_control": {"type": "ephemeral"}}
            )
        if request.system_dynamic:
            system.append({"type": "text", "text": request.system_dynamic})
        return system

    @staticmethod
    def _tool(request: ModelRequest) -> ToolParam:
        assert request.output_schema is not None
        return {
            "name": request.schema_name,
            "description": request.schema_description
            or "Record the answer in exactly this structure.",
            "input_schema": request.output_schema,
        }

    def _response(self, message: Message, request: ModelRequest) -> ModelResponse:
        texts = [block.text for block in message.content if isinstance(block, TextBlock)]
        data: dict[str, Any] | None = None
        raw: str | None = None
        text = "".join(texts)
        if request.output_schema is not None:
            tool_input = next(
                (
                    block.input
                    for block in message.content
                    if isinstance(block, ToolUseBlock) and block.name == request.schema_name
                ),
                None,
            )
            if tool_input is not None:
                raw = json.dumps(tool_input, ensure_ascii=False)
                data = dict(tool_input) if isinstance(tool_input, dict) else None
                text = ""
            else:
                # No tool call (refusal, max_tokens): hand the text to the agent's repair.
                raw = text or None
        usage = message.usage
        cached = usage.cache_read_input_tokens or 0
        written = usage.cache_creation_input_tokens or 0
        return ModelResponse(
            provider=self.provider,
            model=message.model,
            text=text,
            data=data,
            raw_structured=raw,
            input_tokens=usage.input_tokens or 0,
            output_tokens=usage.output_tokens or 0,
            cached_tokens=cached,
            cache_write_tokens=written,
            stop_reason=message.stop_reason,
            request_id=message._request_id,
        )


def _message(message: ModelMessage) -> MessageParam:
    if message.role == "user":
        return {"role": "user", "content": message.content}
    return {"role": "assistant", "content": message.content}
