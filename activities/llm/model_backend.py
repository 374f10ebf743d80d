"""The agent backend of hosted and self-hosted models: prompts in, validated output out.

It builds the prompts (activities/llm/prompts.py), calls one `ModelClient`, validates the
answer with the same pydantic model the offline rules fill, and gives a model whose structured
output does not validate exactly one repair attempt: the error goes back to the model with its
own answer. Every call is returned as a `CallRecord` (a failed one attached to the exception),
so the agent can put it in the usage ledger.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from activities.llm import prompts
from activities.llm.base import (
    BackendSpec,
    CallRecord,
    EmailContext,
    InvalidModelOutput,
    Perceived,
    PerceptionContext,
    WritingContext,
    Written,
    WrittenEmailDraft,
)
from activities.llm.citations import MAX_CITED
from activities.llm.clients import build_client
from activities.llm.model_client import (
    ModelCallError,
    ModelClient,
    ModelMessage,
    ModelRequest,
    ModelResponse,
)
from models.agent import SUMMARY_MAX, Perception
from models.netguard_httpx2 import guarded_client_httpx2
from models.pricing import reports_cached_in_input
from models.settings import Settings

T = TypeVar("T", bound=BaseModel)


class ModelCallFailed(Exception):
    """A vendor call failed; `calls` holds its ledger record(s), `error` the classification."""

    def __init__(self, error: ModelCallError, calls: tuple[CallRecord, ...]) -> None:
        super().__init__(error.message)
        self.error = error
        self.calls = calls


class _Email(BaseModel):
    subject: str
    body: str


class ModelBackend:
    def __init__(self, client: ModelClient, model: str, settings: Settings) -> None:
        self.client = client
        self.provider = client.provider
        self.model = model
        self.key = f"{client.provider}:{client.credential_id}"
        self._timeout = settings.llm_timeout_seconds
        self._max_tokens = settings.llm_max_output_tokens

    # ------------------------------------------------------------------ calls

    async def _call(self, request: ModelRequest) -> tuple[ModelResponse, CallRecord]:
        started = time.perf_counter()
        started_ns = time.time_ns()
        try:
            response = await self.client.complete(request)
        except ModelCallError as exc:
            record = CallRecord(
                provider=self.provider,
                model=self.model,
                latency_ms=round((time.perf_counter() - started) * 1000),
                outcome="error",
                error=exc.message[:500],
                started_ns=started_ns,
            )
            raise ModelCallFailed(exc, (record,)) from exc
        record = CallRecord(
            provider=self.provider,
            model=response.model or self.model,
            input_tokens=response.input_tokens,
            output_tokens=response.output_tokens,
            cached_tokens=response.cached_tokens,
            cache_write_tokens=response.cache_write_tokens,
            latency_ms=round((time.perf_counter() - started) * 1000),
            cached_included_in_input=reports_cached_in_input(self.provider),
            started_ns=started_ns,
        )
        return response, record

    def _request(
        self,
        system: str,
        task: str,
        message: str,
        *,
        schema: dict[str, Any] | None = None,
        schema_name: str = "result",
        history: tuple[ModelMessage, ...] = (),
    ) -> ModelRequest:
        return ModelRequest(
            model=self.model,
            system=system,
            system_dynamic=task,
            messages=(ModelMessage(role="user", content=message), *history),
            output_schema=schema,
            schema_name=schema_name,
            max_tokens=self._max_tokens,
            timeout_seconds=self._timeout,
        )

    async def _structured(
        self,
        request: ModelRequest,
        parse: Callable[[dict[str, Any]], T],
    ) -> tuple[T, tuple[CallRecord, ...]]:
        """One call, and one repair call when the answer does not validate."""
        response, record = await self._call(request)
        try:
            return self._parse(response, parse), (record,)
        except (ValidationError, ValueError) as first_error:
            problem = _problem(first_error)
        raw = response.raw_structured or (json.dumps(response.data) if response.data else "")
        repair = request.model_copy(
            update={
                "messages": (
                    *request.messages,
                    ModelMessage(role="assistant", content=raw or "(no answer)"),
                    ModelMessage(
                        role="user",
                        content="Your answer does not match the required schema: "
                        f"{problem}. Answer again with only the corrected, complete answer.",
                    ),
                )
            }
        )
        try:
            second, second_record = await self._call(repair)
        except ModelCallFailed as exc:
            first = _with_outcome(record, "invalid_output", problem)
            raise ModelCallFailed(exc.error, (first, *exc.calls)) from exc
        try:
            value = self._parse(second, parse)
        except (ValidationError, ValueError) as second_error:
            calls = (
                _with_outcome(record, "invalid_output", problem),
                _with_outcome(second_record, "invalid_output", _problem(second_error)),
            )
            raise InvalidModelOutput(
                f"{self.provider}:{self.model} gave invalid output twice: {_problem(second_error)}",
                calls,
            ) from second_error
        return value, (
            _with_outcome(record, "invalid_output", problem),
            _with_outcome(second_record, "repaired", None),
        )

    @staticmethod
    def _parse(response: ModelResponse, parse: Callable[[dict[str, Any]], T]) -> T:
        data = response.data
        if data is None:
            raise ValueError("the answer is not a JSON object")
        return parse(data)

    # ------------------------------------------------------------------ steps

    async def perceive(self, context: PerceptionContext) -> Perceived:
        playbook = context.playbook
        # The perception task (intents, fields) is as stable as the persona: cached with it,
        # together with the tool/schema the vendor places before the system prompt.
        request = self._request(
            f"{prompts.stable_prefix(playbook)}\n\n{prompts.perception_task(playbook)}",
            "",
            prompts.perception_message(context),
            schema=prompts.perception_schema(playbook),
            schema_name="report_perception",
        )

        def parse(data: dict[str, Any]) -> Perception:
            fields = data.get("fields")
            cleaned = dict(data)
            if isinstance(fields, dict):
                cleaned["fields"] = {k: v for k, v in fields.items() if v is not None}
            summary = cleaned.get("summary")
            if isinstance(summary, str):
                cleaned["summary"] = " ".join(summary.split())[:SUMMARY_MAX]
            language = cleaned.get("language")
            if isinstance(language, str):
                cleaned["language"] = language.strip().lower()[:8]
            return Perception.model_validate(cleaned)

        perception, calls = await self._structured(request, parse)
        return Perceived(perception=perception, calls=calls)

    async def write(self, context: WritingContext) -> Written:
        playbook = context.playbook
        language = context.language or (
            context.perception.language if context.perception else playbook.default_language
        )
        request = self._request(
            prompts.stable_prefix(playbook),
            prompts.writing_task(context, language),
            prompts.writing_message(context),
        )
        response, record = await self._call(request)
        text = _clean_text(response.text, playbook.assistant_name)
        if not text:
            raise InvalidModelOutput(
                f"{self.provider}:{self.model} wrote an empty message",
                (_with_outcome(record, "invalid_output", "empty"),),
            )
        return Written(
            text=text,
            calls=(record,),
            knowledge_ids=tuple(hit.document_id for hit in context.knowledge),
            inventory_keys=_cited_in(text, context),
        )

    async def write_email(self, context: EmailContext) -> WrittenEmailDraft:
        playbook = context.playbook
        language = context.language or playbook.default_language
        request = self._request(
            prompts.stable_prefix(playbook),
            prompts.email_task(language),
            prompts.email_message(context),
            schema=prompts.EMAIL_SCHEMA,
            schema_name="write_email",
        )

        def parse(data: dict[str, Any]) -> _Email:
            email = _Email.model_validate(data)
            if not email.subject.strip() or not email.body.strip():
                raise ValueError("subject and body must not be empty")
            return email

        email, calls = await self._structured(request, parse)
        return WrittenEmailDraft(
            subject=email.subject.strip(), body=email.body.strip(), calls=calls
        )


def _cited_in(text: str, context: WritingContext) -> tuple[str, ...]:
    """The keys of the inventory items the model's text names, by link or by title: what the
    reply cites, of what the `<inventory>` block offered."""
    if context.inventory is None:
        return ()
    lowered = text.lower()
    return tuple(
        item.key
        for item in context.inventory.cited()[:MAX_CITED]
        if (item.url and item.url.lower() in lowered) or item.title().lower() in lowered
    )


def _problem(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}" for e in error.errors()
        )[:600]
    return str(error)[:600]


def _with_outcome(record: CallRecord, outcome: str, error: str | None) -> CallRecord:
    return CallRecord(
        provider=record.provider,
        model=record.model,
        input_tokens=record.input_tokens,
        output_tokens=record.output_tokens,
        cached_tokens=record.cached_tokens,
        cache_write_tokens=record.cache_write_tokens,
        latency_ms=record.latency_ms,
        outcome=outcome,
        error=error,
        cached_included_in_input=record.cached_included_in_input,
        started_ns=record.started_ns,
    )


def _clean_text(text: str, assistant_name: str | None) -> str:
    """Models sometimes wrap a chat message in quotes or sign it with a speaker label."""
    cleaned = text.strip()
    if len(cleaned) >= 2 and cleaned[0] == cleaned[-1] and cleaned[0] in "\"'":
        cleaned = cleaned[1:-1].strip()
    if assistant_name:
        cleaned = re.sub(rf"^{re.escape(assistant_name)}\s*:\s*", "", cleaned)
    return cleaned


def hosted_backend(spec: BackendSpec, settings: Settings) -> ModelBackend:
    """The `BackendFactory` of anthropic, openai and openai_compatible. A tenant's own
    OpenAI-compatible endpoint is reached through the SSRF-guarded client; the operator's (often
    a local Ollama) is not guarded."""
    if not spec.model:
        raise ValueError(f"{spec.provider} needs a model")
    client = build_client(
        spec.provider,
        api_key=spec.api_key,
        base_url=spec.base_url,
        structured_mode=settings.openai_compatible_structured
        if spec.provider == "openai_compatible"
        else "json_schema",
        http_client=guarded_client_httpx2(settings.ssrf_allowlist)
        if is_tenant_endpoint(spec, settings)
        else None,
    )
    return ModelBackend(client, spec.model, settings)


def is_tenant_endpoint(spec: BackendSpec, settings: Settings) -> bool:
    """Whether the spec's base URL is one the operator did not configure: only openai_compatible
    takes a tenant's URL (`models.llm_config`); anthropic and openai use the process's."""
    if spec.provider != "openai_compatible" or not spec.base_url:
        return False
    return _normal_url(spec.base_url) != _normal_url(settings.openai_compatible_base_url)


def _normal_url(url: str | None) -> str:
    # As build_client normalises it: the same endpoint spelt with a trailing slash is the same.
    return (url or "").strip().rstrip("/")
