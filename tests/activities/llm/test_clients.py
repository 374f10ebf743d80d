"""The real model clients, through the real anthropic/openai SDKs, against the fake servers on
loopback: request shapes, answers, usage accounting and the classification of every failure."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from activities.llm.clients import (
    AnthropicClient,
    OpenAIChatClient,
    build_client,
    credential_fingerprint,
)
from activities.llm.clients.errors import parse_retry_after, status_error
from activities.llm.model_client import ModelCallError, ModelClient, ModelMessage, ModelRequest
from tests.fakes.llm import Behaviour, FakeAnthropic, FakeOpenAI

# The fake servers as fixtures (until tests/conftest.py loads them as a plugin).
from tests.fakes.llm_fixtures import *  # noqa: F403

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"intent": {"type": "string"}, "confidence": {"type": "number"}},
    "required": ["intent", "confidence"],
    "additionalProperties": False,
}


def request(*, structured: bool = False, **overrides: Any) -> ModelRequest:
    values: dict[str, Any] = {
        "model": "test-model",
        "system": "You are the sales assistant of Garage Jansen.",
        "system_dynamic": "Today is Monday.",
        "messages": (ModelMessage(role="user", content="How much is the Golf?"),),
        "timeout_seconds": 5.0,
    }
    if structured:
        values |= {
            "output_schema": SCHEMA,
            "schema_name": "analysis",
            "schema_description": "The analysis of the lead's message.",
        }
    values.update(overrides)
    return ModelRequest.model_validate(values)


@pytest.fixture
async def anthropic_client(fake_anthropic: FakeAnthropic) -> AsyncIterator[AnthropicClient]:
    client = build_client("anthropic", api_key=fake_anthropic.api_key, base_url=fake_anthropic.url)
    assert isinstance(client, AnthropicClient)
    yield client
    await client.aclose()


@pytest.fixture
async def openai_client(fake_openai: FakeOpenAI) -> AsyncIterator[OpenAIChatClient]:
    client = build_client("openai", api_key=fake_openai.api_key, base_url=fake_openai.base_url)
    assert isinstance(client, OpenAIChatClient)
    yield client
    await client.aclose()


@asynccontextmanager
async def client_for(provider: str, **settings: Any) -> AsyncIterator[ModelClient]:
    """A client from the factory, closed afterwards (its SDK holds a connection pool)."""
    client = build_client(provider, **settings)
    assert isinstance(client, AnthropicClient | OpenAIChatClient)
    try:
        yield client
    finally:
        await client.aclose()


async def call_error(client: ModelClient, req: ModelRequest) -> ModelCallError:
    with pytest.raises(ModelCallError) as caught:
        await client.complete(req)
    return caught.value


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- Anthropic ---------------------------------------------------------------------------------


async def test_anthropic_text(
    anthropic_client: AnthropicClient, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.ok_text("The Golf is 23,950 euros.", input_tokens=120, output_tokens=9)

    response = await anthropic_client.complete(request())

    assert response.provider == "anthropic" and response.model == "test-model"
    assert response.text == "The Golf is 23,950 euros."
    assert response.data is None and response.raw_structured is None
    assert (response.input_tokens, response.output_tokens) == (120, 9)
    assert response.stop_reason == "end_turn"
    assert response.request_id and response.request_id.startswith("req_")
    sent = fake_anthropic.requests[0]
    assert sent.path == "/v1/messages"
    # API keys go in x-api-key; a Bearer header would be taken for OAuth and refused.
    assert sent.headers["x-api-key"] == fake_anthropic.api_key
    assert "authorization" not in sent.headers
    assert sent.headers["anthropic-version"]
    assert sent.json["system"] == [
        {
            "type": "text",
            "text": "You are the sales assistant of Garage Jansen.",
            "cache_control": {"type": "ephemeral"},
        },
        {"type": "text", "text": "Today is Monday."},
    ]
    assert sent.json["messages"] == [{"role": "user", "content": "How much is the Golf?"}]
    assert sent.json["max_tokens"] == 1024
    assert "tools" not in sent.json and "tool_choice" not in sent.json


async def test_anthropic_without_dynamic_system_sends_one_cached_block(
    anthropic_client: AnthropicClient,
    fake_anthropic: FakeAnthropic,
) -> None:
    await anthropic_client.complete(request(system_dynamic=""))

    assert fake_anthropic.requests[0].json["system"] == [
        {
            "type": "text",
            "text": "You are the sales assistant of Garage Jansen.",
            "cache_control": {"type": "ephemeral"},
        }
    ]


async def test_anthropic_structured_through_a_forced_tool(
    anthropic_client: AnthropicClient,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.ok_structured({"intent": "pricing", "confidence": 0.9})

    response = await anthropic_client.complete(request(structured=True))

    assert response.data == {"intent": "pricing", "confidence": 0.9}
    assert response.raw_structured == '{"intent": "pricing", "confidence": 0.9}'
    assert response.text == "" and response.stop_reason == "tool_use"
    body = fake_anthropic.requests[0].json
    assert body["tools"] == [
        {
            "name": "analysis",
            "description": "The analysis of the lead's message.",
            "input_schema": SCHEMA,
        }
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "analysis"}


async def test_anthropic_structured_off_schema_and_without_tool_call_come_back_raw(
    anthropic_client: AnthropicClient,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.ok_structured_raw('{"intent": 42}')  # valid JSON, not the schema
    fake_anthropic.ok_structured_raw("Sorry, I can only answer in prose.")  # no tool call

    off_schema = await anthropic_client.complete(request(structured=True))
    no_tool = await anthropic_client.complete(request(structured=True))

    # Validation is the agent's job: the client hands over what it got.
    assert off_schema.data == {"intent": 42} and off_schema.raw_structured == '{"intent": 42}'
    assert no_tool.data is None
    assert no_tool.raw_structured == "Sorry, I can only answer in prose."


async def test_anthropic_cache_accounting(
    anthropic_client: AnthropicClient, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.ok_text("first", input_tokens=50, cache_write_tokens=1800, output_tokens=5)
    fake_anthropic.ok_text("second", input_tokens=60, cached_tokens=1800, output_tokens=6)

    first = await anthropic_client.complete(request())
    second = await anthropic_client.complete(request())

    # Anthropic's own counting is kept: input_tokens exclude the cache reads and writes
    # (models.pricing.reports_cached_in_input("anthropic") is False).
    assert (first.input_tokens, first.cached_tokens, first.cache_write_tokens) == (50, 0, 1800)
    assert (second.input_tokens, second.cached_tokens, second.cache_write_tokens) == (60, 1800, 0)


async def test_anthropic_usage_without_cache_fields(
    anthropic_client: AnthropicClient,
    fake_anthropic: FakeAnthropic,
) -> None:
    # The older response shape [A1] has no cache fields at all.
    usage = {"input_tokens": 16, "output_tokens": 35}
    fake_anthropic.script(Behaviour("text", text="Hello!", raw_usage=usage))

    response = await anthropic_client.complete(request())

    assert (response.input_tokens, response.output_tokens) == (16, 35)
    assert (response.cached_tokens, response.cache_write_tokens) == (0, 0)


async def test_anthropic_brain_answers_when_the_script_is_empty(
    anthropic_client: AnthropicClient,
    fake_anthropic: FakeAnthropic,
) -> None:
    seen: list[dict[str, Any]] = []

    def brain(body: dict[str, Any]) -> dict[str, Any] | str:
        seen.append(body)
        return {"intent": "test_drive", "confidence": 1.0} if "tools" in body else "Hello!"

    fake_anthropic.brain = brain
    assert (await anthropic_client.complete(request())).text == "Hello!"
    structured = await anthropic_client.complete(request(structured=True))
    assert structured.data == {"intent": "test_drive", "confidence": 1.0}
    assert len(seen) == 2


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry-after": "7"}, 7.0), ({"retry-after-ms": "1500", "retry-after": "2"}, 1.5)],
)
async def test_anthropic_429_is_retryable_with_retry_after(
    anthropic_client: AnthropicClient,
    fake_anthropic: FakeAnthropic,
    headers: dict[str, str],
    expected: float,
) -> None:
    fake_anthropic.error(
        429,
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
        headers=headers,
    )

    error = await call_error(anthropic_client, request())

    assert error.retryable and error.kind == "rate_limited" and error.status == 429
    assert error.retry_after == pytest.approx(expected)
    assert error.provider == "anthropic"
    assert error.message.startswith("anthropic 429 rate_limit_error: Number of request tokens")
    assert len(fake_anthropic.requests) == 1  # max_retries=0: Temporal retries, not the SDK


async def test_anthropic_529_overloaded_is_retryable_after_one_request(
    anthropic_client: AnthropicClient,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.error(529, "overloaded_error", "Overloaded")

    error = await call_error(anthropic_client, request())

    assert error.retryable and error.kind == "overloaded" and error.status == 529
    assert error.retry_after is None
    assert len(fake_anthropic.requests) == 1


async def test_anthropic_spend_limit_429_is_not_retryable(
    anthropic_client: AnthropicClient,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.error(
        429,
        "rate_limit_error",
        "You have reached your specified API usage limits.",
        code="enforced_spend_limit_reached",
    )

    error = await call_error(anthropic_client, request())

    assert not error.retryable and error.kind == "quota" and error.retry_after is None
    assert "enforced_spend_limit_reached" in error.message


@pytest.mark.parametrize(
    ("status", "vendor_type", "kind"),
    [
        (400, "invalid_request_error", "invalid_request"),
        (401, "authentication_error", "auth"),
        (402, "billing_error", "billing"),
        (403, "permission_error", "permission"),
        (404, "not_found_error", "not_found"),
        (413, "request_too_large", "too_large"),
    ],
)
async def test_anthropic_client_errors_are_not_retryable(
    anthropic_client: AnthropicClient,
    fake_anthropic: FakeAnthropic,
    status: int,
    vendor_type: str,
    kind: str,
) -> None:
    fake_anthropic.error(status, vendor_type, "nope")

    error = await call_error(anthropic_client, request())

    assert not error.retryable and error.kind == kind and error.status == status
    assert error.message == f"anthropic {status} {vendor_type}: nope"


async def test_anthropic_wrong_key_is_a_401(fake_anthropic: FakeAnthropic) -> None:
    async with client_for("anthropic", api_key="sk-ant-wrong", base_url=fake_anthropic.url) as c:
        error = await call_error(c, request())

    assert not error.retryable and error.kind == "auth"
    assert "invalid x-api-key" in error.message


async def test_anthropic_x_should_retry_overrides_the_status(
    anthropic_client: AnthropicClient,
    fake_anthropic: FakeAnthropic,
) -> None:
    fake_anthropic.error(
        500, "api_error", "Internal server error", headers={"x-should-retry": "false"}
    )
    fake_anthropic.error(
        400, "invalid_request_error", "try again", headers={"x-should-retry": "true"}
    )

    assert not (await call_error(anthropic_client, request())).retryable
    assert (await call_error(anthropic_client, request())).retryable


async def test_anthropic_stall_hits_the_timeout(
    anthropic_client: AnthropicClient, fake_anthropic: FakeAnthropic
) -> None:
    fake_anthropic.stall(2.0)

    started = time.monotonic()
    error = await call_error(anthropic_client, request(timeout_seconds=0.5))

    assert time.monotonic() - started < 2.0
    assert error.retryable and error.kind == "timeout" and error.status is None
    assert len(fake_anthropic.requests) == 1


async def test_anthropic_connection_refused_is_retryable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with client_for("anthropic", api_key="sk-ant-x", base_url=url) as client:
        error = await call_error(client, request())

    assert error.retryable and error.kind == "connection"


# -- OpenAI ------------------------------------------------------------------------------------


async def test_openai_text(openai_client: OpenAIChatClient, fake_openai: FakeOpenAI) -> None:
    fake_openai.ok_text("Hello! How can I help you today?", input_tokens=20, output_tokens=18)

    response = await openai_client.complete(request())

    assert response.provider == "openai"
    assert response.text == "Hello! How can I help you today?"
    assert (response.input_tokens, response.output_tokens, response.cached_tokens) == (20, 18, 0)
    assert response.stop_reason == "stop"
    assert response.request_id and response.request_id.startswith("req_")
    sent = fake_openai.requests[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {fake_openai.api_key}"
    assert sent.json["messages"] == [
        {
            "role": "system",
            "content": "You are the sales assistant of Garage Jansen.\n\nToday is Monday.",
        },
        {"role": "user", "content": "How much is the Golf?"},
    ]
    assert sent.json["temperature"] == 0.2
    assert sent.json["max_completion_tokens"] == 1024 and "max_tokens" not in sent.json
    assert "response_format" not in sent.json


async def test_openai_structured_through_json_schema(
    openai_client: OpenAIChatClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.ok_structured({"intent": "pricing", "confidence": 0.8})

    response = await openai_client.complete(request(structured=True))

    assert response.data == {"intent": "pricing", "confidence": 0.8}
    assert response.raw_structured == '{"intent": "pricing", "confidence": 0.8}'
    assert response.text == ""
    assert fake_openai.requests[0].json["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "analysis",
            "schema": SCHEMA,
            "strict": True,
            "description": "The analysis of the lead's message.",
        },
    }


async def test_openai_invalid_json_comes_back_raw(
    openai_client: OpenAIChatClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.ok_structured_raw('{"intent": "pricing", ')
    fake_openai.ok_structured_raw('["not", "an", "object"]')

    truncated = await openai_client.complete(request(structured=True))
    not_object = await openai_client.complete(request(structured=True))

    assert truncated.data is None and truncated.raw_structured == '{"intent": "pricing", '
    assert not_object.data is None and not_object.raw_structured == '["not", "an", "object"]'


async def test_openai_compatible_json_object_mode_without_key() -> None:
    with FakeOpenAI(api_key=None) as fake:
        fake.ok_structured({"intent": "pricing", "confidence": 0.5})
        async with client_for(
            "openai_compatible", api_key=None, base_url=fake.base_url, structured_mode="json_object"
        ) as client:
            response = await client.complete(request(structured=True))

    assert response.provider == "openai_compatible"
    assert response.data == {"intent": "pricing", "confidence": 0.5}
    sent = fake.requests[0]
    assert sent.headers["authorization"] == "Bearer not-needed"
    assert sent.json["response_format"] == {"type": "json_object"}
    system = sent.json["messages"][0]["content"]
    assert system.startswith("You are the sales assistant of Garage Jansen.\n\nToday is Monday.")
    assert '"required": ["intent", "confidence"]' in system and "JSON" in system
    assert sent.json["max_tokens"] == 1024 and "max_completion_tokens" not in sent.json


async def test_openai_tools_mode_reads_the_function_arguments(fake_openai: FakeOpenAI) -> None:
    fake_openai.ok_structured({"intent": "complaint", "confidence": 0.7})
    async with client_for(
        "openai",
        api_key=fake_openai.api_key,
        base_url=fake_openai.base_url,
        structured_mode="tools",
    ) as client:
        response = await client.complete(request(structured=True))

    assert response.data == {"intent": "complaint", "confidence": 0.7}
    assert response.stop_reason == "tool_calls"
    body = fake_openai.requests[0].json
    assert body["tool_choice"] == {"type": "function", "function": {"name": "analysis"}}
    assert body["tools"][0]["function"]["parameters"] == SCHEMA
    assert "response_format" not in body


async def test_openai_cache_accounting(
    openai_client: OpenAIChatClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.ok_text("cached", input_tokens=2006, cached_tokens=1920, output_tokens=300)

    response = await openai_client.complete(request())

    # prompt_tokens already include the cached ones.
    assert (response.input_tokens, response.cached_tokens, response.output_tokens) == (
        2006,
        1920,
        300,
    )


@pytest.mark.parametrize(
    ("headers", "expected"),
    [({"retry-after": "20"}, 20.0), ({"retry-after-ms": "125"}, 0.125)],
)
async def test_openai_429_is_retryable_with_retry_after(
    openai_client: OpenAIChatClient,
    fake_openai: FakeOpenAI,
    headers: dict[str, str],
    expected: float,
) -> None:
    fake_openai.error(
        429,
        "requests",
        "Rate limit reached for gpt-4o in organization org-x on requests per min (RPM): Limit 3, "
        "Used 3, Requested 1. Please try again in 20s.",
        headers=headers,
        code="rate_limit_exceeded",
    )

    error = await call_error(openai_client, request())

    assert error.retryable and error.kind == "rate_limited"
    assert error.retry_after == pytest.approx(expected)
    assert error.message.startswith("openai 429 requests rate_limit_exceeded: Rate limit reached")
    assert len(fake_openai.requests) == 1


async def test_openai_insufficient_quota_is_not_retryable(
    openai_client: OpenAIChatClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.error(
        429,
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details.",
        code="insufficient_quota",
        headers={"retry-after": "1"},
    )

    error = await call_error(openai_client, request())

    assert not error.retryable and error.kind == "quota" and error.retry_after is None
    assert len(fake_openai.requests) == 1


async def test_openai_5xx_is_retryable_after_one_request(
    openai_client: OpenAIChatClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.error(
        503, "server_error", "The engine is currently overloaded, please try again later"
    )

    error = await call_error(openai_client, request())

    assert error.retryable and error.kind == "server_error" and error.status == 503
    assert len(fake_openai.requests) == 1


async def test_openai_wrong_key_and_bad_request_are_not_retryable(fake_openai: FakeOpenAI) -> None:
    async with client_for("openai", api_key="sk-wrong-key-123", base_url=fake_openai.base_url) as c:
        auth = await call_error(c, request())
    assert not auth.retryable and auth.kind == "auth" and auth.status == 401
    assert "invalid_api_key" in auth.message and "sk-wrong-key-123" not in auth.message

    fake_openai.error(400, "invalid_request_error", "Invalid schema for response_format 'analysis'")
    async with client_for(
        "openai", api_key=fake_openai.api_key, base_url=fake_openai.base_url
    ) as c:
        bad = await call_error(c, request(structured=True))
    assert not bad.retryable and bad.kind == "invalid_request" and bad.status == 400


async def test_openai_stall_hits_the_timeout(
    openai_client: OpenAIChatClient, fake_openai: FakeOpenAI
) -> None:
    fake_openai.stall(2.0)

    started = time.monotonic()
    error = await call_error(openai_client, request(timeout_seconds=0.5))

    assert time.monotonic() - started < 2.0
    assert error.retryable and error.kind == "timeout"


async def test_openai_connection_refused_is_retryable() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    async with client_for("openai_compatible", api_key=None, base_url=url) as client:
        error = await call_error(client, request())

    assert error.retryable and error.kind == "connection" and error.provider == "openai_compatible"


# -- factory and classification ---------------------------------------------------------------


def test_build_client_validates_its_arguments() -> None:
    with pytest.raises(ValueError, match="unknown model provider 'gemini'"):
        build_client("gemini", api_key="k", base_url=None)
    with pytest.raises(ValueError, match="'anthropic' needs an api_key"):
        build_client("anthropic", api_key=None, base_url=None)
    with pytest.raises(ValueError, match="'openai' needs an api_key"):
        build_client("openai", api_key="", base_url=None)
    with pytest.raises(ValueError, match="needs a base_url"):
        build_client("openai_compatible", api_key=None, base_url=None)
    with pytest.raises(ValueError, match="unknown structured_mode"):
        build_client("openai", api_key="k", base_url=None, structured_mode="xml")


def test_credential_fingerprint_is_stable_and_hides_the_key() -> None:
    key = "sk-ant-api03-secret"
    fingerprint = credential_fingerprint("anthropic", "https://api.anthropic.com/", key)

    assert fingerprint == credential_fingerprint("anthropic", "https://api.anthropic.com", key)
    assert fingerprint != credential_fingerprint("anthropic", "https://api.anthropic.com", "other")
    assert fingerprint != credential_fingerprint("openai", "https://api.anthropic.com", key)
    assert key not in fingerprint and len(fingerprint) == 12
    # The default base URL and an explicit one are the same credential.
    default = build_client("anthropic", api_key=key, base_url=None)
    explicit = build_client("anthropic", api_key=key, base_url="https://api.anthropic.com")
    assert default.credential_id == explicit.credential_id == fingerprint


def test_retry_after_forms() -> None:
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after({"retry-after": soon}) == pytest.approx(30, abs=2)
    assert parse_retry_after({"retry-after": "0"}) is None
    assert parse_retry_after({"retry-after-ms": "0", "retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"Retry-After": "120"}) == 120.0  # uncapped: the agent caps
    assert parse_retry_after({}) is None


def test_status_classification_table() -> None:
    def classify(status: int, body: object = None) -> ModelCallError:
        return status_error("openai", status=status, headers={}, body=body)

    for status in (408, 409, 429, 500, 502, 503, 504, 529):
        assert classify(status).retryable, status
    for status in (400, 401, 402, 403, 404, 405, 413, 422):
        assert not classify(status).retryable, status
    # The OpenAI SDK hands over just the error object, the Anthropic SDK the whole body.
    inner = {"message": "quota", "type": "insufficient_quota", "code": None}
    assert classify(429, inner).kind == "quota"
    contract = {
        "type": "error",
        "error": {
            "type": "rate_limit_error",
            "message": "limit",
            "details": {"error_code": "contract_spend_limit_reached"},
        },
    }
    assert classify(429, contract).kind == "quota"
    long = classify(500, {"error": {"type": "api_error", "message": "x" * 1000}})
    assert len(long.message) < 350
