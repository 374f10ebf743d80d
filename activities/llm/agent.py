"""The agent: every model call of leadflow goes through here — a conversation's perception and
replies, outreach, follow-ups and enrichment e-mails — whatever the provider.

For each call it resolves what the activity received by reference (the playbook by hash, the
knowledge by id, the transcript by conversation id), picks the step's failover chain for the
tenant (models/llm_config.py), skips providers whose circuit breaker is open or that the
tenant's spent daily budget rules out, calls the backend, writes every model call to the usage
ledger and, for messages to a lead, runs the reply guard. What comes back is validated data;
what goes wrong is a typed `ApplicationError` the workflow knows how to answer:

- `LlmUnavailable` (retryable; `next_retry_delay` from the vendor's retry-after): every provider
  of the chain failed in a way a later attempt may not (429, 5xx, 529, timeouts, open breakers);
- `LlmRequestRejected` (non-retryable): every provider refused the request (401, 400, ...);
- `InvalidLlmOutput` (non-retryable): the output did not validate, also after one repair;
- `LlmBudgetExhausted` (non-retryable): the tenant's daily budget is spent;
- `UnknownLlmProvider` (non-retryable): the configuration names no runnable provider.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import pybreaker
from temporalio.exceptions import ApplicationError

from activities.llm import prompts
from activities.llm.base import (
    AgentBackend,
    BackendFactory,
    BackendSpec,
    CallRecord,
    EmailContext,
    InvalidModelOutput,
    Perceived,
    PerceptionContext,
    WritingContext,
    Written,
)
from activities.llm.citations import MAX_CITED, wants_inventory
from activities.llm.guard import check_reply
from activities.llm.model_backend import ModelCallFailed
from activities.llm.observe import observe_model_call
from models.agent import (
    SUMMARY_MAX,
    AnalyseInput,
    AnalysisResult,
    FieldValue,
    GeneratedReply,
    GenerateReplyInput,
    GuardVerdict,
    KnowledgeHit,
    TokenUsage,
    WriteEmailInput,
    WrittenEmail,
)
from models.budget import DailyBudget, daily_budget_limit, utc_today
from models.common import ReplyPurpose, Role
from models.db import Database
from models.inventory import InventoryAnswer, query_from_fields
from models.knowledge.index import KnowledgeBackendError
from models.llm_config import ResolvedLink, Step, resolve_chain
from models.messages import TranscriptEntry
from models.metrics_breakers import BreakerGauge
from models.playbook import Playbook
from models.playbook_service import PlaybookResolver, TenantProfile, UnknownTenantError
from models.policy import PlaybookRef
from models.pricing import PriceTable
from models.repo import conversations as conversation_repo
from models.repo import knowledge as knowledge_repo
from models.repo import usage as usage_repo
from models.repo.playbooks import PlaybookError
from models.settings import Settings
from models.usage import BreakerState, CallOutcome, LlmCallRecord, worker_identity

if TYPE_CHECKING:
    from models.knowledge.service import KnowledgeService

# A turn's reads by reference: earlier messages, knowledge documents, the lead's known fields.
Reading = tuple[tuple[TranscriptEntry, ...], tuple[KnowledgeHit, ...], dict[str, FieldValue]]

log = logging.getLogger("leadflow.agent")
# The rows of the model steps of one activity, when it writes its ledger once (one_ledger_write).
_LEDGER_BATCH: ContextVar[list[LlmCallRecord] | None] = ContextVar("ledger_batch", default=None)

R = TypeVar("R")

# How long a worker trusts what it learnt about whether a tenant keeps an inventory at all: a
# turn of a tenant without one then costs no statement, and newly loaded stock is cited within
# this many seconds.
STOCK_CHECK_TTL_SECONDS = 30.0
MAX_RETRY_AFTER_SECONDS = 60.0  # a vendor hint beyond this is capped: the retry policy's ceiling
TRANSCRIPT_LIMIT = 30

# Status codes that say "this request is wrong", not "this provider is unwell": they do not count
# against the provider's circuit breaker.
_REQUEST_PROBLEMS = frozenset({400, 404, 413, 422})


class BreakerBoard:
    """One pybreaker circuit breaker per provider credential in this process. Its state changes
    go to the ledger's provider-health table, which `/ready` shows."""

    def __init__(self, settings: Settings, db: Database | None) -> None:
        self._fail_max = settings.llm_breaker_fail_max
        self._reset = settings.llm_breaker_reset_seconds
        self._db = db
        self._breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self._pending: set[asyncio.Task[None]] = set()
        self._worker = worker_identity()

    def get(self, key: str) -> pybreaker.CircuitBreaker:
        breaker = self._breakers.get(key)
        if breaker is None:
            breaker = pybreaker.CircuitBreaker(
                fail_max=self._fail_max,
                reset_timeout=self._reset,
                exclude=[_not_the_providers_fault],
                # The key is `provider:credential`: the gauge groups by provider.
                listeners=[_HealthListener(self), BreakerGauge(f"llm:{key.partition(':')[0]}")],
                name=key,
                throw_new_error_on_trip=False,
            )
            self._breakers[key] = breaker
        return breaker

    def states(self) -> dict[str, str]:
        return {key: _state_name(b.current_state) for key, b in self._breakers.items()}

    def seconds_until_retry(self, key: str) -> float:
        breaker = self._breakers.get(key)
        if breaker is None:
            return 0.0
        opened = breaker._state_storage.opened_at
        if opened is None:
            return self._reset
        elapsed = time.time() - opened.timestamp()
        return max(1.0, self._reset - elapsed)

    def publish(self, key: str, state: str, error: str | None) -> None:
        if self._db is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        task = loop.create_task(self._write(key, state, error))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _write(self, key: str, state: str, error: str | None) -> None:
        assert self._db is not None
        try:
            async with self._db.session() as session:
                await usage_repo.set_provider_health(
                    session,
                    key=key,
                    worker=self._worker,
                    state=BreakerState(state),
                    last_error=error,
                )
        except Exception as exc:  # health is informative; never fail a call over it
            log.warning("could not record the state of breaker %s: %s", key, exc)


class _HealthListener(pybreaker.CircuitBreakerListener):
    def __init__(self, board: BreakerBoard) -> None:
        self._board = board
        self._last_error: str | None = None

    def failure(self, cb: pybreaker.CircuitBreaker, exc: BaseException) -> None:
        self._last_error = str(exc)[:300]

    def state_change(
        self,
        cb: pybreaker.CircuitBreaker,
        old_state: pybreaker.CircuitBreakerState | None,
        new_state: pybreaker.CircuitBreakerState,
    ) -> None:
        state = _state_name(new_state)
        log.warning("LLM circuit breaker %s is now %s", cb.name, state)
        self._board.publish(str(cb.name), state, self._last_error if state != "closed" else None)


def _state_name(state: pybreaker.CircuitBreakerState | str) -> str:
    name = state if isinstance(state, str) else state.name
    return str(name).replace("-", "_")


def _not_the_providers_fault(exc: BaseException) -> bool:
    if isinstance(exc, InvalidModelOutput):
        return True
    if isinstance(exc, ModelCallFailed):
        return exc.error.status in _REQUEST_PROBLEMS
    return False


@dataclass(frozen=True)
class _Scope:
    tenant_id: str
    step: Step
    conversation_id: str | None = None
    job_id: str | None = None
    purpose: str | None = None
    turn: int | None = None


@dataclass
class _Failure:
    link: str
    message: str
    retryable: bool
    retry_after: float | None = None
    kind: str = "error"  # error | invalid | budget | breaker


class Agent:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        factories: Mapping[str, BackendFactory],
        resolver: PlaybookResolver | None = None,
        budget: DailyBudget | None = None,
        prices: PriceTable | None = None,
        breakers: BreakerBoard | None = None,
        knowledge: KnowledgeService | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        # Where a reply looks a lead's wish up (the inventory); None: replies cite no stock.
        self.knowledge = knowledge
        self._stocked: dict[str, tuple[float, bool]] = {}  # tenant -> (checked at, has items)
        self.factories = dict(factories)
        self.resolver = resolver or PlaybookResolver(db, settings.secret_key.get_secret_value())
        self.budget = budget or DailyBudget()
        self.prices = prices or PriceTable.from_settings(settings)
        self.breakers = breakers or BreakerBoard(settings, db)
        self._backends: dict[tuple[str, str, str | None, str | None], AgentBackend] = {}
        self._traced = settings.otel_enabled  # a span per model call (observe_model_call)

    # ------------------------------------------------------------------ steps

    async def read(self, request: AnalyseInput) -> Reading:
        """What a turn's steps read by reference, once for both when one activity runs them."""
        return await self._read(request.tenant_id, request.conversation_id, request.knowledge_ids)

    async def perceive(
        self, request: AnalyseInput, reading: Reading | None = None
    ) -> AnalysisResult:
        profile = await self._profile(request.tenant_id)
        playbook = await self._playbook(request.playbook)
        transcript, knowledge, known = reading or await self.read(request)
        context = PerceptionContext(
            playbook=playbook,
            new_messages=request.new_messages,
            transcript=transcript,
            known_fields=known,
            knowledge=knowledge,
        )
        scope = _Scope(
            request.tenant_id,
            "analysis",
            request.conversation_id,
            purpose="analysis",
            turn=request.turn,
        )
        perceived, usage = await self._run(
            scope,
            profile,
            lambda backend: backend.perceive(context),
            calls_of=lambda p: p.calls,
            output_of=_perception_output,
        )
        perception = perceived.perception
        if len(perception.summary) > SUMMARY_MAX:
            perception = perception.model_copy(
                update={"summary": perception.summary[: SUMMARY_MAX - 1] + "…"}
            )
        return AnalysisResult(perception=perception, usage=usage)

    async def write_reply(
        self, request: GenerateReplyInput, reading: Reading | None = None
    ) -> GeneratedReply:
        profile = await self._profile(request.tenant_id)
        playbook = await self._playbook(request.playbook)
        earlier, knowledge, known = reading or await self._read(
            request.tenant_id, request.conversation_id, request.knowledge_ids
        )
        if request.perception is not None:
            known = {**known, **request.perception.fields}  # this turn's, not recorded yet
        now = earlier[-1].at if earlier else None
        transcript = earlier + tuple(
            TranscriptEntry(role=Role.LEAD, text=text, at=now or datetime.now(UTC))
            for text in request.new_messages
        )
        language = request.language or (request.perception.language if request.perception else None)
        inventory = await self._inventory(request, known)
        context = WritingContext(
            playbook=playbook,
            purpose=request.purpose,
            stage=request.stage,
            transcript=transcript,
            perception=request.perception,
            knowledge=knowledge,
            known_fields=known,
            contact_name=request.contact_name,
            language=language,
            follow_up_number=request.follow_up_number,
            instruction=request.instruction,
            escalation_rule=request.escalation_rule,
            inventory=inventory,
        )
        # The prices of the items the writer was given to cite, and no others: a price of a
        # car it was not shown is as invented as any other amount.
        cited_prices = [
            item.price
            for item in (inventory.cited() if inventory else ())
            if item.price is not None
        ]
        lead_texts = [e.text for e in transcript if e.role == Role.LEAD]
        if request.instruction:
            lead_texts.append(request.instruction)  # the operator's brief may name amounts

        async def write(backend: AgentBackend) -> tuple[Written, GuardVerdict | None]:
            written = await backend.write(context)
            verdict = check_reply(
                written.text,
                lead_language=language,
                allowed_languages=playbook.languages,
                lead_texts=lead_texts,
                knowledge_texts=[hit.snippet for hit in knowledge],
                protected_texts=prompts.protected_texts(playbook),
                public_texts=prompts.public_texts(playbook),
                forbidden_promises=playbook.forbidden_promises,
                cited_prices=cited_prices,
            )
            return written, (
                None
                if verdict.ok
                else GuardVerdict(ok=False, rule=verdict.rule, reason=verdict.reason)
            )

        scope = _Scope(
            request.tenant_id,
            "reply",
            request.conversation_id,
            purpose=request.purpose.value,
            turn=request.turn,
        )
        (written, guard), usage = await self._run(
            scope,
            profile,
            write,
            calls_of=lambda result: result[0].calls,
            output_of=lambda result: {
                "purpose": request.purpose.value,
                "chars": len(result[0].text),
                "guard": result[1].model_dump() if result[1] else None,
                **(
                    {"inventory": list(result[0].inventory_keys)}
                    if result[0].inventory_keys
                    else {}
                ),
            },
        )
        if guard is not None:
            log.warning("reply guard blocked a %s: %s", request.purpose.value, guard.reason)
        return GeneratedReply(
            text=written.text,
            usage=usage,
            guard=guard,
            knowledge_ids=written.knowledge_ids,
            inventory_keys=written.inventory_keys,
        )

    async def _inventory(
        self, request: GenerateReplyInput, known: Mapping[str, FieldValue]
    ) -> InventoryAnswer | None:
        """What the inventory holds for the lead's wish (what they told before merged with this
        turn's fields), looked up when this turn is about buying, a price or availability.
        Perception of the world, like reading the knowledge: the workflow decides nothing on
        it, so it stays inside the activity and out of the history."""
        if (
            self.knowledge is None
            or request.purpose != ReplyPurpose.REPLY
            or not wants_inventory(request.perception)
        ):
            return None
        wish = query_from_fields(dict(known), limit=MAX_CITED)
        if wish is None:
            return None
        try:
            # Only a business with cars in stock may say "not in stock": a tenant that keeps no
            # inventory here (yet) answers as it did without one, and costs no search.
            if not await self._has_stock(self.knowledge, request.tenant_id):
                return None
            return await self.knowledge.answer_wish(tenant_id=request.tenant_id, wish=wish)
        except KnowledgeBackendError as exc:
            # Retryable: a configured backend that is down delays the reply (the workflow asks
            # again with the reply step's retries), it never makes the reply skip the stock.
            raise ApplicationError(
                f"the {self.knowledge.backend} knowledge backend could not look up the "
                f"lead's wish: {exc}",
                type="KnowledgeUnavailable",
            ) from exc

    async def _has_stock(self, knowledge: KnowledgeService, tenant_id: str) -> bool:
        now = time.monotonic()
        known = self._stocked.get(tenant_id)
        if known is not None and now - known[0] < STOCK_CHECK_TTL_SECONDS:
            return known[1]
        stocked = await knowledge.has_stock(tenant_id=tenant_id)
        if len(self._stocked) > 10_000:
            self._stocked.clear()  # one entry per active tenant; a reset costs one query each
        self._stocked[tenant_id] = (now, stocked)
        return stocked

    async def write_email(self, request: WriteEmailInput) -> WrittenEmail:
        profile = await self._profile(request.tenant_id)
        playbook = await self._playbook(request.playbook)
        context = EmailContext(
            playbook=playbook,
            lead=request.lead,
            facts=request.facts,
            language=request.language,
            instruction=request.instruction,
        )
        scope = _Scope(request.tenant_id, "email", job_id=request.job_id, purpose="email")
        draft, usage = await self._run(
            scope,
            profile,
            lambda backend: backend.write_email(context),
            calls_of=lambda d: d.calls,
            output_of=lambda d: {"subject": d.subject[:120]},
        )
        return WrittenEmail(subject=draft.subject, body=draft.body, usage=usage)

    async def aclose(self) -> None:
        """Close the vendor SDK clients' connection pools (worker shutdown)."""
        for backend in self._backends.values():
            client = getattr(backend, "client", None)
            close = getattr(client, "aclose", None)
            if close is not None:
                try:
                    await close()
                except Exception as exc:  # shutting down: note it, go on
                    log.warning("closing %s failed: %s", backend.key, exc)
        self._backends.clear()

    # ------------------------------------------------------------------ plumbing

    async def _profile(self, tenant_id: str) -> TenantProfile:
        try:
            return await self.resolver.tenant(tenant_id)
        except UnknownTenantError as exc:
            raise ApplicationError(str(exc), type="UnknownTenant", non_retryable=True) from exc
        except PlaybookError as exc:
            raise ApplicationError(str(exc), type="InvalidPlaybook", non_retryable=True) from exc

    async def _playbook(self, ref: PlaybookRef) -> Playbook:
        try:
            return await self.resolver.resolve(ref)
        except UnknownTenantError as exc:
            raise ApplicationError(str(exc), type="UnknownTenant", non_retryable=True) from exc
        except PlaybookError as exc:
            raise ApplicationError(str(exc), type="InvalidPlaybook", non_retryable=True) from exc

    async def _read(
        self, tenant_id: str, conversation_id: str | None, knowledge_ids: tuple[str, ...]
    ) -> Reading:
        """By reference: the conversation's earlier messages, what is known about its lead (as
        of the last recorded turn; operators' edits included) and the knowledge documents."""
        if conversation_id is None and not knowledge_ids:
            return (), (), {}
        fields: dict[str, FieldValue] = {}
        rows = []
        async with self.db.session() as session:
            if conversation_id:
                rows = await conversation_repo.recent_messages(
                    session, conversation_id=conversation_id, limit=TRANSCRIPT_LIMIT
                )
                fields = await conversation_repo.lead_fields(
                    session, conversation_id=conversation_id
                )
            hits = await knowledge_repo.documents_by_id(
                session, tenant_id=tenant_id, document_ids=knowledge_ids
            )
        transcript = tuple(
            TranscriptEntry(role=Role(row.role), text=row.text, at=row.at) for row in rows
        )
        return transcript, tuple(hits), fields

    def _backend(self, link: ResolvedLink) -> AgentBackend:
        cache_key = (link.provider, link.model, link.base_url, _fingerprint(link.api_key))
        backend = self._backends.get(cache_key)
        if backend is None:
            factory = self.factories[link.provider]
            spec = BackendSpec(
                provider=link.provider,
                model=link.model,
                api_key=link.api_key,
                base_url=link.base_url,
            )
            backend = factory(spec, self.settings)
            self._backends[cache_key] = backend
        return backend

    async def _run(
        self,
        scope: _Scope,
        profile: TenantProfile,
        call: Callable[[AgentBackend], Awaitable[R]],
        *,
        calls_of: Callable[[R], tuple[CallRecord, ...]],
        output_of: Callable[[R], dict[str, Any]],
    ) -> tuple[R, TokenUsage]:
        links, problems = resolve_chain(
            scope.step, self.settings, profile.settings.llm, set(self.factories)
        )
        if not links:
            raise ApplicationError(
                "no usable LLM provider: " + "; ".join(problems),
                type="UnknownLlmProvider",
                non_retryable=True,
            )
        limit = daily_budget_limit(profile.settings, self.settings)
        spent = limit is not None and await self.budget.exhausted(
            scope.tenant_id, limit, db=self.db, today=utc_today()
        )
        failures: list[_Failure] = []
        for link in links:
            if spent and link.provider != "offline":
                failures.append(
                    _Failure(
                        str(link),
                        f"the tenant's daily LLM budget of ${limit:.2f} is spent",
                        retryable=False,
                        kind="budget",
                    )
                )
                continue
            try:
                backend = self._backend(link)
            except (ValueError, KeyError) as exc:
                failures.append(_Failure(str(link), str(exc), retryable=False))
                continue
            breaker = self.breakers.get(backend.key)
            try:
                with breaker.calling():
                    result = await call(backend)
            except pybreaker.CircuitBreakerError:
                wait = self.breakers.seconds_until_retry(backend.key)
                failures.append(
                    _Failure(
                        str(link),
                        f"circuit open after repeated failures (next try in {wait:.0f}s)",
                        retryable=True,
                        retry_after=wait,
                        kind="breaker",
                    )
                )
                continue
            except ModelCallFailed as exc:
                await self._ledger(scope, exc.calls, None)
                failures.append(
                    _Failure(
                        str(link),
                        exc.error.message,
                        retryable=exc.error.retryable,
                        retry_after=exc.error.retry_after,
                    )
                )
                log.warning("%s %s failed: %s", scope.step, link, exc.error.message)
                continue
            except InvalidModelOutput as exc:
                await self._ledger(scope, exc.calls, None)
                failures.append(_Failure(str(link), str(exc), retryable=False, kind="invalid"))
                continue
            calls = calls_of(result)
            usage = await self._ledger(scope, calls, output_of(result))
            if failures:
                log.warning(
                    "%s answered by %s after: %s",
                    scope.step,
                    link,
                    "; ".join(f"{f.link}: {f.message}" for f in failures),
                )
            return result, usage
        raise await self._failed(scope, failures)

    async def _failed(self, scope: _Scope, failures: list[_Failure]) -> ApplicationError:
        summary = "; ".join(f"{f.link}: {f.message}" for f in failures)
        if all(f.kind == "budget" for f in failures):
            await self._ledger(
                scope,
                (CallRecord(provider="-", model="-", outcome=CallOutcome.BUDGET_EXHAUSTED.value),),
                None,
                error=summary,
            )
            return ApplicationError(summary, type="LlmBudgetExhausted", non_retryable=True)
        retryable = [f for f in failures if f.retryable]
        if retryable:
            hints = [f.retry_after for f in retryable if f.retry_after and f.retry_after > 0]
            delay = min(min(hints), MAX_RETRY_AFTER_SECONDS) if hints else None
            return ApplicationError(
                f"no LLM provider answered: {summary}",
                type="LlmUnavailable",
                next_retry_delay=timedelta(seconds=delay) if delay else None,
            )
        if any(f.kind == "invalid" for f in failures):
            return ApplicationError(summary, type="InvalidLlmOutput", non_retryable=True)
        return ApplicationError(summary, type="LlmRequestRejected", non_retryable=True)

    @asynccontextmanager
    async def one_ledger_write(self) -> AsyncIterator[None]:
        """The ledger rows of the steps run inside this block, written in one transaction when
        it ends (also when it fails): an activity that runs two steps writes its ledger once."""
        rows: list[LlmCallRecord] = []
        token = _LEDGER_BATCH.set(rows)
        try:
            yield
        finally:
            _LEDGER_BATCH.reset(token)
            if rows:
                await self._write_ledger(rows)

    async def _write_ledger(self, rows: list[LlmCallRecord]) -> None:
        try:
            async with self.db.session() as session:
                await usage_repo.record_calls(session, calls=rows)
        except Exception as exc:
            # The ledger must not cost the lead an answer; the log keeps what was lost.
            log.error("could not record %d LLM call(s) in the ledger: %s", len(rows), exc)

    async def _ledger(
        self,
        scope: _Scope,
        calls: tuple[CallRecord, ...],
        output: dict[str, Any] | None,
        *,
        error: str | None = None,
    ) -> TokenUsage:
        """One ledger row per model call; returns the step's usage. Every model call passes here
        once, priced: it is also where its metrics and its span are made."""
        rows: list[LlmCallRecord] = []
        total_cost = 0.0
        for index, call in enumerate(calls):
            cost = (
                self.prices.cost(
                    provider=call.provider,
                    model=call.model,
                    input_tokens=call.input_tokens,
                    output_tokens=call.output_tokens,
                    cached_tokens=call.cached_tokens,
                    cache_write_tokens=call.cache_write_tokens,
                    cached_included_in_input=call.cached_included_in_input,
                ).usd
                if call.provider != "-"
                else 0.0
            )
            total_cost += cost
            observe_model_call(
                call, step=scope.step, purpose=scope.purpose, cost_usd=cost, traced=self._traced
            )
            last = index == len(calls) - 1
            row_output = dict(output) if (output is not None and last) else None
            if row_output is not None and scope.turn is not None:
                row_output["turn"] = scope.turn
            rows.append(
                LlmCallRecord(
                    tenant_id=scope.tenant_id,
                    conversation_id=scope.conversation_id,
                    job_id=scope.job_id,
                    step=scope.step,
                    purpose=scope.purpose,
                    provider=call.provider,
                    model=call.model[:200],
                    input_tokens=call.input_tokens,
                    output_tokens=call.output_tokens,
                    cached_tokens=call.cached_tokens,
                    cache_write_tokens=call.cache_write_tokens,
                    cost_usd=cost,
                    latency_ms=call.latency_ms,
                    outcome=CallOutcome(call.outcome),
                    error=call.error or error,
                    output=row_output,
                )
            )
        batch = _LEDGER_BATCH.get()
        if batch is not None:
            batch.extend(rows)
        else:
            await self._write_ledger(rows)
        self.budget.add_spend(scope.tenant_id, total_cost)
        last_call = calls[-1] if calls else CallRecord(provider="-", model="-")
        return TokenUsage(
            provider=last_call.provider,
            model=last_call.model,
            input_tokens=sum(c.input_tokens for c in calls),
            output_tokens=sum(c.output_tokens for c in calls),
            cached_tokens=sum(c.cached_tokens for c in calls),
            cost_usd=round(total_cost, 8),
            calls=len(calls),
        )


def _perception_output(perceived: Perceived) -> dict[str, Any]:
    p = perceived.perception
    return {
        "intent": p.intent.value,
        "secondary": [i.value for i in p.secondary_intents],
        "confidence": p.confidence,
        "language": p.language,
        "fields": p.fields,
    }


def _fingerprint(key: str | None) -> str | None:
    return hashlib.sha256(key.encode()).hexdigest()[:12] if key else None


__all__ = ["Agent", "BreakerBoard", "ReplyPurpose"]
