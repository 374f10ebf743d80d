"""What a leadflow plugin is: adapters it adds, and Temporal activities/workflows per task queue.

A plugin package exposes an entry point in the group `leadflow.plugins` pointing at a callable
that returns a `LeadflowPlugin`. The worker first collects every plugin's adapters into one
`Registry`, then calls each plugin's `build` with a `PluginContext` holding that registry and the
process's shared clients, and hands the returned `SimplePlugin`s to the workers of those queues.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from temporalio.plugin import SimplePlugin

from models.db import Database
from models.settings import Settings

if TYPE_CHECKING:
    from activities.llm.agent import Agent
    from models.knowledge.service import KnowledgeService


@dataclass
class Registry:
    """Adapters by name, merged from every loaded plugin."""

    channels: dict[str, Any] = field(default_factory=dict)
    llm_providers: dict[str, Any] = field(default_factory=dict)
    """Provider name -> `activities.llm.base.BackendFactory`."""
    crm_adapters: dict[str, Any] = field(default_factory=dict)
    search_providers: dict[str, Any] = field(default_factory=dict)


@dataclass
class PluginContext:
    settings: Settings
    db: Database
    http: httpx.AsyncClient
    registry: Registry
    agent: Agent | None = None
    """The process's one agent (every model call: conversations, enrichment), built by the
    worker from the registry's LLM providers; plugins that call models use it."""

    knowledge: KnowledgeService | None = None
    """The process's one knowledge service (documents, inventory, search through the backend
    the settings choose), built on first use."""

    def the_knowledge(self) -> KnowledgeService:
        if self.knowledge is None:
            from models.knowledge.service import KnowledgeService, build_index

            self.knowledge = KnowledgeService(self.db, build_index(self.settings, self.db))
        return self.knowledge

    def the_agent(self) -> Agent:
        if self.agent is None:
            from activities.llm.agent import Agent

            self.agent = Agent(
                settings=self.settings,
                db=self.db,
                factories=self.registry.llm_providers,
                knowledge=self.the_knowledge(),  # replies cite the inventory through it
            )
        return self.agent


@dataclass(frozen=True)
class LeadflowPlugin:
    name: str
    description: str = ""
    channels: Mapping[str, Any] = field(default_factory=dict)
    llm_providers: Mapping[str, Any] = field(default_factory=dict)
    crm_adapters: Mapping[str, Any] = field(default_factory=dict)
    search_providers: Mapping[str, Any] = field(default_factory=dict)
    build: Callable[[PluginContext], Mapping[str, SimplePlugin]] | None = None
    """Task queue -> activities/workflows/interceptors this plugin adds to that queue's worker."""
