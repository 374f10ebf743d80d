"""OpenAI Chat Completions through the `openai` SDK, for OpenAI itself and for OpenAI-compatible
servers (Ollama, vLLM, LM Studio, gateways). One attempt per call, no SDK retries.

Structured answers, by `structured_mode` (servers differ in what they support):
- "json_schema": `response_format` json_schema with `strict: true` (OpenAI, vLLM, recent Ollama);
- "json_object": `response_format` json_object, the schema spelled out in the system text (for
  servers without schema support; the word JSON must appear in the prompt, and does);
- "tools": a forced function tool whose arguments are the answer (for servers that only do tools).
A reply that is not a JSON object comes back with `data=None` and the raw text, for the agent's
repair prompt: it is an answer, not a transport failure.

Usage keeps OpenAI's own counting: `prompt_tokens` (ALL input, cached included) → input_tokens,
of which `prompt_tokens_details.cached_tokens` → cached_tokens. Anthropic counts differently; the
pricing knows both (`models.pricing.reports_cached_in_input`).
"""

from __future__ import annotations

import json
from typing import Any, Literal, get_args

import httpx2
import openai
from openai.types.chat import (
    ChatCompletion,
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolChoiceOptionParam,
    ChatCompletionToolUnionParam,
)
from openai.types.chat.completion_create_params import ResponseFormat
from openai.types.shared_params.response_format_json_schema import JSONSchema

from activities.llm.clients import errors
from activities.llm.model_client import ModelRequest, ModelResponse

DEFAULT_BASE_URL = "https://api.openai.com/v1"

StructuredMode = Literal["json_schema", "json_object", "tools"]
STRUCTURED_MODES: tuple[str, ...] = get_args(StructuredMode)


class OpenAIChatClient:
    """A `ModelClient` for Chat Completions; `provider` is "openai" or "openai_compatible"."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None,
        credential_id: str,
        provider: Literal["openai", "openai_compatible"] = "openai",
        structured_mode: StructuredMode = "json_schema",
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.provider: str = provider
        self.credential_id = credential_id
        self.structured_mode = structured_mode
        # One SDK client (one connection pool) per instance. An explicit base URL keeps the SDK
        # from reading OPENAI_BASE_URL: configuration comes from our Settings only.
        # `http_client`: e.g. the SSRF-guarded client for a tenant's own endpoint
        # (`models.netguard_httpx2`); the SDK then owns it and closes it in `aclose`.
        self._sdk = openai.AsyncOpenAI(
            api_key=api_key,
            base_url=base_url or DEFAULT_BASE_URL,
            max_retries=0,  # Temporal owns retries.
            http_client=http_client,
        )

    async def complete(self, request: ModelRequest) -> ModelResponse:
        structured = request.output_schema is not None
        mode = self.structured_mode if structured else None
        with errors.classified(self.provider, request.timeout_seconds, openai):
            completion = await self._sdk.chat.completions.create(
                model=request.model,
                messages=self._messages(request, mode),
                # OpenAI's reasoning models reject `max_tokens`; many compatible servers only
                # know `max_tokens`.
                max_completion_tokens=(
                    request.max_tokens if self.provider == "openai" else openai.omit
                ),
                max_tokens=request.max_tokens if self.provider != "openai" else openai.omit,
                temperature=(
                    request.temperature if request.temperature is not None else openai.omit
                ),
                response_format=self._response_format(request, mode),
                tools=self._tools(request) if mode == "tools" else openai.omit,
                tool_choice=self._tool_choice(request) if mode == "tools" else openai.omit,
                # A float sets the connect, read, write and pool timeouts alike; the
                # activity's start-to-close timeout bounds the call as a whole.
                timeout=request.timeout_seconds,
            )
        return self._response(completion, mode)

    async def aclose(self) -> None:
        await self._sdk.close()

    # -- request -------------------------------------------------------------------------------
    @staticmethod
    def _messages(
        request: ModelRequest, mode: StructuredMode | None
    ) -> list[ChatCompletionMessageParam]:
        # Stable prefix first: OpenAI caches the longest common prompt prefix automatically.
        system = "\n\n".join(part for part in (request.system, request.system_dynamic) if part)
        if mode == "json_object":
            schema = json.dumps(request.output_schema, ensure_ascii=False)
            system += (
                "\n\nAnswer with one JSON object, and nothing else, that matches this JSON "
                f"schema:\n{schema}"
            )
        messages: list[ChatCompletionMessageParam] = []
        if system:
            messages.append({"role": "system", "content": system})
        for message in request.messages:
            if message.role == "user":
                messages.append({"role": "user", "content": message.content})
            else:
                messages.append({"role": "assistant", "content": message.content})
        return messages

    @staticmethod
    def _response_format(
        request: ModelRequest, mode: StructuredMode | None
    ) -> ResponseFormat | openai.Omit:
        if mode == "json_schema":
            assert request.output_schema is not None
            json_schema: JSONSchema = {
                "name": request.schema_name,
                "schema": request.output_schema,
                "strict": True,
            }
            if request.schema_description:
                json_schema["description"] = request.schema_description
            return {"type": "json_schema", "json_schema": json_schema}
        if mode == "json_object":
            return {"type": "json_object"}
        return openai.omit

    @staticmethod
    def _tools(request: ModelRequest) -> list[ChatCompletionToolUnionParam]:
        assert request.output_schema is not None
        return [
            {
                "type": "function",
                "function": {
                    "name": request.schema_name,
                    "description": request.schema_description
                    or "Record the answer in exactly this structure.",
                    "parameters": request.output_schema,
                },
            }
        ]

    @staticmethod
    def _tool_choice(request: ModelRequest) -> ChatCompletionToolChoiceOptionParam:
        return {"type": "function", "function": {"name": request.schema_name}}

    # -- response ------------------------------------------------------------------------------
    def _response(self, completion: ChatCompletion, mode: StructuredMode | None) -> ModelResponse:
        choice = completion.choices[0] if completion.choices else None
        message = choice.message if choice is not None else None
        stop_reason: str | None = choice.finish_reason if choice is not None else None
        content = message.content if message is not None else None
        text = content or ""
        data: dict[str, Any] | None = None
        raw: str | None = None
        if mode is not None:
            raw = content
            if mode == "tools":
                call = next(
                    (
                        c
                        for c in (message.tool_calls or [] if message is not None else [])
                        if isinstance(c, ChatCompletionMessageFunctionToolCall)
                    ),
                    None,
                )
                raw = call.function.arguments if call is not None else content
            data = _json_object(raw)
            text = ""
        if message is not None and message.refusal:
            # A refusal is an answer with no content; the agent decides what to do with it.
            stop_reason = "refusal"
            text = message.refusal
        usage = completion.usage
        details = usage.prompt_tokens_details if usage is not None else None
        return ModelResponse(
            provider=self.provider,
            model=completion.model,
            text=text,
            data=data,
            raw_structured=raw,
            input_tokens=usage.prompt_tokens if usage is not None else 0,
            output_tokens=usage.completion_tokens if usage is not None else 0,
            cached_tokens=(details.cached_tokens or 0) if details is not None else 0,
            cache_write_tokens=(details.cache_write_tokens or 0) if details is not None else 0,
            stop_reason=stop_reason,
            request_id=completion._request_id,
        )


def _json_object(raw: str | None) -> dict[str, Any] | None:
    """The answer as a dict, or None when it is not a JSON object (the agent repairs it)."""
    if not raw:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
