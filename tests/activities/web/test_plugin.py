"""The enrichment plugin as the worker loads it: through the `leadflow.plugins` entry point."""

from __future__ import annotations

from temporalio.plugin import SimplePlugin

from activities.plugin_api import PluginContext, Registry
from activities.web.search import DuckDuckGoHtml
from models.db import Database
from models.netguard import guarded_client
from models.settings import Settings
from models.task_queues import ENRICHMENT
from workers.plugins import discover


async def test_entry_point_registers_search_and_builds_the_enrichment_queue(
    sqlite_db: Database,
) -> None:
    (loaded,) = [p for p in discover() if p.plugin.name == "enrichment"]
    plugin = loaded.plugin
    assert loaded.entry_point == "enrichment = activities.web.plugin:enrichment_plugin"
    settings = Settings(duckduckgo_url="http://127.0.0.1:9/ddg/html/")
    async with guarded_client(settings.ssrf_allowlist) as http:
        provider = plugin.search_providers["duckduckgo"](settings, http)
        assert isinstance(provider, DuckDuckGoHtml) and provider.url == settings.duckduckgo_url
        assert plugin.build is not None
        built = plugin.build(
            PluginContext(settings=settings, db=sqlite_db, http=http, registry=Registry())
        )
    assert list(built) == [ENRICHMENT]
    assert isinstance(built[ENRICHMENT], SimplePlugin)
