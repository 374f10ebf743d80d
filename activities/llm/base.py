"""What an agent backend is: perception and writing over resolved inputs.

The agent (activities/llm/agent.py) resolves references — the playbook by hash, knowledge hits
by id, the transcript by conversation id — and hands a backend plain data. A backend returns
what it perceived or wrote plus one `CallRecord` per model call it made (a repair is a second
call), so the agent can account for every call in the usage ledger. Every backend, the offline
rules included, implements perception only: it never decides escalation, stages or scores.

Backends raise `ModelCallError` (activities/llm/model_client.py) for a failed call and
`InvalidModelOutput` when the output does not validate even after the repair attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from models.agent import CompanyFacts, FieldValue, KnowledgeHit, Perception
from models.common import ReplyPurpose, Stage
from models.inventory import InventoryAnswer
from models.messages import TranscriptEntry
from models.playbook import Playbook
from models.settings import Settings


@dataclass(frozen=True)
class CallRecord:
    """One model call as the usage ledger records it."""

    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cache_write_tokens: int = 0
    latency_ms: int = 0
    outcome: str = "ok"  # ok | repaired | invalid_output | error
    error: str | None = None
    cached_included_in_input: bool = False  # OpenAI counts cached tokens inside input_tokens
    # When the call started (time.time_ns()), for its span; 0: unknown (ended just now).
    started_ns: int = 0


@dataclass(frozen=True)
class PerceptionContext:
    playbook: Playbook
    new_messages: tuple[str, ...]
    transcript: tuple[TranscriptEntry, ...] = ()  # earlier messages, oldest first
    known_fields: Mapping[str, FieldValue] = field(default_factory=dict)
    knowledge: tuple[KnowledgeHit, ...] = ()  # with snippets


@dataclass(frozen=True)
class WritingContext:
    playbook: Playbook
    purpose: ReplyPurpose
    stage: Stage
    transcript: tuple[TranscriptEntry, ...] = ()  # oldest first, this turn's lead messages last
    perception: Perception | None = None
    knowledge: tuple[KnowledgeHit, ...] = ()
    known_fields: Mapping[str, FieldValue] = field(default_factory=dict)  # incl. this turn's
    contact_name: str | None = None
    language: str | None = None
    follow_up_number: int = 0
    instruction: str | None = None
    escalation_rule: str | None = None
    # What the inventory holds for the lead's wish (matches, or the nearest alternatives, or
    # nothing): set only for a reply to a lead asking about buying, a price or availability.
    inventory: InventoryAnswer | None = None


@dataclass(frozen=True)
class EmailContext:
    playbook: Playbook
    lead: Mapping[str, str]
    facts: CompanyFacts
    language: str | None = None
    instruction: str | None = None


@dataclass(frozen=True)
class Perceived:
    perception: Perception
    calls: tuple[CallRecord, ...]


@dataclass(frozen=True)
class Written:
    text: str
    calls: tuple[CallRecord, ...]
    knowledge_ids: tuple[str, ...] = ()
    inventory_keys: tuple[str, ...] = ()  # the inventory items the text cites


@dataclass(frozen=True)
class WrittenEmailDraft:
    subject: str
    body: str
    calls: tuple[CallRecord, ...]


class InvalidModelOutput(Exception):
    """The model's output did not validate, also after one repair attempt."""

    def __init__(self, message: str, calls: tuple[CallRecord, ...] = ()) -> None:
        super().__init__(message)
        self.calls = calls


class AgentBackend(Protocol):
    provider: str
    model: str
    key: str  # circuit-breaker key: provider + credential fingerprint (never the secret)

    async def perceive(self, context: PerceptionContext) -> Perceived: ...

    async def write(self, context: WritingContext) -> Written: ...

    async def write_email(self, context: EmailContext) -> WrittenEmailDraft: ...


@dataclass(frozen=True)
class BackendSpec:
    """Which backend a step uses: a provider, a model and the credentials to reach it (from the
    tenant's settings or the process settings; never serialised, never logged)."""

    provider: str
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    base_url: str | None = None


BackendFactory = Callable[[BackendSpec, Settings], AgentBackend]
"""Registered by plugins under a provider name (`LeadflowPlugin.llm_providers`)."""
