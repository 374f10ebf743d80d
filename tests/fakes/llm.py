"""Fake Anthropic and OpenAI servers at the HTTP wire level (wire/llm_apis_anthropic_openai.md).

    with FakeAnthropic() as fake:                 # or the `fake_anthropic` fixture
        fake.ok_structured({"intent": "pricing"}, cached_tokens=900)
        fake.error(429, "rate_limit_error", "slow down", headers={"retry-after": "7"})
        client = build_client("anthropic", api_key=fake.api_key, base_url=fake.url)
        ...
        assert fake.requests[0].headers["x-api-key"] == fake.api_key

`FakeAnthropic` answers POST /v1/messages, `FakeOpenAI` POST /v1/chat/completions (also as an
OpenAI-compatible server: `FakeOpenAI(api_key=None)` accepts any or no key) and POST /v1/embeddings
(deterministic `hashed_embedding` vectors, recorded apart in `embedding_requests` so the chat
script and `requests` stay as they were). Both:
- consume one scripted behaviour per request (`ok_text`, `ok_structured`, `ok_structured_raw`,
  `error`, `stall`), each with optional usage overrides in the vendor's own terms;
- with an empty script ask `brain(request_json)`, which returns the structured data (dict), a
  text (str) or a `Behaviour`; without a brain they answer "OK" or `{}`;
- record every request (`requests`: method, path, lower-case headers, parsed JSON body);
- answer with the vendors' real shapes: ids, usage with cache fields, rate-limit and request-id
  headers, and error bodies.

A structured request is recognised as the clients send it: Anthropic a forced tool
(`tool_choice.type == "tool"`), OpenAI `response_format` json_schema/json_object (answer in
`content`) or a forced function tool (answer in `tool_calls[0].function.arguments`)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.http_server import LiveServer, RecordedRequest

BehaviourKind = Literal["text", "structured", "structured_raw", "error", "stall"]


@dataclass(frozen=True)
class Behaviour:
    """One scripted answer. Usage fields left None are estimated from the request/answer;
    `input_tokens` is the vendor's own number (Anthropic: excluding cache reads and writes;
    OpenAI: `prompt_tokens`, including the cached ones)."""

    kind: BehaviourKind
    text: str = ""
    data: dict[str, Any] | None = None
    raw: str = ""
    status: int = 200
    error_type: str = ""
    message: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    code: str | None = None
    seconds: float = 0.0
    then: Behaviour | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cached_tokens: int | None = None
    cache_write_tokens: int | None = None
    stop_reason: str | None = None
    raw_usage: Mapping[str, Any] | None = None
    """Replaces the whole `usage` object (e.g. the older Anthropic shape without cache fields)."""


Brain = Callable[[dict[str, Any]], "dict[str, Any] | str | Behaviour"]


class _FakeModelServer:
    """What both fakes share: the script, the brain, the recorded requests and the server."""

    path = ""

    def __init__(self, *, api_key: str | None, brain: Brain | None) -> None:
        self.api_key = api_key
        self.brain = brain
        self.requests: list[RecordedRequest] = []
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route(self.path, self._handle, methods=["POST"])])
        self.server = LiveServer(self.app)

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The base URL to give the client (`base_url`)."""
        return self.server.url

    def start(self) -> _FakeModelServer:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- script --------------------------------------------------------------------------------
    def script(self, *behaviours: Behaviour) -> None:
        with self._lock:
            self._script.extend(behaviours)

    def ok_text(self, text: str, **usage: Any) -> None:
        self.script(Behaviour("text", text=text, **usage))

    def ok_structured(self, data: dict[str, Any], **usage: Any) -> None:
        self.script(Behaviour("structured", data=data, **usage))

    def ok_structured_raw(self, raw: str, **usage: Any) -> None:
        """A structured answer as this exact string (invalid JSON, or JSON off the schema)."""
        self.script(Behaviour("structured_raw", raw=raw, **usage))

    def error(
        self,
        status: int,
        type: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        """An error response. `code`: Anthropic `error.details.error_code`, OpenAI
        `error.code`."""
        self.script(
            Behaviour(
                "error",
                status=status,
                error_type=type,
                message=message,
                headers=dict(headers or {}),
                code=code,
            )
        )

    def stall(self, seconds: float, then: Behaviour | None = None) -> None:
        """Wait `seconds` before answering (with `then`, else the next scripted behaviour or
        the brain): a client with a shorter timeout gives up first."""
        self.script(Behaviour("stall", seconds=seconds, then=then))

    @property
    def pending(self) -> int:
        with self._lock:
            return len(self._script)

    @property
    def bodies(self) -> list[Any]:
        """The parsed JSON bodies of the requests received, in order."""
        return [r.json for r in self.requests]

    # -- server side ---------------------------------------------------------------------------
    async def _handle(self, request: Request) -> Response:
        recorded = await RecordedRequest.of(request)
        self.requests.append(recorded)
        problem = self._check(recorded)
        if problem is not None:
            return problem
        body: dict[str, Any] = recorded.json
        behaviour = self._next(body)
        while behaviour.kind == "stall":
            await asyncio.sleep(behaviour.seconds)
            behaviour = behaviour.then or self._next(body)
        if behaviour.kind == "error":
            return self._error_response(behaviour)
        return self._answer(body, behaviour)

    def _next(self, body: dict[str, Any]) -> Behaviour:
        with self._lock:
            if self._script:
                return self._script.popleft()
        structured = self._is_structured(body)
        if self.brain is None:
            return Behaviour("structured", data={}) if structured else Behaviour("text", text="OK")
        answer = self.brain(body)
        if isinstance(answer, Behaviour):
            return answer
        if isinstance(answer, dict):
            if structured:
                return Behaviour("structured", data=answer)
            return Behaviour("text", text=json.dumps(answer))
        return (
            Behaviour("structured_raw", raw=answer)
            if structured
            else Behaviour("text", text=answer)
        )

    # Vendor specifics.
    def _check(self, recorded: RecordedRequest) -> Response | None:
        raise NotImplementedError

    def _is_structured(self, body: dict[str, Any]) -> bool:
        raise NotImplementedError

    def _answer(self, body: dict[str, Any], behaviour: Behaviour) -> Response:
        raise NotImplementedError

    def _error_response(self, behaviour: Behaviour) -> Response:
        raise NotImplementedError


def _estimate_tokens(value: object) -> int:
    # About four characters a token: good enough for a fake's usage numbers.
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return max(1, len(text) // 4)


def _reset_at(seconds: int) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeAnthropic(_FakeModelServer):
    """POST /v1/messages. Checks `x-api-key` and `anthropic-version` as the real API does."""

    path = "/v1/messages"

    def __init__(self, *, api_key: str = "sk-ant-test-key", brain: Brain | None = None) -> None:
        super().__init__(api_key=api_key, brain=brain)

    def __enter__(self) -> FakeAnthropic:
        self.start()
        return self

    def _check(self, recorded: RecordedRequest) -> Response | None:
        key = recorded.headers.get("x-api-key")
        if key is None:
            message = (
                "OAuth authentication is currently not supported."
                if recorded.headers.get("authorization", "").startswith("Bearer ")
                else "x-api-key header is required"
            )
            return self._error_json(401, "authentication_error", message)
        if key != self.api_key:
            return self._error_json(401, "authentication_error", "invalid x-api-key")
        if not recorded.headers.get("anthropic-version"):
            return self._error_json(
                400, "invalid_request_error", "anthropic-version: header is required"
            )
        body = recorded.json
        if not isinstance(body, dict):
            return self._error_json(400, "invalid_request_error", "request body must be JSON")
        for name in ("model", "max_tokens", "messages"):
            if name not in body:
                return self._error_json(400, "invalid_request_error", f"{name}: Field required")
        return None

    def _is_structured(self, body: dict[str, Any]) -> bool:
        choice = body.get("tool_choice")
        return isinstance(choice, dict) and choice.get("type") == "tool"

    def _answer(self, body: dict[str, Any], behaviour: Behaviour) -> Response:
        content: list[dict[str, Any]]
        stop_reason = "end_turn"
        if behaviour.kind == "text":
            content = [{"type": "text", "text": behaviour.text}]
            output: object = behaviour.text
        else:
            data: object = behaviour.data
            if behaviour.kind == "structured_raw":
                try:
                    data = json.loads(behaviour.raw)
                except ValueError:
                    data = None
            if isinstance(data, dict):
                name = (body.get("tool_choice") or {}).get("name", "result")
                tool_id = f"toolu_01{secrets.token_hex(11)}"
                content = [{"type": "tool_use", "id": tool_id, "name": name, "input": data}]
                stop_reason = "tool_use"
            else:
                # The model did not call the tool (cannot really happen with a forced tool, but
                # a client must survive it): its words come back as text.
                content = [{"type": "text", "text": behaviour.raw}]
            output = data if isinstance(data, dict) else behaviour.raw
        cached = behaviour.cached_tokens or 0
        written = behaviour.cache_write_tokens or 0
        input_tokens = behaviour.input_tokens
        if input_tokens is None:
            input_tokens = max(1, _estimate_tokens(body) - cached - written)
        payload: dict[str, Any] = {
            "id": f"msg_01{secrets.token_hex(11)}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": behaviour.stop_reason or stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": written,
                "cache_read_input_tokens": cached,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": written,
                    "ephemeral_1h_input_tokens": 0,
                },
                "output_tokens": (
                    behaviour.output_tokens
                    if behaviour.output_tokens is not None
                    else _estimate_tokens(output)
                ),
                "service_tier": "standard",
            },
        }
        if behaviour.raw_usage is not None:
            payload["usage"] = dict(behaviour.raw_usage)
        return JSONResponse(payload, headers=self._headers())

    def _error_response(self, behaviour: Behaviour) -> Response:
        return self._error_json(
            behaviour.status,
            behaviour.error_type,
            behaviour.message,
            headers=behaviour.headers,
            code=behaviour.code,
        )

    def _error_json(
        self,
        status: int,
        type: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
    ) -> Response:
        request_id = _anthropic_request_id()
        error: dict[str, Any] = {"type": type, "message": message}
        if code is not None:
            error["details"] = {"error_code": code}
        body = {"type": "error", "error": error, "request_id": request_id}
        return JSONResponse(
            body, status_code=status, headers={"request-id": request_id, **(headers or {})}
        )

    @staticmethod
    def _headers() -> dict[str, str]:
        headers = {"request-id": _anthropic_request_id()}
        for name, limit in (
            ("requests", 1000),
            ("tokens", 96000),
            ("input-tokens", 80000),
            ("output-tokens", 16000),
        ):
            prefix = f"anthropic-ratelimit-{name}"
            headers[f"{prefix}-limit"] = str(limit)
            headers[f"{prefix}-remaining"] = str(limit - 1)
            headers[f"{prefix}-reset"] = _reset_at(1)
        return headers


def _anthropic_request_id() -> str:
    return f"req_011C{secrets.token_urlsafe(16)[:20]}"


EMBEDDING_DIMENSIONS = 64


def hashed_embedding(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """A deterministic stand-in for an embedding model: each lower-cased word adds +-1 to a
    dimension picked by its hash, then the vector is L2-normalised. Texts sharing words are
    near in cosine distance, which is all a fake needs for ranking to mean something. An empty
    text gets a fixed unit vector (a zero vector has no direction)."""
    vector = [0.0] * dimensions
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        digest = hashlib.sha256(word.encode()).digest()
        index = int.from_bytes(digest[:4], "big") % dimensions
        vector[index] += 1.0 if digest[4] % 2 == 0 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    if norm == 0.0:
        return [1.0] + [0.0] * (dimensions - 1)
    return [v / norm for v in vector]


class FakeOpenAI(_FakeModelServer):
    """POST /v1/chat/completions. With `api_key=None` it plays an OpenAI-compatible server that
    ignores the Authorization header (e.g. Ollama); otherwise it checks the bearer key.

    POST /v1/embeddings answers in OpenAI's shape with `hashed_embedding` vectors (the same key
    check); its requests go to `embedding_requests`, not `requests`."""

    path = "/v1/chat/completions"

    def __init__(self, *, api_key: str | None = "sk-test-key", brain: Brain | None = None) -> None:
        super().__init__(api_key=api_key, brain=brain)
        self.embedding_requests: list[RecordedRequest] = []
        self.app.router.routes.append(Route("/v1/embeddings", self._embeddings, methods=["POST"]))

    async def _embeddings(self, request: Request) -> Response:
        recorded = await RecordedRequest.of(request)
        self.embedding_requests.append(recorded)
        if self.api_key is not None:
            auth = recorded.headers.get("authorization", "")
            if auth != f"Bearer {self.api_key}":
                return self._error_json(
                    401,
                    "invalid_request_error",
                    "Incorrect API key provided. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    code="invalid_api_key",
                )
        body = recorded.json
        if not isinstance(body, dict) or "model" not in body or "input" not in body:
            return self._error_json(
                400,
                "invalid_request_error",
                "Missing required parameter: 'model' or 'input'.",
            )
        inputs = body["input"]
        texts: list[str] = [inputs] if isinstance(inputs, str) else list(inputs)
        if not texts or not all(isinstance(t, str) for t in texts):
            return self._error_json(
                400, "invalid_request_error", "'input' : input must be a string or an array"
            )
        dimensions = body.get("dimensions") or EMBEDDING_DIMENSIONS
        tokens = sum(_estimate_tokens(t) for t in texts)
        payload = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": hashed_embedding(t, dimensions)}
                for i, t in enumerate(texts)
            ],
            "model": body["model"],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return JSONResponse(payload, headers=self._headers())

    def __enter__(self) -> FakeOpenAI:
        self.start()
        return self

    @property
    def base_url(self) -> str:
        """What the OpenAI SDK wants as `base_url` (it appends /chat/completions)."""
        return f"{self.url}/v1"

    def _check(self, recorded: RecordedRequest) -> Response | None:
        if self.api_key is not None:
            auth = recorded.headers.get("authorization", "")
            if auth != f"Bearer {self.api_key}":
                given = auth.removeprefix("Bearer ")
                shown = f"{given[:3]}***{given[-4:]}" if len(given) > 8 else given
                return self._error_json(
                    401,
                    "invalid_request_error",
                    f"Incorrect API key provided: {shown}. You can find your API key at "
                    "https://platform.openai.com/account/api-keys.",
                    code="invalid_api_key",
                )
        body = recorded.json
        if not isinstance(body, dict):
            return self._error_json(
                400, "invalid_request_error", "We could not parse the JSON body"
            )
        for name in ("model", "messages"):
            if name not in body:
                return self._error_json(
                    400,
                    "invalid_request_error",
                    f"Missing required parameter: '{name}'.",
                    param=name,
                )
        return None

    def _is_structured(self, body: dict[str, Any]) -> bool:
        fmt = body.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object"):
            return True
        choice = body.get("tool_choice")
        return isinstance(choice, dict) and choice.get("type") == "function"

    def _answer(self, body: dict[str, Any], behaviour: Behaviour) -> Response:
        if behaviour.kind == "text":
            answer = behaviour.text
        elif behaviour.kind == "structured_raw":
            answer = behaviour.raw
        else:
            answer = json.dumps(behaviour.data, ensure_ascii=False)
        message: dict[str, Any] = {"role": "assistant", "content": answer, "refusal": None}
        finish_reason = "stop"
        choice = body.get("tool_choice")
        if (
            behaviour.kind != "text"
            and isinstance(choice, dict)
            and choice.get("type") == "function"
        ):
            name = choice.get("function", {}).get("name", "result")
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": f"call_{secrets.token_urlsafe(18)[:24]}",
                    "type": "function",
                    "function": {"name": name, "arguments": answer},
                }
            ]
            finish_reason = "tool_calls"
        else:
            message["annotations"] = []
        cached = behaviour.cached_tokens or 0
        written = behaviour.cache_write_tokens or 0
        prompt = behaviour.input_tokens
        if prompt is None:
            prompt = _estimate_tokens(body) + cached
        completion = (
            behaviour.output_tokens
            if behaviour.output_tokens is not None
            else _estimate_tokens(answer)
        )
        prompt_details: dict[str, int] = {"cached_tokens": cached, "audio_tokens": 0}
        if written:
            prompt_details["cache_write_tokens"] = written
        payload: dict[str, Any] = {
            "id": f"chatcmpl-{secrets.token_urlsafe(21)[:29]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": behaviour.stop_reason or finish_reason,
                }
            ],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
                "prompt_tokens_details": prompt_details,
                "completion_tokens_details": {
                    "reasoning_tokens": 0,
                    "audio_tokens": 0,
                    "accepted_prediction_tokens": 0,
                    "rejected_prediction_tokens": 0,
                },
            },
            "service_tier": "default",
            "system_fingerprint": None,
        }
        if behaviour.raw_usage is not None:
            payload["usage"] = dict(behaviour.raw_usage)
        return JSONResponse(payload, headers=self._headers())

    def _error_response(self, behaviour: Behaviour) -> Response:
        return self._error_json(
            behaviour.status,
            behaviour.error_type,
            behaviour.message,
            headers=behaviour.headers,
            code=behaviour.code,
        )

    @staticmethod
    def _error_json(
        status: int,
        type: str,
        message: str,
        *,
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> Response:
        body = {"error": {"message": message, "type": type, "param": param, "code": code}}
        return JSONResponse(
            body,
            status_code=status,
            headers={"x-request-id": _openai_request_id(), **(headers or {})},
        )

    @staticmethod
    def _headers() -> dict[str, str]:
        return {
            "openai-processing-ms": "42",
            "openai-version": "2020-10-01",
            "x-ratelimit-limit-requests": "5000",
            "x-ratelimit-limit-tokens": "800000",
            "x-ratelimit-remaining-requests": "4999",
            "x-ratelimit-remaining-tokens": "799986",
            "x-ratelimit-reset-requests": "12ms",
            "x-ratelimit-reset-tokens": "1ms",
            "x-request-id": _openai_request_id(),
        }


def _openai_request_id() -> str:
    return f"req_{secrets.token_hex(16)}"
