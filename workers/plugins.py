"""Plugin discovery: every entry point in the `leadflow.plugins` group, built-ins included."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import entry_points

from temporalio.plugin import SimplePlugin

from activities.plugin_api import LeadflowPlugin, PluginContext, Registry

ENTRY_POINT_GROUP = "leadflow.plugins"


class PluginError(Exception):
    pass


@dataclass(frozen=True)
class LoadedPlugin:
    entry_point: str
    plugin: LeadflowPlugin


def discover() -> list[LoadedPlugin]:
    loaded: list[LoadedPlugin] = []
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            factory = ep.load()
            plugin = factory()
        except Exception as exc:
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) failed to load: {exc}") from exc
        if not isinstance(plugin, LeadflowPlugin):
            raise PluginError(f"plugin {ep.name!r} ({ep.value}) did not return a LeadflowPlugin")
        loaded.append(LoadedPlugin(entry_point=f"{ep.name} = {ep.value}", plugin=plugin))
    return loaded


def registry_of(plugins: list[LoadedPlugin]) -> Registry:
    registry = Registry()
    for loaded in plugins:
        p = loaded.plugin
        registry.channels.update(p.channels)
        registry.llm_providers.update(p.llm_providers)
        registry.crm_adapters.update(p.crm_adapters)
        registry.search_providers.update(p.search_providers)
    return registry


def worker_plugins(
    plugins: list[LoadedPlugin], ctx: PluginContext
) -> dict[str, list[SimplePlugin]]:
    """Task queue -> the Temporal plugins its worker gets."""
    per_queue: dict[str, list[SimplePlugin]] = defaultdict(list)
    for loaded in plugins:
        if loaded.plugin.build is None:
            continue
        for queue, temporal_plugin in loaded.plugin.build(ctx).items():
            per_queue[queue].append(temporal_plugin)
    return dict(per_queue)


@lru_cache(maxsize=1)
def known_llm_providers() -> frozenset[str]:
    """The LLM providers the installed plugins register: what a worker of this install can run
    (the API and the CLI check tenants' model settings against it)."""
    return frozenset(registry_of(discover()).llm_providers)
