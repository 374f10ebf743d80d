"""What a leadflow plugin is: adapters it adds, and Temporal activities/workflows per task queue.

A plugin package exposes an entry point in the group `leadflow.plugins` pointing at a callable
that returns a `LeadflowPlugin`. The worker first collects every plugin's adapters into one
`Registry`, then calls each plugin's `build` with a `PluginContext` holding that registry and the
process's shared clients, and hands the returned `SimplePlugin`s to the workers of those queues.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from temporalio.plugin import SimplePlugin

from models.db import Database
from models.settings import Settings


@dataclass
class Registry:
    """Adapters by name, merged from every loaded plugin."""

    channels: dict[str, Any] = field(default_factory=dict)
    llm_providers: dict[str, Any] = field(default_factory=dict)
    crm_adapters: dict[str, Any] = field(default_factory=dict)
    search_providers: dict[str, Any] = field(default_factory=dict)


@dataclass
class PluginContext:
    settings: Settings
    db: Database
    http: httpx.AsyncClient
    registry: Registry


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
